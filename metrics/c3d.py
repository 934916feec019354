"""Video Inception Score with C3D fine-tuned on UCF-101 (TGANv2 / DIGAN / StyleGAN-V protocol; VIDM Table 3.2 "IS").

VIDM reports IS "following DIGAN"; its README evaluates with StyleGAN-V's ``isv2048_ucf``:
2048 generated 16-frame clips, the class probabilities of ``c3d_ucf101.pt`` (a TorchScript port
of TGANv2's chainer C3D fine-tuned on UCF-101, 101 classes), the samples shuffled with
``RandomState(42)`` and split in 10, the score ``exp(E KL(p(y|x) || p(y)))`` averaged over splits.

:class:`C3D` is the C3D network (Tran et al. 2015) in the chainer model's layer names
(``conv1a``, ``conv2a``, ``conv3a``/``conv3b``, ``conv4a``/``conv4b``, ``conv5a``/``conv5b``,
``fc6``, ``fc7``, ``fc8``), so a state dict with those names loads strictly.
:class:`C3DProbabilities` takes ``[B, T, 3, H, W]`` in [-1, 1], uses the first 16 frames, resizes
to 112x112, subtracts the C3D (Sports-1M) per-channel mean on [0, 255] and returns log
probabilities; a TorchScript file (StyleGAN-V's ``c3d_ucf101.pt``) is called as a black box on
uint8-range ``[B, 3, T, H, W]`` input (it resizes and normalises itself). Without weights it is a
random-weight stand-in and says so in its protocol (``random_weights``). Splits are streamed
round-robin here (no shuffle buffer), which matches the shuffled split in expectation.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.generation_quality import InceptionScore
from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images, require_weights_file

C3D_WEIGHTS_HINT = (
    "C3D fine-tuned on UCF-101: StyleGAN-V's c3d_ucf101.pt (https://www.dropbox.com/s/jxpu7avzdc9n97q/c3d_ucf101.pt) "
    "or a state dict with the chainer C3DVersion1 layer names (conv1a ... fc8)"
)
#: BGR-free per-channel mean of the C3D Sports-1M training clips on [0, 255] (RGB order).
C3D_MEAN = (101.4, 97.7, 90.2)


class C3D(nn.Module):
    """C3D: eight 3x3x3 convs, five max pools, three FC layers (``num_classes`` outputs).

    ``base_width=64, fc_width=4096, input_size=112`` is the published network (fc6 takes
    512 x 1 x 4 x 4 = 8192 features); smaller values build the CPU stand-in of the tiny configs.
    """

    def __init__(self, num_classes: int = 101, base_width: int = 64, fc_width: int = 4096, input_size: int = 112) -> None:
        super().__init__()
        w = [base_width * m for m in (1, 2, 4, 4, 8, 8, 8, 8)]
        names = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
        for i, name in enumerate(names):
            setattr(self, name, nn.Conv3d(3 if i == 0 else w[i - 1], w[i], 3, padding=1))
        side = input_size // 16
        side = (side + 1) // 2
        self.fc6 = nn.Linear(w[-1] * side * side, fc_width)
        self.fc7, self.fc8 = nn.Linear(fc_width, fc_width), nn.Linear(fc_width, num_classes)
        self.num_classes = num_classes

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, 3, 16, 112, 112]`` (mean-subtracted, [0, 255] scale) -> logits ``[B, num_classes]``."""
        x = F.max_pool3d(F.relu(self.conv1a(x)), (1, 2, 2), (1, 2, 2))
        x = F.max_pool3d(F.relu(self.conv2a(x)), 2, 2)
        x = F.max_pool3d(F.relu(self.conv3b(F.relu(self.conv3a(x)))), 2, 2)
        x = F.max_pool3d(F.relu(self.conv4b(F.relu(self.conv4a(x)))), 2, 2)
        x = F.relu(self.conv5b(F.relu(self.conv5a(x))))
        x = F.max_pool3d(F.pad(x, (0, 1, 0, 1, 0, 0)), 2, 2)
        x = x.flatten(1)
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(x)))))


