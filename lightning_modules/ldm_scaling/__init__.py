"""The LDM scaling study (thesis 001, Ch. 2): the UNet family, the cost model, the T2I, SR and DreamBooth modules."""
from lightning_modules.ldm_scaling.cost import CostModel, best_over, frontier
from lightning_modules.ldm_scaling.family import build_scaled_unet, count_flops, scaled_unet_config
from lightning_modules.ldm_scaling.dreambooth import ScaledLDMDreamBooth
from lightning_modules.ldm_scaling.module import ScaledLDM, ScaledLDMSuperResolution

__all__ = ["CostModel", "ScaledLDM", "ScaledLDMDreamBooth", "ScaledLDMSuperResolution", "best_over", "build_scaled_unet", "count_flops",
           "frontier", "scaled_unet_config"]
