"""LFG-Diffusion: latent feature-guided shadow removal (thesis 001 Ch. 7); see docs/lfg_shadow.md."""
from lightning_modules.lfg_shadow.module import LFGShadowRemoval
from lightning_modules.lfg_shadow.networks import DenseLatentVariableFusion, LatentFeatureEncoder, LFGNetwork

__all__ = ["DenseLatentVariableFusion", "LFGNetwork", "LFGShadowRemoval", "LatentFeatureEncoder"]
