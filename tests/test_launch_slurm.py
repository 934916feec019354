"""launch.slurm: the sbatch script it writes, its errors, and real jobs on a one-node SLURM
cluster (``slurm`` marker): a tiny job runs to completion and leaves its checkpoint; a running
job sent SIGUSR1 saves, is requeued and resumes from that checkpoint.

The jobs run ``cli.py fit`` (the default command) on the tiny flow-matching config, exactly as a
user's job would; ``tests/lifecycle_helpers.RecordStarts`` records where each start resumed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from launch import slurm
from slurm_cluster import slurm_cluster  # noqa: F401 - session fixture

REPO = Path(__file__).resolve().parents[1]

TINY = ["configs/flow_matching_digits.yaml", "configs/tiny/flow_matching_digits.yaml"]
RUN = "flow_matching_digits+tiny"


def _cli_job(run_dir: Path, max_steps: int, step_sleep: float = 0.0) -> Path:
    """A launch.slurm script that runs `cli.py fit` on the tiny config (the default --command)."""
    return slurm.write_sbatch(
        TINY, cpus_per_task=1, mem="2G", time="00:10:00", run_dir=run_dir, workdir=REPO, check_node=False,
        setup_lines=[f"export PYTHONPATH={REPO / 'tests'}", "export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1"],
        overrides=[f"--trainer.max_steps={max_steps}", f"--trainer.val_check_interval={max_steps}",
                   "--trainer.enable_progress_bar=false", "--trainer.callbacks+=lifecycle_helpers.RecordStarts",
                   f"--trainer.callbacks.path={run_dir.resolve() / 'starts.jsonl'}",
                   f"--trainer.callbacks.step_sleep={step_sleep}"],
    )


def _submit(cluster, script: Path) -> str:
    result = cluster.run("sbatch", "--parsable", str(script))
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


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
    assert text in out, "the script is printed"
    assert [p.name for p in run_dir.iterdir()] == ["job.sbatch"], "a dry run creates nothing but the script"
    for line in [
        "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=12", "#SBATCH --mem=480G", "#SBATCH --time=48:00:00", "#SBATCH --partition=gpu",
        "#SBATCH --account=proj", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue", "#SBATCH --open-mode=append",
        f"#SBATCH --output={run_dir.resolve()}/slurm-%j.out",
    ]:
        assert line in text.splitlines(), line
    srun = next(ln for ln in text.splitlines() if ln.startswith("srun "))
    assert " cli.py fit --config configs/x.yaml --config configs/tiny/x.yaml " in srun
    assert f"--runs_dir={run_dir.resolve()} --ckpt_path=last" in srun, "requeued starts resume in the same run"
    assert "default_root_dir" not in srun
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
def test_tiny_cli_job_runs_to_completion_and_leaves_checkpoint(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    job_id = _submit(slurm_cluster, _cli_job(run_dir, max_steps=5))
    info = slurm_cluster.wait_for_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"},
                                        timeout=240)
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-3000:]
    version = run_dir.resolve() / RUN / "version_0"
    assert torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    starts = [json.loads(x) for x in (run_dir / "starts.jsonl").read_text().splitlines()]
    assert starts == [{"restart": 0, "start_step": 0, "ckpt_path": "None", "ckpt_step": None, "run_dir": str(version)}]


@pytest.mark.slurm
def test_sigusr1_saves_requeues_and_resumes_in_the_same_run(slurm_cluster, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    max_steps = 60
    job_id = _submit(slurm_cluster, _cli_job(run_dir, max_steps=max_steps, step_sleep=0.15))
    starts_file = run_dir / "starts.jsonl"
    _wait_file(Path(str(starts_file) + ".progress"), lambda s: int(s) >= 5, 240, "training progress",
               slurm_cluster, job_id)
    sig = slurm_cluster.run("scancel", "--signal=USR1", job_id)  # to the job steps (srun -> the training task)
    assert sig.returncode == 0, sig.stderr

    # Lightning saves hpc_ckpt_1.ckpt and runs `scontrol requeue`; SLURM holds a requeued job back for a
    # while (BeginTime); release it as soon as it is pending so the test does not wait for that.
    deadline = time.time() + 240
    while time.time() < deadline:
        if starts_file.exists() and len(starts_file.read_text().splitlines()) >= 2:
            break  # the requeued job has started training again
        info = slurm_cluster.job_state(job_id)
        if info.get("JobState") in {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}:
            break
        if int(info.get("Restarts", "0")) >= 1 and info.get("JobState") == "PENDING":
            slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
        time.sleep(0.5)
    info = slurm_cluster.wait_for_state(job_id, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}, timeout=240)
    log = (run_dir / f"slurm-{job_id}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-4000:]
    assert int(info["Restarts"]) == 1

    runs = run_dir.resolve() / RUN
    assert sorted(p.name for p in runs.iterdir()) == ["version_0"], "one run folder across the requeue"
    version = runs / "version_0"
    hpc = version / "hpc_ckpt_1.ckpt"
    assert hpc.exists(), log[-4000:]
    hpc_step = torch.load(hpc, weights_only=True)["global_step"]
    assert 5 <= hpc_step < max_steps
    starts = [json.loads(x) for x in starts_file.read_text().splitlines()]
    assert [s["restart"] for s in starts] == [0, 1] and {s["run_dir"] for s in starts} == {str(version)}
    assert starts[0]["start_step"] == 0
    resumed_from = Path(starts[1]["ckpt_path"])
    assert resumed_from.parent in (version, version / "checkpoints"), resumed_from
    # the newest complete checkpoint: hpc_ckpt_1, or the last.ckpt the SIGTERM of the requeue wrote after it
    assert hpc_step <= starts[1]["start_step"] == starts[1]["ckpt_step"] < max_steps, starts
    assert "restart 0" in log and "restart 1" in log  # one log across restarts (--open-mode=append)
    assert torch.load(version / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == max_steps
