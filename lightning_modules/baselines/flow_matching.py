"""Flow-matching baseline (lecture seed 002 "diffusion models"; thesis 000 Ch. 2 §2.1).

Rectified-flow path x_t = t x_1 + (1 - t) x_0 (Eq. 2.4), the network regresses the constant
velocity x_1 - x_0 (Eqs. 2.5-2.6) at t ~ U(0, 1), and samples are drawn by Euler integration
of dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) (Eq. 2.3). Any other sampler of the
core (Heun, DDIM, the Eq. 2.18 SDE) can be chosen at inference without retraining.
Class-conditional training with label dropout enables classifier-free guidance (the
lecture's "tiny analogue of CFLD Eq. 7", digest 002-003 B3).
"""
from __future__ import annotations

from typing import Any, Optional

from torch import nn

from diffusion.paths import AffinePath, RectifiedFlowPath
from lightning_modules.diffusion_module import DiffusionModule


class FlowMatching(DiffusionModule):
    """``DiffusionModule`` with the flow-matching defaults; every other argument passes through.

    ``path=None`` means ``RectifiedFlowPath()`` (network time t * 1000).
    """

    def __init__(
        self,
        network: nn.Module,
        path: Optional[AffinePath] = None,
        prediction_type: str = "velocity",
        sampler: str = "euler",
        num_sampling_steps: int = 50,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            network,
            path=path if path is not None else RectifiedFlowPath(),
            prediction_type=prediction_type,
            sampler=sampler,
            num_sampling_steps=num_sampling_steps,
            **kwargs,
        )
