"""VIDM's two generators as LightningModules (thesis 001 Ch. 3 §3.3, Eq. 3.3-3.5, §3.4).

Diffusion comes from the suite core (no second implementation): the linear DDPM schedule
``1e-4 -> 0.02`` over 1000 steps ([repo]) as :class:`diffusion.paths.DiscreteDDPMPath`, integer
training steps, epsilon prediction, any core sampler with diffusers' respacing grids (the [repo]
evaluates with 100 respaced DDPM steps: ``sampler: ddpm``, ``num_sampling_steps: 100``,
``grid: linspace``). Options ([repo]): learned sigma with the hybrid loss
(:mod:`diffusion.learned_variance`) and P2 weighting (:class:`diffusion.weighting.P2Weighting`,
``gamma = k = 1``). The epsilon term is the Charbonnier robustness penalty (:mod:`.losses`).

* :class:`VIDMContent` trains ``epsilon_theta`` on single frames (Eq. 3.3); ``sample`` draws frames.
* :class:`VIDMMotion` trains ``rho_phi`` on teacher-forced tuples ``(x(0), x(n-1), x(n), n)`` of real
  frames (Eq. 3.5; the flow ``z = v(x(0), x(n-1))`` is computed with gradients, SpyNet is
  fine-tuned jointly) and generates videos autoregressively (§3.3.2, :meth:`VIDMMotion.generate`):
  frame 0 from the content generator (``content_checkpoint``) or the user's own first frame,
  then per frame ``n = 1 .. N-1`` one flow ``z = v(x(0), x(n-1))`` from already generated frames,
  **computed once and cached across all denoising steps**, and one motion sample from noise. The
  counters ``content_samples``, ``motion_samples`` and ``flow_calls`` record what ran (tests,
  benchmark). With learned sigma the samplers use the epsilon half and their own fixed variances.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor

from diffusion.learned_variance import integer_steps, vlb_terms
from diffusion.paths import DiscreteDDPMPath
from diffusion.samplers import build_sampler
from diffusion.time_samplers import DiscreteTimeSampler
from diffusion.weighting import P2Weighting
from lightning_modules.diffusion_module import DiffusionModule
from lightning_modules.vidm.losses import LOSS_TYPES, epsilon_loss
from lightning_modules.vidm.networks import ContentNetwork, MotionNetwork

log = logging.getLogger(__name__)


class _VIDMBase(DiffusionModule):
    """The shared diffusion set-up and loss of both generators."""

    def __init__(self, network: Any, image_size: int, loss_type: str, eta: float, hybrid_loss: bool,
                 p2_gamma: float, p2_k: float, num_train_timesteps: int, beta_start: float, beta_end: float,
                 sampler: str, num_sampling_steps: int, grid: str, optimizer: OptimizerCallable,
                 lr_scheduler: Optional[LRSchedulerCallable], val_seed: int, predict_seed: int) -> None:
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"model.loss_type={loss_type!r} is not one of {list(LOSS_TYPES)}")
        if hybrid_loss and not network.learn_sigma:
            raise ValueError("model.hybrid_loss=true needs a network with learn_sigma: true (6 output channels)")
        if image_size % network.downsample_factor:
            raise ValueError(f"model.image_size={image_size} must be divisible by {network.downsample_factor} (the UNet depth)")
        path = DiscreteDDPMPath("linear", beta_start, beta_end, num_train_timesteps)
        super().__init__(
            network=network, path=path, prediction_type="epsilon", time_sampler=DiscreteTimeSampler(path),
            loss_weighting=P2Weighting(p2_gamma, p2_k) if p2_gamma else None, sampler=sampler,
            num_sampling_steps=num_sampling_steps, grid=grid, sample_shape=(3, image_size, image_size),
            optimizer=optimizer, lr_scheduler=lr_scheduler, val_seed=val_seed, predict_seed=predict_seed,
        )
        self.image_size, self.loss_type, self.eta, self.hybrid_loss = int(image_size), loss_type, float(eta), bool(hybrid_loss)

    def _terms(self, x0: Tensor, run: Any, generator: Optional[torch.Generator]) -> dict[str, Tensor]:
        """Per-sample ``{"eps", "vlb", "total"}`` for clean frames ``x0`` and ``run(x_t, network_time) -> out``."""
        t = self.time_sampler(x0.shape[0], x0.device, generator=generator).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.path.add_noise(x0, noise, t)
        out = run(x_t, self.path.network_time(t))
        eps = out[:, :3]
        terms = {"eps": epsilon_loss(eps, noise, self.loss_type, self.eta)}
        if self.loss_weighting is not None:
            terms["eps"] = terms["eps"] * self.loss_weighting(t, self.path).to(terms["eps"].dtype)
        total = terms["eps"]
        if self.hybrid_loss:
            terms["vlb"] = vlb_terms(self.path, x0.float(), x_t.float(), integer_steps(self.path, t),
                                     eps.detach().float(), out[:, 3:].float())
            total = total + terms["vlb"]
        terms["total"] = total
        return terms

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        raise NotImplementedError

    def _log_terms(self, prefix: str, terms: Mapping[str, Tensor], batch_size: int, **kw: Any) -> Tensor:
        loss = terms["total"].mean()
        self.log(f"{prefix}/loss", loss, batch_size=batch_size, prog_bar=prefix == "train", **kw)
        for key in ("eps", "vlb"):
            if key in terms:
                self.log(f"{prefix}/{key}", terms[key].mean(), batch_size=batch_size, **kw)
        return loss

    def _batch_size(self, batch: Mapping[str, Any]) -> int:
        return int(next(v for v in batch.values() if isinstance(v, Tensor)).shape[0])

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._log_terms("train", self.losses(batch), self._batch_size(batch))

    def _fixed_noise_loss(self, prefix: str, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        generator = torch.Generator(device=self.device).manual_seed(self.val_seed + batch_idx)
        return self._log_terms(prefix, self.losses(batch, generator), self._batch_size(batch), sync_dist=True)

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._fixed_noise_loss("val", batch, batch_idx)

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        return self._fixed_noise_loss("test", batch, batch_idx)

    def _sampler(self, sampler: Any) -> Any:
        return build_sampler(sampler) if isinstance(sampler, str) else (sampler or self.sampler)

    def nfe(self, num_steps: Optional[int] = None, sampler: Any = None, guidance_scale: Optional[float] = None) -> int:
        """Network evaluations per frame."""
        return self._sampler(sampler).num_evaluations(self.sampling_grid(int(num_steps or self.num_sampling_steps), torch.device("cpu")))


class VIDMContent(_VIDMBase):
    """The content generator ``epsilon_theta`` (Eq. 3.3) on single frames.

    Args:
        network: :class:`ContentNetwork`.
        image_size: frame side (256 UCF-101 / Sky / CLEVRER, 128 Tai-Chi).
        loss_type: ``charbonnier`` (Eq. 3.3) or ``mse`` (the ablation).
        eta: the Charbonnier constant (1e-3, our choice; the thesis gives none).
        hybrid_loss, p2_gamma, p2_k: learned-sigma VLB term and P2 weighting ([repo]: on, 1, 1).
        num_train_timesteps, beta_start, beta_end: the linear DDPM schedule.
        sampler, num_sampling_steps, grid: sampling (DDPM, 100 respaced steps in the [repo] evaluation).
        optimizer, lr_scheduler, val_seed, predict_seed: as :class:`DiffusionModule`.
    """

    def __init__(self, network: ContentNetwork, image_size: int = 256, loss_type: str = "charbonnier", eta: float = 1e-3,
                 hybrid_loss: bool = True, p2_gamma: float = 1.0, p2_k: float = 1.0, num_train_timesteps: int = 1000,
                 beta_start: float = 1e-4, beta_end: float = 0.02, sampler: str = "ddpm", num_sampling_steps: int = 100,
                 grid: str = "linspace", optimizer: OptimizerCallable = torch.optim.AdamW,
                 lr_scheduler: Optional[LRSchedulerCallable] = None, val_seed: int = 1234, predict_seed: int = 0) -> None:
        super().__init__(network, image_size, loss_type, eta, hybrid_loss, p2_gamma, p2_k, num_train_timesteps,
                         beta_start, beta_end, sampler, num_sampling_steps, grid, optimizer, lr_scheduler, val_seed, predict_seed)
        self.save_hyperparameters(ignore=["network"])

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        if "image" not in batch:
            raise KeyError(f"VIDMContent trains on frames: the batch needs 'image' (keys: {sorted(batch)})")
        return self._terms(batch["image"], lambda x_t, t: self.network(x_t, t, return_variance=True), generator)


class VIDMMotion(_VIDMBase):
    """The motion generator ``rho_phi`` (Eq. 3.5) and autoregressive video generation (module docstring).

    Args:
        network: :class:`MotionNetwork`.
        num_frames: frames per generated video (16; 128 for the long-video rows).
        content_checkpoint: a ``VIDMContent`` Lightning checkpoint (or ``.safetensors`` of its
            ``network``) loaded strictly into ``content_network`` before frame 0 is drawn; ``None``
            leaves ``content_network`` with its random weights (the tiny configs' named stand-in).
        content_network: the :class:`ContentNetwork` of that checkpoint (its architecture); ``None``:
            unconditional generation is refused and only image-to-video works.
        fps: frame rate written into predicted MP4/GIF files.
        released_checkpoint: the authors' released motion generator
            (``checkpoint_accum_clevrer_robust_400000.pth.tar``, [repo] README) imported into ``network``
            by :func:`lightning_modules.vidm.released.import_vidm_motion` (their names and shapes mapped to
            ours, strictly; ``configs/vidm_eval/released_clevrer.yaml`` is their layout and protocol).
            Results rows then record it (``released_checkpoint``).
        image_size, loss_type, eta, hybrid_loss, p2_gamma, p2_k, schedule, sampler: as :class:`VIDMContent`.
    """

    def __init__(self, network: MotionNetwork, num_frames: int = 16, content_checkpoint: Optional[str] = None,
                 content_network: Optional[ContentNetwork] = None, image_size: int = 256,
                 loss_type: str = "charbonnier", eta: float = 1e-3, hybrid_loss: bool = True, p2_gamma: float = 1.0,
                 p2_k: float = 1.0, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 sampler: str = "ddpm", num_sampling_steps: int = 100, grid: str = "linspace",
                 optimizer: OptimizerCallable = torch.optim.AdamW, lr_scheduler: Optional[LRSchedulerCallable] = None,
                 val_seed: int = 1234, predict_seed: int = 0, fps: int = 8,
                 released_checkpoint: Optional[str] = None) -> None:
        if num_frames < 2:
            raise ValueError(f"model.num_frames={num_frames} must be >= 2 (a first frame and at least one motion frame)")
        super().__init__(network, image_size, loss_type, eta, hybrid_loss, p2_gamma, p2_k, num_train_timesteps,
                         beta_start, beta_end, sampler, num_sampling_steps, grid, optimizer, lr_scheduler, val_seed, predict_seed)
        self.save_hyperparameters(ignore=["network", "content_network"])
        self.num_frames, self.fps = int(num_frames), int(fps)
        self.released_checkpoint = released_checkpoint
        self.loads_own_weights = bool(released_checkpoint)  # cli.py: test / predict need no --ckpt_path then
        if released_checkpoint:
            from lightning_modules.vidm.released import import_vidm_motion

            import_vidm_motion(self.network, released_checkpoint)
        self.content_checkpoint = content_checkpoint
        self.content: Optional[ContentNetwork] = None
        if content_network is not None:  # frozen: outside the optimizer, EMA and this module's checkpoint
            self.register_frozen("content", content_network)
        self._content_loaded = False
        self.content_samples = self.motion_samples = self.flow_calls = 0
        #: frame 0 comes from an untrained content network (the tiny configs' stand-in): rows say "random"
        self.uses_random_weights = content_network is not None and not content_checkpoint
        context = getattr(network, "context", None)
        if context is not None and context.diffusion_timesteps != num_train_timesteps:
            raise ValueError(f"model.network.diffusion_timesteps={context.diffusion_timesteps} must equal "
                             f"model.num_train_timesteps={num_train_timesteps} (PosGN normalises t over the training steps)")
        if context is not None and self.num_frames > context.video_timesteps:
            raise ValueError(f"model.num_frames={self.num_frames} exceeds model.network.video_timesteps="
                             f"{context.video_timesteps} (PosGN normalises n over that many frames)")

    # ------------------------------------------------------------------ training
    @staticmethod
    def tuples_from_clips(video: Tensor, generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        """Teacher-forced tuples from evaluation clips ``[B, T, 3, H, W]``: ``n`` uniform in ``1 .. T-1``."""
        b, frames = video.shape[:2]
        if frames < 2:
            raise ValueError(f"motion tuples need clips of >= 2 frames, got {frames}")
        n = torch.randint(1, frames, (b,), generator=generator, device=video.device)
        rows = torch.arange(b, device=video.device)
        return {"first": video[:, 0], "previous": video[rows, n - 1], "target": video[rows, n], "frame_index": n}

    def losses(self, batch: Mapping[str, Tensor], generator: Optional[torch.Generator] = None) -> dict[str, Tensor]:
        if "first" not in batch and "video" in batch:  # validation / test clips
            batch = self.tuples_from_clips(batch["video"], generator)
        missing = [k for k in ("first", "previous", "target", "frame_index") if k not in batch]
        if missing:
            raise KeyError(f"VIDMMotion trains on tuples (first, previous, target, frame_index): missing {missing}")
        first, previous, target, n = batch["first"], batch["previous"], batch["target"], batch["frame_index"]
        flow = self.network.compute_flow(first, previous)  # with gradients: SpyNet is fine-tuned jointly
        return self._terms(target, lambda x_t, t: self.network(x_t, t, n, first, flow, return_variance=True), generator)

    # ------------------------------------------------------------------ content generator
    def _load_content(self) -> None:
        if self._content_loaded or self.content is None or not self.content_checkpoint:
            return
        file = Path(self.content_checkpoint).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"model.content_checkpoint={self.content_checkpoint!r} does not exist; train "
                                    f"configs/vidm_content.yaml first (its checkpoints/last.ckpt)")
        # the content run's EMA export (.safetensors, names of VIDMContent's parameters) or its Lightning checkpoint
        from lightning_modules.components.released_weights import KeyMap, import_released

        import_released(self.content, file, KeyMap(strip_prefixes=("network.",)), what="model.content_network",
                        key="model.init_args.content_checkpoint", containers=("state_dict",),
                        hint="A VIDMContent run of the same content_network config (its EMA export or last.ckpt).")
        self._content_loaded = True

    @torch.no_grad()
    def sample_first_frames(self, noise: Tensor, sampler: Any = None, num_steps: Optional[int] = None,
                            generator: Optional[torch.Generator] = None) -> Tensor:
        """Frame 0 from the content generator (one content sample per video)."""
        if self.content is None:
            raise ValueError("VIDMMotion has no content generator: set model.content_network and model.content_checkpoint, "
                             "or give the first frames (image-to-video)")
        self._load_content()
        from diffusion.denoisers import NetworkDenoiser

        denoiser = NetworkDenoiser(self.content, self.path, "epsilon")
        grid = self.sampling_grid(int(num_steps or self.num_sampling_steps), noise.device)
        self.content_samples += noise.shape[0]
        return self._sampler(sampler).sample(denoiser, self.path, noise, grid, generator=generator).clamp(-1, 1)

    # ------------------------------------------------------------------ autoregressive generation
    class _CachedFlowDenoiser(torch.nn.Module):
        """``rho_phi`` at fixed (n, x(0), z): the flow is an input, computed once per frame."""

        prediction_type = "epsilon"

        def __init__(self, network: MotionNetwork, path: DiscreteDDPMPath, n: Tensor, first: Tensor, flow: Optional[Tensor],
                     previous: Optional[Tensor] = None) -> None:
            super().__init__()
            self.network, self.path, self.n, self.first, self.flow = network, path, n, first, flow
            self.previous = previous  # set only for the uncached baseline: the flow is recomputed every step

        def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
            tt = torch.as_tensor(t, device=x_t.device)
            tt = tt.expand(x_t.shape[0]) if tt.ndim == 0 else tt
            flow = self.flow if self.previous is None else self.network.compute_flow(self.first, self.previous)
            return self.network(x_t, self.path.network_time(tt), self.n, self.first, flow)

    @torch.no_grad()
    def generate(self, num_videos: int = 1, *, num_frames: Optional[int] = None, first_frames: Optional[Tensor] = None,
                 num_steps: Optional[int] = None, sampler: Any = None, generator: Optional[torch.Generator] = None,
                 progress: bool = False, cache_flow: bool = True) -> Tensor:
        """Videos ``[B, N, 3, S, S]`` in [-1, 1]: content frame (or ``first_frames``), then N-1 motion samples.

        ``cache_flow=False`` recomputes the flow at every denoising step (the uncached baseline of
        ``benchmarks/perf_vidm.py``; the result is the same, the cost is not).
        """
        frames = int(num_frames or self.num_frames)
        if frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {frames}")
        context = getattr(self.network, "context", None)
        if context is not None and frames > context.video_timesteps:
            raise ValueError(f"num_frames={frames} exceeds the PosGN range of {context.video_timesteps} frames")
        shape = (3, self.image_size, self.image_size)
        if first_frames is None:
            noise = torch.randn((num_videos, *shape), generator=generator, device=self.device)
            first = self.sample_first_frames(noise, sampler, num_steps, generator)
        else:
            first = first_frames.to(self.device, torch.float32)
            if tuple(first.shape[1:]) != shape:
                raise ValueError(f"first_frames must be [B, {shape[0]}, {shape[1]}, {shape[2]}], got {tuple(first.shape)}")
        b = first.shape[0]
        chosen = self._sampler(sampler)
        grid = self.sampling_grid(int(num_steps or self.num_sampling_steps), self.device)
        video = [first]
        for n in range(1, frames):
            flow = None
            if cache_flow:
                flow = self.network.compute_flow(first, video[-1])  # once per frame, reused at every step
                self.flow_calls += int(flow is not None)
            index = torch.full((b,), n, device=self.device, dtype=torch.long)
            previous = None if cache_flow else video[-1]
            denoiser = self._CachedFlowDenoiser(self.network, self.path, index, first, flow, previous)
            noise = torch.randn((b, *shape), generator=generator, device=self.device)
            video.append(chosen.sample(denoiser, self.path, noise, grid, generator=generator, progress=progress).clamp(-1, 1))
            self.motion_samples += b
        return torch.stack(video, dim=1)

    @torch.no_grad()
    def sample_for_batch(self, batch: Mapping[str, Tensor], *, num_steps: Optional[int] = None, sampler: Any = None,
                         guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None) -> Tensor:
        """Image-to-video from each real clip's first frame, as long as the clip (the released model's protocol:
        no content generator was published; ``per_batch_generation: true`` in the evaluation callback)."""
        video = batch["video"]
        return self.generate(video.shape[0], num_frames=video.shape[1], first_frames=video[:, 0], num_steps=num_steps,
                             sampler=sampler, generator=generator)

    @torch.no_grad()
    def sample(self, num_samples: int, *, labels: Optional[Tensor] = None, num_steps: Optional[int] = None,  # type: ignore[override]
               sampler: Any = None, guidance_scale: Optional[float] = None, generator: Optional[torch.Generator] = None,
               noise: Optional[Tensor] = None, progress: bool = False) -> Tensor:
        """Unconditional videos for the evaluation callback (FVD / video IS / frame FID)."""
        return self.generate(num_samples, num_steps=num_steps, sampler=sampler, generator=generator, progress=progress)

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        """Sample requests -> videos; the user's first frames -> image-to-video (see ``predict.py``)."""
        from lightning_modules.vidm.predict import predict_videos

        predict_videos(self, batch, batch_idx)


__all__ = ["VIDMContent", "VIDMMotion"]
