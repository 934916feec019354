"""The four-selfie condition of Total Selfie (thesis 000, Ch. 3, §3.2.1, Eq. 3.2).

Paint-by-Example [298] conditions its UNet on ``c = L(F(I))``: ``F`` is the CLIP ViT-L/14 vision
tower (pooled token, frozen) followed by PbE's "MLP" (the mapper: ``(num_hidden_layers + 1) // 5``
single-head transformer blocks over the one token, then ``final_layer_norm``) and ``L`` is
``proj_out`` (1024 -> 768). Total Selfie (Eq. 3.2)::

    c' = L([F(I'_f), F(I'_u), F(I'_l), F(I'_s)])

``[.]`` is concatenation and ``L`` is "modified to adapt to the dimension of the concatenated
embeddings" and zero-initialised; everything else starts from PbE. Trainable (§3.2.1): the UNet,
the mapper ("weights in F's MLP") and ``L``; the CLIP tower stays frozen.

* ``concat_axis="feature"`` (default, the literal reading and the authors' released
  ``modify_checkpoints_mlp.py``, which writes a ``[768, 4 * 1024]`` zero ``proj_out.weight``):
  one 768-d token from ``Linear(4 * 1024 -> 768)``.
* ``concat_axis="token"``: four tokens through one shared ``Linear(1024 -> 768)`` (an option the
  digest names; L keeps its shape, so it starts from PbE's ``proj_out`` unless ``zero_init``).

``L``'s weight is zero at start, so the first forward pass does not depend on the selfies; its
bias is PbE's ``proj_out.bias`` (as the authors' script keeps it, [EXT]). The learned null
embedding for classifier-free guidance and the 20 % condition dropout is PbE's ``uncond_vector``
(``[1, 1, 768]``; repeated per token for ``concat_axis="token"``), trained with the rest.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

CONCAT_AXES = ("feature", "token")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def pbe_image_encoder_class() -> Any:
    """diffusers' own ``PaintByExampleImageEncoder`` (slow to import: the deprecated pipelines package);
    only used to write PbE-layout folders in tests. Loading uses :class:`PbEImageEncoder`."""
    try:
        from diffusers.pipelines.deprecated.paint_by_example.image_encoder import PaintByExampleImageEncoder
    except ImportError:  # older diffusers keep the pipeline outside ``deprecated``
        from diffusers.pipelines.paint_by_example.image_encoder import PaintByExampleImageEncoder
    return PaintByExampleImageEncoder


class PbEMapper(nn.Module):
    """PbE's "MLP": ``(num_hidden_layers + 1) // 5`` single-head transformer blocks over one token
    (5 for ViT-L/14's 24 layers), key names ``blocks.<i>.*`` as in the PbE checkpoint."""

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        from diffusers.models.attention import BasicTransformerBlock

        self.blocks = nn.ModuleList([
            BasicTransformerBlock(hidden_size, 1, hidden_size, activation_fn="gelu", attention_bias=True)
            for _ in range(num_layers)
        ])

    def forward(self, hidden_states: Tensor) -> Tensor:
        for block in self.blocks:
            hidden_states = block(hidden_states)
        return hidden_states


class PbEImageEncoder(nn.Module):
    """The ``image_encoder/`` of a Paint-by-Example pipeline folder, written here with PbE's key names
    (``model.*`` CLIP vision tower, ``mapper.blocks.*``, ``final_layer_norm``, ``proj_out``,
    ``uncond_vector``), so the checkpoint loads without importing diffusers' deprecated pipelines."""

    def __init__(self, config: Any, proj_size: Optional[int] = None) -> None:
        super().__init__()
        from transformers import CLIPVisionModel

        self.config = config
        self.proj_size = int(proj_size or getattr(config, "projection_dim", 768))
        self.model = CLIPVisionModel(config)
        self.mapper = PbEMapper(config.hidden_size, (config.num_hidden_layers + 1) // 5)
        self.final_layer_norm = nn.LayerNorm(config.hidden_size)
        self.proj_out = nn.Linear(config.hidden_size, self.proj_size)
        self.uncond_vector = nn.Parameter(torch.randn((1, 1, self.proj_size)))

    @classmethod
    def from_folder(cls, folder: Any, key: str = "model.init_args.pretrained_pbe") -> "PbEImageEncoder":
        """Load ``folder`` (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``), strictly."""
        import json
        from pathlib import Path

        from transformers import CLIPVisionConfig

        from lightning_modules.components.released_weights import check_released_state, read_released_state

        folder = Path(folder)
        raw = json.loads((folder / "config.json").read_text())
        config = CLIPVisionConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type", "transformers_version")})
        weights = next((folder / n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
        if weights is None:
            raise FileNotFoundError(f"{key}: {folder} has config.json but no model.safetensors / pytorch_model.bin")
        state = read_released_state(weights, key=key)
        proj = state["proj_out.weight"].shape[0] if "proj_out.weight" in state else None
        encoder = cls(config, proj_size=proj)
        state = {k: v.reshape(encoder.state_dict()[k].shape) if k == "uncond_vector" else v for k, v in state.items()}
        own = encoder.state_dict()
        state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
        check_released_state(encoder, state, str(weights), "Paint-by-Example image encoder")
        encoder.load_state_dict(state)
        return encoder


class SelfieEmbedding(nn.Module):
    """``F``'s trainable MLP + the new ``L`` + the learned null embedding (module docstring).

    Built from a PbE ``PaintByExampleImageEncoder`` (its ``mapper``, ``final_layer_norm``,
    ``proj_out`` and ``uncond_vector``); the CLIP tower itself is kept outside (frozen).
    """

    def __init__(self, pbe_encoder: nn.Module, num_selfies: int = 4, concat_axis: str = "feature",
                 zero_init: bool = True) -> None:
        super().__init__()
        if concat_axis not in CONCAT_AXES:
            raise ValueError(f"concat_axis={concat_axis!r} is not one of {list(CONCAT_AXES)}")
        if num_selfies < 1:
            raise ValueError(f"num_selfies must be >= 1, got {num_selfies}")
        self.num_selfies, self.concat_axis = int(num_selfies), concat_axis
        self.mapper = pbe_encoder.mapper
        self.final_layer_norm = pbe_encoder.final_layer_norm
        old: nn.Linear = pbe_encoder.proj_out
        hidden, proj = old.in_features, old.out_features
        self.hidden_size, self.proj_size = hidden, proj
        fan_in = hidden * self.num_selfies if concat_axis == "feature" else hidden
        self.projection = nn.Linear(fan_in, proj)
        with torch.no_grad():
            if old.weight.device.type != "meta":
                self.projection.bias.copy_(old.bias)
                if zero_init:
                    self.projection.weight.zero_()
                elif concat_axis == "token":
                    self.projection.weight.copy_(old.weight)
                else:  # feature axis without zero init: PbE's weight on every block, averaged
                    self.projection.weight.copy_(old.weight.repeat(1, self.num_selfies) / self.num_selfies)
        self.uncond_vector = nn.Parameter(pbe_encoder.uncond_vector.detach().clone().reshape(1, 1, proj))

    @property
    def num_tokens(self) -> int:
        return 1 if self.concat_axis == "feature" else self.num_selfies

    def forward(self, pooled: Tensor) -> Tensor:
        """``pooled [B, N, hidden]`` (CLIP pooled token of each selfie) -> the context ``[B, tokens, proj]``."""
        batch, count, hidden = pooled.shape
        if count != self.num_selfies:
            raise ValueError(f"expected {self.num_selfies} selfies per item, got {count}")
        mapped = self.final_layer_norm(self.mapper(pooled.reshape(batch * count, 1, hidden)))
        mapped = mapped.reshape(batch, count, hidden)
        if self.concat_axis == "feature":
            return self.projection(mapped.reshape(batch, 1, count * hidden))
        return self.projection(mapped)

    def null(self, batch: int) -> Tensor:
        """The learned null context ``[B, tokens, proj]``."""
        return self.uncond_vector.expand(batch, self.num_tokens, -1)


def split_pbe_encoder(encoder: nn.Module, num_selfies: int, concat_axis: str, zero_init: bool = True
                      ) -> tuple[nn.Module, SelfieEmbedding]:
    """A PbE ``PaintByExampleImageEncoder`` -> (its CLIP vision tower, the :class:`SelfieEmbedding`)."""
    return encoder.model, SelfieEmbedding(encoder, num_selfies, concat_axis, zero_init)


def clip_normalise(images: Tensor, size: int) -> Tensor:
    """Images in [-1, 1] ``[..., 3, h, w]`` -> CLIP input (``size`` square, CLIP mean/std)."""
    import torch.nn.functional as F

    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:]).float()
    if tuple(flat.shape[-2:]) != (size, size):
        flat = F.interpolate(flat, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    unit = ((flat + 1.0) / 2.0).clamp(0.0, 1.0)
    mean = torch.tensor(CLIP_MEAN, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=unit.device).view(1, 3, 1, 1)
    return ((unit - mean) / std).reshape(*lead, 3, size, size)


__all__ = ["CONCAT_AXES", "SelfieEmbedding", "clip_normalise", "pbe_image_encoder_class", "split_pbe_encoder"]
