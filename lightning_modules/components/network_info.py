"""What the suite reads off a denoiser network: sample shape, class embeddings, sizes."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def network_sample_shape(net: nn.Module) -> tuple[int, ...] | None:
    """(C, H, W) a diffusers-style network was configured for, or ``None`` if unknown."""
    config = getattr(net, "config", None)
    if config is None:
        return None
    channels = getattr(config, "in_channels", None)
    size = getattr(config, "sample_size", None)
    if channels is None or size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (int(channels), int(height), int(width))


def class_embedding_count(net: nn.Module) -> int | None:
    """Number of class embeddings of a diffusers UNet (``num_class_embeds``), if any."""
    config = getattr(net, "config", None)
    return getattr(config, "num_class_embeds", None) if config is not None else None


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (works on the meta device too)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` (zero-init layers: no effect at the start of training)."""
    for param in module.parameters():
        param.zero_()
    return module
