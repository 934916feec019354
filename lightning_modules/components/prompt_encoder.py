"""Text prompts -> cross-attention context ``[B, L, D]`` for SD-style UNets (generic component).

Two backends behind one call, ``encoder(prompts: list[str]) -> Tensor``:

* ``path`` set: Stable Diffusion's own CLIP text encoder and tokenizer from a local diffusers
  folder (``<path>/text_encoder``, ``<path>/tokenizer``; SD 2.x gives the 1024-d OpenCLIP ViT-H
  context, SD 1.x the 768-d CLIP ViT-L one), loaded with ``local_files_only=True``.
* ``path=None``: **a stand-in, not a text encoder**: words are hashed (CRC32) into a fixed-size
  vocabulary whose embeddings are frozen random vectors (seeded), padded to ``max_length``
  tokens, plus a fixed positional embedding. It gives distinct, deterministic contexts for
  distinct prompts so that conditioning and classifier-free guidance can be exercised on CPU.

Written for CoDi / the LDM scaling study (thesis 001, Ch. 2 and 5); usable by any paper with
an SD-style UNet. The encoder is frozen in both cases.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import require_files

SD_TEXT_SOURCE = (
    "a Stable Diffusion repository in diffusers layout (e.g. stabilityai/stable-diffusion-2-1-base for the 1024-d "
    "context), downloaded beforehand with `huggingface-cli download <id> --local-dir <path>`"
)


class HashedPromptEncoder(nn.Module):
    """Stand-in text encoder: hashed words -> frozen random embeddings (module docstring)."""

    def __init__(self, dim: int = 32, max_length: int = 8, vocab_size: int = 4096, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.dim, self.max_length, self.vocab_size = int(dim), int(max_length), int(vocab_size)
        self.register_buffer("table", torch.randn(vocab_size + 1, dim, generator=generator) / dim**0.5)
        self.register_buffer("position", torch.randn(max_length, dim, generator=generator) * 0.1)

    def token_ids(self, prompt: str) -> list[int]:
        words = prompt.lower().split()[: self.max_length]
        ids = [zlib.crc32(w.encode()) % self.vocab_size for w in words]
        return ids + [self.vocab_size] * (self.max_length - len(ids))  # last row = padding

    def forward(self, prompts: Sequence[str]) -> Tensor:
        ids = torch.tensor([self.token_ids(p) for p in prompts], device=self.table.device)
        return self.table[ids] + self.position


class CLIPPromptEncoder(nn.Module):
    """SD's CLIP text encoder + tokenizer from a local diffusers folder."""

    def __init__(self, path: str, key: str = "text_encoder_path") -> None:
        super().__init__()
        from transformers import CLIPTextModel, CLIPTokenizer

        root = require_files(path, key, ["text_encoder/config.json", "tokenizer"], SD_TEXT_SOURCE)
        self.tokenizer = CLIPTokenizer.from_pretrained(str(root), subfolder="tokenizer", local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(str(root), subfolder="text_encoder", local_files_only=True)
        self.dim = int(self.model.config.hidden_size)

    def forward(self, prompts: Sequence[str]) -> Tensor:
        tokens = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                                truncation=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        return self.model(tokens.input_ids.to(device))[0]


def build_prompt_encoder(path: Optional[str], dim: int, max_length: int = 8, key: str = "text_encoder_path") -> nn.Module:
    """The CLIP encoder from ``path``, or the hashed stand-in of width ``dim`` when ``path`` is None."""
    if path is None:
        return HashedPromptEncoder(dim=dim, max_length=max_length)
    if not Path(path).expanduser().exists():
        require_files(path, key, ["text_encoder/config.json", "tokenizer"], SD_TEXT_SOURCE)
    return CLIPPromptEncoder(path, key=key)


__all__ = ["CLIPPromptEncoder", "HashedPromptEncoder", "SD_TEXT_SOURCE", "build_prompt_encoder"]
