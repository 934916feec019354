"""Sample grids and videos from fixed noise, to TensorBoard and to files in the run folder.

Every ``every_n_steps`` optimizer steps and after each validation, ``MediaLogger`` calls
``pl_module.sample(num_samples, noise=fixed_noise)`` (the ``DiffusionModule`` contract)
with the *same* noise every time, so successive grids show how one set of samples
evolves rather than sampling noise. The noise is drawn once on the CPU from ``seed``
with the module's ``sample_shape``; a module without ``sample_shape`` gets a freshly
seeded ``generator`` instead (equally fixed, but device-dependent).

Output ``[B, C, H, W]`` in [-1, 1] is an image batch; ``[B, T, C, H, W]`` is a video
batch (the ``video`` layout of docs/architecture.md).

- TensorBoard (every ``TensorBoardLogger`` of the trainer): tag ``media/<when>``, one image
  grid; videos as frame strips (one row per sample, time left to right). A ``WandbLogger``
  gets the same picture (``log_image``); with a ``CSVLogger`` the files below are the record.
- Files under ``<trainer.log_dir>/media/``: ``<when>_step<N>.png`` (the grid or strip), and
  for videos ``<when>_step<N>.gif`` plus ``.mp4`` when PyAV is importable (each frame is the
  grid of all samples at that time).

Conditional models (pose transfer, restoration, tokenizers, video from references) have no
meaningful unconditional ``sample``: with ``inputs: val_batch`` the logger keeps the first
``num_samples`` items of the first validation batch and logs
``pl_module.sample_for_batch(batch, generator=<seeded>)`` for those same inputs every time.

When an ``EMACallback`` is among the trainer's callbacks and ``use_ema`` is set, sampling
uses the EMA weights (``ema.swapped``). All ranks sample (a sharded network needs every rank
for its forward); only global rank 0 writes.
"""
from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_modules.components.run_dir import remember_run_dir, run_dir

log = logging.getLogger(__name__)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> [0, 255] uint8."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_grid(images: torch.Tensor, nrow: int, pad: int = 2) -> torch.Tensor:
    """``[N, C, H, W]`` -> one ``[C, rows*(H+pad)+pad, nrow*(W+pad)+pad]`` grid (padding value -1: black)."""
    n, c, h, w = images.shape
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), -1.0)
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i]
    return grid


def _to_rgb_hwc(grid_u8: torch.Tensor) -> torch.Tensor:
    """``[C, H, W]`` uint8 with C in {1, 3, 4} -> ``[H, W, 3]``."""
    c = grid_u8.shape[0]
    if c == 1:
        grid_u8 = grid_u8.expand(3, -1, -1)
    elif c >= 3:
        grid_u8 = grid_u8[:3]
    else:
        raise ValueError(f"MediaLogger: cannot show {c}-channel samples as images")
    return grid_u8.permute(1, 2, 0).contiguous()


def save_png(grid: torch.Tensor, path: Path) -> None:
    from PIL import Image

    Image.fromarray(_to_rgb_hwc(to_uint8(grid)).numpy()).save(path)


def save_gif(frames: list[torch.Tensor], path: Path, fps: float) -> None:
    from PIL import Image

    pil = [Image.fromarray(_to_rgb_hwc(to_uint8(f)).numpy()) for f in frames]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=max(1, int(round(1000 / fps))), loop=0)


