"""Shared parts of CoDi and its Table 5.1 baselines: the latent model, conditions, sampling, predict, test.

Thesis 001, Ch. 5. Every method of Table 5.1 (CoDi, PE-CoDi, CM-II, GD-I/II, conditional
fine-tuning) has the same network: an SD-style text-to-image UNet (v-prediction, the thesis's
parametrisation, Ch. 1 Eq. 1.9) with the conditional adapter of
:mod:`lightning_modules.codi.adapter`. This base holds everything they share:

* the frozen VAE (``vae_path`` / ``vae_config``; SD's ``AutoencoderKL``, latents scaled by its
  ``scaling_factor``, the posterior mean is used as the latent) and the frozen text encoder
  (:mod:`lightning_modules.components.prompt_encoder`: SD's CLIP from ``text_encoder_path``, or a
  named stand-in);
* the task condition (:meth:`condition`): ``sr``: the LR image, bicubically upsampled to the HR
  size, through the VAE (4 channels); ``inpaint``: the masked image's latent plus the mask resized
  to the latent grid (5 channels); ``depth``: the depth map replicated to RGB through the VAE;
  ``edit``: the source image's latent, the instruction as the text prompt; ``canny``: an edge map
  (the authors' released canny-to-image model) ([GAP] the thesis does not say how conditions are
  encoded; a VAE latent is the digest's inferred choice). ``condition_input: pixel`` (with the
  ControlNet adapter) passes the condition *image* in [0, 1] instead, to ControlNet's pixel-space
  conditioning embedding (the released weights' layout);
* the DDPM path: SD's scaled-linear table (0.00085 -> 0.012, T = 1000), v-prediction (the
  thesis); ``prediction_type`` must agree with ``sd_path``'s ``scheduler/scheduler_config.json``
  (SD 2.1 is v-prediction, SD 2.1-base and SD 1.x are epsilon): a mismatch is refused at
  construction, ``prediction_type: null`` takes the scheduler's value;
* sampling with any core sampler (:meth:`sample_for_batch`), ``predict`` on the user's inputs,
  and ``test`` with the Table 5.2 metrics (FID, LPIPS) written as results rows.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn

from diffusion.grids import discrete_grid
from diffusion.paths import DiscreteDDPMPath
from diffusion.predictions import to_data_and_noise
from diffusion.dpm_solver import build_any_sampler
from lightning_modules.codi.adapter import ConditionalAdapterUNet, PlainBackboneUNet
from lightning_modules.components.consistency_sampler import ConsistencyMultistepSampler
from lightning_modules.components.image_io import save_grid
from lightning_modules.components.pretrained_paths import build_diffusers_model
from lightning_modules.components.prompt_encoder import build_prompt_encoder
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.components.safe_load import safe_torch_load
from lightning_modules.components.run_dir import run_dir

log = logging.getLogger(__name__)

SD_SOURCE = (
    "a Stable Diffusion checkpoint in diffusers layout (unet/, vae/, text_encoder/, tokenizer/); the thesis's "
    "865M backbone matches SD 2.x's UNet (1024-d context), e.g. stabilityai/stable-diffusion-2-1-base "
    "(epsilon; set model.init_args.prediction_type: epsilon) or stabilityai/stable-diffusion-2-1 (v-prediction, "
    "the thesis's parametrisation), fetched beforehand with "
    "`huggingface-cli download <id> --local-dir <path>`"
)
TASK_CONDITION_KEYS = {"sr": "lr", "inpaint": "masked_image", "depth": "depth", "edit": "source", "canny": "canny"}
CONDITION_INPUTS = ("latent", "pixel")


PREDICTION_TYPES = ("v_prediction", "epsilon")


def scheduler_prediction_type(sd_path: Optional[str]) -> tuple[Optional[str], Optional[Path]]:
    """``prediction_type`` of ``sd_path``'s ``scheduler/scheduler_config.json`` (``(None, None)`` without one)."""
    if sd_path is None:
        return None, None
    from lightning_modules.components.pretrained_paths import resolve_pretrained

    config = resolve_pretrained(sd_path, "model.init_args.sd_path", SD_SOURCE, subfolder="scheduler") / "scheduler" / "scheduler_config.json"
    if not config.is_file():
        return None, None
    try:
        value = json.loads(config.read_text()).get("prediction_type", "epsilon")  # diffusers' default
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config}: not a JSON object ({err})") from None
    return str(value), config


