"""Foundation encoder of the AlignTok tokenizer (thesis 000, Ch. 7 §7.2).

The encoder E_p is a pretrained ViT (DINOv2 ViT-L/14 by default: timm
``vit_large_patch14_dinov2.lvd142m`` for ImageNet, ``vit_large_patch14_reg4_dinov2.lvd142m``
for LAION; MAE ``vit_large_patch16_224.mae`` and SigLIP 2 ``vit_large_patch16_siglip_256.v2_webli``
are the other encoders of Table 7.2). The image is resized so that each side is
``(side / 16) * patch`` pixels (256 -> 224 for patch 14), so the token grid is always
``image / 16``; class and register tokens are dropped and the patch tokens are returned as a
``[B, C_enc, H/16, W/16]`` map.

Choices where the thesis is silent (documented in docs/aligntok.md):

* the resize is bicubic with anti-aliasing, applied to the ``[-1, 1]`` image before the
  encoder's own mean/std normalisation (taken from timm's ``pretrained_cfg``);
* the encoder's output is timm's ``forward_features`` (after the final LayerNorm);
* the "encoder's last layer" used by the adaptive L_sp weight is the last block's
  ``mlp.fc2.weight``.
* timm's default ``img_size`` of the DINOv2 models (518) is kept, so the pretrained
  position table loads unchanged and is interpolated (``dynamic_img_size``); this also
  reproduces Table 7.6's 304.4M encoder parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import MissingWeightsError, require_files

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
WEIGHT_SOURCE = (
    "the timm checkpoint of the named model on the Hugging Face hub (e.g. "
    "timm/vit_large_patch14_dinov2.lvd142m, timm/vit_large_patch14_reg4_dinov2.lvd142m, "
    "timm/vit_large_patch16_224.mae, timm/vit_large_patch16_siglip_256.v2_webli); download its "
    "model.safetensors once with `huggingface-cli download <id>` and point the key at the folder or file"
)


def resolve_weights_file(path: str, key: str) -> Path:
    """A weights file given a file or a folder holding one of ``WEIGHT_FILES``."""
    root = Path(path).expanduser()
    if root.is_file():
        return root
    if root.is_dir():
        for name in WEIGHT_FILES:
            if (root / name).is_file():
                return root / name
        raise MissingWeightsError(
            f"{key}: folder '{root}' holds none of {list(WEIGHT_FILES)}. Where they come from: {WEIGHT_SOURCE}."
        )
    require_files(root, key, [""], WEIGHT_SOURCE)  # raises with the standard message
    return root


class FoundationEncoder(nn.Module):
    """A timm ViT returning its patch-token grid at ``image / downsample``.

    Args:
        model_name: timm model name (architecture; the tag picks ``pretrained_cfg``).
        pretrained_path: local weights (file or folder) or ``None`` for random weights
            (tests, tiny configs). Loaded when the module is built, never at config parse time.
        model_kwargs: extra timm ``create_model`` arguments (tiny sizes: ``embed_dim``,
            ``depth``, ``num_heads``, ``img_size``).
        downsample: image pixels per latent token (16 in the paper).
        weights_key: the config key named in the missing-weights message.
    """

    def __init__(
        self,
        model_name: str = "vit_large_patch14_dinov2.lvd142m",
        pretrained_path: Optional[str] = None,
        model_kwargs: Optional[Mapping[str, Any]] = None,
        downsample: int = 16,
        weights_key: str = "model.init_args.tokenizer.init_args.encoder.pretrained_path",
    ) -> None:
        super().__init__()
        import timm

        kwargs = dict(model_kwargs or {})
        kwargs.setdefault("dynamic_img_size", True)
        if pretrained_path is not None:
            file = resolve_weights_file(pretrained_path, weights_key)
            kwargs["pretrained_cfg_overlay"] = {"file": str(file)}
            self.model = timm.create_model(model_name, pretrained=True, num_classes=0, **kwargs)
        else:
            self.model = timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)
        self.model_name = model_name
        self.downsample = int(downsample)
        patch = self.model.patch_embed.patch_size
        self.patch = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 1))
        self.embed_dim = int(self.model.embed_dim)
        cfg = getattr(self.model, "pretrained_cfg", {}) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        if height % self.downsample or width % self.downsample:
            raise ValueError(f"image size {height}x{width} is not a multiple of downsample={self.downsample}")
        return height // self.downsample, width // self.downsample

    def last_layer(self) -> nn.Parameter:
        """The parameter at which the adaptive L_sp weight compares gradient norms."""
        return self.model.blocks[-1].mlp.fc2.weight

    def preprocess(self, images: Tensor) -> Tensor:
        """``[-1, 1]`` images -> resized to ``grid * patch`` and normalised for the encoder."""
        gh, gw = self.grid_size(images.shape[-2], images.shape[-1])
        size = (gh * self.patch, gw * self.patch)
        x = (images.float() + 1.0) / 2.0
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        return ((x - self.mean) / self.std).to(images.dtype)

    def forward(self, images: Tensor) -> Tensor:
        gh, gw = self.grid_size(images.shape[-2], images.shape[-1])
        tokens = self.model.forward_features(self.preprocess(images))
        tokens = tokens[:, self.num_prefix_tokens :]
        if tokens.shape[1] != gh * gw:
            raise RuntimeError(f"encoder returned {tokens.shape[1]} patch tokens, expected {gh}x{gw}")
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)
