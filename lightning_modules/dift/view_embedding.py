"""The "equivalent embedding" of 3D novel views: the CLIP embedding of one view (thesis 001 Ch. 4 §4.3.2).

Without a text prompt, DiFT conditions on "the language embedding of a single view in the CLIP
latent space". :class:`CLIPViewEmbedder` runs a transformers ``CLIPVisionModel`` (thesis:
``openai/clip-vit-large-patch14``; a local folder or hub id) and returns its last hidden states
``[B, 257, 1024]`` as the token sequence the :class:`~lightning_modules.dift.transformer.TextConditioner`
pads/truncates and projects (our choice: hidden states, not the pooled projection, so the
per-token modulation has tokens to use). :class:`StandInViewEmbedder` is a frozen *random*
patch projection for CPU tests and the embedded default: a named stand-in, not CLIP.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CLIPViewEmbedder", "StandInViewEmbedder"]

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class CLIPViewEmbedder(nn.Module):
    """Frozen CLIP vision tower: views ``[B, 3, H, W]`` in [-1, 1] -> ``[B, tokens, hidden]``."""

    def __init__(self, path: str = "openai/clip-vit-large-patch14") -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        local = Path(str(path)).expanduser()
        try:
            self.model = CLIPVisionModel.from_pretrained(str(local) if local.exists() else str(path))
        except OSError as error:
            raise FileNotFoundError(f"model.view_embedder path {path!r}: cannot load a CLIPVisionModel ({error})") from error
        self.model.requires_grad_(False).eval()
        self.embed_dim = int(self.model.config.hidden_size)
        self.image_size = int(self.model.config.image_size)
        self.register_buffer("mean", torch.tensor(_CLIP_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_CLIP_STD).reshape(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, views: Tensor) -> Tensor:
        x = F.interpolate((views.float() + 1) / 2, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        return self.model(pixel_values=(x - self.mean) / self.std).last_hidden_state


class StandInViewEmbedder(nn.Module):
    """Stand-in for CLIP (random frozen weights): 4x4 patches of the view resized to 16x16 -> ``embed_dim``."""

    def __init__(self, embed_dim: int = 32, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.embed_dim = int(embed_dim)
        self.register_buffer("weight", torch.randn(embed_dim, 3 * 16, generator=generator) / 48**0.5)

    @torch.no_grad()
    def forward(self, views: Tensor) -> Tensor:
        x = F.interpolate(views.float(), size=(16, 16), mode="area")
        patches = F.unfold(x, kernel_size=4, stride=4).transpose(1, 2)  # [B, 16, 48]
        return patches @ self.weight.t()