def save_mp4(frames: list[torch.Tensor], path: Path, fps: float) -> bool:
    """Encode with PyAV (H.264, else MPEG-4); returns False when PyAV is not installed."""
    try:
        import av
    except ImportError:
        return False
    from fractions import Fraction

    arrays = [_to_rgb_hwc(to_uint8(f)).numpy() for f in frames]
    h, w = arrays[0].shape[:2]
    h2, w2 = h + h % 2, w + w % 2  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = w2, h2, "yuv420p"
        for arr in arrays:
            if (h2, w2) != (h, w):
                import numpy as np

                arr = np.pad(arr, ((0, h2 - h), (0, w2 - w), (0, 0)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return True


class MediaLogger(Callback):
    """Log samples from fixed noise every N steps and after validation.

    Args:
        every_n_steps: sample after every N-th optimizer step (0 or None: only at validation).
        num_samples: samples per grid.
        fps: frame rate of videos (GIF/MP4).
        seed: seed of the fixed noise.
        num_steps: sampler steps (``None``: the module's default).
        nrow: images per grid row (default: about sqrt(num_samples)).
        use_ema: sample with the EMA weights when an ``EMACallback`` is present.
        on_validation: also log after each validation epoch (not the sanity check).
        sample_kwargs: extra keyword arguments for ``pl_module.sample`` (e.g. ``guidance_scale``).
        inputs: ``"noise"`` (``sample`` from fixed noise) or ``"val_batch"`` (``sample_for_batch`` on
            fixed validation inputs, for conditional models).
    """

    def __init__(
        self,
        every_n_steps: Optional[int] = 1000,
        num_samples: int = 16,
        fps: float = 8.0,
        seed: int = 0,
        num_steps: Optional[int] = None,
        nrow: Optional[int] = None,
        use_ema: bool = True,
        on_validation: bool = True,
        sample_kwargs: Optional[dict[str, Any]] = None,
        inputs: str = "noise",
    ) -> None:
        super().__init__()
        if inputs not in ("noise", "val_batch"):
            raise ValueError(f"MediaLogger: inputs must be 'noise' or 'val_batch', got {inputs!r}")
        self.inputs = inputs
        self._batch: Optional[dict[str, Any]] = None
        self._failed = False
        if num_samples < 1:
            raise ValueError(f"MediaLogger: num_samples must be >= 1, got {num_samples}")
        if fps <= 0:
            raise ValueError(f"MediaLogger: fps must be > 0, got {fps}")
        self.every_n_steps = every_n_steps or 0
        self.num_samples = num_samples
        self.fps = fps
        self.seed = seed
        self.num_steps = num_steps
        self.nrow = nrow or max(1, int(math.ceil(math.sqrt(num_samples))))
        self.use_ema = use_ema
        self.on_validation = on_validation
        self.sample_kwargs = dict(sample_kwargs or {})
        self._noise: Optional[torch.Tensor] = None
        self._last_step = -1
        self.written: list[Path] = []

    # ------------------------------------------------------------------ sampling
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        remember_run_dir(trainer)  # the one broadcast, on every rank; later reads are local

    def fixed_noise(self, pl_module: LightningModule) -> Optional[torch.Tensor]:
        shape = getattr(pl_module, "sample_shape", None)
        if not shape:
            return None
        if self._noise is None or tuple(self._noise.shape[1:]) != tuple(shape):
            g = torch.Generator().manual_seed(self.seed)
            self._noise = torch.randn((self.num_samples, *shape), generator=g)
        return self._noise

    def _ema(self, trainer: Trainer) -> Any:
        if not self.use_ema:
            return None
        from callbacks.ema import EMACallback

        return next((cb for cb in trainer.callbacks if isinstance(cb, EMACallback)), None)

    def fixed_batch(self, trainer: Trainer) -> dict[str, Any]:
        """The first ``num_samples`` items of the first validation batch, kept on the CPU."""
        if self._batch is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "val_dataloader"):
                raise RuntimeError("MediaLogger(inputs='val_batch') needs a datamodule with a val_dataloader")
            batch = next(iter(datamodule.val_dataloader()))
            if not isinstance(batch, dict):
                raise TypeError(f"MediaLogger(inputs='val_batch') expects dict batches, got {type(batch).__name__}")
            n = self.num_samples
            self._batch = {k: (v[:n].detach().cpu() if isinstance(v, torch.Tensor) else
                               (v[:n] if isinstance(v, (list, tuple)) else v)) for k, v in batch.items()}
        return self._batch

    @torch.no_grad()
    def generate(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        """Samples from the fixed noise or inputs (EMA weights if available), as a CPU float tensor."""
        if self.inputs == "val_batch":
            batch = {k: (v.to(pl_module.device) if isinstance(v, torch.Tensor) else v)
                     for k, v in self.fixed_batch(trainer).items()}
            generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
            ema = self._ema(trainer)
            was_training = pl_module.training
            pl_module.eval()
            try:
                with ema.swapped(pl_module) if ema is not None else contextlib.nullcontext():
                    out = pl_module.sample_for_batch(batch, generator=generator)  # type: ignore[operator]
            finally:
                pl_module.train(was_training)
            return out.detach().float().cpu()
        kwargs = dict(self.sample_kwargs)
        if self.num_steps is not None:
            kwargs["num_steps"] = self.num_steps
        noise = self.fixed_noise(pl_module)
        if noise is not None:
            kwargs["noise"] = noise.to(pl_module.device)
        else:
            kwargs["generator"] = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        ema = self._ema(trainer)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with ema.swapped(pl_module) if ema is not None else contextlib.nullcontext():
                out = pl_module.sample(self.num_samples, **kwargs)
        finally:
            pl_module.train(was_training)
        return out.detach().float().cpu()

    # ------------------------------------------------------------------ writing
    def media_dir(self, trainer: Trainer) -> Path:
        return Path(run_dir(trainer)) / "media"

    def write(self, trainer: Trainer, samples: torch.Tensor, when: str, step: int) -> list[Path]:
        """Write ``samples`` to TensorBoard and files; returns the files written."""
        folder = self.media_dir(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{when}_step{step:08d}"
        files: list[Path] = []
        if samples.ndim == 4:
            picture = make_grid(samples, self.nrow)
            frames: list[torch.Tensor] = []
        elif samples.ndim == 5:
            b, t = samples.shape[:2]
            picture = make_grid(samples.reshape(b * t, *samples.shape[2:]), nrow=t)  # strip: a row per sample
            frames = [make_grid(samples[:, i], self.nrow) for i in range(t)]
        else:
            raise ValueError(f"MediaLogger: sample() returned shape {tuple(samples.shape)}; expected 4-D or 5-D")
        save_png(picture, stem.with_suffix(".png"))
        files.append(stem.with_suffix(".png"))
        if frames:
            save_gif(frames, stem.with_suffix(".gif"), self.fps)
            files.append(stem.with_suffix(".gif"))
            if save_mp4(frames, stem.with_suffix(".mp4"), self.fps):
                files.append(stem.with_suffix(".mp4"))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                img = to_uint8(picture)
                if img.shape[0] == 2 or img.shape[0] > 4:
                    img = img[:1]
                logger.experiment.add_image(f"media/{when}", img, global_step=step, dataformats="CHW")
            elif type(logger).__name__ == "WandbLogger":  # W&B media panel; CSVLogger has none: the files above
                logger.log_image(key=f"media/{when}", images=[_to_rgb_hwc(to_uint8(picture)).numpy()], step=step)
        self.written += files
        return files

    def log_samples(self, trainer: Trainer, pl_module: LightningModule, when: str) -> None:
        if self._failed:
            return
        try:
            samples = self.generate(trainer, pl_module)
        except (NotImplementedError, TypeError, RuntimeError, ValueError) as err:
            # A display aid must not end a training run: say why once and stop logging media.
            self._failed = True
            log.warning("MediaLogger: no samples for %s (%s: %s); media logging is off for this run",
                        type(pl_module).__name__, type(err).__name__, err)
            return
        if trainer.is_global_zero:
            self.write(trainer, samples, when, trainer.global_step)

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if not self.every_n_steps or step == 0 or step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        self.log_samples(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.on_validation or trainer.sanity_checking:
            return
        self.log_samples(trainer, pl_module, "val")