class ConditionalDenoiser:
    """``(x_t, t) -> output`` of a conditional network with fixed condition and context (core denoiser)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], prediction_type: str) -> None:
        self.fn = fn
        self.prediction_type = prediction_type

    def __call__(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.fn(x_t, t)


class CoDiBase(DiffusionModule):
    """Latent conditional LDM with the CoDi adapter (see the module docstring for the shared parts).

    Args:
        sd_path: local Stable Diffusion folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``);
            ``None`` builds the parts from ``unet_config`` / ``vae_config`` with random weights.
        unet_config / vae_config: diffusers config dicts used when ``sd_path`` is None (``vae_config``
            None too: identity "VAE", images are the latents; tests only).
        text_encoder: ``'sd'`` (the CLIP encoder of ``sd_path``) or ``'stand_in'`` (hashed words).
        task: ``'sr'``, ``'inpaint'``, ``'depth'``, ``'edit'``, ``'canny'`` (edge-to-image, the released model) or
            ``'t2i'``: no condition, no adapter (the plain backbone; Sec. 2.3.5 distils the scaling family so).
        condition_input: ``'latent'`` (the condition's VAE latent) or ``'pixel'`` (the condition image in [0, 1]
            through ControlNet's conditioning embedding; ``adapter: controlnet``; not for inpainting).
        hint_channels: widths of that pixel embedding (ControlNet's 16, 32, 96, 256; ``2^(len-1)`` must be the
            VAE factor).
        released_checkpoint: the authors' released PE-CoDi ControlNet (a diffusers ``ControlNetModel`` folder or
            its ``.safetensors`` / ``.bin`` file) loaded into the encoder copy, hint net and zero-convs
            (:mod:`lightning_modules.codi.released`); needs ``adapter: controlnet``, ``condition_input: pixel``.
        adapter: ``'mu_gate'`` (CoDi, Eq. 5.3), ``'controlnet'`` (zero-convs, the CM baselines' branch and the
            ControlNet rows) or ``'concat'`` (condition concatenated at the input: the 865M "LDMs" rows).
        mu_granularity: ``'global'`` or ``'per_level'``.
        train_backbone: ``True`` trains the backbone too (CoDi, CM); ``False`` trains only the copy and
            mu (PE-CoDi).
        prompt: text prompt for batches without a ``caption`` (SR / inpainting / depth: ``""``).
        image_size: HR image side in pixels (512 in the thesis).
        num_sampling_steps / sampler / grid: inference defaults (subclasses set them).
        init_checkpoint: a Lightning checkpoint of an earlier stage (e.g. the conditional fine-tune of CM-II /
            GD-II, or the distilled model of GD-I) whose ``network.*`` weights initialise this one.
        prediction_type: the network's output, ``'v_prediction'`` (the thesis) or ``'epsilon'``; checked
            against ``sd_path``'s scheduler config (a mismatch is an error); ``None`` reads it from there.
        gradient_checkpointing: checkpoint the backbone's and the encoder copy's blocks (saves memory at 512 px).
        row_label: method name of the results rows; ``None`` derives it (:meth:`method_label`) from the
            class, adapter, sampler and steps so it matches ``benchmarks/paper_numbers.yaml``.
        teacher_checkpoint: the frozen teacher of the distilling stages (CM-II stage 2, GD rounds, the
            "- distilling PF-ODE" ablation): a Lightning checkpoint of the earlier stage / round, whose
            ``network.*`` weights fill a copy of this network; ``None`` copies the starting network (the
            pretrained LDM). The module adds the ``callbacks.teacher.TeacherCallback`` itself
            (:meth:`configure_callbacks`), so no callback index is needed on the command line.
        teacher_dtype: dtype of that teacher (e.g. ``bfloat16`` to halve its memory); ``None`` keeps the student's.
        metrics: Table 5.2 metrics for ``test`` (``fid``, ``lpips``: ``metrics`` package classes).
        results_file: JSONL file for results rows (relative to the run folder).
        dataset_name: ``dataset`` of the rows, as ``benchmarks/paper_numbers.yaml`` names it (rows on
            embedded data name the stand-in and keep this in ``stand_in_for``).
        results_table: the ``paper_numbers.yaml`` table the rows belong to.
    """

    method_name = "codi-base"

    def __init__(
        self,
        sd_path: Optional[str] = None,
        unet_config: Optional[dict[str, Any]] = None,
        vae_config: Optional[dict[str, Any]] = None,
        text_encoder: str = "sd",
        stand_in_tokens: int = 8,
        task: str = "sr",
        condition_input: str = "latent",
        hint_channels: Sequence[int] = (16, 32, 96, 256),
        released_checkpoint: Optional[str] = None,
        adapter: str = "mu_gate",
        mu_granularity: str = "global",
        train_backbone: bool = True,
        prompt: str = "",
        image_size: int = 512,
        num_train_timesteps: int = 1000,
        num_sampling_steps: int = 4,
        sampler: str = "consistency",
        grid: str = "trailing",
        guidance_scale: float = 1.0,
        gradient_checkpointing: bool = False,
        prediction_type: Optional[str] = "v_prediction",
        init_checkpoint: Optional[str] = None,
        row_label: Optional[str] = None,
        teacher_checkpoint: Optional[str] = None,
        teacher_dtype: Optional[str] = None,
        metrics: Optional[dict[str, nn.Module]] = None,
        results_file: Optional[str] = "results/codi.jsonl",
        dataset_name: str = "embedded photos",
        results_table: Optional[str] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        if task not in TASK_CONDITION_KEYS and task != "t2i":
            raise ValueError(f"task {task!r} is not one of {list(TASK_CONDITION_KEYS) + ['t2i']}")
        if text_encoder not in ("sd", "stand_in"):
            raise ValueError(f"text_encoder must be 'sd' or 'stand_in', got {text_encoder!r}")
        loaded, scheduler_file = scheduler_prediction_type(sd_path)
        if prediction_type is None:
            prediction_type = loaded or "v_prediction"
        elif loaded is not None and loaded != prediction_type:
            raise ValueError(
                f"{scheduler_file}: prediction_type is {loaded!r} but model.init_args.prediction_type is "
                f"{prediction_type!r}; set prediction_type: {loaded} (or null to read it), or use a checkpoint "
                f"trained for {prediction_type}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"model.init_args.prediction_type={prediction_type!r} is not one of {list(PREDICTION_TYPES)}")
        from diffusers import AutoencoderKL, UNet2DConditionModel

        key = "model.init_args.sd_path"
        unet = build_diffusers_model(UNet2DConditionModel, key=key, path=sd_path, subfolder="unet",
                                     config=unet_config, source=SD_SOURCE)
        vae = None
        if sd_path is not None or vae_config is not None:
            vae = build_diffusers_model(AutoencoderKL, key=key, path=sd_path, subfolder="vae", config=vae_config,
                                        source=SD_SOURCE)
        factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of the VAE factor {factor}")
        latent_size = image_size // factor
        latent_channels = int(unet.config.in_channels)
        if condition_input not in CONDITION_INPUTS:
            raise ValueError(f"model.init_args.condition_input={condition_input!r} is not one of {list(CONDITION_INPUTS)}")
        if condition_input == "pixel":
            if adapter != "controlnet" or task == "inpaint":
                raise ValueError("model.init_args.condition_input: pixel needs adapter: controlnet and a task other than "
                                 f"inpaint (got adapter {adapter!r}, task {task!r})")
            if 2 ** (len(hint_channels) - 1) != factor:
                raise ValueError(f"model.init_args.hint_channels={list(hint_channels)} downsamples by "
                                 f"{2 ** (len(hint_channels) - 1)}, the VAE by {factor}")
            condition_channels = 3
        else:
            condition_channels = latent_channels + (1 if task == "inpaint" else 0)
        if task == "t2i":  # condition-free: the plain backbone (Sec. 2.3.5's text-to-image distillation)
            network = PlainBackboneUNet(unet)
        else:
            network = ConditionalAdapterUNet(unet, condition_channels, mode=adapter, mu_granularity=mu_granularity,
                                             hint="pixel" if condition_input == "pixel" else "latent",
                                             hint_channels=tuple(int(c) for c in hint_channels))
        if init_checkpoint is not None:
            load_network_weights(network, init_checkpoint)
        if released_checkpoint is not None:
            from lightning_modules.codi.released import import_released_controlnet

            if condition_input != "pixel":
                raise ValueError("model.init_args.released_checkpoint (the authors' ControlNet) needs "
                                 "adapter: controlnet and condition_input: pixel")
            import_released_controlnet(network, released_checkpoint)
        network.set_backbone_trainable(train_backbone)
        if gradient_checkpointing:
            network.enable_gradient_checkpointing()
        path = DiscreteDDPMPath("scaled_linear", 0.00085, 0.012, num_train_timesteps)
        sampler_obj = ConsistencyMultistepSampler() if sampler == "consistency" else build_any_sampler(sampler)
        super().__init__(
            network=network, path=path, prediction_type=prediction_type, sampler=sampler_obj,
            num_sampling_steps=num_sampling_steps, grid=grid, guidance_scale=guidance_scale,
            sample_shape=(latent_channels, latent_size, latent_size), optimizer=optimizer,
            val_seed=val_seed, predict_seed=predict_seed,
        )
        if vae is not None:
            self.register_frozen("vae", vae)
        self.vae_scale = float(getattr(vae.config, "scaling_factor", 0.18215)) if vae is not None else 1.0
        context_dim = int(unet.config.cross_attention_dim)
        encoder_path = sd_path if text_encoder == "sd" else None
        if text_encoder == "sd" and sd_path is None:
            raise ValueError("text_encoder='sd' needs model.init_args.sd_path; use text_encoder: stand_in for random weights")
        self.register_frozen("text_encoder", build_prompt_encoder(encoder_path, context_dim, stand_in_tokens,
                                                                  key="model.init_args.sd_path"))
        self.task, self.prompt, self.image_size, self.latent_size = task, prompt, int(image_size), latent_size
        self.condition_input, self.released_checkpoint = condition_input, released_checkpoint
        self.train_backbone = bool(train_backbone)
        self.metrics = nn.ModuleDict(metrics or {})
        self.results_file, self.dataset_name, self.results_table = results_file, dataset_name, results_table
        self.uses_random_weights = sd_path is None and released_checkpoint is None
        self.row_label = row_label
        if teacher_checkpoint is not None and not Path(teacher_checkpoint).expanduser().is_file():
            raise FileNotFoundError(f"model.init_args.teacher_checkpoint: {teacher_checkpoint} does not exist "
                                    "(train the earlier stage first; its checkpoints/last.ckpt)")
        self.teacher_checkpoint, self.teacher_dtype = teacher_checkpoint, teacher_dtype
        self._eval_count = 0
        counts = network.parameter_counts()
        log.info("%s: backbone %.1fM, adapter %.1fM, trainable %.1fM", type(self).__name__, counts["backbone"] / 1e6,
                 counts["adapter"] / 1e6, sum(p.numel() for p in self.trainable_parameters()) / 1e6)

    def method_label(self) -> str:
        """The method name of results rows (matches benchmarks/paper_numbers.yaml where the method is there)."""
        return self.row_label or self.derived_label()

    def derived_label(self) -> str:
        return self.method_name

    def steps_suffix(self) -> str:
        """``", N steps"`` where the table's rows carry the step count (Table 5.2), else ``""`` (Table 5.3)."""
        table = self.results_table or ""
        return "" if table.startswith("Table 5.3") else f", {self.num_sampling_steps} steps"

    # ------------------------------------------------------------------ the distillation teacher
    def uses_teacher(self) -> bool:
        """Whether training calls a frozen teacher (subclasses say)."""
        return False

    def check_teacher_use(self) -> None:
        """Refuse a ``teacher_checkpoint`` no loss would read (subclasses call this once configured)."""
        if self.teacher_checkpoint is not None and not self.uses_teacher():
            raise ValueError(f"model.init_args.teacher_checkpoint is set but {type(self).__name__} with these settings "
                             "uses no teacher (CoDi uses one only with intermediate: teacher)")

    def configure_callbacks(self):
        """The frozen teacher (``teacher_checkpoint``) as a ``TeacherCallback`` when this stage distils."""
        if not self.uses_teacher():
            return []
        from callbacks.teacher import TeacherCallback

        return [TeacherCallback(checkpoint_path=self.teacher_checkpoint, dtype=self.teacher_dtype)]

    # ------------------------------------------------------------------ checkpoint: metrics stay out
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        state = checkpoint["state_dict"]
        for k in [k for k in state if k.startswith("metrics.")]:
            del state[k]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        result = nn.Module.load_state_dict(self, state_dict, strict=False, assign=assign)
        prefixes = tuple(f"{name}." for name in self._frozen) + ("metrics.",)
        missing = [k for k in result.missing_keys if not k.startswith(prefixes)]
        if strict and (missing or result.unexpected_keys):
            raise RuntimeError(f"{type(self).__name__}: checkpoint does not fit; missing {missing[:10]}, "
                               f"unexpected {result.unexpected_keys[:10]}")
        return result

    # ------------------------------------------------------------------ latents, text, conditions
    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        if not hasattr(self, "vae"):
            return images
        return (self.vae.encode(images.to(self.vae.dtype)).latent_dist.mean * self.vae_scale).float()

    def decode_latents(self, latents: Tensor) -> Tensor:
        if not hasattr(self, "vae"):
            return latents
        return self.vae.decode((latents / self.vae_scale).to(self.vae.dtype)).sample.float()

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return self.decode_latents(latents)

    @torch.no_grad()
    def context(self, batch: Optional[Mapping[str, Any]], size: int) -> Tensor:
        prompts = batch.get("caption") if batch is not None else None
        if prompts is None:
            prompts = [self.prompt] * size
        return self.text_encoder(list(prompts)).to(self.device)

    @torch.no_grad()
    def condition(self, batch: Mapping[str, Any]) -> Tensor:
        """The task condition ``c`` on the latent grid (module docstring); ``None`` for ``task: t2i``."""
        if self.task == "t2i":
            return None
        side = self.image_size
        to_condition = self.encode if self.condition_input == "latent" else (lambda image: ((image + 1) / 2).float())
        if self.task == "sr":
            lr = batch["lr"].to(self.device)
            up = F.interpolate(lr, size=(side, side), mode="bicubic", align_corners=False).clamp(-1, 1)
            return to_condition(up)
        if self.task == "inpaint":
            masked_image = batch["masked_image"].to(self.device)
            if tuple(masked_image.shape[-2:]) != (side, side):  # inputs of another size: the model canvas
                masked_image = F.interpolate(masked_image, size=(side, side), mode="bicubic", align_corners=False).clamp(-1, 1)
            masked = self.encode(masked_image)
            mask = F.interpolate(batch["mask"].to(self.device).float(), size=masked.shape[-2:], mode="nearest")
            return torch.cat([masked, mask * 2 - 1], dim=1)
        if self.task in ("depth", "canny"):
            image = batch[self.task].to(self.device)
            image = F.interpolate(image, size=(side, side), mode="bilinear", align_corners=False)
            return to_condition(image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image)
        source = batch["source"].to(self.device)
        return to_condition(F.interpolate(source, size=(side, side), mode="bicubic", align_corners=False).clamp(-1, 1))

    # ------------------------------------------------------------------ network calls
    def network_output(self, z: Tensor, t: Tensor, cond: Optional[Tensor], ctx: Tensor,
                       params: Optional[Mapping[str, Tensor]] = None, network: Optional[nn.Module] = None,
                       guidance: Optional[Tensor] = None) -> Tensor:
        """Raw output (``prediction_type``) of ``network`` (default: the student; ``params`` swap in other weights;
        ``guidance``: the ``w`` input of a w-conditioned network)."""
        net = network if network is not None else self.network
        k = self.path.network_time(t).to(z.dtype)
        kwargs = {"encoder_hidden_states": ctx, "condition": cond}
        if guidance is not None:
            kwargs["guidance"] = guidance
        if params is None:
            return net(z, k, **kwargs)
        return torch.func.functional_call(net, dict(params), (z, k), kwargs, strict=False)

    def data_and_noise(self, v: Tensor, z: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        return to_data_and_noise(v, self.prediction_type, z, t, self.path)

    def guided_output(self, z: Tensor, t: Tensor, cond: Optional[Tensor], ctx: Tensor, null_ctx: Optional[Tensor] = None,
                      w: float = 1.0, params: Optional[Mapping[str, Tensor]] = None) -> Tensor:
        """Network output with classifier-free guidance on the text: ``v_null + w (v_text - v_null)`` (both with the
        image condition, as the authors' released pipeline); ``null_ctx=None`` or ``w = 1``: no guidance."""
        v = self.network_output(z, t, cond, ctx, params=params)
        if null_ctx is None or w == 1.0:
            return v
        v_null = self.network_output(z, t, cond, null_ctx, params=params)
        return v_null + w * (v - v_null)

    def sampling_denoiser(self, cond: Optional[Tensor], ctx: Tensor, null_ctx: Optional[Tensor] = None,
                          w: float = 1.0) -> ConditionalDenoiser:
        """The denoiser the samplers see (the student's output, text-guided with ``w``; distilled models override)."""
        return ConditionalDenoiser(lambda z, t: self.guided_output(z, t, cond, ctx, null_ctx, w), self.prediction_type)

    def text_guidance(self, guidance_scale: Optional[float] = None) -> float:
        """The text CFG scale sampling applies (``guidance_scale`` of the module unless given)."""
        return float(self.guidance_scale if guidance_scale is None else guidance_scale)

    # ------------------------------------------------------------------ sampling
    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        return discrete_grid(self.path, num_steps, spacing=self.grid).to(device)

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        """Network evaluations per sample: the steps, twice with text guidance (``w != 1``)."""
        return int(num_steps or self.num_sampling_steps) * (2 if self.text_guidance(guidance_scale) != 1.0 else 1)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         generator: Optional[torch.Generator] = None, noise: Optional[Tensor] = None,
                         use_condition: bool = True, guidance_scale: Optional[float] = None) -> Tensor:
        """Images in [-1, 1] for the conditions of ``batch`` (``use_condition=False``: the plain backbone).

        ``guidance_scale`` (default the module's): text CFG ``w`` with the empty prompt as null ([GAP] the thesis
        samples SR without it, ``guidance_scale: 1``; the authors' released canny demo uses 8.5)."""
        cond = self.condition(batch) if use_condition else None
        size = cond.shape[0] if cond is not None else len(next(v for v in batch.values() if hasattr(v, "__len__")))
        ctx = self.context(batch, size)
        w = self.text_guidance(guidance_scale)
        null_ctx = self.context({"caption": [""] * size}, size) if w != 1.0 else None
        if noise is None:
            noise = torch.randn((size, *self.sample_shape), generator=generator, device=self.device)
        if sampler is None:
            sampler = self.sampler
        elif isinstance(sampler, str):
            sampler = ConsistencyMultistepSampler() if sampler == "consistency" else build_any_sampler(sampler)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        latents = sampler.sample(self.sampling_denoiser(cond, ctx, null_ctx, w), self.path, noise, grid, generator=generator)
        return self.decode_latents(latents).clamp(-1, 1)

    @torch.no_grad()
    def sample(self, num_samples: int, *, labels: Optional[Tensor] = None, num_steps: Optional[int] = None,
               sampler: Any = None, guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None, progress: bool = False, batch: Optional[Mapping[str, Any]] = None) -> Tensor:
        """With ``batch``: conditional samples; without: the backbone's text-to-image samples (default prompt)."""
        if batch is not None:
            return self.sample_for_batch(batch, num_steps=num_steps, sampler=sampler, generator=generator, noise=noise,
                                         guidance_scale=guidance_scale)
        dummy = {"caption": [self.prompt] * num_samples}
        return self.sample_for_batch(dummy, num_steps=num_steps, sampler=sampler, generator=generator, noise=noise,
                                     use_condition=False, guidance_scale=guidance_scale)

    # ------------------------------------------------------------------ validation / predict / test
    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        images = self.sample_for_batch(batch, generator=generator)
        mse = F.mse_loss(images, batch["image"].to(images))
        self.log("val/mse", mse, prog_bar=True, batch_size=images.shape[0], sync_dist=True)
        return mse

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Outputs for the user's inputs (``--data.predict_root``), named after them, at their size.

        Each input arrives fitted to the canvas with its ``placement``; the output is mapped back
        (``datamodules.predict_inputs.restore_from_canvas``) at ``output_scale`` (SR: the factor),
        so a 12x8 SR input gives exactly a 48x32 output. ``manifest.json`` lists input -> output.
        """
        generator = torch.Generator(device=self.device).manual_seed(self.predict_seed + batch_idx)
        images = self.sample_for_batch(batch, generator=generator)
        sampler_name = getattr(self.sampler, "name", "sampler")
        writer = self.prediction_writer(
            f"{self.task}_{sampler_name}_{self.nfe()}steps",
            {"module": type(self).__name__, "task": self.task, "sampler": sampler_name, "nfe": self.nfe(),
             "image_size": self.image_size, "predict_seed": self.predict_seed},
        )
        self.write_batch_images(writer, images, batch, batch_idx, seed=self.predict_seed + batch_idx)
        save_grid(images, writer.folder / f"grid_{batch_idx:04d}.png")

    def on_test_epoch_start(self) -> None:
        self._eval_count = 0
        for metric in self.metrics.values():
            metric.reset()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Module-side Table 5.2 scoring, kept for ``metrics`` given to the module directly.

        The configs score with ``callbacks.evaluation.EvaluationCallback`` (``per_batch_generation``,
        which calls :meth:`sample_for_batch`); with no module metrics nothing is sampled here.
        """
        if not self.metrics:
            return
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        preds = self.sample_for_batch(batch, generator=generator)
        target = batch["image"].to(preds)
        for metric in self.metrics.values():
            if "real" in inspect.signature(metric.update).parameters:  # FID-like: real and generated sets
                metric.update(target, real=True)
                metric.update(preds, real=False)
            else:
                metric.update(preds, target)
        self._eval_count += preds.shape[0]

    def on_test_epoch_end(self) -> None:
        if not self.metrics:
            return
        from metrics.results_rows import (
            ResultRow, append_rows, dataset_field, describe_evaluator, git_commit, infer_data_flag, infer_weights_flag,
            run_config_path, run_provenance, utc_now,
        )

        data = infer_data_flag(self.trainer)
        config_name = run_config_path(self.trainer)
        dataset, dataset_extra = dataset_field(self.trainer, self.dataset_name, data)
        provenance = run_provenance(self.trainer)
        rows = []
        for name, metric in self.metrics.items():
            value = float(metric.compute())
            self.log(f"test/{name}", value, sync_dist=False)
            rows.append(ResultRow(
                paper="codi", method=self.method_label(), dataset=dataset, split="test",
                resolution=f"{self.image_size}x{self.image_size}", num_samples=int(self._eval_count), nfe=self.nfe(),
                guidance=float(self.guidance_scale), metric=name, value=value,
                evaluator=describe_evaluator(metric), config=config_name, commit=git_commit(), date=utc_now(),
                weights=infer_weights_flag(self, [metric]), data=data,
                extra={"task": self.task, "num_steps": self.num_sampling_steps,
                       "sampler": getattr(self.sampler, "name", "sampler"), **provenance, **dataset_extra,
                       **({"table": self.results_table} if self.results_table else {})},
            ))
        if self.results_file and self.trainer.is_global_zero:
            target = self.results_file
            if not os.path.isabs(target):
                target = os.path.join(run_dir(self.trainer), target)
            append_rows(target, rows)
            log.info("%s: %d results rows -> %s", type(self).__name__, len(rows), target)


