"""Performance of LTT-GAN (thesis 001 Ch. 6), measured in one run.

1. Tiny training: steps/s of full G + D iterations (the tiny config's sizes: 32 px, width 1/32,
   4 HPC branches, random stand-ins) and the process's peak RSS (CPU) or peak CUDA memory.
2. Inference images/s of the **full-size** generator at 512 px (random weights: speed does not
   depend on them) versus the number of HPC branching levels (0 = one output ... 3 = 8 branches,
   the default; 4, 5 = the ablation's g = 16 / 32 reading). Table 6.6's trend: time per image grows
   with g (0.0296 s -> 0.0537 / 0.0756 / 0.1239 s on their GPU).

    python -m benchmarks.perf_ltt_gan [--levels 0 1 2 3] [--repeats 1] [--tiny-steps 10] [--device cpu]
"""
from __future__ import annotations

import argparse
import resource
import time

import torch


def _peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def tiny_training(steps: int, device: str) -> dict[str, float]:
    from lightning_modules.ltt_gan import LTTGAN, LTTGANGenerator, StyleGAN2Discriminator

    torch.manual_seed(0)
    module = LTTGAN(LTTGANGenerator(out_size=32, num_style_feat=16, num_mlp=2, narrow=1 / 32, branch_levels=2),
                    StyleGAN2Discriminator(32, narrow=1 / 32), pack_rate=4, perceptual="tiny_random",
                    r1_gamma=10.0, results_file=None).to(device)
    g_opt = torch.optim.Adam(module.generator_parameters(), lr=2e-3, betas=(0.0, 0.99))
    d_opt = torch.optim.Adam(module.discriminator_parameters(), lr=2e-3 * 16 / 17, betas=(0.0, 0.99 ** (16 / 17)))
    clean = torch.rand(2, 3, 32, 32, device=device) * 2 - 1
    batch = {"image": clean, "input": (clean + 0.3 * torch.randn_like(clean)).clamp(-1, 1)}

    def step() -> None:
        generated = module.generate(batch)
        d = module.discriminator_terms(batch, {k: (v.detach() if torch.is_tensor(v) else v) for k, v in generated.items()})
        d_opt.zero_grad()
        d["loss"].backward()
        d_opt.step()
        module.d_step_count += 1
        module.discriminator.requires_grad_(False)
        g = module.generator_terms(batch, generated)
        g_opt.zero_grad()
        g["loss"].backward()
        g_opt.step()
        module.discriminator.requires_grad_(True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {"iterations_per_s": steps / elapsed, "peak_memory_mib": _peak_mib(device)}


@torch.no_grad()
def inference(levels: list[int], repeats: int, device: str) -> list[dict[str, float]]:
    from lightning_modules.ltt_gan import LTTGANGenerator

    torch.manual_seed(0)
    gen = LTTGANGenerator(out_size=512, branch_levels=0).to(device).eval()
    x = torch.rand(1, 3, 512, 512, device=device) * 2 - 1
    rows = []
    for level in levels:
        gen.branch_levels = level
        gen(x)  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            gen(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeats
        rows.append({"branch_levels": level, "branches": 2 ** level, "seconds_per_image": seconds,
                     "images_per_s": 1.0 / seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny-steps", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    tiny = tiny_training(args.tiny_steps, args.device)
    print(f"tiny training (32 px, 4 branches, stand-ins): {tiny['iterations_per_s']:.2f} G+D iterations/s, "
          f"peak memory {tiny['peak_memory_mib']:.0f} MiB")
    print("full-size generator, 512 px, batch 1, random weights:")
    print("| branch levels | branches | s / image | images/s |")
    print("|---|---|---|---|")
    for row in inference(args.levels, args.repeats, args.device):
        print(f"| {row['branch_levels']} | {row['branches']} | {row['seconds_per_image']:.3f} | {row['images_per_s']:.3f} |")


if __name__ == "__main__":
    main()
