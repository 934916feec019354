"""LPIPS (Zhang et al. 2018) written here, with the lpips package's shipped linear heads.

The network is the lpips v0.1 recipe: a scaling layer, an ImageNet backbone
(AlexNet / VGG16 / SqueezeNet1.1 features from torchvision) tapped after the
ReLUs that lpips uses, unit-normalised features per channel, squared
differences, the learned 1x1 linear heads, spatial averages summed over
layers. Backbone weights come from a local torchvision state dict file (or
stay random for tests, like ``lpips.LPIPS(pnet_rand=True)``); the heads load
from the ``lpips`` package's ``weights/v0.1/<net>.pth`` unless another path is
given.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images, check_mask, check_same_shape, require_weights_file

# net -> (torchvision builder, cut indices after which lpips taps, channels, torchvision weight file)
_BACKBONES: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], str]] = {
    "alex": ("alexnet", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256), "alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512), "vgg16-397923af.pth"),
    "squeeze": ("squeezenet1_1", (2, 5, 8, 10, 11, 12, 13), (64, 128, 256, 384, 384, 512, 512),
                "squeezenet1_1-b8a52dc0.pth"),
}
NetName = Literal["alex", "vgg", "squeeze"]


def lpips_heads_path(net: str, version: str = "0.1") -> str:
    """Path of the linear heads shipped inside the installed ``lpips`` package."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the `lpips` package (PyPI lpips==0.1.4) is needed for its shipped linear heads")
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", f"v{version}", f"{net}.pth")


