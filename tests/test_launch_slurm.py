"""launch.slurm: the sbatch script it writes, its errors, and real jobs on a one-node SLURM
cluster (``slurm`` marker): a tiny job runs to completion and leaves its checkpoint; a running
job sent SIGUSR1 saves, is requeued and resumes from that checkpoint.

Until ``cli.py`` exists the job command is a small Lightning training script written into the
test's tmp dir (``--command``); it accepts the same ``--config`` / ``--trainer.*`` arguments.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import pytest
import torch

from launch import slurm
from slurm_cluster import slurm_cluster  # noqa: F401 - session fixture

REPO = Path(__file__).resolve().parents[1]

TRAIN_SCRIPT = '''
"""Stand-in for `cli.py fit` in the SLURM tests: same argument names, tiny Lightning run."""
import argparse, json, os, sys, time
sys.path.insert(0, {repo!r})

p = argparse.ArgumentParser()
p.add_argument("--config", action="append", default=[])
p.add_argument("--trainer.default_root_dir", dest="root", required=True)
p.add_argument("--trainer.num_nodes", dest="num_nodes", type=int, default=1)
p.add_argument("--trainer.devices", dest="devices", type=int, default=1)
p.add_argument("--trainer.accelerator", dest="accelerator", default="cpu")
p.add_argument("--trainer.max_steps", dest="max_steps", type=int, default=5)
p.add_argument("--step_sleep", type=float, default=0.0)
args = p.parse_args()

import torch
import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from callbacks.checkpoint_io import AtomicCheckpointIO
from callbacks.ema import EMACallback


class Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.network = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(args.step_sleep)
        with open(os.path.join(args.root, "progress"), "w") as f:
            f.write(str(self.global_step))
        (x,) = batch
        return self.network(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Starts(Callback):
    def on_train_start(self, trainer, pl_module):  # after the loops (global_step) are restored
        with open(os.path.join(args.root, "starts.jsonl"), "a") as f:
            f.write(json.dumps({{"restart": int(os.environ.get("SLURM_RESTART_COUNT", 0)),
                                "start_step": trainer.global_step, "ckpt_path": str(trainer.ckpt_path),
                                "configs": args.config}}) + "\\n")


trainer = pl.Trainer(
    default_root_dir=args.root, max_steps=args.max_steps, accelerator=args.accelerator, devices=args.devices,
    num_nodes=args.num_nodes, logger=False, enable_progress_bar=False, enable_model_summary=False,
    plugins=[AtomicCheckpointIO()],
    callbacks=[Starts(), EMACallback(decay=0.9),
               ModelCheckpoint(dirpath=os.path.join(args.root, "checkpoints"), save_last=True, every_n_train_steps=5)],
)
trainer.fit(Tiny(), DataLoader(TensorDataset(torch.randn(4000, 4)), batch_size=4))
with open(os.path.join(args.root, "done.json"), "w") as f:
    json.dump({{"global_step": trainer.global_step}}, f)
'''


def _train_command(tmp_path: Path) -> str:
    script = tmp_path / "train_stub.py"
    script.write_text(TRAIN_SCRIPT.format(repo=str(REPO)))
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


# --------------------------------------------------------------------------- script content (no cluster)
def test_dry_run_writes_readable_script_with_passthrough(tmp_path, capsys):
    run_dir = tmp_path / "run"
    rc = slurm.main([
        "--config", "configs/x.yaml", "--config", "configs/tiny/x.yaml", "--nodes", "2", "--gpus-per-node", "8",
        "--cpus-per-task", "12", "--mem", "480G", "--time", "48:00:00", "--partition", "gpu", "--account", "proj",
        "--max-gpus-per-node", "8", "--run-dir", str(run_dir), "--dry-run",
        "--", "--trainer.max_steps=100", "--model.init_args.lr", "1e-4",
    ])
    assert rc == 0
    out = capsys.readouterr().out
    assert "dry run: not submitted" in out and str(run_dir / "job.sbatch") in out
    text = (run_dir / "job.sbatch").read_text()
    for line in [
        "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=12", "#SBATCH --mem=480G", "#SBATCH --time=48:00:00", "#SBATCH --partition=gpu",
        "#SBATCH --account=proj", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --open-mode=append",
        f"#SBATCH --output={run_dir.resolve()}/slurm-%j.out",
    ]:
        assert line in text.splitlines(), line
    srun = next(ln for ln in text.splitlines() if ln.startswith("srun "))
    assert " cli.py fit --config configs/x.yaml --config configs/tiny/x.yaml " in srun
    assert f"--trainer.default_root_dir={run_dir.resolve()}" in srun
    assert "--trainer.num_nodes=2 --trainer.devices=8 --trainer.accelerator=gpu" in srun
    assert srun.endswith("--trainer.max_steps=100 --model.init_args.lr 1e-4")


def test_cpu_job_uses_devices_as_tasks(tmp_path):
    script = slurm.write_sbatch(["c.yaml"], devices=2, run_dir=tmp_path, command="python train.py", check_node=False)
    text = script.read_text()
    assert "#SBATCH --ntasks-per-node=2" in text and "--gpus-per-node" not in text
    assert "--trainer.devices=2 --trainer.accelerator=cpu" in text


def test_more_gpus_than_max_gpus_per_node_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo reachable: the flag decides
    with pytest.raises(slurm.SlurmError, match=r"--gpus-per-node 16 is more than a node has \(--max-gpus-per-node 8\)"):
        slurm.write_sbatch(["c.yaml"], gpus_per_node=16, max_gpus_per_node=8, run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists(), "nothing is written for a request that cannot run"


def test_sbatch_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    script = slurm.write_sbatch(["c.yaml"], run_dir=tmp_path / "r", command="python t.py")
    with pytest.raises(slurm.SlurmNotAvailableError, match=r"`sbatch` is not on PATH"):
        slurm.submit(script)
    rc = slurm.main(["--config", "c.yaml", "--run-dir", str(tmp_path / "r2")])
    assert rc == 2 and "sbatch` is not on PATH" in capsys.readouterr().err


def test_gres_parsing():
    assert slurm._gres_gpus("gpu:a100:8(S:0-1)") == 8
    assert slurm._gres_gpus("gpu:4,shard:2") == 4
    assert slurm._gres_gpus("(null)") == 0


# --------------------------------------------------------------------------- real cluster
@pytest.mark.slurm
def test_more_devices_than_the_node_has_from_sinfo(slurm_cluster, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    with pytest.raises(slurm.SlurmError, match=r"sinfo reports at most 0 GPU\(s\) per node"):
        slurm.write_sbatch(["c.yaml"], gpus_per_node=1, run_dir=tmp_path / "a")
    with pytest.raises(slurm.SlurmError, match=rf"sinfo reports at most {slurm_cluster.cpus} CPUs per node"):
        slurm.write_sbatch(["c.yaml"], devices=slurm_cluster.cpus + 1, run_dir=tmp_path / "b")


def _wait_file(path: Path, pred, timeout: float, what: str, cluster, job_id: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                if pred(path.read_text()):
                    return
            except (ValueError, OSError):
                pass
        time.sleep(0.3)
    log = "".join(p.read_text()[-3000:] for p in path.parent.glob("slurm-*.out"))
    raise TimeoutError(f"{what} not seen in {timeout}s; job: {cluster.job_state(job_id)}; log:\n{log}")


@pytest.mark.slurm
def test_tiny_job_runs_to_completion_and_leaves_checkpoint(slurm_cluster, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    run_dir = tmp_path / "run"
    rc = slurm.main([
        "--config", "configs/tiny.yaml", "--cpus-per-task", "1", "--mem", "500M", "--time", "00:10:00",
        "--run-dir", str(run_dir), "--command", _train_command(tmp_path), "--", "--trainer.max_steps=5",
    ])
    assert rc == 0
    out = capsys.readouterr().out
    job_id = out.split("submitted job ")[1].split()[0]
    assert f"log: {run_dir.resolve()}/slurm-{job_id}.out" in out
    info = slurm_cluster.wait_for_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"},
                                        timeout=150)
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-3000:]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 5
    starts = [json.loads(x) for x in (run_dir / "starts.jsonl").read_text().splitlines()]
    assert starts == [{"restart": 0, "start_step": 0, "ckpt_path": "None", "configs": ["configs/tiny.yaml"]}]


@pytest.mark.slurm
def test_sigusr1_saves_requeues_and_resumes(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    max_steps = 60
    script = slurm.write_sbatch(
        ["configs/tiny.yaml"], cpus_per_task=1, time="00:10:00", run_dir=run_dir, command=_train_command(tmp_path),
        overrides=[f"--trainer.max_steps={max_steps}", "--step_sleep=0.15"], check_node=False,
    )
    result = slurm_cluster.run("sbatch", "--parsable", str(script))
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()

    _wait_file(run_dir / "progress", lambda s: int(s) >= 5, 150, "training progress", slurm_cluster, job_id)
    sig = slurm_cluster.run("scancel", "--signal=USR1", job_id)  # to the job steps (srun -> the training task)
    assert sig.returncode == 0, sig.stderr

    # Lightning saves hpc_ckpt_1.ckpt and runs `scontrol requeue`; SLURM holds a requeued job back for a
    # while (BeginTime); release it as soon as it is pending so the test does not wait for that.
    starts_file = run_dir / "starts.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if starts_file.exists() and len(starts_file.read_text().splitlines()) >= 2:
            break  # the requeued job has started training again
        info = slurm_cluster.job_state(job_id)
        if info.get("JobState") in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}:
            break
        if int(info.get("Restarts", "0")) >= 1 and info.get("JobState") == "PENDING":
            slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        time.sleep(0.5)
    info = slurm_cluster.wait_for_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=150)
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert int(info["Restarts"]) == 1

    hpc = run_dir / "hpc_ckpt_1.ckpt"
    assert hpc.exists(), log[-4000:]
    saved_step = torch.load(hpc, weights_only=True)["global_step"]
    assert 5 <= saved_step < max_steps
    starts = [json.loads(x) for x in (run_dir / "starts.jsonl").read_text().splitlines()]
    assert [s["restart"] for s in starts] == [0, 1]
    assert starts[0]["start_step"] == 0
    assert starts[1]["start_step"] == saved_step and starts[1]["ckpt_path"].endswith("hpc_ckpt_1.ckpt")
    assert json.loads((run_dir / "done.json").read_text())["global_step"] == max_steps
    assert "restart 0" in log and "restart 1" in log  # one log across restarts (--open-mode=append)
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == max_steps
