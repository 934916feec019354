"""The sampling-cost model of thesis 001, Ch. 2 (Sec. 2.3.3, Table 2.1).

``normalised cost = GFLOPs(model) / GFLOPs(866M SD UNet)`` and
``sampling cost = normalised cost x number of sampling steps``; one unit is one forward of the
866M UNet; text encoder and VAE are excluded. The thesis does not say whether classifier-free
guidance's second forward counts ([GAP], digest §1.5 / erratum 4): ``cfg_factor`` records the
choice, 1 (the formula as written, the default) or 2 (a conditional and an unconditional pass per
step). A distilled model sampled without guidance has factor 1 either way.

Training compute (Fig. 2.3) is ``normalised cost x training iterations``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from lightning_modules.ldm_scaling.family import REFERENCE_WIDTH, TABLE_2_1_GFLOPS


@dataclass(frozen=True)
class CostModel:
    """Normalised costs per model and the sampling-cost arithmetic.

    Args:
        gflops: model name (or width) -> GFLOPs per forward.
        reference: the key whose GFLOPs is one unit (SD's 866M UNet, ``c = 320``).
        cfg_factor: forwards per step when guidance is used (1 = the thesis's formula as written).
    """

    gflops: Mapping[object, float]
    reference: object = REFERENCE_WIDTH
    cfg_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.reference not in self.gflops:
            raise KeyError(f"reference {self.reference!r} is not among the models {list(self.gflops)}")
        if self.cfg_factor not in (1.0, 2.0):
            raise ValueError(f"cfg_factor must be 1 or 2, got {self.cfg_factor}")

    @classmethod
    def from_table_2_1(cls, cfg_factor: float = 1.0) -> "CostModel":
        """The thesis's own GFLOPs column (c=64's 25.3 is kept as printed; the digest flags it)."""
        return cls(dict(TABLE_2_1_GFLOPS), REFERENCE_WIDTH, cfg_factor)

    def normalised(self, model: object) -> float:
        return float(self.gflops[model]) / float(self.gflops[self.reference])

    def sampling_cost(self, model: object, steps: int, guided: bool = False) -> float:
        """``normalised cost x steps`` (x ``cfg_factor`` when ``guided``)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        factor = self.cfg_factor if guided else 1.0
        return self.normalised(model) * int(steps) * factor

    def training_compute(self, model: object, iterations: int) -> float:
        return self.normalised(model) * int(iterations)

    def steps_within(self, model: object, budget: float, guided: bool = False) -> int:
        """The most sampling steps of ``model`` whose cost is at most ``budget`` (0 if none)."""
        per_step = self.normalised(model) * (self.cfg_factor if guided else 1.0)
        return int(budget / per_step + 1e-9)


def frontier(points: list[dict], cost_key: str = "cost", score_key: str = "fid",
             model_key: str = "model") -> list[dict]:
    """Pareto frontier of (cost, score) points, lower is better for both, sorted by cost.

    Each returned point is the best (lowest score) at its cost among all points of cost <= it;
    ``winner`` names the model that achieves it.
    """
    best: Optional[dict] = None
    out = []
    for p in sorted(points, key=lambda q: (q[cost_key], q[score_key])):
        if best is None or p[score_key] < best[score_key]:
            best = p
            out.append({**p, "winner": p[model_key]})
    return out


def best_over(points: list[dict], group_keys: tuple[str, ...], score_key: str = "fid") -> list[dict]:
    """Keep the lowest-score point per group (e.g. the best CFG scale per model, sampler and steps)."""
    chosen: dict[tuple, dict] = {}
    for p in points:
        key = tuple(p[k] for k in group_keys)
        if key not in chosen or p[score_key] < chosen[key][score_key]:
            chosen[key] = p
    return list(chosen.values())


__all__ = ["CostModel", "best_over", "frontier"]
