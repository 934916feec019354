"""CLIP score: cosine similarity between CLIP image and text embeddings (transformers ``CLIPModel``).

Thesis 001 reports it unscaled (about 0.31 for SD at COCO-30k); torchmetrics
and many papers report ``100 * max(cos, 0)``. ``scale`` and ``clamp_negative``
select the convention and are recorded in the protocol.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
            if self.tokenizer is None:
                raise RuntimeError("CLIPScore: no tokenizer loaded (random-weight model); pass `input_ids`")
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

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


__all__ = ["CLIPScore"]
