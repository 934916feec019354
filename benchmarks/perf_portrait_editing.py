"""Portrait editing (thesis 000, Ch. 5) performance on the tiny configs, measured in one run.

* MCDM training: steps/s (forward + backward + AdamW on one fixed batch of embedded pairs) and peak memory.
* MCDM editing: network evaluations per sampler step, counted on the UNet (the batch it sees per call and
  the calls per step): nested three-condition CFG = 4 evaluations in 1 call; mask guidance adds the p_a
  text pass only (5 in 1 call; 8 in 2 calls without pass sharing, also timed); plus the mask's own cost
  (2 one-step runs per seed). Seconds per step with and without the mask, and their ratios.
* Pair generation: evaluations per Karras VE step (Eq. 5.2: 3 CFG terms sharing the null pass = 4 per
  denoiser call, one network call; Heun: 2 denoiser calls per step except the last).

    python -m benchmarks.perf_portrait_editing [--steps 10] [--size 32] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def tiny_args(name: str) -> dict:
    return dict(yaml.safe_load((CONFIGS / "tiny" / f"{name}.yaml").read_text())["model"]["init_args"])


class Counter:
    """Counts UNet calls and the evaluations (batch rows / input batch) they carry."""

    def __init__(self, unet: torch.nn.Module, batch: int) -> None:
        self.batch, self.calls, self.rows = batch, 0, 0
        unet.register_forward_pre_hook(self._hook)

    def _hook(self, _module, args) -> None:
        self.calls += 1
        self.rows += int(args[0].shape[0])

    def reset(self) -> None:
        self.calls = self.rows = 0

    @property
    def evaluations(self) -> float:
        return self.rows / self.batch


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    from datamodules.portrait_pairs import PortraitPairsDataModule
    from lightning_modules.portrait_editing import MCDM, PortraitPairGenerator

    kwargs = tiny_args("portrait_mcdm")
    kwargs.pop("optimizer", None)
    kwargs.update(image_size=args.size, num_sampling_steps=4, mask_step=2, mask_seeds=2)
    model = MCDM(**kwargs).to(device)
    dm = PortraitPairsDataModule(size=args.size, batch_size=2, num_pairs=4, num_val_pairs=2)
    dm.setup("fit")
    batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in next(iter(dm.train_dataloader())).items()}

    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    times = []
    for i in range(args.steps + 2):
        start = time.perf_counter()
        opt.zero_grad()
        model.pair_loss(batch).mean().backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    print(f"MCDM tiny training ({args.size}px, batch 2): {1 / step:.2f} steps/s, peak memory {peak_memory_mb(device):.0f} MB")

    model.eval()
    counter = Counter(model.network.unet, batch=2)
    x_a = batch["x_A"]
    null = model.null_conditions(x_a)
    cond_b = model.conditions(x_a, batch["p_b"])
    cond_a = {**cond_b, "text": model.text_encoder(list(batch["p_a"])).to(device)}
    x, t = torch.randn(2, *model.sample_shape, device=device), torch.full((2,), 0.5, device=device)
    results = {}
    with torch.no_grad():
        ones = torch.ones(2, 1, *model.sample_shape[1:], device=device)
        for label, mask, share in (("nested CFG", None, True), ("mask-guided", ones, True), ("mask-guided unshared", ones, False)):
            den = model.edit_denoiser(cond_a, cond_b, null, mask)
            if mask is not None:
                den.share_passes = share
            counter.reset()
            den(x, t)
            calls, evals = counter.calls, counter.evaluations
            reps = []
            for _ in range(args.steps):
                start = time.perf_counter()
                den(x, t)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                reps.append(time.perf_counter() - start)
            results[label] = statistics.median(reps)
            print(f"MCDM {label}: {evals:.0f} network evaluations per step in {calls} call(s), {results[label] * 1e3:.1f} ms/step")
        counter.reset()
        model.edit_mask(x_a, cond_a, cond_b, null)
        print(f"MCDM edit mask: {counter.evaluations:.0f} evaluations in {counter.calls} calls "
              f"({model.mask_seeds} seeds x one shared call of 5 for the p_a and p_b steps)")
    print(f"ratio mask-guided / nested CFG step time: {results['mask-guided'] / results['nested CFG']:.2f}x; "
          f"unshared / shared mask-guided: {results['mask-guided unshared'] / results['mask-guided']:.2f}x")

    gen_kwargs = tiny_args("portrait_pairs")
    gen_kwargs.pop("optimizer", None)
    gen = PortraitPairGenerator(**gen_kwargs).to(device).eval()
    g_counter = Counter(gen.unet, batch=1)
    identity = torch.zeros(1, 3, gen.image_size, gen.image_size, device=device)
    with torch.no_grad():
        gen.generate(identity, identity.clone(), ["santa"], ["woman"], num_steps=3)
    n = 3
    print(f"pair generation (Karras VE, {n} steps): {g_counter.evaluations / n:.1f} UNet evaluations per step in "
          f"{g_counter.calls / n:.1f} calls (Eq. 5.2: 3 CFG terms sharing the null pass = 4 per denoiser call, Heun x 2 except the last step)")


if __name__ == "__main__":
    main()