class LPIPSNetwork(nn.Module):
    """The LPIPS distance network. ``forward(a, b)`` on ``[-1, 1]`` images returns ``[B]`` (or a map).

    Args:
        net: backbone, ``"alex"`` (the default of most papers), ``"vgg"`` or ``"squeeze"``.
        backbone_weights: torchvision state dict of that backbone
            (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``,
            ``squeezenet1_1-b8a52dc0.pth``); ``None`` keeps random weights
            (tests only, equivalent to ``lpips.LPIPS(pnet_rand=True)``).
        heads_path: linear heads; ``None`` uses the lpips package's v0.1 file.
        spatial: return the per-pixel distance map ``[B, 1, H, W]`` (bilinear
            upsampling of each layer's map, as ``lpips.LPIPS(spatial=True)``).
    """

    def __init__(
        self,
        net: NetName = "alex",
        backbone_weights: Optional[str] = None,
        heads_path: Optional[str] = None,
        spatial: bool = False,
    ) -> None:
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"net must be one of {sorted(_BACKBONES)}, received {net!r}")
        import torchvision.models as tvm

        builder, cuts, channels, file_name = _BACKBONES[net]
        self.net, self.cuts, self.spatial = net, cuts, spatial
        self.features = getattr(tvm, builder)(weights=None).features[: cuts[-1]]
        path = require_weights_file(
            backbone_weights,
            config_key="backbone_weights",
            expected=f"torchvision's {file_name} ({builder} ImageNet weights)",
            source=f"https://download.pytorch.org/models/{file_name}",
        )
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            self.features.load_state_dict(feats, strict=False)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        heads = heads_path or lpips_heads_path(net)
        if not os.path.isfile(heads):
            raise FileNotFoundError(
                f"heads_path: LPIPS linear heads not found at {heads!r}; expected lpips v0.1 {net}.pth "
                f"(shipped inside the `lpips` PyPI package, weights/v0.1/)"
            )
        head_state = torch.load(heads, map_location="cpu", weights_only=True)
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(head_state[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.to(memory_format=torch.channels_last)  # NHWC convolutions: ~10% less CPU time, same values
        self.weights_identity = weights_identity(path)
        self.heads_identity = f"lpips v0.1 {net}.pth" if heads_path is None else weights_identity(heads)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="lpips",
            feature_network=f"{self.net} + {self.heads_identity}",
            feature_weights=self.weights_identity,
            resize="none (native resolution)",
            random_weights=self.weights_identity == "random",
        )

    def _taps(self, x: Tensor) -> list[Tensor]:
        taps, start = [], 0
        for cut in self.cuts:
            for index in range(start, cut):
                x = self.features[index](x)
            taps.append(x)
            start = cut
        return taps

    def forward(self, a: Tensor, b: Tensor, spatial: Optional[bool] = None) -> Tensor:
        spatial = self.spatial if spatial is None else spatial
        size = a.shape[-2:]
        both = torch.cat([a, b]).float()
        if both.shape[1] == 1:
            both = both.expand(-1, 3, -1, -1)
        taps = self._taps(((both - self.shift) / self.scale).contiguous(memory_format=torch.channels_last))
        total: Optional[Tensor] = None
        for feat, lin in zip(taps, self.lins):
            fa, fb = feat.chunk(2)
            fa = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            layer = lin((fa - fb) ** 2)
            if spatial:
                layer = F.interpolate(layer, size=size, mode="bilinear", align_corners=False)
            else:
                layer = layer.mean((2, 3))
            total = layer if total is None else total + layer
        assert total is not None
        return total if spatial else total.view(-1)


class LearnedPerceptualImagePatchSimilarity(Metric):
    """Mean LPIPS over image pairs (lower is more similar).

    ``update(preds, target)`` with ``[B, C, H, W]`` images in ``[-1, 1]``.

    Args:
        net, backbone_weights, heads_path: see :class:`LPIPSNetwork`.
        network: an existing :class:`LPIPSNetwork` to share (overrides the above).
        kwargs: forwarded to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        net: NetName = "alex",
        backbone_weights: Optional[str] = None,
        heads_path: Optional[str] = None,
        network: Optional[LPIPSNetwork] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.network = network if network is not None else LPIPSNetwork(net, backbone_weights, heads_path)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return self.network.protocol.with_extra(metric="lpips", reduction="mean over pairs")

    def train(self, mode: bool = True) -> "LearnedPerceptualImagePatchSimilarity":
        super().train(mode)
        self.network.eval()
        return self

    def _check(self, preds: Tensor, target: Tensor) -> None:
        check_images(preds, "preds", channels=(1, 3))
        check_images(target, "target", channels=(1, 3))
        check_same_shape(preds, target)

    def update(self, preds: Tensor, target: Tensor) -> None:
        self._check(preds, target)
        with torch.no_grad():
            values = self.network(preds, target)
        self.total += values.double().sum()
        self.count += values.numel()

    def compute(self) -> Tensor:
        return self.total / self.count.clamp_min(1)


class MaskedLPIPS(LearnedPerceptualImagePatchSimilarity):
    """LPIPS averaged only over a foreground mask: the spatial LPIPS map (``spatial=True``)
    is averaged over the mask's pixels per image, then over images.

    ``update(preds, target, mask)``; ``mask`` is ``[B, 1, H, W]`` or ``[B, H, W]``
    with values in {0, 1}. Images whose mask is empty are skipped (counted in
    ``empty_masks``). Arguments as for :class:`LearnedPerceptualImagePatchSimilarity`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_state("empty_masks", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    @property
    def protocol(self) -> MetricProtocol:
        return self.network.protocol.with_extra(metric="masked_lpips", reduction="spatial map averaged over mask")

    def update(self, preds: Tensor, target: Tensor, mask: Tensor) -> None:  # type: ignore[override]
        self._check(preds, target)
        weights = check_mask(mask, preds)
        with torch.no_grad():
            maps = self.network(preds, target, spatial=True)
        area = weights.sum((1, 2, 3))
        valid = area > 0
        per_image = (maps * weights).sum((1, 2, 3)) / area.clamp_min(1e-12)
        self.total += per_image[valid].double().sum()
        self.count += valid.sum()
        self.empty_masks += (~valid).sum()


__all__ = ["LPIPSNetwork", "LearnedPerceptualImagePatchSimilarity", "MaskedLPIPS", "lpips_heads_path"]
