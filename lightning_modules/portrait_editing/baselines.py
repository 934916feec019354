"""Training-free baselines of Table 5.1 built from the same parts (thesis 000, Ch. 5, §5.3 "Baselines").

The thesis compares SDEdit [179] at strengths 0.5 and 0.8 and DiffEdit [51] (plus Prompt2Prompt,
pix2pix-zero, SPADE and BBDM, which are not reproduced here). Their settings are not given;
[choice] both run on the pair-generation base model (the MCDM's initialisation) with text CFG 7.5,
DDIM 50 steps (diffusers' ``DDIMScheduler`` through ``components.diffusers_sampler``), target prompt
``p_b``:

* **SDEdit** (Meng et al.): ``x_A``'s latent is noised to ``strength`` of the schedule (step index
  ``round(50 (1 - strength))``) and denoised under ``p_b``.
* **DiffEdit** (Couairon et al.): the mask contrasts the noise predictions for ``p_b`` and the
  *source* prompt ``p_a`` at half strength, over 10 seeds (channel mean of ``|eps_b - eps_a|``,
  normalised, blurred, averaged, threshold 0.5, the DiffEdit paper's values); ``x_A`` is DDIM-inverted
  under ``p_a`` (no guidance) to ``encode_ratio`` (0.8) and decoded under ``p_b`` with CFG, the
  region outside the mask replaced at every step by the inverted latent of that step.

Rows land in Table 5.1 as ``SDEdit 0.5`` / ``SDEdit 0.8`` / ``DiffEdit`` (``configs/portrait_sdedit*.yaml``,
``configs/portrait_diffedit.yaml``; ``cli.py test``, no training).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusion.denoisers import unwrap_output
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import DiscreteDDPMPath
from lightning_modules.components.diffusers_sampler import DiffusersSchedulerSampler
from lightning_modules.components.sd_parts import TextEncoder, build_unet, build_vae, vae_factor
from lightning_modules.diffusion_module import DiffusionModule

from .mcdm import SD_SOURCE

METHODS = ("sdedit", "diffedit")


class TrainingFreeEditor(DiffusionModule):
    """SDEdit / DiffEdit on a frozen SD model (module docstring); ``sample_for_batch`` for Table 5.1.

    Args:
        method: ``sdedit`` or ``diffedit``.
        sd_path / *_config: the base SD model (``null``: random parts from the config dicts).
        strength: SDEdit's noise strength (0.5 / 0.8).
        guidance_scale: text CFG (7.5); ``num_sampling_steps``: DDIM steps (50).
        encode_ratio, mask_threshold, mask_seeds, mask_strength, mask_blur: DiffEdit's settings.
        image_size: square resolution (512).
    """

    def __init__(
        self,
        method: str = "sdedit",
        sd_path: Optional[str] = None,
        unet_config: Optional[dict] = None,
        vae_config: Optional[dict] = None,
        text_encoder_config: Optional[dict] = None,
        strength: float = 0.5,
        guidance_scale: float = 7.5,
        num_sampling_steps: int = 50,
        encode_ratio: float = 0.8,
        mask_threshold: float = 0.5,
        mask_seeds: int = 10,
        mask_strength: float = 0.5,
        mask_blur: int = 5,
        image_size: int = 512,
        predict_seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"model.init_args.method must be one of {METHODS}, got {method!r}")
        for name, value in (("strength", strength), ("encode_ratio", encode_ratio), ("mask_strength", mask_strength)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value}")
        key = "model.init_args.sd_path"
        unet = build_unet(sd_path, unet_config, key, source=SD_SOURCE)
        vae = build_vae(sd_path, vae_config, key, source=SD_SOURCE)
        text_encoder = TextEncoder(sd_path, text_encoder_config, key, source=SD_SOURCE)
        latent = image_size // vae_factor(vae)
        path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, 1000)
        super().__init__(network=torch.nn.Identity(), path=path, prediction_type="epsilon", sampler="ddim",
                         num_sampling_steps=num_sampling_steps,
                         sample_shape=(int(vae.config.latent_channels), latent, latent), predict_seed=predict_seed)
        self.sampler = DiffusersSchedulerSampler("DDIMScheduler", {"set_alpha_to_one": False, "steps_offset": 1}, name="ddim")
        self.register_frozen("unet", unet)
        self.register_frozen("vae", vae)
        self.register_frozen("text_encoder", text_encoder)
        self.method, self.strength, self.cfg_scale = method, float(strength), float(guidance_scale)
        self.encode_ratio, self.mask_threshold, self.mask_seeds = float(encode_ratio), float(mask_threshold), int(mask_seeds)
        self.mask_strength, self.mask_blur = float(mask_strength), int(mask_blur)
        self.latent_scale = float(getattr(vae.config, "scaling_factor", 0.18215))
        self.loads_own_weights = sd_path is not None  # training-free: `test` needs no checkpoint

    def configure_optimizers(self) -> Any:
        raise RuntimeError("the training-free baselines have nothing to train: run `cli.py test` (or predict)")

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        return (self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean * self.latent_scale).float()

    def decode(self, latents: Tensor) -> Tensor:
        return self.vae.decode((latents / self.latent_scale).to(self.vae.dtype)).sample.float()

    def _net(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Tensor]) -> Tensor:
        return unwrap_output(self.unet(x_t, self.path.network_time(t), encoder_hidden_states=cond["text"]))

    def _denoiser(self, text: Tensor, null: Tensor, scale: float) -> Any:
        return ClassifierFreeGuidance(self._net, "epsilon", cond={"text": text}, null_cond={"text": null}, scale=scale)

    def _start(self, strength: float, steps: int) -> int:
        return min(steps - 1, max(0, int(round(steps * (1.0 - strength)))))

    @torch.no_grad()
    def sdedit(self, x_a: Tensor, p_b: Sequence[str], steps: int, generator: Optional[torch.Generator]) -> Tensor:
        z = self.encode(x_a)
        start = self._start(self.strength, steps)
        k = int(self.sampler.timesteps(self.path, steps)[start])
        noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        den = self._denoiser(self.text_encoder(list(p_b)), self.text_encoder([""]), self.cfg_scale)
        return self.sampler.run(den, self.path, self.sampler.add_noise(self.path, z, noise, k), steps, start=start)

    @torch.no_grad()
    def diffedit_mask(self, z: Tensor, text_a: Tensor, text_b: Tensor, null: Tensor, steps: int) -> Tensor:
        k = int(self.sampler.timesteps(self.path, steps)[self._start(self.mask_strength, steps)])
        t = self.path.t_from_timestep(torch.tensor(float(k))).reshape(1).to(z.device).expand(z.shape[0]).float()
        den_a, den_b = self._denoiser(text_a, null, self.cfg_scale), self._denoiser(text_b, null, self.cfg_scale)
        total = torch.zeros_like(z[:, :1])
        for s in range(self.mask_seeds):
            g = torch.Generator(device=z.device).manual_seed(s)
            z_t = self.sampler.add_noise(self.path, z, torch.randn(z.shape, generator=g, device=z.device), k)
            diff = (den_b(z_t, t) - den_a(z_t, t)).abs().mean(1, keepdim=True)
            peak = diff.flatten(1).amax(1).reshape(-1, 1, 1, 1).clamp_min(1e-12)
            total += F.avg_pool2d(F.pad(diff / peak, [self.mask_blur // 2] * 4, mode="reflect"), self.mask_blur, stride=1) \
                if self.mask_blur > 1 else diff / peak
        soft = total / max(1, self.mask_seeds)
        soft = soft / soft.flatten(1).amax(1).reshape(-1, 1, 1, 1).clamp_min(1e-12)
        return (soft > self.mask_threshold).to(z.dtype)

    @torch.no_grad()
    def diffedit(self, x_a: Tensor, p_a: Sequence[str], p_b: Sequence[str], steps: int) -> Tensor:
        z = self.encode(x_a)
        text_a, text_b, null = self.text_encoder(list(p_a)), self.text_encoder(list(p_b)), self.text_encoder([""])
        mask = self.diffedit_mask(z, text_a, text_b, null, steps)
        timesteps = self.sampler.timesteps(self.path, steps)
        start = self._start(self.encode_ratio, steps)
        ab = self.path.alphas_cumprod.to(z.device).float()
        # DDIM inversion under p_a (no guidance) from the clean latent up to timestep[start]
        ks = [int(k) for k in timesteps[start:]][::-1]
        inverted = {}
        x, prev_ab = z, torch.tensor(1.0, device=z.device)
        for k in ks:
            t = self.path.t_from_timestep(torch.tensor(float(k))).reshape(1).to(z.device).expand(z.shape[0]).float()
            eps = self._net(x, t, {"text": text_a})  # [choice] evaluated at the level being stepped to (as DDIMInverseScheduler)
            x0 = (x - (1 - prev_ab).sqrt() * eps) / prev_ab.sqrt()
            x = ab[k].sqrt() * x0 + (1 - ab[k]).sqrt() * eps
            prev_ab = ab[k]
            inverted[k] = x
        den = self._denoiser(text_b, null, self.cfg_scale)
        x = inverted[int(timesteps[start])]
        for i in range(start, steps):
            x_next = self.sampler.run(den, self.path, x, steps, start=i, stop=i + 1)
            k_next = int(timesteps[i + 1]) if i + 1 < steps else None
            keep = inverted.get(k_next, z) if k_next is not None else z
            x = mask * x_next + (1 - mask) * keep
        return x

    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        steps = int(num_steps or self.num_sampling_steps)
        x_a = batch["x_A"].to(self.device)
        if self.method == "sdedit":
            latents = self.sdedit(x_a, batch["p_b"], steps, generator)
        else:
            latents = self.diffedit(x_a, batch["p_a"], batch["p_b"], steps)
        return self.decode(latents).clamp(-1, 1)

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:  # type: ignore[override]
        raise NotImplementedError("the baselines edit portraits: use sample_for_batch / cli.py test")

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        raise RuntimeError("the training-free baselines have nothing to train")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        return None

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        return None  # the EvaluationCallback samples and scores

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        images = self.sample_for_batch(batch, generator=generator)
        writer = self.prediction_writer(self.method, {"module": type(self).__name__, "method": self.method,
                                                      "strength": self.strength, "steps": self.num_sampling_steps})
        self.write_batch_images(writer, images, batch, batch_idx, variants=list(batch.get("direction_name", ["edit"] * len(images))))


__all__ = ["METHODS", "TrainingFreeEditor"]
