"""VIDM generation cost on the tiny models (thesis 001 Ch. 3 §3.3.2; issue: generation is linear in frames).

Measures, on the random tiny stand-in networks of ``configs/tiny/vidm_motion.yaml`` (16x16 frames):

* wall time of autoregressive generation for 8 and 16 frames (medians of interleaved repeats) and
  their ratio; the goal is 2.0 within 10% (1 content + 15 motion samples vs 1 + 7; a content sample
  costs about one motion sample);
* SpyNet calls with the flow cached per frame (``N - 1``) and recomputed at every denoising step
  (``(N - 1) * steps``), i.e. ``(steps - 1)`` calls saved per frame, and the wall time of both;
* training steps per second of the tiny motion generator (batch 4) and peak RSS.

    python -m benchmarks.perf_vidm [--steps 10] [--repeats 5]
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from datamodules.vidm import VIDMDataModule
from lightning_modules.vidm import ContentNetwork, MotionNetwork, VIDMMotion

TINY_UNET = dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_head_channels=8, norm_num_groups=8,
                 attention_resolutions=[8])


def tiny_module(steps: int) -> VIDMMotion:
    torch.manual_seed(0)
    net = MotionNetwork(unet=TINY_UNET, image_size=16, flow={"variant": "tiny"})
    content = ContentNetwork(unet=TINY_UNET, image_size=16)
    return VIDMMotion(net, content_network=content, image_size=16, num_sampling_steps=steps).eval()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="sampler steps per frame")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    module = tiny_module(args.steps)
    gen = lambda frames, cache=True: module.generate(1, num_frames=frames, generator=torch.Generator().manual_seed(0),  # noqa: E731
                                                     cache_flow=cache)
    gen(4)  # warm-up
    t8, t16 = [], []
    for _ in range(args.repeats):
        t8.append(timed(lambda: gen(8)))
        t16.append(timed(lambda: gen(16)))
    ratio = statistics.median(t16) / statistics.median(t8)
    spy = module.network.flow_net
    spy.calls = 0
    cached = timed(lambda: gen(16))
    cached_calls = spy.calls
    spy.calls = 0
    uncached = timed(lambda: gen(16, cache=False))
    uncached_calls = spy.calls
    dm = VIDMDataModule(task="motion", size=16, clip_length=8, eval_frames=8, embedded_max_frames=32, embedded_shapes=4,
                        embedded_shape_frames=16, train_items=8, batch_size=4)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    opt = torch.optim.AdamW(module.network.parameters(), lr=2e-5)
    module.train()

    def step() -> None:
        loss = module.losses(batch)["total"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    train_time = timed(lambda: [step() for _ in range(10)])
    result = {
        "median_s_8_frames": statistics.median(t8), "median_s_16_frames": statistics.median(t16),
        "ratio_16_over_8": ratio, "ratio_goal": 2.0, "within_10_percent": float(abs(ratio - 2.0) <= 0.2),
        "spynet_calls_cached_16f": cached_calls, "spynet_calls_uncached_16f": uncached_calls,
        "spynet_calls_saved_per_frame": (uncached_calls - cached_calls) / 15, "steps": args.steps,
        "wall_s_cached_16f": cached, "wall_s_uncached_16f": uncached,
        "train_steps_per_s_batch4": 10 / train_time,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for key, value in result.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return result


if __name__ == "__main__":
    main()
