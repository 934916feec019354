"""Shadow-removal data for LFG-Diffusion (thesis 001 Ch. 7 §7.4): ISTD / AISTD / SRD / DESOBA layouts, SynShadow-style synthesis."""
from datamodules.lfg_shadow.datamodule import ShadowRemovalDataModule
from datamodules.lfg_shadow.synshadow import SynShadowConfig, cast_shadows

__all__ = ["ShadowRemovalDataModule", "SynShadowConfig", "cast_shadows"]
