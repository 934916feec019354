"""Step time of ``Trainer.fit`` with and without ``EMACallback`` (goal: ratio <= 1.03).

Two networks: a tiny MLP and a ~100M-parameter stack of ``Linear(2048, 2048)`` layers
(plus a frozen "VAE" layer that the EMA must ignore). Each optimizer step is timed from
``on_train_batch_start`` to the end of ``on_train_batch_end`` (the EMA update runs in the
latter), with the device synchronised.

Two measurements, both in this one process:

- *paired*: one run with ``update_every=2``; steps with an EMA update are compared with
  the steps in between (same process, same data, interleaved step by step, so machine-load
  drift cancels). Its ratio is the cost of ``update_every=1``; with ``update_every=k`` the
  overhead is ``(ratio - 1) / k``, printed for ``--every``.
- *separate runs*: EMA off / on (every step) alternating ``--repeats`` times, medians compared.

Also printed: one bare EMA update (the fused ``torch._foreach_lerp_``) relative to the step.

    python -m benchmarks.perf_ema [--steps 12] [--repeats 2] [--batch 32] [--device cpu|cuda] [--every 10]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from callbacks.ema import EMACallback


class Stack(LightningModule):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        self.network = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.SiLU()) for _ in range(depth)])
        self.vae = nn.Linear(width, width).requires_grad_(False)

    def trainable_parameters(self):
        return list(self.network.parameters())

    def training_step(self, batch, batch_idx):
        return self.network(self.vae(batch)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.AdamW(self.trainable_parameters(), lr=1e-4, foreach=True)


class Repeat(Dataset):
    def __init__(self, x: torch.Tensor, n: int) -> None:
        self.x, self.n = x, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i % len(self.x)]


class StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    def _sync(self, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._t0)


class UpdateMarker(Callback):
    """Records, per step, whether the EMA callback updated (placed after it)."""

    def __init__(self, ema: EMACallback) -> None:
        self.ema, self.flags, self._n = ema, [], 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.flags.append(self.ema.num_updates != self._n)
        self._n = self.ema.num_updates


def run(width: int, depth: int, batch: int, steps: int, warmup: int, ema_every: int | None, device: str,
        paired: bool = False):
    torch.manual_seed(0)
    module = Stack(width, depth)
    timer = StepTimer()
    callbacks: list[Callback] = []
    marker = None
    if ema_every:
        ema = EMACallback(decay=0.9999, update_every=ema_every)
        callbacks.append(ema)
        if paired:
            marker = UpdateMarker(ema)
            callbacks.append(marker)
    callbacks.append(timer)  # last: its end time includes the EMA update
    trainer = Trainer(
        accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_steps=steps + warmup, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
    )
    data = DataLoader(Repeat(torch.randn(batch, width), (steps + warmup) * batch), batch_size=batch)
    trainer.fit(module, data)
    if paired:
        return timer.times[warmup:], marker.flags[warmup:]
    return timer.times[warmup:]


def bare_update_seconds(width: int, depth: int, device: str, n: int = 5) -> float:
    module = Stack(width, depth).to(device)
    ema = EMACallback(decay=0.9999)
    ema.update(module)  # binds and copies
    ema.update(module)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        ema.update(module)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--every", type=int, default=10, help="also measure update_every=k")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", choices=["tiny", "100m"], default=None)
    args = p.parse_args()

    sizes = {"tiny": (64, 2), "100m": (2048, 24)}
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"steps={args.steps} warmup={args.warmup} repeats={args.repeats} batch={args.batch}")
    print(f"{'network':>8} {'params':>11} {'paired: no-update s':>20} {'update s':>9} {'ratio':>7} "
          f"{'every' + str(args.every) + ' ratio':>13} | {'runs: off s':>11} {'on s':>9} {'ratio':>7} | "
          f"{'bare update/step':>16}")
    for name, (width, depth) in sizes.items():
        if args.only and name != args.only:
            continue
        n_params = depth * (width * width + width)
        steps = args.steps * (20 if name == "tiny" else 1)  # sub-millisecond steps need many samples
        pair_times, flags = run(width, depth, args.batch, 2 * steps, args.warmup, 2, args.device, paired=True)
        upd = statistics.median(t for t, f in zip(pair_times, flags) if f)
        plain = statistics.median(t for t, f in zip(pair_times, flags) if not f)
        paired_ratio = upd / plain
        times: dict[str, list[float]] = {"off": [], "on": []}
        for _ in range(args.repeats):  # alternate so drifting machine load hits both alike
            for key, every in (("off", None), ("on", 1)):
                times[key] += run(width, depth, args.batch, steps, args.warmup, every, args.device)
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        bare = bare_update_seconds(width, depth, args.device)
        every_ratio = 1 + (paired_ratio - 1) / args.every
        print(f"{name:>8} {n_params:>11,} {plain:>20.5f} {upd:>9.5f} {paired_ratio:>7.3f} {every_ratio:>13.3f} | "
              f"{off:>11.5f} {on:>9.5f} {on / off:>7.3f} | {bare / plain:>16.2%}", flush=True)


if __name__ == "__main__":
    main()
