"""Released weights for Bi-Noising (thesis 001 Ch. 8): the guided-diffusion priors it samples from.

What was published:

* **Bi-Noising itself**: no code and no weights (the thesis and arXiv 2212.07352 give no repository);
  ``f_phi`` is trained in the suite (``configs/bi_noising_*.yaml``), so ``BiNoisingRestoration`` has no
  ``released_checkpoint``.
* **Its frozen prior** ``eps_theta`` ("pretrained unconditional diffusion models", §8.3.1): the ADM
  checkpoints of openai/guided-diffusion (ImageNet, LSUN) and of its forks ILVR (jychoi118/ilvr_adm,
  FFHQ ``ffhq_10m.pt``) and P2-weighting (jychoi118/P2-weighting, ``ffhq_p2.pt`` and other faces).
  They are bare ``UNetModel`` state dicts whose names are the suite's
  :class:`~lightning_modules.components.adm_unet.ADMUNet` names, so the key map only strips wrapper
  prefixes (:data:`PRIOR_KEY_MAP`); the file goes into ``model.prior_checkpoint`` and its flags into
  ``model.prior`` (:data:`PRIORS` lists them as ``ADMUNet`` arguments; :func:`prior_kwargs`).

A file whose flags differ from ``model.prior`` is refused by
:func:`lightning_modules.bi_noising.networks.load_prior_weights` with one message that names the
layout (channels, blocks, attention) and the missing / unexpected keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from lightning_modules.components.adm_unet import ADM_KEY_MAP_PREFIXES
from lightning_modules.components.released_weights import KeyMap

PRIOR_KEY_MAP = KeyMap(strip_prefixes=ADM_KEY_MAP_PREFIXES)

_FACES_256 = dict(model_channels=128, num_res_blocks=1, attention_resolutions=[16], num_head_channels=64,
                  channel_mult=[1, 1, 2, 2, 4, 4], learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True)
_IMAGENET_256 = dict(model_channels=256, num_res_blocks=2, attention_resolutions=[32, 16, 8], num_head_channels=64,
                     channel_mult=[1, 1, 2, 2, 4, 4], learn_sigma=True, resblock_updown=True, use_scale_shift_norm=True)

#: Published prior file -> (source, ADMUNet arguments at 256 px; ``attention_resolutions`` in pixels as the
#: flags give them, converted by ``attention_ds_from_resolutions``).
PRIORS: dict[str, tuple[str, dict[str, Any]]] = {
    "256x256_diffusion_uncond.pt": ("openai/guided-diffusion (ImageNet, unconditional)", _IMAGENET_256),
    "ffhq_10m.pt": ("jychoi118/ilvr_adm (FFHQ)", _FACES_256),
    "ffhq_p2.pt": ("jychoi118/P2-weighting (FFHQ)", _FACES_256),
    "celebahq_p2.pt": ("jychoi118/P2-weighting (CelebA-HQ)", _FACES_256),
}


def prior_kwargs(path: Union[str, Path], image_size: int = 256) -> dict[str, Any]:
    """``ADMUNet`` arguments of a published prior, by its file name (a ``KeyError`` lists the known names)."""
    from lightning_modules.components.adm_unet import attention_ds_from_resolutions

    name = Path(path).name
    if name not in PRIORS:
        raise KeyError(f"{name!r} is not a known guided-diffusion prior; known: {sorted(PRIORS)} "
                       "(set model.prior from the checkpoint's own flags)")
    kwargs = dict(PRIORS[name][1])
    kwargs["attention_ds"] = attention_ds_from_resolutions(image_size, kwargs.pop("attention_resolutions"))
    return kwargs


__all__ = ["PRIORS", "PRIOR_KEY_MAP", "prior_kwargs"]
