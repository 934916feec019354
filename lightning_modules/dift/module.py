"""``DiFT``: training, sampling, autoregression and predict of the diffusion field transformer (thesis 001 Ch. 4).

Diffusion comes from the suite core: the DDPM linear beta table (1e-4 -> 0.02, T = 1000; the
ADM/DiT schedule the thesis follows, §4.4 [ext]) as :class:`diffusion.paths.DiscreteDDPMPath`,
integer training steps, epsilon prediction ("standard epsilon-prediction", digest §3.4) and
the core samplers (``ddpm`` / ``ddim``; the thesis gives no step count). Classifier-free
guidance is the core's :class:`diffusion.ClassifierFreeGuidance` with the thesis's fixed
scale 8.5 on the first three channels of each denoised token (``guidance_channels``; §4.4,
"following DiT"), in one batched network call per step; CFG dropout replaces the text (or
view) embedding by the learned null embedding with probability ``cfg_dropout`` ([GAP] 0.1,
DiT's value; the thesis implies CFG training without a rate).

Training step (§4.3.1): a field's views -> autoencoder latents -> the :class:`ViewSampler`'s
n views (or uniform token subset) -> noise (cross-view consistent by default) at per-view
timesteps -> epsilon MSE on the noisy views. Per-view timesteps: ``timestep_mode='shared'``
(one t per example, the one-shot case) or ``'independent'``; with probability
``context_probability`` a leading run of views is kept clean (network step ``k = -1``) as
autoregressive context and excluded from the loss (``context_mode='random'``: 1..n-1 views;
``'all_but_last'``: n-1, next-frame prediction as in the game). [GAP] the thesis does not say
how context frames are presented in training; this is the reading that makes Eq. 4.1's
sampling match training.

Sampling: image (one view, one shot); 3D (n target views in one shot, conditioned on the CLIP
embedding of the input view); video (the first ``window`` frames in one shot, then each next
frame from the last ``window - 1`` frames, Eq. 4.1); game (each next frame from the last
``window - 1`` frames and its action; a start frame shorter than the window is repeated to
fill it, our choice). Both autoregressions call the network once per frame per sampler step
with exactly ``window`` views, so cost is linear in the generated frames (§4.3.2).
"""
from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from diffusion.guidance import ClassifierFreeGuidance
from diffusion.paths import DiscreteDDPMPath
from diffusion.time_samplers import DiscreteTimeSampler
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.dift.tokenizer import IdentityAutoencoder
from lightning_modules.dift.transformer import DiFTTransformer
from lightning_modules.dift.view_sampler import ViewSampler, select_views
from metrics.next_frame import check_fractions, context_positions

log = logging.getLogger(__name__)

MODALITIES = ("image", "video", "views", "game")
TIMESTEP_MODES = ("shared", "independent")
CONTEXT_MODES = ("random", "all_but_last")
_COORD_KEYS = ("frame_index", "camera", "intrinsics", "actions")


