"""Queue-size study of D2SM (thesis 001, Ch. 9, Fig. 9.8) as a sweep that writes results rows.

Fig. 9.8 is a convergence plot (no table): queues Q > 64 converge much faster, Q <= 64 poorly.
This sweep trains the same restorer with L1 + D2SM for each queue size q (q = 0 is the batch-only
estimate; otherwise q >= N, the samples of one step) and records, per q, the training loss at
fixed steps (the convergence curve) and the held-out PSNR / SSIM / mIoU at the end, as rows of
``results/d2sm_queue_sweep.jsonl`` (paper ``semantic_stats``, method ``D2SM q=<q>``).

Default = CPU smoke size on the embedded photos with the random stand-in Phi and segmenter (rows
say ``weights: random``, ``data: embedded``): it exercises the study, it does not reproduce it.
``--config`` takes a full config (e.g. ``configs/d2sm_denoise.yaml``) to build the module from
for a real run (VGG-19 weights and Cityscapes on disk).

    python -m benchmarks.d2sm_queue_sweep [--queues 0 36 72 144 288] [--steps 200] [--out results/d2sm_queue_sweep.jsonl]
"""
from __future__ import annotations

import argparse
from typing import Any, Optional

import torch

from datamodules._common import collate_dicts
from datamodules.d2sm.embedded import embedded_datasets
from metrics.results_rows import ResultRow, append_rows, git_commit, utc_now


def train_one(queue: int, steps: int, batch: int, d2sm_weight: float, seed: int,
              train: Any, val: Any, log_every: int) -> tuple[list[tuple[int, float]], dict[str, float]]:
    from lightning_modules.d2sm import D2SMRestorationModule, FFDNet

    torch.manual_seed(seed)
    module = D2SMRestorationModule(restorer=FFDNet(features=16, num_layers=4), d2sm_weight=d2sm_weight,
                                   phi="tiny_random", queue_size=queue, window=16, stride=8, segmenter="tiny_random")
    optimizer = torch.optim.Adam(module.trainable_parameters(), lr=2e-3)
    order = torch.Generator().manual_seed(seed + 1)
    curve = []
    module.train()
    for step in range(1, steps + 1):
        items = [train[i] for i in torch.randint(0, len(train), (batch,), generator=order).tolist()]
        loss = module.losses(collate_dicts(items))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % log_every == 0 or step == steps:
            curve.append((step, float(loss.detach())))
    module.eval()
    module.on_test_epoch_start()
    with torch.no_grad():
        module._evaluate(collate_dicts([val[i] for i in range(len(val))]))
    return curve, module._results()


def main(argv: Optional[list[str]] = None) -> list[ResultRow]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, nargs="+", default=[0, 36, 72, 144, 288])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--d2sm_weight", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=25)
    parser.add_argument("--out", default="results/d2sm_queue_sweep.jsonl")
    args = parser.parse_args(argv)
    train, val = embedded_datasets("denoise", 32, 1, 8, 2, ["astronaut", "coffee", "chelsea"], 256, 75.0, [50.0],
                                   args.seed)
    rows: list[ResultRow] = []
    for queue in args.queues:
        curve, results = train_one(queue, args.steps, args.batch, args.d2sm_weight, args.seed, train, val,
                                   args.log_every)
        common = dict(paper="semantic_stats", method=f"D2SM q={queue}", dataset="embedded photos (synthetic labels)",
                      split="val", resolution="32x32", num_samples=len(val), nfe=1, guidance=None,
                      evaluator="psnr/ssim/miou (tiny random segmenter stand-in)", config=None, commit=git_commit(),
                      date=utc_now(), weights="random", data="embedded")
        extra = {"queue_size": queue, "steps": args.steps, "samples_per_step": args.batch * 9,
                 "d2sm_weight": args.d2sm_weight, "study": "Fig. 9.8 queue size",
                 "random_weights_reason": "Phi and segmenter are tiny random stand-ins"}
        for step, loss in curve:
            rows.append(ResultRow(metric="train_loss", value=loss, extra={**extra, "step": step}, **common))
        for key, value in results.items():
            rows.append(ResultRow(metric=key, value=value, extra={**extra, "step": args.steps}, **common))
        print(f"q={queue:4d}: final loss {curve[-1][1]:.4f}, " + ", ".join(f"{k} {v:.4f}" for k, v in results.items()))
    append_rows(args.out, rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    return rows


if __name__ == "__main__":
    main()
