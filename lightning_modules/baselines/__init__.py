"""The lecture's classic baselines (seed 002), built on the suite's shared parts."""
from lightning_modules.baselines.ddpm import DDPM
from lightning_modules.baselines.flow_matching import FlowMatching

__all__ = ["DDPM", "FlowMatching"]
