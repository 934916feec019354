"""PatchGAN discriminator (pix2pix, Isola et al. 2017; lecture seed 002 lines 1903-1960).

"Rather than penalizing if output image looks fake, penalize if each overlapping patch in output
looks fake" (line 1907). The lecture shows receptive fields of 1x1 (line 1927), 16x16 (1938),
70x70 (1949, the default) and the full image (1960). The architecture is pix2pix's
``NLayerDiscriminator``: ``n`` stride-2 4x4 convolutions (64, 128, 256, 512 channels, capped at 8x
the base width), then a stride-1 4x4 conv and a stride-1 4x4 conv to one channel, padding 1,
BatchNorm after every conv but the first and last, LeakyReLU 0.2. Its receptive field is
``r(n) = 2 r(n-1) + 2`` from ``r(0) = 7``: 16 for n = 1, 34 for 2, 70 for 3, 142 for 4, 286 for 5.
The 1x1 "PixelGAN" is pix2pix's three 1x1 convolutions.

``receptive_field``: ``1``, ``16``, ``70`` (or any value of ``r(n)``) or ``"full"``: the smallest
n whose field covers ``image_size`` (an "ImageGAN": every output sees the whole image).

Input channels are the condition and the image concatenated (conditional D, line 1190), i.e.
``in_channels = source + target`` channels for pix2pix, the image's channels for CycleGAN.
"""
from __future__ import annotations

from typing import Optional, Union

from torch import Tensor, nn


def nlayer_receptive_field(n_layers: int) -> int:
    """Receptive field of pix2pix's NLayerDiscriminator with ``n_layers`` stride-2 convs."""
    field = 7  # the two final stride-1 4x4 convs: 1 -> 4 -> 7
    for _ in range(n_layers):
        field = 2 * (field - 1) + 4
    return field


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2 padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def layers_for_field(receptive_field: Union[int, str], image_size: Optional[int]) -> int:
    """``n_layers`` for a receptive field (``0`` means the 1x1 PixelGAN)."""
    if receptive_field == 1:
        return 0
    if receptive_field == "full":
        if image_size is None:
            raise ValueError("model.discriminator: receptive_field='full' needs image_size")
        n = 1
        while nlayer_receptive_field(n) < image_size:
            n += 1
        return n
    valid = {nlayer_receptive_field(n): n for n in range(1, 8)}
    if receptive_field not in valid:
        raise ValueError(
            f"model.discriminator.receptive_field={receptive_field!r} is not 1, 'full' or one of {sorted(valid)}"
        )
    return valid[int(receptive_field)]


class PatchGANDiscriminator(nn.Module):
    """A PatchGAN: one real/fake logit per overlapping patch (module docstring).

    Args:
        in_channels: channels of D's input (condition + image for a conditional D).
        receptive_field: 1, 16, 70, another ``nlayer_receptive_field`` value, or ``"full"``.
        base_channels: width of the first conv (pix2pix ndf = 64).
        image_size: the training image size: needed for ``"full"`` and used to reject a receptive
            field larger than the image.
        norm: ``"batch"`` (pix2pix), ``"instance"`` (CycleGAN) or ``"none"``.
    """

    def __init__(self, in_channels: int = 6, receptive_field: Union[int, str] = 70, base_channels: int = 64,
                 image_size: Optional[int] = None, norm: str = "batch") -> None:
        super().__init__()
        self.n_layers = layers_for_field(receptive_field, image_size)
        self.receptive_field = 1 if self.n_layers == 0 else nlayer_receptive_field(self.n_layers)
        if image_size is not None and receptive_field != "full" and self.receptive_field > image_size:
            raise ValueError(
                f"model.discriminator.receptive_field={receptive_field} is larger than the {image_size}x{image_size} "
                f"images; use a smaller field or 'full'"
            )
        norm_layer = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "none": None}.get(norm, "bad")
        if norm_layer == "bad":
            raise ValueError(f"model.discriminator.norm={norm!r} is not 'batch', 'instance' or 'none'")
        self.kernels: list[tuple[int, int, int]] = []  # (kernel, stride, padding) for size arithmetic
        layers: list[nn.Module] = []

        def block(cin: int, cout: int, kernel: int, stride: int, padding: int, normed: bool, act: bool) -> None:
            layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, bias=not (normed and norm_layer is nn.BatchNorm2d)))
            self.kernels.append((kernel, stride, padding))
            if normed and norm_layer is not None:
                layers.append(norm_layer(cout))
            if act:
                layers.append(nn.LeakyReLU(0.2, inplace=True))

        w = base_channels
        if self.n_layers == 0:  # PixelGAN
            block(in_channels, w, 1, 1, 0, False, True)
            block(w, 2 * w, 1, 1, 0, True, True)
            block(2 * w, 1, 1, 1, 0, False, False)
        else:
            block(in_channels, w, 4, 2, 1, False, True)
            channels = w
            for i in range(1, self.n_layers):
                out = w * min(2 ** i, 8)
                block(channels, out, 4, 2, 1, True, True)
                channels = out
            out = w * min(2 ** self.n_layers, 8)
            block(channels, out, 4, 1, 1, True, True)
            block(out, 1, 4, 1, 1, False, False)
        self.model = nn.Sequential(*layers)

    def output_size(self, size: int) -> int:
        """Side of the logit map for a ``size``-pixel input, by conv arithmetic."""
        for kernel, stride, padding in self.kernels:
            size = conv_output_size(size, kernel, stride, padding)
        return size

    def forward(self, x: Tensor) -> Tensor:
        if self.receptive_field > 1 and min(x.shape[-2:]) < self.receptive_field // 4:
            raise ValueError(
                f"PatchGAN input {tuple(x.shape[-2:])} is too small for its {self.receptive_field}x"
                f"{self.receptive_field} receptive field (model.discriminator.receptive_field)"
            )
        return self.model(x)


__all__ = ["PatchGANDiscriminator", "conv_output_size", "layers_for_field", "nlayer_receptive_field"]
