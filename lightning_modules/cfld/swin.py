"""Source image encoder H_S: Swin-B giving four feature levels (seed 003, Sec. 3.2; digest 002-003 A3).

Built from timm's ``SwinTransformer`` class: patch 4, embed 128, depths (2, 2, 18, 2), heads
(4, 8, 16, 32), window 16, drop-path 0.2, input 256x256 ([R]). The features are the outputs of
the four stages before the next patch merging (timm merges at the start of a stage, so these
are timm's stage outputs): f1 128x64x64, f2 256x32x32, f3 512x16x16, f4 1024x8x8. The final
norm, pooling and head are not used and are removed (``LAST_NORM=False`` [R]), which leaves
87.0M trainable parameters (paper Table 1).

Pretrained start ([R]): Microsoft's ``swin_base_patch4_window12_384_22kto1k.pth`` (state under
``model``), converted by timm's ``checkpoint_filter_fn``: stage-merging keys are moved and the
window-12 relative-position bias tables are resized to window 16 with timm's
``resize_rel_pos_bias_table``: BEiT-style interpolation on a geometric-progression grid of
relative offsets (cubic, scipy when available), not a plain bicubic resize of the table.
(The authors' own loader resizes the table with a plain bicubic ``F.interpolate``; a trained
CFLD checkpoint carries its own window-16 tables, so this only matters for a fresh start.)

Input normalisation (``input_normalization``): the paper only says "a standard Swin-B pretrained on
ImageNet". The authors' data pipeline gives Swin the source image as ``Normalize(0.5, 0.5)``,
i.e. in [-1, 1] as it arrives here (``"none"``, the default, needed for their released weights);
``"imagenet"`` re-normalises with the ImageNet mean/std the pretrained weights were trained with
(the suite's first reading).

``checkpoint`` is a local file or a hub id resolved through the Hugging Face cache
(:func:`~lightning_modules.components.pretrained_paths.require_files`).
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from timm.models.swin_transformer import SwinTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from lightning_modules.components.pretrained_paths import require_files
from lightning_modules.components.safe_load import safe_torch_load

log = logging.getLogger(__name__)

INPUT_NORMALIZATIONS = ("none", "imagenet")

SWIN_SOURCE = (
    "the Microsoft Swin Transformer release (github.com/microsoft/Swin-Transformer, "
    "'swin_base_patch4_window12_384_22kto1k.pth', ImageNet-22k pre-training with 1k fine-tuning)"
)


class SwinEncoder(nn.Module):
    """Swin backbone returning ``[f1, f2, f3, f4]`` (NCHW) for an image in [-1, 1].

    Args:
        img_size: source image side (256).
        embed_dim, depths, num_heads, window_size, drop_path_rate: Swin hyper-parameters.
        checkpoint: path of the Microsoft/timm Swin checkpoint; ``None`` keeps random weights.
        checkpoint_key: config key named in the error when ``checkpoint`` is missing.
        input_normalization: ``"none"`` (inputs stay in [-1, 1], the authors' pipeline) or ``"imagenet"``.
    """

    def __init__(
        self,
        img_size: int = 256,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_size: int = 16,
        drop_path_rate: float = 0.2,
        checkpoint: Optional[str] = None,
        checkpoint_key: str = "model.init_args.swin_checkpoint",
        input_normalization: str = "none",
    ) -> None:
        super().__init__()
        if input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(
                f"model.init_args.swin.input_normalization={input_normalization!r} is not one of {list(INPUT_NORMALIZATIONS)}"
            )
        self.input_normalization = input_normalization
        self.model = SwinTransformer(
            img_size=img_size,
            patch_size=4,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            drop_path_rate=drop_path_rate,
            num_classes=0,
        )
        self.model.norm = nn.Identity()
        self.model.head = nn.Identity()
        self.channels = [embed_dim * 2**i for i in range(len(depths))]
        self.grids = [img_size // 4 // 2**i for i in range(len(depths))]
        # ImageNet normalisation of the pretrained weights (input_normalization="imagenet"); inputs arrive in [-1, 1]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        if checkpoint is not None:
            self.load_checkpoint(checkpoint, checkpoint_key)

    def load_checkpoint(self, path: str, key: str = "model.init_args.swin_checkpoint") -> None:
        file = require_files(path, key, [""], SWIN_SOURCE)  # a local file, or a hub id's cached snapshot folder
        if file.is_dir():  # a hub repo / folder: its one .pth file
            found = sorted(file.glob("*.pth"))
            if len(found) != 1:
                raise FileNotFoundError(f"{key}: {file} should hold exactly one .pth Swin checkpoint, found {[f.name for f in found]}")
            file = found[0]
        state = safe_torch_load(file, key=key)
        converted = checkpoint_filter_fn(state, self.model)
        converted = {k: v for k, v in converted.items() if not k.startswith(("head", "norm."))}
        result = self.model.load_state_dict(converted, strict=False)
        missing = [k for k in result.missing_keys if "relative_position_index" not in k and "attn_mask" not in k]
        log.info("Swin checkpoint %s loaded (missing %d keys, unexpected %d)", path, len(missing), len(result.unexpected_keys))
        if missing:
            raise RuntimeError(f"{key}: Swin checkpoint '{path}' does not fit the configured Swin; missing {missing[:5]}")

    def forward(self, images: Tensor) -> list[Tensor]:
        """``images`` in [-1, 1] -> the four stage outputs (NCHW)."""
        x = images if self.input_normalization == "none" else ((images + 1.0) * 0.5 - self.mean) / self.std
        return self.model.forward_intermediates(x, intermediates_only=True)
