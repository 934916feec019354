"""A small CNN trained on the embedded digits, whose features make FID/KID meaningful on the CPU demo.

The TF-Inception has never seen 8x8 handwritten digits upsampled to 32x32; a
classifier trained on them separates the ten classes and its penultimate
features (128-d) respond to what a digits generator gets right or wrong. This
follows the lecture plan (thesis 002-003 digest, baselines table): FID/KID
"using a suite-trained digit classifier's features". Values are only
comparable with other values computed with the same cached classifier, whose
weight hash the protocol records.

Training takes a few seconds on two CPU cores. The weights are cached in the
user cache directory (``$GENMODELS_CACHE_DIR``, else
``$XDG_CACHE_HOME/genmodels-suite``, else ``~/.cache/genmodels-suite``) as
``digits_classifier.pt``, written atomically (temporary file + ``os.replace``)
so concurrent processes never read a half-written file.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metrics.protocol import MetricProtocol, weights_identity
from metrics.validation import check_images

log = logging.getLogger(__name__)

CACHE_FILE_NAME = "digits_classifier.pt"
CLASSIFIER_VERSION = 1


def default_cache_dir() -> str:
    """The suite's user cache directory (see module docstring)."""
    explicit = os.environ.get("GENMODELS_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "genmodels-suite")


class DigitsClassifier(nn.Module):
    """Three stride-2 conv blocks (32-64-128 channels, GroupNorm) on ``[B, 1, 32, 32]`` digits, a 128-d
    fully connected feature layer, a linear classifier over the 10 classes."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv2d(1, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.ReLU(),  # 16x16
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.ReLU(),  # 8x8
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 4 * w), nn.ReLU(),  # 4x4
            nn.Flatten(), nn.Linear(4 * w * 16, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)
        self.num_features = 128

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _augment(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to 2 pixels (the digits are centred; generated ones may not be)."""
    padded = F.pad(images, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=generator).tolist()
    return padded[..., dy : dy + images.shape[-2], dx : dx + images.shape[-1]]


def train_digits_classifier(
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    holdout: float = 0.2,
    cache_path: Optional[str] = None,
) -> tuple[DigitsClassifier, dict[str, Any]]:
    """Train :class:`DigitsClassifier` on the embedded digits and cache it atomically.

    Args:
        epochs: passes over the training part.
        batch_size, lr: Adam settings.
        seed: seed of the split, the initialisation and the shuffling.
        holdout: fraction kept out to measure accuracy (reported, not trained on).
        cache_path: where to write the weights; default
            ``default_cache_dir()/digits_classifier.pt``.

    Returns:
        the trained classifier (eval mode) and its metadata (held-out accuracy,
        settings), which is saved beside the weights.
    """
    from datamodules.embedded import load_digits_images

    images, labels = load_digits_images(32)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(images.shape[0], generator=generator)
    n_val = int(round(holdout * images.shape[0]))
    val_idx, train_idx = order[:n_val], order[n_val:]
    torch.manual_seed(seed)
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        model.train()
        perm = train_idx[torch.randperm(train_idx.numel(), generator=generator)]
        for start in range(0, perm.numel(), batch_size):
            idx = perm[start : start + batch_size]
            loss = F.cross_entropy(model(_augment(images[idx], generator)), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[val_idx]).argmax(1) == labels[val_idx]).float().mean().item() if n_val else float("nan")
    meta = {"version": CLASSIFIER_VERSION, "epochs": epochs, "seed": seed, "holdout_accuracy": accuracy,
            "num_train": int(train_idx.numel()), "num_holdout": n_val}
    log.info("digits classifier trained: held-out accuracy %.3f", accuracy)
    path = cache_path or os.path.join(default_cache_dir(), CACHE_FILE_NAME)
    save_atomic({"state_dict": model.state_dict(), "meta": meta}, path)
    return model, meta


def save_atomic(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` onto ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class DigitsClassifierFeatures(nn.Module):
    """Penultimate (128-d) features of the suite's digits classifier; images ``[-1, 1]``, 1 or 3 channels.

    RGB inputs are averaged to grey; other sizes are resized bilinearly to 32x32.

    Args:
        weights_path: a file written by :func:`train_digits_classifier`;
            ``None`` means the default cache file.
        train_if_missing: train (a few seconds) and cache when the file does not
            exist; if ``False`` a missing file is an error.
        random_weights: skip loading entirely (tests of plumbing only).
        epochs: epochs for training when the cache is missing.
    """

    def __init__(
        self,
        weights_path: Optional[str] = None,
        train_if_missing: bool = True,
        random_weights: bool = False,
        epochs: int = 8,
    ) -> None:
        super().__init__()
        self.classifier = DigitsClassifier()
        self.num_features = self.classifier.num_features
        self.meta: dict[str, Any] = {}
        identity = "random"
        if not random_weights:
            path = weights_path or os.path.join(default_cache_dir(), CACHE_FILE_NAME)
            if not os.path.isfile(path):
                if not train_if_missing:
                    raise FileNotFoundError(
                        f"weights_path: digits classifier weights not found at {path!r}. Expected a "
                        f"{CACHE_FILE_NAME} written by metrics.digits_classifier.train_digits_classifier() "
                        f"(the suite trains it on the embedded digits in seconds); set train_if_missing=True."
                    )
                train_digits_classifier(epochs=epochs, cache_path=path)
            payload = torch.load(path, map_location="cpu", weights_only=True)
            self.classifier.load_state_dict(payload["state_dict"])
            self.meta = dict(payload.get("meta", {}))
            identity = weights_identity(path)
        self.weights_identity = identity
        self.eval()
        self.requires_grad_(False)

    @property
    def protocol(self) -> MetricProtocol:
        acc = self.meta.get("holdout_accuracy")
        return MetricProtocol(
            evaluator="suite-digits-classifier",
            feature_network="DigitsClassifier penultimate (128-d)",
            feature_weights=self.weights_identity,
            resize="grey, bilinear to 32x32",
            random_weights=self.weights_identity == "random",
            extra={} if acc is None else {"holdout_accuracy": round(float(acc), 4)},
        )

    def _prepare(self, images: Tensor) -> Tensor:
        check_images(images, "DigitsClassifierFeatures input", channels=(1, 3))
        x = images.float()
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if tuple(x.shape[-2:]) != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return x

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier.features(self._prepare(images))

    def logits(self, images: Tensor) -> Tensor:
        """Class logits (for classifier accuracy / Inception-Score-style metrics)."""
        return self.classifier(self._prepare(images))


class DigitsClassifierLogits(DigitsClassifierFeatures):
    """The same classifier up to its 10 class logits: the ``classifier`` of an Inception-Score-style
    metric (``metrics.generation_quality.InceptionScore``) on digits. Arguments as the parent's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.num_features = 10

    def forward(self, images: Tensor) -> Tensor:
        return self.logits(images)


__all__ = ["DigitsClassifier", "DigitsClassifierFeatures", "DigitsClassifierLogits", "train_digits_classifier", "default_cache_dir"]
