"""Text-to-image LDMs of the scaling study and their SR downstream (thesis 001, Ch. 2).

:class:`ScaledLDM` trains one member of the family of :mod:`lightning_modules.ldm_scaling.family`
(base width ``c``, channels ``[c, 2c, 4c, 4c]``) as a latent text-to-image model:

* frozen VAE (SD's ``AutoencoderKL`` from ``sd_path`` or a config dict; posterior mean x scaling
  factor) and frozen text encoder (SD's CLIP from ``sd_path`` or the hashed-prompt stand-in of
  :mod:`lightning_modules.components.prompt_encoder`); both excluded from cost counts (Sec. 2.2);
* SD's scaled-linear DDPM path, **v-prediction** by default (the thesis's parametrisation, Ch. 1;
  Ch. 2 does not state it, digest §1.3) and ``prediction_type`` selectable;
* condition dropout to the empty prompt (``prompt_dropout``, [GAP] rate not stated: 0.1) so that
  classifier-free guidance works; sampling with the core's DDIM (50 steps, CFG 7.5: Table 2.1's
  setting), DDPM or DPM-Solver++ (``diffusion/dpm_solver.py``) and the core
  ``ClassifierFreeGuidance``;
* batches with ``caption`` use it; batches with a class ``label`` (the embedded digits) get the
  caption ``prompt_template.format(label)``;
* evaluation (Table 2.1: COCO-2014 val 30k, FID and unscaled CLIP score): :meth:`ScaledLDM.sample_for_batch`
  draws one image per caption of a test batch for ``callbacks.evaluation.EvaluationCallback``
  (``per_batch_generation``; ``metrics.clip_score.CLIPScore`` gets the batch's captions).

:class:`ScaledLDMSuperResolution` is the SR downstream model (Fig. 2.2): the encoded low-resolution
image (bicubically upsampled to the HR size, then through the VAE) is concatenated channel-wise
with the noisy latent, so the UNet takes ``2 x latent`` channels; it starts from a text-to-image
member (``init_checkpoint``: a ScaledLDM Lightning checkpoint, or ``sd_path``'s UNet) with the
extra input weights zeroed (:func:`lightning_modules.components.unet_inputs.expand_conv_in`), so it
equals the text-to-image model at the start. It samples without CFG (Sec. 2.3.2), on the empty prompt.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from diffusion.denoisers import NetworkDenoiser
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import DiscreteDDPMPath
from lightning_modules.codi.base import SD_SOURCE
from lightning_modules.components.image_io import save_grid
from lightning_modules.components.predict_outputs import variant_tag
from lightning_modules.components.pretrained_paths import build_diffusers_model
from lightning_modules.components.prompt_encoder import build_prompt_encoder
from lightning_modules.components.unet_inputs import expand_conv_in
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.ldm_scaling.family import scaled_unet_config
from lightning_modules.components.safe_load import safe_torch_load

log = logging.getLogger(__name__)


def lightning_state_dict(path: Path) -> dict:
    """The ``state_dict`` of a Lightning checkpoint (``init_checkpoint``), read safely; one clear error otherwise."""
    checkpoint = safe_torch_load(path, key="model.init_args.init_checkpoint")
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"model.init_args.init_checkpoint: {path} is not a Lightning checkpoint (no 'state_dict'); "
                         "pass the last.ckpt of a ScaledLDM run")
    return state


def build_sampler_by_name(name: str) -> Any:
    """Core samplers plus DPM-Solver++ (2M) and DPM-Solver (``diffusion.dpm_solver.build_any_sampler``)."""
    from diffusion.dpm_solver import build_any_sampler

    return build_any_sampler(name)


class ScaledLDM(DiffusionModule):
    """One member of the Ch. 2 family as a latent text-to-image model (module docstring).

    Args:
        width: base width ``c`` (320 = SD's 866M UNet).
        levels / layers_per_block / attention_head_dim / norm_num_groups / context_dim: family config
            (thesis: 4 / 2 / 8 / 32 / 1024; smaller only for CPU tests).
        latent_size: latent side (64 for 512x512 images with SD's VAE).
        sd_path: local SD folder for the VAE and text encoder (``None``: ``vae_config`` / stand-in).
        unet_path: optional local diffusers UNet folder to start from (``None``: random init, as the
            thesis trains every size from scratch).
        vae_config: diffusers ``AutoencoderKL`` config for random weights; ``None`` with no ``sd_path``
            makes images the latents (tests).
        text_encoder: ``'sd'`` or ``'stand_in'``.
        prompt_template: caption of a class label.
        prompt_dropout: probability of the empty prompt in training (for CFG).
        image_channels_to_rgb: repeat 1-channel images to 3 channels before the VAE.
    """

    def __init__(
        self,
        width: int = 320,
        levels: int = 4,
        layers_per_block: int = 2,
        attention_head_dim: int = 8,
        norm_num_groups: int = 32,
        context_dim: int = 1024,
        latent_size: int = 64,
        latent_channels: int = 4,
        sd_path: Optional[str] = None,
        unet_path: Optional[str] = None,
        vae_config: Optional[dict[str, Any]] = None,
        text_encoder: str = "sd",
        stand_in_tokens: int = 8,
        prompt_template: str = "a handwritten digit {}",
        prompt_dropout: float = 0.1,
        prediction_type: str = "v_prediction",
        sampler: str = "ddim",
        num_sampling_steps: int = 50,
        grid: str = "leading",
        guidance_scale: float = 7.5,
        num_train_timesteps: int = 1000,
        extra_in_channels: int = 0,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel

        if not 0.0 <= prompt_dropout < 1.0:
            raise ValueError(f"prompt_dropout must be in [0, 1), got {prompt_dropout}")
        if unet_path is not None:
            unet = build_diffusers_model(UNet2DConditionModel, key="model.init_args.unet_path", path=unet_path,
                                         source=SD_SOURCE)
        else:
            unet = UNet2DConditionModel.from_config(scaled_unet_config(
                width, context_dim=context_dim, layers_per_block=layers_per_block, attention_head_dim=attention_head_dim,
                sample_size=latent_size, in_channels=latent_channels, out_channels=latent_channels,
                norm_num_groups=norm_num_groups, levels=levels))
        if extra_in_channels:
            unet = expand_conv_in(unet, int(unet.config.in_channels) + int(extra_in_channels))
        vae = None
        if sd_path is not None or vae_config is not None:
            vae = build_diffusers_model(AutoencoderKL, key="model.init_args.sd_path", path=sd_path, subfolder="vae",
                                        config=vae_config, source=SD_SOURCE)
        super().__init__(
            network=unet, path=DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, num_train_timesteps),
            prediction_type=prediction_type, sampler=build_sampler_by_name(sampler),
            num_sampling_steps=num_sampling_steps, grid=grid, guidance_scale=guidance_scale,
            sample_shape=(latent_channels, latent_size, latent_size), optimizer=optimizer,
            val_seed=val_seed, predict_seed=predict_seed,
        )
        if vae is not None:
            self.register_frozen("vae", vae)
        self.vae_scale = float(getattr(vae.config, "scaling_factor", 0.18215)) if vae is not None else 1.0
        if text_encoder == "sd" and sd_path is None:
            raise ValueError("text_encoder='sd' needs model.init_args.sd_path; use text_encoder: stand_in for random weights")
        self.register_frozen("text_encoder", build_prompt_encoder(
            sd_path if text_encoder == "sd" else None, int(unet.config.cross_attention_dim), stand_in_tokens,
            key="model.init_args.sd_path"))
        self.width = int(width)
        self.prompt_template, self.prompt_dropout = prompt_template, float(prompt_dropout)
        self._null_context: Optional[Tensor] = None

    # ------------------------------------------------------------------ latents and prompts
    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        if not hasattr(self, "vae"):
            return images
        if images.shape[1] == 1 and int(self.vae.config.in_channels) == 3:
            images = images.expand(-1, 3, -1, -1)
        return (self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean * self.vae_scale).float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        if not hasattr(self, "vae"):
            return latents
        return self.vae.decode((latents / self.vae_scale).to(self.vae.dtype)).sample.float()

    def prompts(self, batch: Mapping[str, Any], drop: bool = False) -> list[str]:
        if "caption" in batch:
            prompts = [str(p) for p in batch["caption"]]
        elif "label" in batch:
            prompts = [self.prompt_template.format(int(l)) for l in batch["label"]]
        else:
            size = len(next(iter(batch.values())))
            prompts = [""] * size
        if drop and self.prompt_dropout > 0:
            prompts = ["" if random.random() < self.prompt_dropout else p for p in prompts]
        return prompts

    @torch.no_grad()
    def context(self, prompts: list[str]) -> Tensor:
        return self.text_encoder(prompts).to(self.device)

    def null_context(self, size: int) -> Tensor:
        if self._null_context is None or self._null_context.device != self.device:
            self._null_context = self.context([""])
        return self._null_context.expand(size, -1, -1)

    # ------------------------------------------------------------------ denoisers
    def network_inputs(self, x_t: Tensor, batch: Optional[Mapping[str, Any]]) -> Tensor:
        """What enters the UNet besides the context (SR adds the low-resolution latent)."""
        return x_t

    def denoiser(self, labels: Optional[Tensor], guidance_scale: float = 1.0) -> Any:
        """``labels`` is the text context ``[B, L, D]`` here."""
        ctx = labels
        if guidance_scale == 1.0:
            return NetworkDenoiser(self.network, self.path, self.prediction_type, encoder_hidden_states=ctx)
        return ClassifierFreeGuidance(
            self._conditional_network, self.prediction_type,
            cond={"encoder_hidden_states": ctx}, null_cond={"encoder_hidden_states": self.null_context(ctx.shape[0])},
            scale=guidance_scale,
        )

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        loss = self.diffusion_loss(x, self.context(self.prompts(batch, drop=True))).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_loss(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x = self.encode(batch["image"])
        generator = torch.Generator(device=x.device).manual_seed(self.val_seed + batch_idx)
        return self.diffusion_loss(x, self.context(self.prompts(batch)), generator=generator).mean()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self._eval_loss(batch, batch_idx)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self._eval_loss(batch, batch_idx)
        self.log("test/loss", loss, batch_size=batch["image"].shape[0], sync_dist=True)
        return loss

    @torch.no_grad()
    def sample(self, num_samples: int, *, labels: Optional[Tensor] = None, prompts: Optional[list[str]] = None,
               **kwargs: Any) -> Tensor:
        """Images for ``prompts`` (or the captions of class ``labels``; default: labels 0..9 cycled)."""
        if prompts is None:
            if labels is None:
                labels = torch.arange(num_samples) % 10
            prompts = [self.prompt_template.format(int(l)) for l in labels]
        return super().sample(num_samples, labels=self.context(list(prompts)), **kwargs)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One image per item of ``batch``, generated from its caption (``caption``, else the class captions).

        The Table 2.1 protocol through ``callbacks.evaluation.EvaluationCallback`` (``per_batch_generation``):
        each COCO-2014 val caption of the ``test`` split gives one image; FID compares them with the batch's
        real images and CLIP score with the captions (``metrics.clip_score.CLIPScore``, a conditioned metric).
        ``sampler`` may be a name (``ddim``, ``ddpm``, ``dpm_solver++``) or a sampler object.
        """
        prompts = self.prompts(batch)
        if isinstance(sampler, str):
            sampler = build_sampler_by_name(sampler)
        return self.sample(len(prompts), prompts=prompts, num_steps=num_steps, sampler=sampler,
                           guidance_scale=guidance_scale, generator=generator)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """One image per prompt request (``--data.prompts "a red car" prompts.txt``), named after
        the prompt and seed; ``manifest.json`` keeps each prompt's full text and seed."""
        prompts = self.prompts(batch)
        writer = self.prediction_writer(str(getattr(self.sampler, "name", "sampler")), self.predict_settings())
        if "seed" in batch:
            seeds = [self.predict_seed + int(s) for s in batch["seed"]]
            noise = self._request_noise(seeds)
            images = self.sample(len(prompts), prompts=prompts, noise=noise)
        else:
            seeds = [self.predict_seed + batch_idx] * len(prompts)
            generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
            images = self.sample(len(prompts), prompts=prompts, generator=generator)
        names = batch.get("name") or [f"batch{batch_idx:04d}_{i:03d}" for i in range(len(prompts))]
        for row, (name, prompt, seed) in enumerate(zip(names, prompts, seeds)):
            path = writer.save_image(images[row], str(name), variant_tag(seed=seed))
            writer.record(prompt, [path], seed=seed)
        save_grid(images, writer.folder / f"grid_{batch_idx:04d}.png")


class _ConcatNetwork(nn.Module):
    """``unet(cat([x_t, lr_latent]), t, context)``: the SR input of Fig. 2.2 as a plain denoiser network."""

    def __init__(self, unet: nn.Module, lr_latent: Tensor) -> None:
        super().__init__()
        self.unet, self.lr_latent = unet, lr_latent

    def forward(self, x_t: Tensor, t: Tensor, **kwargs: Any) -> Any:
        return self.unet(torch.cat([x_t, self.lr_latent.to(x_t)], dim=1), t, **kwargs)


class ScaledLDMSuperResolution(ScaledLDM):
    """4x real-world SR fine-tuning of a family member (module docstring).

    Args:
        init_checkpoint: a ScaledLDM Lightning checkpoint (its ``network.*`` weights are loaded before
            the input convolution is widened); ``None`` keeps the constructor's UNet (random or ``unet_path``).
        image_size: HR side in pixels.
        (other arguments as :class:`ScaledLDM`; ``guidance_scale`` is 1: no CFG for SR.)
    """

    def __init__(self, *args: Any, init_checkpoint: Optional[str] = None, image_size: int = 512, **kwargs: Any) -> None:
        kwargs.setdefault("guidance_scale", 1.0)
        kwargs.setdefault("prompt_dropout", 0.0)
        super().__init__(*args, **kwargs)
        if init_checkpoint is not None:
            path = Path(init_checkpoint).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"model.init_args.init_checkpoint: {path} does not exist (train a ScaledLDM first)")
            state = lightning_state_dict(path)
            own = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
            self.network.load_state_dict(own)
        latent_channels = int(self.network.config.in_channels)
        self.network = expand_conv_in(self.network, 2 * latent_channels)
        self.image_size = int(image_size)

    @torch.no_grad()
    def lr_latent(self, batch: Mapping[str, Any]) -> Tensor:
        up = F.interpolate(batch["lr"].to(self.device), size=(self.image_size, self.image_size), mode="bicubic",
                           align_corners=False).clamp(-1, 1)
        return self.encode(up)

    def _net(self, batch: Mapping[str, Any]) -> nn.Module:
        return _ConcatNetwork(self.network, self.lr_latent(batch))

    def sr_loss(self, batch: Mapping[str, Any], generator: Optional[torch.Generator] = None) -> Tensor:
        x = self.encode(batch["image"])
        t = self.time_sampler(x.shape[0], x.device, generator=generator).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_t = self.path.add_noise(x, noise, t)
        ctx = self.null_context(x.shape[0])
        pred = NetworkDenoiser(self._net(batch), self.path, self.prediction_type, encoder_hidden_states=ctx)(x_t, t)
        from diffusion.predictions import training_target

        target = training_target(self.prediction_type, x, noise, t, self.path)
        return (pred.float() - target.float()).pow(2).flatten(1).mean(1).mean()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.sr_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_loss(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        return self.sr_loss(batch, generator)

    @torch.no_grad()
    def upscale(self, batch: Mapping[str, Any], num_steps: Optional[int] = None, sampler: Any = None,
                generator: Optional[torch.Generator] = None) -> Tensor:
        size = batch["lr"].shape[0]
        noise = torch.randn((size, *self.sample_shape[-3:]), generator=generator, device=self.device)
        noise = noise[:, : int(self.network.config.out_channels)]
        sampler = build_sampler_by_name(sampler) if isinstance(sampler, str) else (sampler or self.sampler)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        den = NetworkDenoiser(self._net(batch), self.path, self.prediction_type,
                              encoder_hidden_states=self.null_context(size))
        return self.decode(sampler.sample(den, self.path, noise, grid, generator=generator)).clamp(-1, 1)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One HR image per low-resolution input ``batch["lr"]`` (no CFG: ``guidance_scale`` is ignored)."""
        return self.upscale(batch, num_steps=num_steps, sampler=sampler, generator=generator)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        images = self.upscale(batch, generator=generator)
        writer = self.prediction_writer(str(getattr(self.sampler, "name", "sampler")), self.predict_settings())
        # user inputs (CoDiTaskDataModule predict_root) come back at exactly scale x their size
        self.write_batch_images(writer, images, batch, batch_idx, seed=self.predict_seed + batch_idx)
        save_grid(images, writer.folder / f"grid_{batch_idx:04d}.png")


__all__ = ["ScaledLDM", "ScaledLDMSuperResolution", "build_sampler_by_name"]
