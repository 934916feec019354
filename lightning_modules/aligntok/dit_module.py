"""Flow-matching LightningDiT on AlignTok latents (thesis 000, Ch. 7 §7.1, §7.4), on the shared core.

The thesis writes flow matching in the SD3 direction: ``z_s = (1 - s) z_0 + s z_1``, ``z_1 ~ N(0, I)``,
``s = 0`` data, target ``u = z_1 - z_0``, loss ``||v_theta(z_s, s) - u||^2``. The core
(``diffusion/``) has ``t = 0`` noise; with ``t = 1 - s`` both describe the same straight path
(``RectifiedFlowPath``) and the core's ``velocity`` target ``x - eps`` equals ``-u``. The
network keeps the paper's convention; :class:`diffusion.SD3DirectionAdapter` (and the same
map for the guided network) turns it into a Ch. 2 denoiser, so training, the Euler sampler,
the shifted grid and ``ClassifierFreeGuidance`` all come from the core.

Training (official LightningDiT settings the thesis refers to [ext]): logit-normal t
(``LogitNormalTimeSampler(0, 1)``, symmetric so identical in both directions), velocity MSE
plus the optional cosine term ``1 - cos(v_pred, v_target)`` along channels, class dropout 0.1
to a null class, AdamW lr 2e-4 with beta2 0.95. Sampling: Euler, 30 steps (250 for system
comparisons), timestep shift 0.3 (``grid: shifted``, the core's SD3 shift on the noise
level, which is LightningDiT's ``t / (t + (1 - t) shift)``), CFG on the first 3 latent
channels only, inside the interval t >= 0.1 (LightningDiT's ``cfg_interval_start``).

Data: batches with ``latent`` (pre-extracted shards, ``datamodules/aligntok_latents.py``) are
used as they are; batches with ``image`` are encoded on the fly by the frozen tokenizer.
Latents are normalised per channel, ``(z - mean) / std``, with the shards' statistics file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from diffusion.denoisers import unwrap_output
from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import AffinePath, RectifiedFlowPath
from diffusion.predictions import SD3DirectionAdapter
from diffusion.time_samplers import LogitNormalTimeSampler
from lightning_modules.aligntok.checkpoints import load_into, load_stage_state, sub_state
from lightning_modules.diffusion_module import DiffusionModule


def load_latent_stats(path: str, key: str = "model.init_args.latent_stats") -> tuple[Tensor, Tensor]:
    """Per-channel ``mean``/``std`` from a shard folder's ``stats.json`` (or the file itself)."""
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / "stats.json"
    if not file.is_file():
        raise FileNotFoundError(
            f"{key}: latent statistics not found at '{file}'. Expected: stats.json with 'mean' and 'std' "
            "lists, written by lightning_modules.aligntok.extract (datamodules/aligntok_latents.py)."
        )
    stats = json.loads(file.read_text())
    return torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)


class SD3Network:
    """``(z, t) -> network(z, s = 1 - t, class_labels)``: the paper-convention network with fixed labels."""

    def __init__(self, network: nn.Module, labels: Optional[Tensor]) -> None:
        self.network, self.labels = network, labels

    def __call__(self, z: Tensor, s: Tensor) -> Tensor:
        extra = {} if self.labels is None else {"class_labels": self.labels}
        return unwrap_output(self.network(z, s, **extra))


