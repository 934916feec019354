"""``DiffusionModule``: any denoiser network trained on any Gaussian path of the core.

Thesis 000, Ch. 2 (seed 000, lines 184-356) shows that diffusion and flow matching differ
only in the path (Eqs. 2.4, 2.9), the network's output parametrisation (§2.2.3) and the
time weighting (Eqs. 2.15-2.17); sampling is a separate choice (Eqs. 2.3, 2.18). This module
therefore takes each of those as a swappable object chosen by config:

* ``network``: the denoiser (a diffusers ``UNet2DModel`` for the baselines);
* ``path``: an ``diffusion.paths.AffinePath`` (rectified flow, DDPM, cosine, EDM);
* ``prediction_type``: what the network outputs (``epsilon``, ``sample``, ``v_prediction``,
  ``velocity``, ``score``);
* ``time_sampler`` and ``loss_weighting``: the density and weight of Eq. 2.17;
* ``sampler`` + ``num_sampling_steps`` + ``grid``: the inference integrator.

Training minimises ``E_t[w(t) * ||net(x_t, t) - target||^2]`` with the target from
``diffusion.predictions.training_target``. Class-conditional models drop the label with
probability ``label_dropout`` (replaced by a learned null class, index ``num_classes``) so
classifier-free guidance (Ho & Salimans, lecture seed 002) works at sampling time.

Latent-diffusion papers subclass this and override ``encode``/``decode`` and
``conditioning``; frozen parts are registered with ``register_frozen`` (from
``components.frozen_parts.FrozenPartsModule``) so that they stay out of the optimizer, EMA
and the checkpoint (DESIGN.md, "Frozen parts stay outside training state").
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from diffusion.denoisers import NetworkDenoiser, unwrap_output
from diffusion.grids import discrete_grid, karras_grid, shifted_grid, uniform_grid
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import AffinePath, RectifiedFlowPath
from diffusion.predictions import training_target, validate_prediction_type
from diffusion.samplers import build_sampler
from diffusion.time_samplers import UniformTimeSampler
from launch.sharding import shard_for_strategy
from lightning_modules.components.frozen_parts import FrozenPartsModule
from lightning_modules.components.image_io import save_grid
from lightning_modules.components.safe_load import plain_hyperparameters
from lightning_modules.components.predict_outputs import PredictOutputsMixin, variant_tag
from lightning_modules.components.network_info import (
    class_embedding_count,
    count_parameters,
    network_sample_shape,
)

log = logging.getLogger(__name__)

GRID_NAMES = ("uniform", "shifted", "karras", "leading", "trailing", "linspace")


class DiffusionModule(PredictOutputsMixin, FrozenPartsModule):
    """Train and sample a denoiser on a Gaussian path (thesis 000, Ch. 2).

    Args:
        network: the denoiser network, called as ``network(x_t, network_time, class_labels=...)``.
        path: the Gaussian path x_t = data_coef(t) x + noise_coef(t) eps (t=0 noise, t=1 data);
            ``None`` means rectified flow (``RectifiedFlowPath()``).
        prediction_type: the network's output parametrisation (one of
            ``diffusion.predictions.PREDICTION_TYPES``).
        time_sampler: draws training times t in [0, 1]; ``None`` means uniform.
        loss_weighting: ``(t, path) -> w`` per-sample loss weight; ``None`` means 1.
        sampler: name or object of the sampler ``sample()`` uses ("euler", "heun", "ddim",
            "ddpm", "euler_ancestral", "euler_maruyama", "edm").
        num_sampling_steps: number of sampler steps (network evaluations per step depend on
            the sampler: Heun uses two).
        grid: time grid of the sampler: "uniform", "shifted" (SD3 shift ``grid_shift``),
            "karras" (EDM sigmas, needs ``path.sigma``), or diffusers' discrete spacings
            "leading" / "trailing" / "linspace" (DDPM paths).
        grid_shift: shift of the "shifted" grid.
        grid_steps_offset: diffusers' ``steps_offset`` of the discrete spacings (SD uses 1).
        num_classes: number of classes of a class-conditional model (``None``:
            unconditional). The network must then have ``num_classes + 1`` class embeddings,
            the last one being the null class used for dropout and guidance.
        label_dropout: probability of replacing a label by the null class during training.
        guidance_scale: classifier-free guidance scale at sampling (1 = plain conditional).
        sample_shape: (C, H, W) of generated samples; inferred from the network's diffusers
            config (``in_channels``, ``sample_size``) when ``None``.
        optimizer: optimizer factory applied to ``trainable_parameters()``.
        lr_scheduler: optional scheduler factory; stepped every ``lr_scheduler_interval``.
        lr_scheduler_interval: "step" or "epoch".
        val_seed: seed of the fixed noise and times of the validation loss, so that its
            values are comparable from one validation to the next.
        predict_seed: seed of the noise used by ``predict`` (batch index added).
    """

    def __init__(
        self,
        network: nn.Module,
        path: Optional[AffinePath] = None,
        prediction_type: str = "velocity",
        time_sampler: Optional[Callable[..., Tensor]] = None,
        loss_weighting: Optional[Callable[..., Tensor]] = None,
        sampler: str = "euler",
        num_sampling_steps: int = 50,
        grid: str = "uniform",
        grid_shift: float = 1.0,
        grid_steps_offset: int = 0,
        num_classes: Optional[int] = None,
        label_dropout: float = 0.1,
        guidance_scale: float = 1.0,
        sample_shape: Optional[Sequence[int]] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: str = "step",
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network", "path", "time_sampler", "loss_weighting"])
        plain_hyperparameters(self.hparams)  # optimizer=torch.optim.AdamW -> its name: checkpoints load weights_only
        validate_prediction_type(prediction_type)
        _check_choice("grid", grid, GRID_NAMES)
        _check_choice("lr_scheduler_interval", lr_scheduler_interval, ("step", "epoch"))
        if not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1), got {label_dropout}")
        self.network = network
        self.path = path if path is not None else RectifiedFlowPath()
        self.prediction_type = prediction_type
        self.time_sampler = time_sampler or UniformTimeSampler()
        self.loss_weighting = loss_weighting
        self.sampler = build_sampler(sampler) if isinstance(sampler, str) else sampler
        self.num_sampling_steps = num_sampling_steps
        self.grid = grid
        self.grid_shift = grid_shift
        self.grid_steps_offset = grid_steps_offset
        self.num_classes = num_classes
        self.label_dropout = label_dropout
        self.guidance_scale = guidance_scale
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.val_seed = val_seed
        self.predict_seed = predict_seed
        self._check_class_embeddings()
        shape = sample_shape or network_sample_shape(network)
        self.sample_shape = tuple(int(s) for s in shape) if shape else None

    # ------------------------------------------------------------------ parameters
    def configure_model(self) -> None:
        """Shard ``network`` with FSDP2 under ``ModelParallelStrategy``; a no-op otherwise."""
        shard_for_strategy(self)

    def configure_optimizers(self) -> Any:
        params = self.trainable_parameters()
        log.info(
            "%s: %.2fM trainable of %.2fM parameters",
            type(self).__name__,
            sum(p.numel() for p in params) / 1e6,
            count_parameters(self) / 1e6,
        )
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval},
        }

    # ------------------------------------------------------------------ data hooks
    def encode(self, images: Tensor) -> Tensor:
        """Data -> the space diffusion runs in (identity; latent models override)."""
        return images

    def decode(self, latents: Tensor) -> Tensor:
        """The diffusion space -> images in [-1, 1] (identity; latent models override)."""
        return latents

    def batch_labels(self, batch: Mapping[str, Tensor]) -> Optional[Tensor]:
        """Class labels of a batch for class-conditional models, else ``None``."""
        if self.num_classes is None:
            return None
        if "label" not in batch:
            raise KeyError(
                f"{type(self).__name__} has num_classes={self.num_classes} but the batch has no "
                f"'label' key (keys: {sorted(batch)})"
            )
        return batch["label"].long()

    # ------------------------------------------------------------------ training
    def diffusion_loss(
        self, x_data: Tensor, labels: Optional[Tensor], generator: Optional[torch.Generator] = None
    ) -> Tensor:
        """Per-sample weighted regression loss of Eq. 2.17 (mean over non-batch dims)."""
        batch = x_data.shape[0]
        t = self.time_sampler(batch, x_data.device, generator=generator).to(x_data.dtype)
        noise = torch.randn(x_data.shape, generator=generator, device=x_data.device, dtype=x_data.dtype)
        x_t = self.path.add_noise(x_data, noise, t)
        prediction = self.denoiser(labels)(x_t, t)
        target = training_target(self.prediction_type, x_data, noise, t, self.path)
        per_sample = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        if self.loss_weighting is not None:
            per_sample = per_sample * self.loss_weighting(t, self.path).to(per_sample.dtype)
        return per_sample

    def drop_labels(self, labels: Optional[Tensor]) -> Optional[Tensor]:
        """Replace labels by the null class with probability ``label_dropout``."""
        if labels is None or self.label_dropout == 0.0:
            return labels
        drop = torch.rand(labels.shape, device=labels.device) < self.label_dropout
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x_data = self.encode(batch["image"])
        loss = self.diffusion_loss(x_data, self.drop_labels(self.batch_labels(batch))).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x_data.shape[0])
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x_data = self.encode(batch["image"])
        generator = torch.Generator(device=x_data.device).manual_seed(self.val_seed + batch_idx)
        loss = self.diffusion_loss(x_data, self.batch_labels(batch), generator=generator).mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=x_data.shape[0], sync_dist=True)
        return loss

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x_data = self.encode(batch["image"])
        generator = torch.Generator(device=x_data.device).manual_seed(self.val_seed + batch_idx)
        loss = self.diffusion_loss(x_data, self.batch_labels(batch), generator=generator).mean()
        self.log("test/loss", loss, batch_size=x_data.shape[0], sync_dist=True)
        return loss

    # ------------------------------------------------------------------ sampling
    def denoiser(self, labels: Optional[Tensor], guidance_scale: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
        """The network as a denoiser ``(x_t, t) -> prediction`` for the given labels.

        With a guidance scale other than 1 the labels and the null class go through
        classifier-free guidance in one batched network call.
        """
        if labels is None or guidance_scale == 1.0:
            extra = {} if labels is None else {"class_labels": labels}
            return NetworkDenoiser(self.network, self.path, self.prediction_type, **extra)
        null = torch.full_like(labels, self.num_classes)
        return ClassifierFreeGuidance(
            self._conditional_network,
            self.prediction_type,
            cond={"class_labels": labels},
            null_cond={"class_labels": null},
            scale=guidance_scale,
        )

    def _conditional_network(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        return unwrap_output(self.network(x_t, self.path.network_time(t), **cond))

    def sampling_grid(self, num_steps: int, device: torch.device) -> Tensor:
        """Times from noise (near 0) to data (1) for ``num_steps`` sampler steps."""
        if self.grid == "uniform":
            grid = uniform_grid(num_steps)
        elif self.grid == "shifted":
            grid = shifted_grid(num_steps, self.grid_shift)
        elif self.grid == "karras":
            grid = karras_grid(self.path, num_steps)
        else:
            grid = discrete_grid(self.path, num_steps, spacing=self.grid, steps_offset=self.grid_steps_offset)
        return grid.to(device)

    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        labels: Optional[Tensor] = None,
        num_steps: Optional[int] = None,
        sampler: Any = None,
        guidance_scale: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        noise: Optional[Tensor] = None,
        progress: bool = False,
    ) -> Tensor:
        """Draw ``num_samples`` images in [-1, 1] with the configured (or given) sampler."""
        if self.sample_shape is None and noise is None:
            raise ValueError(
                f"{type(self).__name__}: sample_shape is unknown; set model.sample_shape (C, H, W) "
                "or use a network whose config has in_channels and sample_size"
            )
        if self.num_classes is not None and labels is None:
            labels = torch.arange(num_samples, device=self.device) % self.num_classes
        if noise is None:
            noise = torch.randn(
                (num_samples, *self.sample_shape), generator=generator, device=self.device
            )
        sampler = build_sampler(sampler) if isinstance(sampler, str) else (sampler or self.sampler)
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, noise.device)
        latents = sampler.sample(self.denoiser(labels, scale), self.path, noise, grid, generator=generator, progress=progress)
        return self.decode(latents).clamp(-1, 1)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        """Sample and write one PNG per request, named ``sample<i>__<sampler>_seed<s>[_label<c>]``.

        Requests come from the datamodule's ``num_samples`` (``--data.num_samples N``, labels
        ``--data.labels [..]``; noise seed ``predict_seed + data seed + i`` per sample, so a
        sample does not depend on the batch size). Without them, one sample per item of the
        predict split, with its label (a warning says so). A grid per batch is written beside
        them and ``manifest.json`` lists every sample with its seed, label and the settings.
        """
        if "path" in batch:
            raise ValueError(
                f"{type(self).__name__} samples from noise and takes no input files (got {batch['path'][0]} ...); "
                "ask for samples with --data.num_samples N (and --data.labels [..])"
            )
        if self.num_classes is not None and "seed" in batch and "label" not in batch:
            labels = batch["sample_index"].to(self.device).long() % self.num_classes  # no labels given: cycle
        else:
            labels = self.batch_labels(batch) if self.num_classes is not None else None
        name = getattr(self.sampler, "name", type(self.sampler).__name__)
        writer = self.prediction_writer(str(name), self.predict_settings())
        if "seed" in batch:
            seeds = [self.predict_seed + int(s) for s in batch["seed"]]
            indices = [int(i) for i in batch["sample_index"]]
        else:
            size = len(next(iter(batch.values())))
            if batch_idx == 0:
                log.warning(
                    "%s.predict: drawing one sample per item of the predict split; set --data.num_samples N "
                    "(and --data.labels [..]) to choose how many", type(self).__name__,
                )
            start = len(writer.items)
            seeds = [self.predict_seed + start + i for i in range(size)]
            indices = list(range(start, start + size))
        noise = self._request_noise(seeds)
        images = self.sample(len(seeds), labels=labels, noise=noise)
        for row, (index, seed) in enumerate(zip(indices, seeds)):
            label = None if labels is None else int(labels[row])
            variant = variant_tag(seed=seed, label=label)
            path = writer.save_image(images[row], f"sample{index:05d}", variant)
            writer.record(index, [path], seed=seed, label=label)
        save_grid(images, writer.folder / f"grid_{batch_idx:04d}.png")

    def _predictions_folder(self) -> Path:
        """``<run>/predictions/<sampler>`` (with its manifest) for subclasses' own predict steps."""
        name = getattr(self.sampler, "name", type(self.sampler).__name__)
        return self.prediction_writer(str(name), self.predict_settings()).folder

    def _request_noise(self, seeds: Sequence[int]) -> Tensor:
        """One noise tensor per seed (each drawn on its own generator)."""
        if self.sample_shape is None:
            raise ValueError(f"{type(self).__name__}: sample_shape is unknown; set model.sample_shape (C, H, W)")
        draws = [
            torch.randn(self.sample_shape, generator=torch.Generator(device=self.device).manual_seed(seed),
                        device=self.device)
            for seed in seeds
        ]
        return torch.stack(draws)

    def predict_settings(self) -> dict[str, Any]:
        """What the manifest records about how the samples were drawn."""
        return {
            "module": type(self).__name__,
            "sampler": getattr(self.sampler, "name", type(self.sampler).__name__),
            "num_sampling_steps": self.num_sampling_steps,
            "grid": self.grid,
            "guidance_scale": self.guidance_scale,
            "predict_seed": self.predict_seed,
        }

    # ------------------------------------------------------------------ checks
    def _check_class_embeddings(self) -> None:
        """A class-conditional model needs num_classes + 1 class embeddings (last = null class)."""
        config = getattr(self.network, "config", None)
        if config is None or not hasattr(config, "num_class_embeds"):
            return  # not a diffusers UNet: the network's own forward checks its inputs
        count = class_embedding_count(self.network)
        if self.num_classes is None:
            if count:
                raise ValueError(
                    f"network has num_class_embeds={count} but model.num_classes is null; "
                    f"set model.num_classes to {count - 1}"
                )
            return
        if count != self.num_classes + 1:
            raise ValueError(
                f"model.num_classes={self.num_classes} needs a network with num_class_embeds="
                f"{self.num_classes + 1} (the last class is the null class for guidance); "
                f"got num_class_embeds={count}"
            )

def _check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{key}={value!r} is not one of {list(choices)}")

