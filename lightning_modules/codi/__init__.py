"""CoDi: conditional diffusion distillation (thesis 001, Ch. 5) and its Table 5.1 baselines."""
from lightning_modules.codi.adapter import ConditionalAdapterUNet
from lightning_modules.codi.base import CoDiBase
from lightning_modules.codi.baselines import ConditionalFinetune, ConsistencyDistillation, GuidedDistillation
from lightning_modules.codi.boundary import ConsistencyBoundary
from lightning_modules.codi.module import CoDi

__all__ = ["CoDi", "CoDiBase", "ConditionalAdapterUNet", "ConditionalFinetune", "ConsistencyBoundary",
           "ConsistencyDistillation", "GuidedDistillation"]
