"""Training speed of the lecture's GAN/VAE models and the cost of the adversarial base.

Two measurements, both printed as a Markdown table:

1. ``--models``: for each ``configs/lecture_*.yaml`` + its ``tiny/`` overlay, the median seconds per
   training batch of ``Trainer.fit`` (one D step + one G step for the GANs, one step for the VAE),
   as batches/s, and the peak resident memory of a fresh process per model (``ru_maxrss``; the
   CUDA peak when a GPU runs it).
2. ``--ratio``: :class:`AdversarialModule` (through ``Trainer.fit``) against a hand-written
   two-optimiser loop doing the same work on the same networks and batch (G forward once, D step on
   the detached fakes, then G step with D frozen), median per iteration, the plain loop half before
   and half after Lightning so warm-up favours neither, in three rounds (the median round is
   printed: the CPU machines are shared). Goal: ratio <= 1.05. Measured on DCGAN
   networks at 32x32, base width 32, batch 64 (``--ratio-size`` etc.): with the tiny networks a step
   is ~2 ms and the ratio would measure Python call overhead only, so both sizes are printed.

    python -m benchmarks.perf_lecture_gans [--models] [--ratio] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from jsonargparse import ArgumentParser
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader, Dataset

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"
MODELS = ("lecture_gan_toy", "lecture_vae", "lecture_dcgan", "lecture_cgan", "lecture_pix2pix", "lecture_cyclegan", "lecture_pixelcnn")


class StepTimer(Callback):
    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, *args: object) -> None:
        self.stamps.append(time.perf_counter())


def build(name: str) -> tuple[LightningModule, LightningDataModule]:
    """Model and data exactly as ``cli.py fit --config <name> --config tiny/<name>`` builds them."""
    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    parser.add_subclass_arguments(LightningDataModule, "data", required=True)
    parser.add_argument("--trainer", type=dict, default={})
    parser.add_argument("--seed_everything", type=int, default=0)
    cfg = parser.parse_args(["--config", str(CONFIGS / f"{name}.yaml"), "--config", str(CONFIGS / "tiny" / f"{name}.yaml")])
    init = parser.instantiate_classes(cfg)
    return init.model, init.data


def _trainer(batches: int, model: LightningModule, timer: StepTimer) -> Trainer:
    per_batch = 2 if not model.automatic_optimization else 1  # Lightning counts both players' steps
    return Trainer(max_steps=per_batch * batches, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, limit_val_batches=0, callbacks=[timer], accelerator="auto", devices=1)


def measure_model(name: str, steps: int) -> dict:
    torch.manual_seed(0)
    model, data = build(name)
    timer = StepTimer()
    _trainer(steps + 3, model, timer).fit(model, data)
    deltas = [b - a for a, b in zip(timer.stamps[3:], timer.stamps[4:])]
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": name, "batches_per_s": 1 / statistics.median(deltas), "peak_mib": peak,
            "device": "cuda" if torch.cuda.is_available() else "cpu"}


class _Repeat(Dataset):
    def __init__(self, images: torch.Tensor, length: int) -> None:
        self.images, self.length = images, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index % len(self.images)]}


def measure_ratio(size: int, width: int, batch: int, steps: int) -> dict:
    from lightning_modules.baselines.dcgan import DCGAN
    from lightning_modules.baselines.gan_networks import DCGANDiscriminator, DCGANGenerator
    from lightning_modules.components.gan_losses import discriminator_loss, generator_loss

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    images = torch.rand(batch, 1, size, size) * 2 - 1
    adam = lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    nets = lambda: (DCGANGenerator(32, size, 1, width), DCGANDiscriminator(size, 1, width))  # noqa: E731

    def plain(iterations: int) -> list[float]:
        g, d = (n.to(device) for n in nets())
        g_opt, d_opt = adam(g.parameters()), adam(d.parameters())
        real = images.to(device)
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            fake = g(torch.randn(batch, 32, device=device))
            d_opt.zero_grad(set_to_none=True)
            discriminator_loss("minimax", d(real), d(fake.detach())).backward()
            d_opt.step()
            d.requires_grad_(False)
            g_opt.zero_grad(set_to_none=True)
            generator_loss("minimax", d(fake)).backward()
            g_opt.step()
            d.requires_grad_(True)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return times[2:]

    rounds = []
    for _ in range(3):  # the machine is shared: three interleaved rounds, the median round reported
        first = plain(steps // 2 + 2)
        g, d = nets()
        module = DCGAN(g, d, g_optimizer=adam, d_optimizer=adam)
        timer = StepTimer()
        loader = DataLoader(_Repeat(images, batch * (steps + 4)), batch_size=batch)
        _trainer(steps + 3, module, timer).fit(module, loader)
        lightning = [b - a for a, b in zip(timer.stamps[2:], timer.stamps[3:])]
        second = plain(steps // 2 + 2)
        hand, ours = statistics.median(first + second), statistics.median(lightning)
        rounds.append({"size": size, "width": width, "batch": batch, "hand_s": hand, "base_s": ours, "ratio": ours / hand})
    return sorted(rounds, key=lambda r: r["ratio"])[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", action="store_true", help="steps/s and peak memory per tiny config")
    parser.add_argument("--ratio", action="store_true", help="adversarial base vs a hand-written loop")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model in this process
    parser.add_argument("--ratio-size", type=int, default=32)
    parser.add_argument("--ratio-width", type=int, default=32)
    parser.add_argument("--ratio-batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.one:
        print(json.dumps(measure_model(args.one, args.steps)))
        return
    if not (args.models or args.ratio):
        args.models = args.ratio = True
    if args.models:
        print("| config (tiny overlay) | batches/s | peak memory (MiB) | device |\n| --- | --- | --- | --- |")
        for name in MODELS:
            out = subprocess.run([sys.executable, "-m", "benchmarks.perf_lecture_gans", "--one", name, "--steps",
                                  str(args.steps)], cwd=REPO, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {name} | {row['batches_per_s']:.1f} | {row['peak_mib']:.0f} | {row['device']} |", flush=True)
    if args.ratio:
        print("\n| DCGAN nets | hand-written loop (ms/iter) | AdversarialModule (ms/iter) | ratio |\n| --- | --- | --- | --- |")
        for size, width, batch in ((args.ratio_size, args.ratio_width, args.ratio_batch), (16, 8, 8)):
            r = measure_ratio(size, width, batch, args.steps)
            print(f"| {size}px, width {width}, batch {batch} | {1000 * r['hand_s']:.2f} | {1000 * r['base_s']:.2f} | "
                  f"{r['ratio']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
