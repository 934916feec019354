"""CLIP score: cosine similarity between CLIP image and text embeddings (transformers ``CLIPModel``).

Thesis 001 reports it unscaled (about 0.31 for SD at COCO-30k); torchmetrics
and many papers report ``100 * max(cos, 0)``. ``scale`` and ``clamp_negative``
select the convention and are recorded in the protocol.

Both metrics here are *conditioned* metrics for ``callbacks.evaluation.EvaluationCallback``:
``batch_conditions`` (``{update argument: batch key}``, default ``{"text": "caption"}``) tells
the callback to call ``update(generated, text=batch["caption"])`` with the outputs of
``sample_for_batch`` for that batch. :class:`VideoCLIPScore` is CLIPSIM (thesis 001 Ch. 4,
Tables 4.1 / 4.3: the mean CLIP similarity of every generated frame to its prompt, unscaled).

With random weights (``config``, the CPU tests) no tokenizer exists; a documented stand-in
maps each lower-cased word to a vocabulary id by CRC32 (``[bos] words... [eos]``), so the plumbing
runs end to end; its values mean nothing.
"""
from __future__ import annotations

import os
import zlib
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from metrics.protocol import MetricProtocol
from metrics.validation import check_images

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPScore(Metric):
    """Mean ``scale * cos(CLIP_image(image), CLIP_text(prompt))``.

    ``update(images, text=None, input_ids=None, attention_mask=None)``: images
    ``[B, 3, H, W]`` in ``[-1, 1]`` with either prompts (``text``, tokenised
    with the checkpoint's tokenizer) or already tokenised ``input_ids``.

    Args:
        model_name_or_path: local folder (or cached hub id) of a CLIP
            checkpoint, e.g. ``openai/clip-vit-large-patch14`` (DiFT's CLIPSIM).
        config: ``transformers.CLIPConfig`` or dict for random weights (tests).
        scale: multiplier of the cosine (1: thesis 001; 100: torchmetrics).
        clamp_negative: ``max(cos, 0)`` before scaling (torchmetrics).
        batch_conditions: ``{update argument: batch key}`` the evaluation callback passes
            (default ``{"text": "caption"}``: the prompt strings of the batch).
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        config: Optional[Any] = None,
        scale: float = 1.0,
        clamp_negative: bool = False,
        batch_conditions: Optional[Mapping[str, str]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch_conditions = dict(batch_conditions or {"text": "caption"})
        from transformers import CLIPConfig, CLIPModel

        self.tokenizer = None
        if model_name_or_path is not None:
            path = os.path.expanduser(model_name_or_path)
            if (os.path.sep in model_name_or_path or model_name_or_path.startswith(".")) and not os.path.isdir(path):
                raise FileNotFoundError(
                    f"model_name_or_path: CLIP folder {model_name_or_path!r} not found. Expected a transformers "
                    f"CLIP checkpoint folder (config.json, model.safetensors, tokenizer files), e.g. the hub id "
                    f"openai/clip-vit-large-patch14 saved locally."
                )
            self.model = CLIPModel.from_pretrained(path)
            try:
                from transformers import CLIPTokenizer

                self.tokenizer = CLIPTokenizer.from_pretrained(path)
            except Exception:
                self.tokenizer = None
            identity = os.path.basename(os.path.normpath(model_name_or_path))
        else:
            if config is None:
                raise ValueError("CLIPScore needs `model_name_or_path` or a `config` (random weights)")
            self.model = CLIPModel(CLIPConfig(**config) if isinstance(config, dict) else config)
            identity = "random"
        self.model.eval().requires_grad_(False)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.scale, self.clamp_negative = float(scale), bool(clamp_negative)
        self.weights_identity = identity
        self.register_buffer("mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="clip_score",
            feature_network="CLIP image/text projections",
            feature_weights=self.weights_identity,
            resize=f"bicubic to {self.image_size}x{self.image_size}; CLIP mean/std",
            random_weights=self.weights_identity == "random",
            extra={"scale": self.scale, "clamp_negative": self.clamp_negative},
        )

    def update(
        self,
        images: Tensor,
        text: Optional[Sequence[str]] = None,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
    ) -> None:
        check_images(images, "images", channels=(3,))
        if input_ids is None:
            if text is None:
                raise ValueError("CLIPScore.update needs `text` (prompts) or `input_ids`")
            if self.tokenizer is None and self.weights_identity != "random":
                raise RuntimeError("CLIPScore: no tokenizer loaded with the CLIP weights; pass `input_ids`")
            if self.tokenizer is None:
                input_ids, attention_mask = self._stand_in_tokens(list(text))
            else:
                tokens = self.tokenizer(list(text), padding=True, truncation=True, return_tensors="pt")
                input_ids, attention_mask = tokens["input_ids"], tokens["attention_mask"]
        if input_ids.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {input_ids.shape[0]} prompts")
        device = images.device
        x = F.interpolate((images.float() + 1) * 0.5, size=(self.image_size, self.image_size), mode="bicubic",
                          align_corners=False).clamp(0, 1)
        with torch.no_grad():
            img = self.model.get_image_features(pixel_values=(x - self.mean) / self.std)
            txt = self.model.get_text_features(input_ids=input_ids.to(device),
                                               attention_mask=None if attention_mask is None else attention_mask.to(device))
        img = img if isinstance(img, Tensor) else img.pooler_output
        txt = txt if isinstance(txt, Tensor) else txt.pooler_output
        cos = F.cosine_similarity(img.double(), txt.double(), dim=-1)
        if self.clamp_negative:
            cos = cos.clamp_min(0)
        self.total += (self.scale * cos).sum()
        self.count += cos.numel()

    def _stand_in_tokens(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Random-weight stand-in tokenizer (module docstring): CRC32 word ids, padded with ``pad``."""
        text_config = self.model.config.text_config
        vocab, limit = int(text_config.vocab_size), int(text_config.max_position_embeddings)
        bos, eos = int(text_config.bos_token_id), int(text_config.eos_token_id)
        pad = int(text_config.pad_token_id if text_config.pad_token_id is not None else eos)
        if max(bos, eos, pad) >= vocab:
            raise ValueError(f"CLIPScore stand-in tokenizer: bos/eos/pad ids ({bos}, {eos}, {pad}) must be below the "
                             f"random config's vocab_size {vocab}")
        rows = [[bos] + [3 + zlib.crc32(w.lower().encode()) % (vocab - 3) for w in p.split()][: limit - 2] + [eos]
                for p in prompts]
        length = max(len(r) for r in rows)
        ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
        return ids, mask

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class VideoCLIPScore(CLIPScore):
    """CLIPSIM: the mean CLIP score of every frame of a generated video to its prompt.

    ``update(videos [B, T, 3, H, W] in [-1, 1], text=B prompts)``; ``frames_per_video`` (``None``:
    all) scores that many evenly spaced frames per video. Thesis 001 Ch. 4 reports it unscaled
    (``scale: 1``), e.g. 0.22 for DiFT on CelebV-Text.
    """

    def __init__(self, *args: Any, frames_per_video: Optional[int] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if frames_per_video is not None and frames_per_video < 1:
            raise ValueError(f"frames_per_video must be >= 1 or None, got {frames_per_video}")
        self.frames_per_video = frames_per_video

    def update(self, videos: Tensor, text: Optional[Sequence[str]] = None, input_ids: Optional[Tensor] = None,  # type: ignore[override]
               attention_mask: Optional[Tensor] = None) -> None:
        if videos.dim() != 5:
            raise ValueError(f"VideoCLIPScore.update takes videos [B, T, 3, H, W], got shape {tuple(videos.shape)}")
        b, t = videos.shape[:2]
        if self.frames_per_video is not None and self.frames_per_video < t:
            keep = torch.linspace(0, t - 1, self.frames_per_video).round().long().to(videos.device)
            videos, t = videos.index_select(1, keep), self.frames_per_video
        if text is not None:
            if len(text) != b:
                raise ValueError(f"{b} videos but {len(text)} prompts")
            text = [prompt for prompt in text for _ in range(t)]
        if input_ids is not None:
            input_ids = input_ids.repeat_interleave(t, 0)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(t, 0)
        super().update(videos.flatten(0, 1), text=text, input_ids=input_ids, attention_mask=attention_mask)


__all__ = ["CLIPScore", "VideoCLIPScore"]
