"""CFLD performance: tiny-config training steps/s and peak memory, and the guidance cost counted, not assumed.

Measured in one run on the tiny configuration (configs/cfld.yaml + configs/tiny/cfld.yaml, random
weights, embedded stick figures):

* training: median seconds per optimizer step (forward of source->target and source->source,
  backward, Adam) after warm-up, steps/s, peak resident memory (and peak CUDA memory on a GPU);
* sampling: UNet calls and UNet samples per DDPM step for the three-branch guidance of Eq. 7,
  counted by a forward hook on the UNet, batched (one call of 3B samples) and unbatched
  (three calls of B); the ratio "evaluations per image per step" must be <= 3; and the
  wall-time ratio guided / unguided (w_pose = w_app = 1, one branch).

``--full`` adds a few real-size steps (SD-1.5-shaped UNet + Swin-B + PRD + HGA + adapter, random
weights, bf16 autocast, 512x512 images) when a CUDA device is present.

    python -m benchmarks.perf_cfld [--steps 10] [--batch 2] [--threads 1] [--full]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from cfld_helpers import tiny_batch, tiny_model_args  # noqa: E402
from lightning_modules.cfld import CFLD  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def training_speed(model: CFLD, batch: dict, steps: int, device: torch.device, autocast: bool = False) -> dict:
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-4)
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    times = []
    for step in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model.pair_loss(batch).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # warm-up
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"s_per_step": median, "steps_per_s": 1.0 / median, "loss": float(loss.detach())}


def guidance_cost(model: CFLD, batch: dict, steps: int) -> dict:
    calls: list[int] = []
    handle = model.network.unet.register_forward_pre_hook(lambda m, a, k: calls.append(a[0].shape[0]), with_kwargs=True)
    pose = model.pose_map(batch["target_keypoints"], batch["keypoint_frame"])
    B = pose.shape[0]
    out = {}
    try:
        for name, kwargs in (
            ("guided_batched", {}),
            ("guided_unbatched", {"batched": False}),
            ("unguided", {"pose_guidance": 1.0, "appearance_guidance": 1.0}),
        ):
            calls.clear()
            start = time.perf_counter()
            model.transfer(batch["source_image"], pose, num_steps=steps, generator=torch.Generator().manual_seed(0), **kwargs)
            seconds = time.perf_counter() - start
            out[name] = {"unet_calls_per_step": len(calls) / steps, "evaluations_per_image_per_step": sum(calls) / (B * steps), "seconds": seconds}
    finally:
        handle.remove()
    return out


def full_size(steps: int, batch_size: int) -> None:
    from lightning_modules.cfld.network import SD15_UNET_CONFIG

    device = torch.device("cuda")
    vae = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
           "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
           "layers_per_block": 2, "sample_size": 512}
    model = CFLD(unet_config=SD15_UNET_CONFIG, vae_config=vae, gradient_checkpointing=True).to(device)
    total = sum(model.network.parameter_groups().values())
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(batch_size, 18, 2, generator=g) * torch.tensor([176.0, 256.0])
    batch = {"source_image": torch.rand(batch_size, 3, 512, 512, generator=g) * 2 - 1,
             "target_image": torch.rand(batch_size, 3, 512, 512, generator=g) * 2 - 1,
             "source_keypoints": kp, "target_keypoints": kp.flip(0), "keypoint_frame": torch.tensor([[256.0, 176.0]] * batch_size)}
    torch.cuda.reset_peak_memory_stats()
    speed = training_speed(model, batch, steps, device, autocast=True)
    print(f"full size (random weights, bf16 autocast, 512x512, batch {batch_size}, grad checkpointing): "
          f"{speed['steps_per_s']:.2f} steps/s, {speed['s_per_step'] * 1000:.0f} ms/step, "
          f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB, trainable {total / 1e6:.1f}M")
    model.eval()
    pose = model.pose_map(batch["target_keypoints"].to(device), batch["keypoint_frame"].to(device))
    torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model.transfer(batch["source_image"].to(device), pose, num_steps=50)
    torch.cuda.synchronize()
    print(f"full size sampling: 50 DDPM steps x 3 branches, batch {batch_size}: {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sampling-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--full", action="store_true", help="also a few real-size steps on CUDA")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CFLD(**tiny_model_args())
    batch = tiny_batch(batch_size=args.batch)
    speed = training_speed(model, batch, args.steps, torch.device("cpu"))
    print(f"tiny CFLD training on CPU ({torch.get_num_threads()} threads, batch {args.batch}): "
          f"{speed['steps_per_s']:.2f} steps/s ({speed['s_per_step'] * 1000:.0f} ms/step), peak RSS {_peak_rss_mb():.0f} MB")
    model.eval()
    cost = guidance_cost(model, batch, args.sampling_steps)
    for name, row in cost.items():
        print(f"sampling {name:17s}: {row['unet_calls_per_step']:.0f} UNet call(s)/step, "
              f"{row['evaluations_per_image_per_step']:.0f} evaluation(s) per image per step, {row['seconds']:.2f} s")
    ratio = cost["guided_batched"]["evaluations_per_image_per_step"]
    print(f"three-branch guidance: {ratio:.0f} network evaluations per image per step (limit 3): {'OK' if ratio <= 3 else 'OVER'}")
    print(f"wall-time ratio guided(batched) / unguided: {cost['guided_batched']['seconds'] / cost['unguided']['seconds']:.2f}")
    if args.full:
        if torch.cuda.is_available():
            full_size(steps=5, batch_size=max(args.batch, 2))
        else:
            print("--full: no CUDA device, skipped")


if __name__ == "__main__":
    main()
