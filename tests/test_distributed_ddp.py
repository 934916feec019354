"""Two-process DDP (gloo, CPU) of a tiny module in a subprocess:

- the loss trajectory and final weights follow the one-process run with the doubled batch;
- the EMA is identical on both ranks (and equals the one-process EMA);
- NaNGuard: a non-finite loss on rank 1 only makes *both* ranks stop at the same step
  (they agree through a reduce, so nothing hangs).

Both ranks start at once with torchrun's environment variables (Lightning launches nothing itself);
the one-process reference runs meanwhile in this (pytest) process.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import textwrap
from pathlib import Path

import torch

from two_ranks import run_two_ranks

REPO = Path(__file__).resolve().parents[1]
STEPS, BAD_STEP, PER_RANK_BATCH = 6, 5, 4

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {repo!r})
    import torch
    import lightning.pytorch as pl
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from callbacks.ema import EMACallback
    from callbacks.nan_guard import NaNGuard

    STEPS, BAD_STEP, PER_RANK_BATCH = {steps}, {bad_step}, {batch}


    class Tiny(pl.LightningModule):
        def __init__(self, poison_rank):
            super().__init__()
            torch.manual_seed(0)
            self.network = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
            self.vae = nn.Linear(8, 8).requires_grad_(False)
            self.poison_rank = poison_rank
            self.losses = []

        def trainable_parameters(self):
            return list(self.network.parameters())

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.network(self.vae(x)), y)
            self.losses.append(self.all_gather(loss.detach()).mean().item())  # global mean (equal batches)
            if self.global_step == BAD_STEP and self.global_rank == self.poison_rank:
                loss = loss * float("nan")
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.trainable_parameters(), lr=0.05, momentum=0.9)

        def train_dataloader(self):
            # Lightning's automatic DistributedSampler always shuffles training data; an unshuffled one
            # makes the union of the ranks' batches equal the one-process batch
            world, rank = self.trainer.world_size, self.trainer.global_rank
            sampler = DistributedSampler(data(), num_replicas=world, rank=rank, shuffle=False)
            return DataLoader(data(), batch_size=2 * PER_RANK_BATCH // world, sampler=sampler)


    def data():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(2 * PER_RANK_BATCH * STEPS, 8, generator=g)
        return TensorDataset(x, x[:, :3].sum(dim=1, keepdim=True).sin())


    def run(mode, out):
        ddp = mode == "ddp"
        ema, guard = EMACallback(decay=0.8), NaNGuard(action="stop")
        module = Tiny(poison_rank=1 if ddp else 0)
        trainer = pl.Trainer(
            accelerator="cpu", devices=2 if ddp else 1, strategy="ddp" if ddp else "auto",
            max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, callbacks=[ema, guard], default_root_dir=out, use_distributed_sampler=False,
        )
        trainer.fit(module)
        rank = trainer.global_rank
        torch.save(
            {{"ema": ema.state_dict()["ema"], "weights": {{k: v.detach().clone() for k, v in module.network.state_dict().items()}}}},
            os.path.join(out, f"{{mode}}_rank{{rank}}.pt"),
        )
        with open(os.path.join(out, f"{{mode}}_rank{{rank}}.json"), "w") as f:
            json.dump({{"losses": module.losses, "stopped_at": guard.stopped_at_step, "global_step": trainer.global_step}}, f)


    if __name__ == "__main__":
        run(sys.argv[1], sys.argv[2])
        # Leave the process group cleanly: an exit with gloo threads still running can abort
        # ("terminate called without an active exception") after the work is done.
        if torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    """
)


def test_two_process_ddp_matches_one_process_and_ema_identical(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT.format(repo=str(REPO), steps=STEPS, bad_step=BAD_STEP, batch=PER_RANK_BATCH))
    import threading

    errors: list[BaseException] = []

    def ddp() -> None:
        try:
            run_two_ranks(script, "ddp", str(tmp_path), cwd=tmp_path)
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    worker = threading.Thread(target=ddp)
    worker.start()
    # meanwhile, the one-process reference in this process
    spec = importlib.util.spec_from_file_location("ddp_run_ref", script)
    ref_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref_mod)
    ref_mod.run("single", str(tmp_path))

    worker.join(timeout=120)
    assert not worker.is_alive(), "DDP ranks did not finish (hang?)"
    if errors:
        raise errors[0]

    single = json.loads((tmp_path / "single_rank0.json").read_text())
    ranks = [json.loads((tmp_path / f"ddp_rank{r}.json").read_text()) for r in (0, 1)]
    # NaNGuard: rank 1 alone saw the NaN, both stopped at the same step, like the one-process run
    assert [r["stopped_at"] for r in ranks] == [BAD_STEP, BAD_STEP] == [single["stopped_at"]] * 2
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == single["global_step"] == BAD_STEP + 1

    # loss trajectory of the global batch
    assert len(ranks[0]["losses"]) == len(single["losses"]) == BAD_STEP + 1
    torch.testing.assert_close(torch.tensor(ranks[0]["losses"][:BAD_STEP]), torch.tensor(single["losses"][:BAD_STEP]),
                               rtol=1e-5, atol=1e-6)

    s = torch.load(tmp_path / "single_rank0.pt", weights_only=True)
    d0 = torch.load(tmp_path / "ddp_rank0.pt", weights_only=True)
    d1 = torch.load(tmp_path / "ddp_rank1.pt", weights_only=True)
    assert set(d0["ema"]) == {f"network.{k}" for k in s["weights"]}  # frozen vae not in EMA
    for k in d0["ema"]:
        assert torch.equal(d0["ema"][k], d1["ema"][k]), f"EMA differs across ranks: {k}"
        torch.testing.assert_close(d0["ema"][k], s["ema"][k], rtol=1e-5, atol=1e-6)
    for k in s["weights"]:
        assert torch.equal(d0["weights"][k], d1["weights"][k])
        torch.testing.assert_close(d0["weights"][k], s["weights"][k], rtol=1e-5, atol=1e-6)
