"""Table 3.1 baseline *DreamBooth* (+ ControlNet) of Total Selfie (thesis 000, Ch. 3, §3.3).

"(4) DreamBooth [219] customizes a pretrained text-to-image diffusion model by fine-tuning with a few
reference images. Here, we use four selfies (with augmentation) as reference images and generate outputs
using Canny Edge ControlNet." (seed 000 line 504; its row "DreamBooth", line 486.)

Built from the suite's parts, nothing new:

* the appearance model is the suite's DreamBooth module
  (:class:`lightning_modules.ldm_scaling.dreambooth.ScaledLDMDreamBooth`, the one Total Selfie's
  refinement uses), fine-tuned on the four augmented selfies of one capture
  (``datamodules.total_selfie.dreambooth`` with ``concepts: selfies``);
* the pose comes from a pretrained SD-1.x ``ControlNetModel`` (Canny by default, OpenPose as an option;
  loaded from a path by :func:`.pretrained.build_controlnet`, as Total Selfie's modified ControlNet) fed
  the *text* context, as ControlNet was trained, with the target-pose hint (the batch's ``pose``: the
  Canny of the real photo's parsing map, the Table 3.1 protocol) at ``conditioning_scale`` 1.0;
* sampling is the module's own DDIM with CFG (:class:`diffusion.guidance.ClassifierFreeGuidance`; the
  hint enters both passes, as diffusers' ControlNet pipeline does);
* scoring is the same as Total Selfie's: ``sample_for_batch`` returns the full-body image over the
  person mask only (background black), which ``callbacks.evaluation.EvaluationCallback`` scores with
  the masked LPIPS / SSIM / PSNR and FID.

Choices where the thesis is silent ([GAP]): the generation prompt ("a photo of sks person, full body
shot", the training prompt plus the shot), the whole image is generated (the baseline is text-to-image,
no inpainting of the background; only the foreground is scored), guidance 7.5 and DDIM 50 (SD's
defaults, the DreamBooth config's).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from diffusion.guidance import ClassifierFreeGuidance
from lightning_modules.ldm_scaling.dreambooth import ScaledLDMDreamBooth
from lightning_modules.total_selfie.pretrained import build_controlnet

GENERATION_PROMPT = "a photo of sks person, full body shot"


class DreamBoothControlNetBaseline(ScaledLDMDreamBooth):
    """DreamBooth on the four selfies + a pretrained pose ControlNet (module docstring).

    Args:
        controlnet_path / controlnet_config: the SD-1.x ControlNet folder, or a config for random weights.
        control: ``"canny"`` (the thesis' choice for this baseline) or ``"openpose"`` (sources only).
        conditioning_scale: ControlNet residual scale (1.0).
        generation_prompt: prompt of the full-body generation (also the prompt of batches with no caption).
        evaluate_foreground_only: ``sample_for_batch`` keeps the person mask only (Table 3.1 protocol).
        (other arguments as :class:`ScaledLDMDreamBooth`.)
    """

    def __init__(self, *args: Any, controlnet_path: Optional[str] = None, controlnet_config: Optional[dict] = None,
                 control: str = "canny", conditioning_scale: float = 1.0, generation_prompt: str = GENERATION_PROMPT,
                 evaluate_foreground_only: bool = True, **kwargs: Any) -> None:
        if control not in ("canny", "openpose"):
            raise ValueError(f"model.init_args.control={control!r} is not one of ['canny', 'openpose']")
        super().__init__(*args, **kwargs)
        controlnet = build_controlnet(controlnet_path, controlnet_config, control)
        if controlnet is None:
            raise ValueError("the DreamBooth + ControlNet baseline needs model.init_args.controlnet_path "
                             "(or controlnet_config for random weights)")
        if int(controlnet.config.cross_attention_dim) != int(self.network.config.cross_attention_dim):
            raise ValueError(f"model.init_args.controlnet_path: ControlNet cross_attention_dim "
                             f"{controlnet.config.cross_attention_dim} != the UNet's {self.network.config.cross_attention_dim}")
        self.register_frozen("controlnet", controlnet)
        self.controlnet_path, self.control = controlnet_path, control
        self.conditioning_scale = float(conditioning_scale)
        self.generation_prompt = str(generation_prompt)
        self.evaluate_foreground_only = bool(evaluate_foreground_only)

    def prompts(self, batch: Mapping[str, Any], drop: bool = False) -> list[str]:
        if "caption" in batch or "label" in batch:
            return super().prompts(batch, drop)
        size = len(next(v for v in batch.values() if hasattr(v, "__len__")))
        return [self.generation_prompt] * size

    def _controlled_network(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        timestep = self.path.network_time(t)
        context = cond["encoder_hidden_states"]
        down, mid = self.controlnet(x_t, timestep, encoder_hidden_states=context,
                                    controlnet_cond=cond["control"].to(x_t.dtype),
                                    conditioning_scale=self.conditioning_scale, return_dict=False)
        return self.network(x_t, timestep, encoder_hidden_states=context, down_block_additional_residuals=down,
                            mid_block_additional_residual=mid, return_dict=False)[0]

    @torch.no_grad()
    def generate(self, pose: Tensor, prompts: Optional[list[str]] = None, *, num_steps: Optional[int] = None,
                 guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Full-body images ``[B, 3, H, W]`` for target-pose hints ``pose [B, 3, H, W]`` in ``[0, 1]``."""
        pose = pose.to(self.device).float()
        batch = pose.shape[0]
        prompts = list(prompts) if prompts is not None else [self.generation_prompt] * batch
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1) if hasattr(self, "vae") else 1
        if pose.shape[-2] % factor or pose.shape[-1] % factor:
            raise ValueError(f"pose hint size {tuple(pose.shape[-2:])} is not a multiple of the VAE factor {factor}")
        shape = (batch, self.sample_shape[0], pose.shape[-2] // factor, pose.shape[-1] // factor)
        noise = torch.randn(shape, generator=generator, device=self.device)
        context = self.context(prompts)
        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        cond = {"encoder_hidden_states": context, "control": pose}
        if scale == 1.0:
            def denoiser(x_t: Tensor, t: Tensor) -> Tensor:
                return self._controlled_network(x_t, t, cond)

            denoiser.prediction_type = self.prediction_type  # type: ignore[attr-defined]
        else:
            denoiser = ClassifierFreeGuidance(self._controlled_network, self.prediction_type, cond=cond,
                                              null_cond={"encoder_hidden_states": self.null_context(batch)}, scale=scale)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, self.device)
        latents = self.sampler.sample(denoiser, self.path, noise, grid, generator=generator)
        return self.decode(latents).clamp(-1, 1)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One image per Table 3.1 item (its ``pose``), over its person mask only (``foreground``)."""
        if batch.get("pose") is None:
            raise KeyError("the DreamBooth + ControlNet baseline needs batches with 'pose' (the Total Selfie "
                           "evaluation items: datamodules.total_selfie.TotalSelfieDataModule, test split)")
        out = self.generate(batch["pose"], num_steps=num_steps, guidance_scale=guidance_scale, generator=generator)
        if self.evaluate_foreground_only and batch.get("foreground") is not None:
            fg = (batch["foreground"].to(out.device) > 0.5).float()
            out = out * fg - (1.0 - fg)
        return out


__all__ = ["DreamBoothControlNetBaseline", "GENERATION_PROMPT"]
