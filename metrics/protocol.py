"""The evaluation protocol a metric declares, so a number never travels without its recipe.

Every metric in this package carries a :class:`MetricProtocol`. The evaluation
callback copies it into each results row (``evaluator`` field), and the
leaderboard prints it beside the value, so a FID computed with a random-weight
stand-in network can never be mistaken for a paper-comparable FID.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

#: Version of this package's metric implementations. Bump it when a metric's
#: numbers could change (a new resize rule, a different estimator).
SUITE_METRICS_VERSION = "1.0"


@dataclass(frozen=True)
class MetricProtocol:
    """How a metric value was produced.

    Attributes:
        evaluator: the metric and implementation, e.g. ``"suite-fid"``.
        version: implementation version (``SUITE_METRICS_VERSION`` unless the
            metric wraps a third-party evaluator, whose version goes here).
        feature_network: the network whose features are compared, e.g.
            ``"tf-inception-v3 (pool3, 2048-d)"``; ``None`` for pixel metrics.
        feature_weights: identity of that network's weights: a file name with
            a short SHA-256, a package name and version, or ``"random"``.
        resize: the rule that brings inputs to the network's resolution.
        random_weights: ``True`` when the feature network has random weights;
            such values are marked as not comparable to papers.
        extra: protocol details specific to the metric (sample counts, frame
            counts, kernel sizes, ...).
    """

    evaluator: str
    version: str = SUITE_METRICS_VERSION
    feature_network: Optional[str] = None
    feature_weights: Optional[str] = None
    resize: Optional[str] = None
    random_weights: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (used in results rows)."""
        return asdict(self)

    def describe(self) -> str:
        """One line naming the evaluator, its version and the feature weights."""
        text = f"{self.evaluator} v{self.version}"
        if self.feature_network:
            text += f" | {self.feature_network}"
        if self.feature_weights:
            text += f" [{self.feature_weights}]"
        return text

    def with_extra(self, **extra: Any) -> "MetricProtocol":
        """A copy with more ``extra`` entries."""
        merged = dict(self.extra)
        merged.update(extra)
        return replace(self, extra=merged)


def weights_identity(path: Optional[str | os.PathLike], chunk: int = 1 << 20, digits: int = 12) -> str:
    """``"<file name>@sha256:<first digits>"`` for a weight file, or ``"random"`` for ``None``.

    Hashing reads the whole file once (about 0.3 s per 100 MB), which is small
    next to loading it, and makes the recorded identity independent of where
    the file lives.
    """
    if path is None:
        return "random"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return f"{os.path.basename(os.fspath(path))}@sha256:{digest.hexdigest()[:digits]}"


def protocol_of(obj: Any) -> Optional[MetricProtocol]:
    """The protocol a metric or feature extractor declares, if any."""
    proto = getattr(obj, "protocol", None)
    return proto if isinstance(proto, MetricProtocol) else None


__all__ = ["MetricProtocol", "SUITE_METRICS_VERSION", "weights_identity", "protocol_of"]
