"""The shared diffusion core of thesis 000, Ch. 2: pure tensors, no Lightning.

Time convention: ``t`` in ``[0, 1]``, ``t = 0`` noise, ``t = 1`` data,
``x_t = data_coef(t) * x_data + noise_coef(t) * noise`` (Eq. 2.12).

* :mod:`diffusion.paths`: affine Gaussian paths (rectified flow, DDPM tables, cosine, EDM).
* :mod:`diffusion.predictions`: prediction types and exact conversions.
* :mod:`diffusion.time_samplers`: training-time densities over ``t``.
* :mod:`diffusion.weighting`: loss weights and the Ch. 2 epsilon-equivalence identities.
* :mod:`diffusion.time_warp`: scheduler swapping (Eqs. 2.12-2.16).
* :mod:`diffusion.grids` / :mod:`diffusion.samplers`: sampling grids and samplers.
* :mod:`diffusion.guidance`: classifier-free guidance.
* :mod:`diffusion.denoisers`: network + path -> denoiser.
* :mod:`diffusion.video_fusion`: progressive latent fusion of overlapping video windows.
"""
from .denoisers import NetworkDenoiser, unwrap_output
from .grids import TIMESTEP_SPACINGS, discrete_grid, flow_match_grid, geometric_grid, karras_grid, shifted_grid, uniform_grid
from .guidance import GUIDANCE_MODES, ClassifierFreeGuidance, MaskedComposition
from .paths import AffinePath, CosinePath, DiscreteDDPMPath, EDMPath, RectifiedFlowPath
from .predictions import (
    PREDICTION_TYPES,
    SD3DirectionAdapter,
    conversion_coefficients,
    convert_prediction,
    from_data_and_noise,
    target_coefficients,
    to_data_and_noise,
    training_target,
    validate_prediction_type,
)
from .samplers import (
    SAMPLERS,
    DDIMSampler,
    DDPMSampler,
    Denoiser,
    EDMSampler,
    EulerAncestralSampler,
    EulerMaruyamaSampler,
    EulerSampler,
    HeunSampler,
    KarrasVESampler,
    Sampler,
    build_sampler,
)
from .time_samplers import (
    CubicTimeSampler,
    DiscreteTimeSampler,
    EDMLogNormalTimeSampler,
    LogitNormalTimeSampler,
    ShiftedTimeSampler,
    TimeSampler,
    UniformTimeSampler,
    shift_noise_level,
)
from .video_fusion import ProgressiveLatentFusion, fusion_windows, triangular_weights
from .time_warp import PathSwappedDenoiser, time_warp, time_warp_speed, warped_loss_weight
from .weighting import ConstantWeighting, EDMWeighting, MinSNRWeighting, SNRWeighting, epsilon_equivalent_weight

__all__ = [
    "AffinePath", "RectifiedFlowPath", "CosinePath", "DiscreteDDPMPath", "EDMPath",
    "PREDICTION_TYPES", "validate_prediction_type", "conversion_coefficients", "target_coefficients",
    "to_data_and_noise", "from_data_and_noise", "training_target", "convert_prediction", "SD3DirectionAdapter",
    "TimeSampler", "UniformTimeSampler", "DiscreteTimeSampler", "LogitNormalTimeSampler", "ShiftedTimeSampler",
    "EDMLogNormalTimeSampler", "CubicTimeSampler", "shift_noise_level",
    "ConstantWeighting", "SNRWeighting", "MinSNRWeighting", "EDMWeighting", "epsilon_equivalent_weight",
    "time_warp", "time_warp_speed", "warped_loss_weight", "PathSwappedDenoiser",
    "uniform_grid", "shifted_grid", "flow_match_grid", "karras_grid", "geometric_grid", "discrete_grid", "TIMESTEP_SPACINGS",
    "Denoiser", "Sampler", "EulerSampler", "HeunSampler", "DDIMSampler", "DDPMSampler", "EulerAncestralSampler",
    "EulerMaruyamaSampler", "EDMSampler", "KarrasVESampler", "SAMPLERS", "build_sampler",
    "ClassifierFreeGuidance", "GUIDANCE_MODES", "MaskedComposition",
    "NetworkDenoiser", "unwrap_output",
    "ProgressiveLatentFusion", "fusion_windows", "triangular_weights",
]
