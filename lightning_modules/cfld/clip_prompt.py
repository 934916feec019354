"""Ablation B2 (seed 003, Table 3, "CLIP" prompt; authors' ``clip_model.yaml``, digest A9).

A frozen CLIP ViT-L/14 vision tower encodes the 224x224 source; its pooled 1024-d output goes
through ``Linear(1024 -> 768)``, a 5-layer transformer mapper and a LayerNorm and becomes a
one-token prompt (Paint-by-Example style). No Swin, no HGA. The paper's finding: such prompts
fit the frozen SD poorly (LPIPS 0.2099, SSIM 0.6944).

The CLIP tower is built by transformers' ``CLIPVisionModel`` from a local folder
(``from_pretrained(path, local_files_only=True)``) or from a config dict with random weights.
[GAP] the mapper's layers are standard pre-LN transformer encoder layers (12 heads, 4x MLP).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import require_files

CLIP_SOURCE = "the Hugging Face hub repo openai/clip-vit-large-patch14 (config.json + model.safetensors)"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_clip_vision(path: Optional[str], config: Optional[Mapping[str, Any]], key: str = "model.init_args.clip_path") -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if path is None:
        if config is None:
            raise ValueError(f"{key} is null and no clip_config dict was given for a random-weight CLIP vision tower")
        return CLIPVisionModel(CLIPVisionConfig(**dict(config)))
    require_files(path, key, ["config.json"], CLIP_SOURCE)
    return CLIPVisionModel.from_pretrained(path, local_files_only=True)


class CLIPImagePrompt(nn.Module):
    """Frozen CLIP vision tower + trainable mapper -> a one-token prompt ``[B, 1, dim]``."""

    def __init__(self, clip: nn.Module, dim: int = 768, mapper_layers: int = 5, mapper_heads: int = 12) -> None:
        super().__init__()
        self.clip = clip.requires_grad_(False).eval()
        hidden = int(clip.config.hidden_size)
        self.image_size = int(clip.config.image_size)
        self.proj = nn.Linear(hidden, dim)
        heads = mapper_heads if dim % mapper_heads == 0 else 1
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.mapper = nn.TransformerEncoder(layer, mapper_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "CLIPImagePrompt":
        super().train(mode)
        self.clip.eval()  # frozen
        return self

    def forward(self, source: Tensor) -> Tensor:
        x = F.interpolate(source.float(), size=(self.image_size, self.image_size), mode="bicubic", antialias=True, align_corners=False)
        x = ((x + 1) * 0.5 - self.mean) / self.std
        with torch.no_grad():
            pooled = self.clip(pixel_values=x).pooler_output
        return self.norm(self.mapper(self.proj(pooled)[:, None, :]))