def load_network_weights(network: nn.Module, checkpoint: str) -> None:
    """Load ``network.*`` weights of a Lightning checkpoint (an earlier stage of a multi-stage method)."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.init_args.init_checkpoint: {path} does not exist (run the earlier stage first)")
    saved = safe_torch_load(path, key="model.init_args.init_checkpoint")
    state = saved.get("state_dict", saved)
    own = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    if own and not any(k.startswith("backbone.") for k in own) and hasattr(network, "backbone"):
        # a ScaledLDM member (lightning_modules.ldm_scaling): ``network.*`` is the plain UNet2DConditionModel,
        # CoDi's backbone (thesis 001 Sec. 2.3.5 distils these members; the adapter, if any, stays as built).
        # The member's EMA average (what its Table 2.1 rows evaluate) wins over the raw weights when saved.
        from launch.from_config import ema_weights

        ema = (ema_weights(saved) or {}).get("ema") or {}
        own.update({k[len("network."):]: v for k, v in ema.items() if k.startswith("network.")})
        own = {f"backbone.{k}": v for k, v in own.items()}
    missing, unexpected = network.load_state_dict(own, strict=False)
    # missing backbone keys: a PE stage saved without the frozen backbone; a missing w embedding stays zero
    if unexpected or [k for k in missing if not k.startswith(("backbone.", "guidance_embedding."))]:
        raise RuntimeError(f"init_checkpoint {path} does not fit the network: missing {missing[:8]}, "
                           f"unexpected {unexpected[:8]}")


def shared_or_per_sample(count: int, batch: int, shared: bool, device: torch.device,
                         low: int = 0, generator: Optional[torch.Generator] = None) -> Tensor:
    """Indices in ``[low, count)``: one for the whole batch (``shared``, Fig. 5.6) or one per sample."""
    n = 1 if shared else batch
    idx = torch.randint(low, count, (n,), generator=generator, device="cpu").to(device)
    return idx.expand(batch) if shared else idx


__all__ = ["CoDiBase", "ConditionalDenoiser", "SD_SOURCE", "TASK_CONDITION_KEYS", "shared_or_per_sample"]
