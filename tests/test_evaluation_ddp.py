"""EvaluationCallback under two-process DDP (gloo, CPU): the metric states reduce across ranks, both ranks
log the same value, which equals one metric fed every rank's data, and only rank 0 writes the row."""
from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from two_ranks import run_two_ranks

REPO = Path(__file__).resolve().parents[1]

POOLED = textwrap.dedent(
    """
    class Pooled(nn.Module):
        num_features = 8

        def forward(self, x):
            p = nn.functional.adaptive_avg_pool2d(x[:, :1].float(), 2).flatten(1)
            return torch.cat([p, p ** 2], 1)
    """
)

WORKER = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import torch
    import lightning as L
    from torch import nn
    from torch.utils.data import DataLoader
    from callbacks.evaluation import EvaluationCallback
    from metrics.fid import FrechetInceptionDistance

    out = sys.argv[1]


    {pooled}

    class Sampler(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.tensor(0.7))
            self.sample_shape = (1, 8, 8)
            self.drawn = []

        def validation_step(self, batch, batch_idx):
            return None

        def sample(self, num_samples, *, labels=None, num_steps=None, sampler=None, guidance_scale=None,
                   generator=None, noise=None):
            x = (torch.rand((num_samples, 1, 8, 8), generator=generator) * 2 - 1) * self.w.detach()
            self.drawn.append(x)
            return x


    class Data(L.LightningDataModule):
        def val_dataloader(self):
            images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
            dataset = [dict(image=im) for im in images]
            return DataLoader(dataset, batch_size=5)


    module = Sampler()
    callback = EvaluationCallback({{"fid": FrechetInceptionDistance(Pooled())}}, num_samples=21, batch_size=4,
                                  stages=("validation",), paper="ddp-test", results_dir=out, progress_bar=False,
                                  data="real")
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.validate(module, datamodule=Data(), verbose=False)
    rank = trainer.global_rank
    torch.save(torch.cat(module.drawn), os.path.join(out, f"drawn{{rank}}.pt"))
    with open(os.path.join(out, f"rank{{rank}}.json"), "w") as handle:
        json.dump(callback.last_results, handle)
    # Leave the process group cleanly: an exit with gloo threads still running can abort
    # ("terminate called without an active exception") after the work is done.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    """
)


@pytest.mark.slow
def test_two_rank_evaluation_reduces_and_writes_once(tmp_path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO), pooled=POOLED))
    run_two_ranks(script, str(tmp_path), cwd=tmp_path, timeout=150)

    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1]  # the states were reduced before compute on both ranks

    from metrics.fid import FrechetInceptionDistance

    namespace: dict = {"torch": torch, "nn": torch.nn}
    exec(POOLED, namespace)  # the worker's feature extractor, to recompute the value in one process
    reference = FrechetInceptionDistance(namespace["Pooled"]())
    reference.update(torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, real=True)
    drawn = [torch.load(tmp_path / f"drawn{r}.pt") for r in (0, 1)]
    assert [d.shape[0] for d in drawn] == [11, 10]  # 21 samples split over two ranks
    reference.update(torch.cat(drawn), real=False)
    assert results[0]["fid"] == pytest.approx(float(reference.compute()), rel=1e-6)

    lines = (tmp_path / "ddp-test.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 only
    row = json.loads(lines[0])
    assert row["num_samples"] == 21 and row["num_real"] == 40 and row["value"] == pytest.approx(results[0]["fid"])