class DiFT(DiffusionModule):
    """DiFT (module docstring).

    Args:
        network: the :class:`DiFTTransformer`.
        modality: ``image``, ``video``, ``views`` (3D) or ``game``.
        autoencoder: :class:`~lightning_modules.dift.tokenizer.LDMAutoencoder` (latent,
            "resolution 16") or ``None`` for :class:`IdentityAutoencoder` (pixel, "resolution 1").
        view_embedder: the 3D "equivalent embedding" (CLIP or the stand-in); ``views`` only.
        image_size: pixel side of a view.
        view_sampler: :class:`ViewSampler` (mode, n, order, consistent noise).
        timestep_mode, context_probability, context_mode: per-view timesteps (module docstring).
        use_text: condition on ``batch["text"]`` (Table 4.3 row 1 switches it off).
        cfg_dropout: probability of the null embedding in training.
        guidance_scale, guidance_channels: CFG 8.5 on channels ``[0, 1, 2]``.
        window: sliding-window length (16 game, 8 text-to-video).
        sample_frames: frames a video sample has (predict / evaluation).
        eval_context_fractions: game only; ``None`` evaluates free rollouts (``sample_for_batch``
            rolls out every frame after the first); a list of fractions (Table 4.2: 0.1 ... 1.0)
            evaluates next-frame predictions after that fraction of the clip as real context
            (``metrics.next_frame``; ``sample_for_batch`` returns ``[B, K, 3, H, W]``, one per fraction).
    """

    def __init__(
        self,
        network: DiFTTransformer,
        modality: str = "image",
        autoencoder: Optional[nn.Module] = None,
        view_embedder: Optional[nn.Module] = None,
        image_size: int = 64,
        view_sampler: Optional[ViewSampler] = None,
        timestep_mode: str = "shared",
        context_probability: float = 0.0,
        context_mode: str = "random",
        use_text: bool = True,
        cfg_dropout: float = 0.1,
        guidance_scale: float = 8.5,
        guidance_channels: Optional[Sequence[int]] = (0, 1, 2),
        window: int = 8,
        sample_frames: int = 16,
        eval_context_fractions: Optional[Sequence[float]] = None,
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        sampler: str = "ddpm",
        num_sampling_steps: int = 250,
        grid: str = "leading",
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        val_seed: int = 1234,
        predict_seed: int = 0,
    ) -> None:
        for key, value, choices in (("modality", modality, MODALITIES), ("timestep_mode", timestep_mode, TIMESTEP_MODES),
                                    ("context_mode", context_mode, CONTEXT_MODES)):
            if value not in choices:
                raise ValueError(f"model.{key}={value!r} is not one of {list(choices)}")
        if not 0.0 <= context_probability <= 1.0:
            raise ValueError(f"model.context_probability must be in [0, 1], got {context_probability}")
        if int(window) < 1:
            raise ValueError(f"model.window must be >= 1, got {window}")
        autoencoder = autoencoder if autoencoder is not None else IdentityAutoencoder(network.in_channels)
        factor = int(getattr(autoencoder, "downsample_factor", 1))
        if image_size % factor or image_size // factor != network.latent_size:
            raise ValueError(f"model.image_size={image_size} / autoencoder factor {factor} must equal the network's latent_size {network.latent_size}")
        if int(getattr(autoencoder, "latent_channels", network.in_channels)) != network.in_channels:
            raise ValueError(f"the autoencoder has {autoencoder.latent_channels} latent channels, the network {network.in_channels}")
        if modality == "views" and view_embedder is None:
            raise ValueError("model.modality='views' needs a view_embedder (CLIPViewEmbedder or StandInViewEmbedder)")
        path = DiscreteDDPMPath("linear", beta_start, beta_end, num_train_timesteps)
        with warnings.catch_warnings():  # the base's save_hyperparameters sees our module arguments; ours below ignores them
            warnings.filterwarnings("ignore", message=r"Attribute '(autoencoder|view_embedder)' is an instance")
            super().__init__(
                network=network, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
                sampler=sampler, num_sampling_steps=num_sampling_steps, grid=grid, guidance_scale=guidance_scale,
                sample_shape=(3, image_size, image_size), optimizer=optimizer, lr_scheduler=lr_scheduler,
                val_seed=val_seed, predict_seed=predict_seed,
            )
        self.save_hyperparameters(ignore=["network", "autoencoder", "view_embedder", "view_sampler"])
        self.modality, self.autoencoder, self.view_embedder = modality, autoencoder, view_embedder
        if self.view_embedder is not None:
            self.view_embedder.requires_grad_(False)
        self.autoencoder.requires_grad_(False)
        self.image_size = int(image_size)
        self.view_sampler = view_sampler or ViewSampler(num_views=1 if modality == "image" else 8)
        self.timestep_mode, self.context_probability, self.context_mode = timestep_mode, float(context_probability), context_mode
        self.use_text = bool(use_text) and network.text is not None
        self.cfg_dropout = float(cfg_dropout)
        self.guidance_channels = list(guidance_channels) if guidance_channels is not None else None
        self.window, self.sample_frames = int(window), int(sample_frames)
        if eval_context_fractions is not None and modality != "game":
            raise ValueError(f"model.eval_context_fractions is the game's next-frame protocol (Table 4.2); modality is {modality!r}")
        self.eval_context_fractions = None if eval_context_fractions is None else check_fractions(eval_context_fractions)

    # ------------------------------------------------------------------ helpers
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.network.parameters() if p.requires_grad]

    def encode_views(self, views: Tensor) -> Tensor:
        """``[B, V, 3, H, W]`` pixels -> ``[B, V, C, h, w]`` latents (autoencoder per view)."""
        b, v = views.shape[:2]
        return self.autoencoder.encode(views.flatten(0, 1)).reshape(b, v, *self._latent_shape())

    def decode_views(self, latents: Tensor) -> Tensor:
        b, v = latents.shape[:2]
        images = self.autoencoder.decode(latents.flatten(0, 1))
        return images.reshape(b, v, *images.shape[1:]).clamp(-1, 1)

    def _latent_shape(self) -> tuple[int, int, int]:
        s = self.network.latent_size
        return (self.network.in_channels, s, s)

    def condition_embedding(self, batch: Mapping[str, Any]) -> Optional[Tensor]:
        """Text embeddings (video), the CLIP embedding of the input view (3D), else ``None``."""
        if not self.use_text:
            return None
        if self.modality == "views":
            source = batch.get("input_view")
            if source is None:
                source = batch["views"][:, 0]
            return self.view_embedder(source.to(self.device))
        text = batch.get("text")
        if text is None:
            raise KeyError(f"DiFT ({self.modality}) conditions on text but the batch has no 'text' key (keys: {sorted(batch)})")
        return text.to(self.device)

    @staticmethod
    def relative_frames(coords: dict[str, Tensor]) -> dict[str, Tensor]:
        """Frame indices relative to the window's first view (the window slides, §4.3.2)."""
        if coords.get("frame_index") is not None:
            f = coords["frame_index"].float()
            coords["frame_index"] = f - f[:, :1]
        return coords

    # ------------------------------------------------------------------ training
    def field_loss(self, batch: Mapping[str, Any], generator: Optional[torch.Generator] = None, train: bool = True) -> Tensor:
        views = batch.get("views")
        if views is None:
            raise KeyError(f"DiFT batches need 'views' [B, V, 3, H, W] (keys: {sorted(batch)})")
        b, available = views.shape[:2]
        sampler = self.view_sampler
        text = self.condition_embedding(batch)
        if sampler.mode == "view_wise":
            batch = select_views(batch, sampler.view_index(b, available, views.device, generator=generator))
        coords = self.relative_frames({k: batch[k] for k in _COORD_KEYS if batch.get(k) is not None})
        latents = self.encode_views(batch["views"].to(self.device))
        v = latents.shape[1]
        steps = self.time_sampler(b if self.timestep_mode == "shared" else b * v, latents.device, generator=generator)
        t = steps.reshape(b, 1).expand(b, v) if self.timestep_mode == "shared" else steps.reshape(b, v)
        noisy = torch.ones(b, v, dtype=torch.bool, device=latents.device)
        if self.context_probability > 0 and v > 1:
            use = torch.rand(b, device=latents.device, generator=generator) < self.context_probability
            if self.context_mode == "all_but_last":
                count = torch.full((b,), v - 1, device=latents.device)
            else:
                count = torch.randint(1, v, (b,), device=latents.device, generator=generator)
            count = torch.where(use, count, torch.zeros_like(count))
            noisy = torch.arange(v, device=latents.device).unsqueeze(0) >= count.unsqueeze(1)
            t = torch.where(noisy, t, torch.ones_like(t))  # t = 1: clean data, network step k = -1
        noise = sampler.noise(tuple(latents.shape), latents.device, latents.dtype, generator)
        tb = t.reshape(b, v, 1, 1, 1).to(latents.dtype)
        x_t = self.path.add_noise(latents, noise, tb)
        x_t = torch.where(noisy.reshape(b, v, 1, 1, 1), x_t, latents)
        drop = None
        if text is not None and train and self.cfg_dropout > 0:
            drop = torch.rand(b, device=latents.device) < self.cfg_dropout
        k = self.path.network_time(t.float())
        token_index = None
        if sampler.mode == "uniform_pairs":
            token_index = sampler.token_index(b, v * self.network.tokens_per_view, latents.device, generator=generator)
        pred = self.network(x_t, k, coords, text, drop, token_index)
        if token_index is not None:
            target = self.network.tokenizer.patchify(noise)
            index = token_index.unsqueeze(-1).expand(-1, -1, target.shape[-1])
            return (pred.float() - target.gather(1, index).float()).pow(2).mean()
        err = (pred.float() - noise.float()).pow(2).mean(dim=(2, 3, 4))
        return (err * noisy).sum() / noisy.sum().clamp_min(1)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        loss = self.field_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["views"].shape[0])
        return loss

    def _eval_loss(self, batch: Mapping[str, Any], batch_idx: int, stage: str) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        loss = self.field_loss(batch, generator=generator, train=False)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=batch["views"].shape[0], sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_loss(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        return self._eval_loss(batch, batch_idx, "test")

    # ------------------------------------------------------------------ sampling core
    def generate(
        self,
        context: Optional[Tensor],
        coords: Mapping[str, Tensor],
        num_new: int,
        text: Optional[Tensor] = None,
        *,
        num_steps: Optional[int] = None,
        sampler: Any = None,
        guidance_scale: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        noise: Optional[Tensor] = None,
    ) -> Tensor:
        """Latents of ``num_new`` views after the clean ``context [B, Vc, C, h, w]`` (or none).

        ``coords`` hold the coordinates of all ``Vc + num_new`` views (context first). The
        sampler integrates the new views only; the context enters every call at ``k = -1``.
        """
        b = text.shape[0] if context is None and text is not None else (context.shape[0] if context is not None else None)
        if b is None:
            b = next(iter(coords.values())).shape[0] if coords else (noise.shape[0] if noise is not None else 1)
        vc = 0 if context is None else context.shape[1]
        coords = self.relative_frames(dict(coords))
        if noise is None:
            noise = self.view_sampler.noise((b, num_new, *self._latent_shape()), self.device, torch.float32, generator)
        k_context = torch.full((b, vc), -1.0, device=self.device)

        def net(x_t: Tensor, t: Tensor, cond: Mapping[str, Any]) -> Tensor:
            rows = x_t.shape[0]
            reps = rows // b
            k_new = self.path.network_time(t.float()).reshape(rows, 1).expand(rows, num_new)
            x = x_t if context is None else torch.cat([context.repeat(reps, 1, 1, 1, 1).to(x_t), x_t], dim=1)
            k = torch.cat([k_context.repeat(reps, 1), k_new], dim=1)
            crd = {key: value.repeat(reps, *([1] * (value.dim() - 1))) for key, value in coords.items()}
            out = self.network(x, k, crd, cond.get("text"), cond.get("drop"))
            return out[:, vc:]

        scale = self.guidance_scale if guidance_scale is None else float(guidance_scale)
        if text is None:
            scale = 1.0  # nothing to guide (image, game: the thesis guides the text condition)
        cond = {"text": text, "drop": torch.zeros(b, dtype=torch.bool, device=self.device)}
        denoiser = ClassifierFreeGuidance(
            net, "epsilon", cond=cond, null_cond={"drop": torch.ones(1, dtype=torch.bool, device=self.device)},
            scale=scale, channels=self.guidance_channels if scale != 1.0 else None, channel_dim=2,
        )
        from diffusion.samplers import build_sampler

        sampler = build_sampler(sampler) if isinstance(sampler, str) else (sampler or self.sampler)
        grid = self.sampling_grid(num_steps or self.num_sampling_steps, self.device)
        return sampler.sample(denoiser, self.path, noise, grid, generator=generator)

    def autoregressive_rollout(
        self,
        start: Tensor,
        num_frames: int,
        text: Optional[Tensor] = None,
        actions: Optional[Tensor] = None,
        **kwargs: Any,
    ) -> Tensor:
        """Frames after the clean ``start`` latents ``[B, S, C, h, w]``: ``[B, num_frames, C, h, w]``.

        Each new frame is generated from the last ``window - 1`` frames (a start shorter than
        that is left-padded by repeating its first frame) with one network call per sampler
        step. ``actions [B, S + num_frames, A]``: the action of every frame (game).
        """
        b, s = start.shape[:2]
        w = self.window
        if actions is not None and actions.shape[1] < s + num_frames:
            raise ValueError(f"the action sequence has {actions.shape[1]} frames but the rollout needs {s + num_frames} "
                             f"({s} start + {num_frames} generated)")
        frames = list(start.unbind(1))
        pad = max(0, (w - 1) - len(frames))
        frames = [frames[0]] * pad + frames
        action_list = None if actions is None else [actions[:, 0]] * pad + list(actions.unbind(1))
        out = []
        for i in range(num_frames):
            context = torch.stack(frames[-(w - 1):], dim=1) if w > 1 else None
            end = len(frames) + 1
            coords: dict[str, Tensor] = {"frame_index": torch.arange(end - w, end, device=self.device).float().expand(b, w)}
            if action_list is not None:
                coords["actions"] = torch.stack(action_list[end - w: end], dim=1).to(self.device)
            new = self.generate(context, coords, 1, text, **kwargs)
            frames.append(new[:, 0])
            out.append(new[:, 0])
        return torch.stack(out, dim=1)

    # ------------------------------------------------------------------ public sampling API
    @torch.no_grad()
    def sample(self, num_samples: int, *, labels: Optional[Tensor] = None, num_steps: Optional[int] = None, sampler: Any = None,
               guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None, progress: bool = False) -> Tensor:
        """Unconditional images ``[B, 3, H, W]`` (the image modality; Table 4.1's CIFAR-10 column)."""
        if self.modality != "image":
            raise ValueError(f"DiFT.sample draws unconditional images; the {self.modality} modality samples from a batch "
                             "(sample_for_batch / predict)")
        if noise is not None and noise.dim() == 4:
            noise = noise.unsqueeze(1)
        latents = self.generate(None, {}, 1, None, num_steps=num_steps, sampler=sampler, generator=generator,
                                noise=noise if noise is not None else
                                torch.randn((num_samples, 1, *self._latent_shape()), generator=generator, device=self.device))
        return self.decode_views(latents)[:, 0]

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Any], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """One output per real item: a video (``[B, T, 3, H, W]``), the target views, or the game frames."""
        kw = dict(num_steps=num_steps, sampler=sampler, guidance_scale=guidance_scale, generator=generator)
        views = batch["views"].to(self.device)
        b, v = views.shape[:2]
        text = self.condition_embedding(batch)
        if self.modality == "image":
            return self.sample(b, **kw)
        if self.modality == "views":
            coords = {k: batch[k].to(self.device) for k in ("camera", "intrinsics")}
            return self.decode_views(self.generate(None, coords, v, text, **kw))
        if self.modality == "video":
            return self.sample_video(text, v, **kw)
        if self.eval_context_fractions is not None:
            return self.next_frame_predictions(batch, self.eval_context_fractions, **kw)
        latents = self.encode_views(views[:, :1])
        return self.decode_views(self.autoregressive_rollout(latents, v - 1, None, batch["actions"].to(self.device), **kw))

    @torch.no_grad()
    def next_frame_predictions(self, batch: Mapping[str, Any], fractions: Sequence[float], **kw: Any) -> Tensor:
        """Table 4.2's protocol (``metrics.next_frame``): for each fraction ``f`` of the clip's
        ``N = V - 1`` evaluated frames, the frame after the first ``ceil(f N)`` real frames, generated
        from them (the last ``window - 1``: the sliding window) and the real actions; ``[B, K, 3, H, W]``."""
        views, actions = batch["views"].to(self.device), batch["actions"].to(self.device)
        latents = self.encode_views(views)
        frames = []
        for position in context_positions(fractions, views.shape[1] - 1):
            context = latents[:, : position + 1]
            frames.append(self.autoregressive_rollout(context, 1, None, actions[:, : position + 2], **kw)[:, 0])
        return self.decode_views(torch.stack(frames, dim=1))

    def sample_video(self, text: Optional[Tensor], num_frames: int, batch_size: int = 1, **kw: Any) -> Tensor:
        """A text-to-video sample: the first window in one shot, then the sliding window."""
        b = text.shape[0] if text is not None else batch_size
        first = min(self.window, num_frames)
        coords = {"frame_index": torch.arange(first, device=self.device).float().expand(b, first)}
        latents = self.generate(None, coords, first, text, **kw)
        if num_frames > first:
            latents = torch.cat([latents, self.autoregressive_rollout(latents, num_frames - first, text, **kw)], dim=1)
        return self.decode_views(latents)

    # ------------------------------------------------------------------ predict
    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        from lightning_modules.dift.predict import write_predictions

        write_predictions(self, batch, batch_idx)
