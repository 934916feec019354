"""Seconds per training step of ``Trainer.fit`` against a plain PyTorch loop (goal <= 1.10).

Both run the same ``FlowMatching`` module (the full ``flow_matching_digits_cfg`` UNet, 32x32,
batch 64 unless changed) on the same fixed batch: the plain loop does forward, loss,
backward, gradient clipping and an AdamW step by hand; Lightning does the same through
``training_step`` with its logging, checkpoint-free, progress bar off. Both are measured in
this one run (the plain loop half before and half after Lightning, so warm-up favours
neither), as the median over steps. Also prints the peak resident memory.

    python -m benchmarks.perf_training [--steps 30] [--batch 64] [--tiny]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset

from lightning_modules.diffusion_module import DiffusionModule

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class RepeatedBatch(Dataset):
    """The same samples over and over, so both loops see identical data."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, length: int) -> None:
        self.images, self.labels, self.length = images, labels, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = index % len(self.images)
        return {"image": self.images[i], "label": self.labels[i]}


class StepTimer(Callback):
    """Wall time between consecutive batch ends (one full optimizer step each)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, *args: object) -> None:
        self.stamps.append(time.perf_counter())


def build_module(tiny: bool) -> DiffusionModule:
    """The flow-matching module exactly as the config builds it."""
    config = yaml.safe_load((CONFIGS / "flow_matching_digits_cfg.yaml").read_text())["model"]
    if tiny:
        overlay = yaml.safe_load((CONFIGS / "tiny" / "flow_matching_digits_cfg.yaml").read_text())["model"]
        config["init_args"]["network"]["init_args"].update(overlay["init_args"]["network"]["init_args"])
    parser = ArgumentParser()
    parser.add_argument("--model", type=LightningModule)
    return parser.instantiate(parser.parse_object({"model": config})).model


def plain_loop_step_times(module: DiffusionModule, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    """Forward, loss, backward, AdamW step by hand; one time per step."""
    optimizer = torch.optim.AdamW(module.trainable_parameters(), lr=2e-4)
    module.train()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        labels = module.drop_labels(module.batch_labels(batch))
        loss = module.diffusion_loss(batch["image"], labels).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.trainable_parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def lightning_step_times(module: DiffusionModule, batch: dict[str, torch.Tensor], steps: int) -> list[float]:
    """The same steps through ``Trainer.fit``."""
    data = RepeatedBatch(batch["image"], batch["label"], length=len(batch["image"]) * (steps + 1))
    loader = DataLoader(data, batch_size=len(batch["image"]), shuffle=False)
    timer = StepTimer()
    trainer = Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        callbacks=[timer],
        log_every_n_steps=50,
    )
    trainer.fit(module, train_dataloaders=loader)
    return [b - a for a, b in zip(timer.stamps, timer.stamps[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tiny", action="store_true", help="use the tiny overlay's UNet")
    args = parser.parse_args()
    torch.manual_seed(0)
    module = build_module(args.tiny)
    size = module.sample_shape[-1]
    batch = {
        "image": torch.rand(args.batch, *module.sample_shape) * 2 - 1,
        "label": torch.randint(0, module.num_classes or 1, (args.batch,)),
    }
    warmup = 3
    # The plain loop runs before and after Lightning, so neither side gets the warm-up penalty.
    half = max(1, args.steps // 2)
    plain = plain_loop_step_times(module, batch, half + warmup)[warmup:]
    lightning = lightning_step_times(module, batch, args.steps + warmup)[warmup:]
    plain += plain_loop_step_times(module, batch, half + 1)[1:]
    plain_s, lightning_s = statistics.median(plain), statistics.median(lightning)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model: FlowMatching UNet {size}x{size}, batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop : {plain_s * 1000:8.1f} ms/step ({1 / plain_s:.2f} steps/s)")
    print(f"Lightning fit      : {lightning_s * 1000:8.1f} ms/step ({1 / lightning_s:.2f} steps/s)")
    print(f"ratio fit/plain    : {lightning_s / plain_s:8.3f}  (goal <= 1.10)")
    print(f"peak RSS           : {peak_mib:8.0f} MiB")


if __name__ == "__main__":
    main()