class AlignTokDiT(DiffusionModule):
    """LightningDiT + flow matching on a frozen AlignTok tokenizer's latents.

    Args (beyond ``DiffusionModule``'s):
        tokenizer: the tokenizer architecture (``None``: latents only; ``sample`` then returns
            latents and predict cannot write images).
        tokenizer_checkpoint: a stage-3 (or any stage) checkpoint; EMA weights preferred.
        latent_stats: shard folder or ``stats.json`` with per-channel mean/std (``None``: 0/1).
        cosine_loss_weight: weight of the cosine velocity-direction loss (LightningDiT: 1; 0 off).
        cfg_channels: latent channels that receive guidance (``[0, 1, 2]``; ``None``: all).
        cfg_interval: ``(t_lo, t_hi)`` in core time where guidance applies (``(0.1, 1.0)``).
    """

    def __init__(
        self,
        network: nn.Module,
        tokenizer: Optional[nn.Module] = None,
        tokenizer_checkpoint: Optional[str] = None,
        latent_stats: Optional[str] = None,
        cosine_loss_weight: float = 1.0,
        cfg_channels: Optional[list[int]] = [0, 1, 2],  # noqa: B006 - shown in --print_config
        cfg_interval: Optional[tuple[float, float]] = (0.1, 1.0),
        path: Optional[AffinePath] = None,
        time_sampler: Optional[Callable[..., Tensor]] = None,
        sampler: str = "euler",
        num_sampling_steps: int = 30,
        grid: str = "shifted",
        grid_shift: float = 0.3,
        num_classes: Optional[int] = 1000,
        label_dropout: float = 0.1,
        guidance_scale: float = 1.0,
        sample_shape: Optional[Sequence[int]] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        lr_scheduler_interval: str = "step",
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        if sample_shape is None and hasattr(network, "sample_size"):
            sample_shape = (network.in_channels, network.sample_size, network.sample_size)
        super().__init__(
            network=network,
            path=path if path is not None else RectifiedFlowPath(network_time_scale=1.0),
            prediction_type="velocity",
            time_sampler=time_sampler if time_sampler is not None else LogitNormalTimeSampler(0.0, 1.0),
            sampler=sampler,
            num_sampling_steps=num_sampling_steps,
            grid=grid,
            grid_shift=grid_shift,
            num_classes=num_classes,
            label_dropout=label_dropout,
            guidance_scale=guidance_scale,
            sample_shape=sample_shape,
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            lr_scheduler_interval=lr_scheduler_interval,
            val_seed=val_seed,
            predict_seed=predict_seed,
        )
        self.save_hyperparameters(ignore=["network", "tokenizer", "path", "time_sampler", "optimizer", "lr_scheduler"])
        self.cosine_loss_weight = float(cosine_loss_weight)
        self.cfg_channels = None if cfg_channels is None else [int(c) for c in cfg_channels]
        self.cfg_interval = None if cfg_interval is None else (float(cfg_interval[0]), float(cfg_interval[1]))
        if tokenizer is not None:
            if tokenizer_checkpoint is not None:
                state = load_stage_state(tokenizer_checkpoint, "model.init_args.tokenizer_checkpoint",
                                         source="the AlignTok stage-3 run (configs/aligntok_stage3.yaml)")
                load_into(tokenizer, sub_state(state, "tokenizer"), "the tokenizer", tokenizer_checkpoint)
            self.register_frozen("tokenizer", tokenizer)
        else:
            self.tokenizer = None
        mean, std = load_latent_stats(latent_stats) if latent_stats is not None else (None, None)
        channels = int(self.sample_shape[0]) if self.sample_shape else 1
        self.register_buffer("latent_mean", (mean if mean is not None else torch.zeros(channels)).view(1, -1, 1, 1))
        self.register_buffer("latent_std", (std if std is not None else torch.ones(channels)).view(1, -1, 1, 1))

    # ------------------------------------------------------------------ latents
    def encode(self, images: Tensor) -> Tensor:
        if self.tokenizer is None:
            raise RuntimeError("AlignTokDiT got images but has no tokenizer; give model.tokenizer or latent batches")
        with torch.no_grad():
            latents = self.tokenizer.encode(images)
        return self.normalise(latents)

    def normalise(self, latents: Tensor) -> Tensor:
        return (latents - self.latent_mean.to(latents)) / self.latent_std.to(latents)

    def decode(self, latents: Tensor) -> Tensor:
        raw = latents * self.latent_std.to(latents) + self.latent_mean.to(latents)
        if self.tokenizer is None:
            return raw
        with torch.no_grad():
            return self.tokenizer.decode(raw)

    def batch_data(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "latent" in batch:
            return self.normalise(batch["latent"].float())
        return self.encode(batch["image"])

    # ------------------------------------------------------------------ denoisers
    def denoiser(self, labels: Optional[Tensor], guidance_scale: float = 1.0):
        """The paper-convention network as a core denoiser; CFG on ``cfg_channels`` within ``cfg_interval``."""
        if labels is None or guidance_scale == 1.0:
            return SD3DirectionAdapter(SD3Network(self.network, labels))
        null = torch.full_like(labels, self.num_classes)
        return ClassifierFreeGuidance(
            self._conditional_network,
            "velocity",
            cond={"class_labels": labels},
            null_cond={"class_labels": null},
            scale=guidance_scale,
            interval=self.cfg_interval,
            channels=self.cfg_channels,
        )

    def _conditional_network(self, x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
        return SD3DirectionAdapter(lambda z, s: unwrap_output(self.network(z, s, **cond)))(x_t, t)

    # ------------------------------------------------------------------ training
    def diffusion_loss(self, x_data: Tensor, labels: Optional[Tensor], generator: Optional[torch.Generator] = None) -> Tensor:
        """Velocity MSE (+ cosine term) per sample, in core time (identical to the paper's up to t = 1 - s)."""
        batch = x_data.shape[0]
        t = self.time_sampler(batch, x_data.device, generator=generator).to(x_data.dtype)
        noise = torch.randn(x_data.shape, generator=generator, device=x_data.device, dtype=x_data.dtype)
        x_t = self.path.add_noise(x_data, noise, t)
        prediction = self.denoiser(labels)(x_t, t).float()
        target = (x_data - noise).float()  # core velocity = -(paper's u)
        per_sample = (prediction - target).pow(2).flatten(1).mean(dim=1)
        if self.cosine_loss_weight:
            cosine = 1.0 - F.cosine_similarity(prediction, target, dim=1).flatten(1).mean(dim=1)
            per_sample = per_sample + self.cosine_loss_weight * cosine
        return per_sample

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        x_data = self.batch_data(batch)
        loss = self.diffusion_loss(x_data, self.drop_labels(self.batch_labels(batch))).mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=x_data.shape[0])
        return loss

    def _eval_loss(self, batch: Mapping[str, Tensor], batch_idx: int, name: str) -> Tensor:
        x_data = self.batch_data(batch)
        generator = torch.Generator(device=x_data.device).manual_seed(self.val_seed + batch_idx)
        loss = self.diffusion_loss(x_data, self.batch_labels(batch), generator=generator).mean()
        self.log(name, loss, prog_bar=name == "val/loss", batch_size=x_data.shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_loss(batch, batch_idx, "val/loss")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._eval_loss(batch, batch_idx, "test/loss")

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:
        """Images in [-1, 1] (latents sampled, de-normalised, decoded by the frozen tokenizer)."""
        if self.tokenizer is None:
            raise RuntimeError("AlignTokDiT.sample needs model.tokenizer to decode latents into images")
        return super().sample(num_samples, **kwargs)

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        steps = num_steps or self.num_sampling_steps
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        return steps * (2 if scale != 1.0 else 1)
