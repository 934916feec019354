"""The identity encoder ``c_id`` of the pair generation (thesis 000, Ch. 5, §5.2.2, §5.5.1).

"A variant of the image encoder and global mapper in [279] (ELITE): a CLIP image encoder followed by
a Decoder layer and a multi-layer perceptron. It translates an input image to multiple textual word
embeddings ... c_id has a dimension of 2 x 768 ... inserted right before [X]" (the gender word) in
``c_p``, ``c_pa`` and ``c_pb``. Trained on FFHQ.

* :class:`IdentityEncoder`: ``K`` learned queries (K = 2) attend to the frozen CLIP image tower's
  hidden tokens through one ``nn.TransformerDecoderLayer`` (self-attention over the queries,
  cross-attention to the CLIP tokens, feed-forward), then an MLP maps each query to a word
  embedding of the text encoder's input space (768 for SD-1.5's CLIP ViT-L/14 text tower).
  [choice] Width of the decoder = the CLIP hidden width, 8 heads (fewer if the width needs it),
  pre-norm, MLP hidden 1024 with GELU; the thesis gives no sizes.
* :func:`insert_tokens_before_word`: the insertion in the *input word-embedding* space ("new
  words" in the textual word embedding space): the sequence is shifted right by ``K`` from the
  gender word on and cut back to its length (the dropped tail is padding for SD's 77 tokens).
* :func:`encode_with_pseudo_words`: runs the frozen text encoder with that insertion (a forward
  hook on its token embedding), so the pseudo-words pass through the whole text transformer.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Sequence

import torch
from torch import Tensor, nn


class IdentityEncoder(nn.Module):
    """``clip_tokens [B, N, Dc] -> [B, K, word_dim]`` pseudo-word embeddings (module docstring)."""

    def __init__(self, clip_dim: int = 768, word_dim: int = 768, num_words: int = 2, num_heads: int = 8,
                 mlp_hidden: int = 1024) -> None:
        super().__init__()
        heads = max(h for h in range(1, num_heads + 1) if clip_dim % h == 0)
        self.num_words, self.word_dim = int(num_words), int(word_dim)
        self.queries = nn.Parameter(torch.randn(num_words, clip_dim) * 0.02)
        self.decoder = nn.TransformerDecoderLayer(clip_dim, heads, dim_feedforward=4 * clip_dim, dropout=0.0,
                                                  batch_first=True, norm_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(clip_dim), nn.Linear(clip_dim, mlp_hidden), nn.GELU(),
                                 nn.Linear(mlp_hidden, word_dim))

    def forward(self, clip_tokens: Tensor) -> Tensor:
        queries = self.queries.unsqueeze(0).expand(clip_tokens.shape[0], -1, -1).to(clip_tokens.dtype)
        return self.mlp(self.decoder(queries, clip_tokens))


def word_positions(token_ids: Tensor, word_ids: Sequence[int]) -> Tensor:
    """Index of the first token of each row that is one of ``word_ids``; ValueError names a row without one."""
    hits = torch.zeros_like(token_ids, dtype=torch.bool)
    for wid in word_ids:
        hits |= token_ids == int(wid)
    if not bool(hits.any(dim=1).all()):
        rows = (~hits.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"identity tokens go before the gender word, but prompt row(s) {rows} contain none of "
                         f"token ids {list(word_ids)}")
    return hits.int().argmax(dim=1)


def insert_tokens_before_word(embeds: Tensor, token_ids: Tensor, word_ids: Sequence[int], new_tokens: Tensor) -> Tensor:
    """``embeds [B, L, D]`` with ``new_tokens [B, K, D]`` inserted before the first ``word_ids`` token, cut to ``L``."""
    b, length, _ = embeds.shape
    k = new_tokens.shape[1]
    pos = word_positions(token_ids, word_ids)
    rows = []
    for i in range(b):
        p = int(pos[i])
        rows.append(torch.cat([embeds[i, :p], new_tokens[i].to(embeds.dtype), embeds[i, p:]], dim=0)[:length])
    if k and int(pos.max()) + k > length:
        raise ValueError(f"prompt too long: the gender word sits at token {int(pos.max())}; {k} identity tokens do not fit in {length}")
    return torch.stack(rows)


@contextmanager
def _inserting(embedding: nn.Embedding, token_ids: Tensor, word_ids: Sequence[int], new_tokens: Tensor) -> Iterator[None]:
    def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> Tensor:
        return insert_tokens_before_word(output, token_ids.to(output.device), word_ids, new_tokens.to(output.device))

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def gender_token_ids(text_encoder: nn.Module, words: Sequence[str] = ("man", "woman", "person")) -> list[int]:
    """The token id of each gender word under ``text_encoder``'s tokenizer (CLIP BPE or the hashed stand-in)."""
    tok = text_encoder.tokenizer
    if hasattr(tok, "word_id"):  # the hashed stand-in splits on spaces only: "woman," is its own word
        return [tok.word_id(w + p) for w in words for p in ("", ",")]
    return [int(tok(w, add_special_tokens=False).input_ids[0]) for w in words]


def encode_with_pseudo_words(text_encoder: nn.Module, prompts: Sequence[str], new_tokens: Optional[Tensor],
                             word_ids: Sequence[int]) -> Tensor:
    """``[B, L, D]`` text hidden states with ``new_tokens`` inserted before the gender word (or plain when ``None``)."""
    if new_tokens is None:
        return text_encoder(list(prompts))
    model = text_encoder.model
    ids = text_encoder.token_ids(list(prompts)).to(next(model.parameters()).device)
    with _inserting(model.get_input_embeddings(), ids, word_ids, new_tokens):
        return model(input_ids=ids).last_hidden_state


__all__ = ["IdentityEncoder", "encode_with_pseudo_words", "gender_token_ids", "insert_tokens_before_word", "word_positions"]