class C3DProbabilities(nn.Module):
    """Clips ``[B, T, 3, H, W]`` in [-1, 1] -> log class probabilities ``[B, 101]`` (module docstring).

    Args:
        weights_path: ``c3d_ucf101.pt`` (TorchScript) or a :class:`C3D` state dict; ``None``: random
            weights (a named stand-in, tests only).
        num_frames: frames per clip (16).
        network: an explicit (e.g. tiny) network instead of :class:`C3D`; ``resolution`` then sets its input side.
        resolution: frame side fed to the network (112).
    """

    def __init__(self, weights_path: Optional[str] = None, num_frames: int = 16, network: Optional[nn.Module] = None,
                 resolution: int = 112) -> None:
        super().__init__()
        path = require_weights_file(weights_path, config_key="weights_path", expected=C3D_WEIGHTS_HINT,
                                    source="StyleGAN-V / TGANv2")
        self.num_frames, self.resolution = int(num_frames), int(resolution)
        self.scripted: Optional[torch.jit.ScriptModule] = None
        self.net = network if network is not None else C3D()
        if path is not None:
            try:
                self.scripted = torch.jit.load(path, map_location="cpu").eval()
            except Exception:
                state = torch.load(path, map_location="cpu", weights_only=True)
                missing, unexpected = self.net.load_state_dict(state, strict=False)
                if missing or unexpected:
                    raise ValueError(f"{path}: not a C3D state dict: missing {list(missing)[:4]}, unexpected {list(unexpected)[:4]}")
        self.num_features = int(getattr(self.net, "num_classes", 101))
        self.weights_identity = weights_identity(path)
        self.register_buffer("mean", torch.tensor(C3D_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        return MetricProtocol(
            evaluator="c3d_ucf101",
            feature_network="C3D UCF-101 class probabilities" + (" [TorchScript]" if self.scripted is not None else ""),
            feature_weights=self.weights_identity,
            resize=f"first {self.num_frames} frames; bilinear to {self.resolution}x{self.resolution}; [0,255] - C3D mean",
            random_weights=self.weights_identity == "random",
        )

    def forward(self, videos: Tensor) -> Tensor:
        check_images(videos, "C3D input videos", ndim=5, channels=(3,))
        if videos.shape[1] < self.num_frames:
            raise ValueError(f"C3D input videos: expected at least {self.num_frames} frames, received {videos.shape[1]}")
        x = (videos[:, : self.num_frames].float() + 1) * 127.5
        b, t, c, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4)  # [B, 3, T, H, W]
        if self.scripted is not None:
            probs = self.scripted(x).float()
            return torch.log(probs.clamp_min(1e-30))
        frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        frames = F.interpolate(frames, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = frames.reshape(b, t, c, self.resolution, self.resolution).permute(0, 2, 1, 3, 4) - self.mean
        return torch.log_softmax(self.net(x).float(), dim=1)


class VideoInceptionScore(InceptionScore):
    """Video IS: :class:`~metrics.generation_quality.InceptionScore` over C3D-UCF101 clip probabilities.

    ``update(videos, real)`` with ``[B, T, 3, H, W]`` in [-1, 1]; real clips are ignored.

    Args:
        weights_path: the C3D weights (see :class:`C3DProbabilities`); ``None``: random stand-in.
        num_frames: frames per clip (16).
        splits: 10 (StyleGAN-V ``isv2048_ucf``).
        classifier: an explicit video classifier (e.g. a tiny stand-in) instead of C3D.
    """

    def __init__(self, weights_path: Optional[str] = None, num_frames: int = 16, splits: int = 10,
                 classifier: Optional[nn.Module] = None, **kwargs: Any) -> None:
        classifier = classifier if classifier is not None else C3DProbabilities(weights_path, num_frames)
        super().__init__(classifier, splits=splits, num_classes=getattr(classifier, "num_features", None), **kwargs)

    def extract(self, images: Tensor, name: str = "videos") -> Tensor:
        check_images(images, name, ndim=5, value_range=self.input_range)
        with torch.no_grad():
            logits = self.feature_extractor(images)
        if logits.ndim != 2 or logits.shape[1] != self.num_features:
            raise ValueError(f"the video classifier returned {tuple(logits.shape)}, expected [B, {self.num_features}]")
        return logits.double()


__all__ = ["C3D", "C3DProbabilities", "C3D_WEIGHTS_HINT", "VideoInceptionScore"]
