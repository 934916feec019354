"""Write and submit SLURM batch scripts for any config of the suite.

    python -m launch.slurm --config configs/X.yaml [--config configs/tiny/X.yaml] \\
        --nodes 2 --gpus-per-node 8 --cpus-per-task 12 --mem 480G --time 48:00:00 \\
        [--partition P] [--account A] [--dry-run] [-- --trainer.max_steps=1000 ...]

What the script does (it is written to ``<run-dir>/job.sbatch``, readable on purpose):

- one SLURM task per device (``--ntasks-per-node`` = GPUs per node, or ``--devices``
  for CPU jobs), started by ``srun``: Lightning's ``SLURMEnvironment`` reads ranks,
  world size and the main address from SLURM, so multi-node DDP/FSDP needs nothing else;
- ``#SBATCH --signal=SIGUSR1@90``: SLURM sends SIGUSR1 to the tasks 90 s before the time
  limit; Lightning's SLURM handler then writes ``hpc_ckpt_<n>.ckpt`` into the run folder
  and calls ``scontrol requeue``; ``#SBATCH --requeue`` allows it and
  ``--open-mode=append`` keeps one log across restarts. On restart, Lightning finds the
  ``hpc_ckpt`` in the run folder: ``cli.py`` gets ``--runs_dir=<run-dir> --ckpt_path=last``
  and resumes from the newest complete checkpoint (``hpc_ckpt_<n>`` or ``last.ckpt``) in the
  same ``<run-dir>/<run_name>/version_<n>/`` (another ``--command`` gets
  ``--trainer.default_root_dir=<run-dir>``, where Lightning finds ``hpc_ckpt`` itself);
- ``--trainer.num_nodes`` / ``--trainer.devices`` / ``--trainer.accelerator`` are set to
  match the allocation (``--no-trainer-args`` leaves them to the config); everything after
  ``--`` is passed through to the command (``python cli.py fit`` by default,
  ``--command`` to change it).

Stdlib only: this runs on login nodes without the training environment.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from launch.argv import split_overrides

DEFAULT_SIGNAL_SECONDS = 90


class SlurmError(RuntimeError):
    """A launch problem the user has to fix (message says how)."""


class SlurmNotAvailableError(SlurmError, FileNotFoundError):
    """The SLURM client tools (sbatch) are not on PATH."""


@dataclass
class NodeCapacity:
    """The largest node of a partition, as reported by ``sinfo``."""

    partition: str
    cpus: int
    gpus: int
    nodes: int


def _gres_gpus(gres: str) -> int:
    """GPUs in an sinfo GRES string such as ``gpu:a100:8(S:0-1),shard:4`` -> 8."""
    total = 0
    for item in gres.split(","):
        item = item.strip()
        if not item.startswith("gpu"):
            continue
        m = re.match(r"gpu(?::[^:(]+)?:(\d+)", item)
        if m:
            total += int(m.group(1))
    return total


def query_node_capacity(partition: Optional[str] = None, sinfo: str = "sinfo") -> Optional[NodeCapacity]:
    """Largest CPU and GPU count of one node (of ``partition``, or the default one); ``None`` if sinfo fails."""
    exe = shutil.which(sinfo)
    if exe is None:
        return None
    cmd = [exe, "-h", "-N", "-o", "%N|%c|%G|%P"]
    if partition:
        cmd += ["-p", partition]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    cpus = gpus = 0
    names: set[str] = set()
    part_name = partition
    for line in out.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 4:
            continue
        name, c, gres, part = fields
        if partition is None and not part.endswith("*"):
            continue  # the default partition is starred
        part_name = part.rstrip("*")
        names.add(name)
        try:
            cpus = max(cpus, int(c))
        except ValueError:
            pass
        gpus = max(gpus, _gres_gpus(gres))
    if not names:
        return None
    return NodeCapacity(partition=part_name or "", cpus=cpus, gpus=gpus, nodes=len(names))


def check_fits_node(
    *, gpus_per_node: int, tasks_per_node: int, cpus_per_task: Optional[int], partition: Optional[str],
    max_gpus_per_node: Optional[int] = None, capacity: Optional[NodeCapacity] = None, nodes: int = 1,
) -> Optional[NodeCapacity]:
    """Raise ``SlurmError`` when the request cannot fit one node. Returns the capacity it checked against."""
    if max_gpus_per_node is not None and gpus_per_node > max_gpus_per_node:
        raise SlurmError(
            f"--gpus-per-node {gpus_per_node} is more than a node has (--max-gpus-per-node {max_gpus_per_node}); "
            f"ask for at most {max_gpus_per_node} per node and more --nodes instead"
        )
    cap = capacity if capacity is not None else query_node_capacity(partition)
    if cap is None:
        return None
    where = f"partition {cap.partition!r}" if cap.partition else "the default partition"
    if max_gpus_per_node is None and gpus_per_node > cap.gpus:
        raise SlurmError(
            f"--gpus-per-node {gpus_per_node} is more than a node of {where} has: sinfo reports at most "
            f"{cap.gpus} GPU(s) per node; ask for at most {cap.gpus} per node and more --nodes instead"
        )
    cpus_needed = tasks_per_node * (cpus_per_task or 1)
    if cap.cpus and cpus_needed > cap.cpus:
        raise SlurmError(
            f"{tasks_per_node} task(s) per node x --cpus-per-task {cpus_per_task or 1} = {cpus_needed} CPUs is more "
            f"than a node of {where} has: sinfo reports at most {cap.cpus} CPUs per node"
        )
    if nodes > cap.nodes:
        raise SlurmError(f"--nodes {nodes} is more than the {cap.nodes} node(s) of {where} (sinfo)")
    return cap


def _config_name(configs: Sequence[str]) -> str:
    return Path(configs[0]).stem if configs else "run"


def default_run_dir(configs: Sequence[str], job_name: str, root: str = "runs") -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / _config_name(configs) / f"slurm-{job_name}-{stamp}"


def build_command(
    command: str, configs: Sequence[str], run_dir: Path, *, nodes: int, devices: int, accelerator: str,
    overrides: Sequence[str] = (), trainer_args: bool = True,
) -> str:
    """The command every task runs (without ``srun``).

    For ``cli.py`` the run lives in ``<run_dir>/<run_name>/version_<n>/`` (``--runs_dir``) and
    every start passes ``--ckpt_path=last``: the first start finds nothing and trains from
    scratch, a requeued start resumes from the newest complete checkpoint (Lightning's
    ``hpc_ckpt_<n>.ckpt`` or ``last.ckpt``) in that same version folder. Another ``--command``
    gets ``--trainer.default_root_dir=<run_dir>`` (where Lightning looks for ``hpc_ckpt``).
    """
    parts = shlex.split(command)
    for cfg in configs:
        parts += ["--config", str(cfg)]
    given = {o.split("=", 1)[0] for o in overrides}
    if any(Path(p).name == "cli.py" for p in parts):
        if "--runs_dir" not in given:
            parts.append(f"--runs_dir={run_dir}")
        if "--ckpt_path" not in given:
            parts.append("--ckpt_path=last")
    else:
        parts.append(f"--trainer.default_root_dir={run_dir}")
    if trainer_args:
        parts += [f"--trainer.num_nodes={nodes}", f"--trainer.devices={devices}", f"--trainer.accelerator={accelerator}"]
    parts += list(overrides)
    return shlex.join(parts)


def write_sbatch(
    configs: Sequence[str],
    *,
    nodes: int = 1,
    gpus_per_node: int = 0,
    devices: Optional[int] = None,
    cpus_per_task: Optional[int] = None,
    mem: Optional[str] = None,
    time: Optional[str] = None,
    partition: Optional[str] = None,
    account: Optional[str] = None,
    job_name: Optional[str] = None,
    run_dir: Optional[os.PathLike | str] = None,
    command: Optional[str] = None,
    overrides: Sequence[str] = (),
    max_gpus_per_node: Optional[int] = None,
    signal_seconds: int = DEFAULT_SIGNAL_SECONDS,
    requeue: bool = True,
    trainer_args: bool = True,
    setup_lines: Sequence[str] = (),
    extra_sbatch: Sequence[str] = (),
    workdir: Optional[os.PathLike | str] = None,
    check_node: bool = True,
) -> Path:
    """Write ``<run_dir>/job.sbatch`` and return its path (nothing is submitted).

    ``devices`` is the number of tasks per node for CPU jobs (``gpus_per_node == 0``); with GPUs it
    defaults to ``gpus_per_node``. ``command`` defaults to ``<this python> cli.py fit``. The node
    check (``sinfo`` when reachable, else ``max_gpus_per_node``) raises ``SlurmError`` before
    anything is written.
    """
    configs = [str(c) for c in configs]
    if nodes < 1:
        raise SlurmError(f"--nodes must be >= 1, got {nodes}")
    if gpus_per_node < 0:
        raise SlurmError(f"--gpus-per-node must be >= 0, got {gpus_per_node}")
    if gpus_per_node > 0:
        if devices is not None and devices != gpus_per_node:
            raise SlurmError(f"--devices {devices} differs from --gpus-per-node {gpus_per_node}: one task per GPU")
        tasks = gpus_per_node
        accelerator = "gpu"
    else:
        tasks = devices if devices is not None else 1
        accelerator = "cpu"
    if tasks < 1:
        raise SlurmError(f"--devices must be >= 1, got {tasks}")
    if check_node:
        check_fits_node(gpus_per_node=gpus_per_node, tasks_per_node=tasks, cpus_per_task=cpus_per_task,
                        partition=partition, max_gpus_per_node=max_gpus_per_node, nodes=nodes)

    job_name = job_name or _config_name(configs)
    run_path = Path(run_dir) if run_dir is not None else default_run_dir(configs, job_name)
    run_path = run_path.resolve()
    run_path.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir).resolve() if workdir is not None else Path.cwd().resolve()
    if command is None:
        command = f"{shlex.quote(sys.executable)} cli.py fit"
    task_cmd = build_command(command, configs, run_path, nodes=nodes, devices=tasks, accelerator=accelerator,
                             overrides=overrides, trainer_args=trainer_args)
    log_path = run_path / "slurm-%j.out"

    sb = [
        f"--job-name={job_name}",
        f"--nodes={nodes}",
        f"--ntasks-per-node={tasks}",
    ]
    if gpus_per_node:
        sb.append(f"--gpus-per-node={gpus_per_node}")
    if cpus_per_task:
        sb.append(f"--cpus-per-task={cpus_per_task}")
    if mem:
        sb.append(f"--mem={mem}")
    if time:
        sb.append(f"--time={time}")
    if partition:
        sb.append(f"--partition={partition}")
    if account:
        sb.append(f"--account={account}")
    sb += [f"--output={log_path}", f"--error={log_path}", "--open-mode=append"]
    if signal_seconds:
        sb.append(f"--signal=SIGUSR1@{signal_seconds}")
    if requeue:
        sb.append("--requeue")
    sb += list(extra_sbatch)

    now = _dt.datetime.now().isoformat(timespec="seconds")
    lines = [
        "#!/bin/bash",
        f"# Written by `python -m launch.slurm` on {now}.",
        f"# configs: {' '.join(configs) or '(none)'}",
        f"# {nodes} node(s) x {tasks} task(s) ({accelerator}); one task per device.",
        "# SIGUSR1 arrives before the time limit: Lightning saves hpc_ckpt_<n>.ckpt in the run folder",
        "# and requeues the job; the restart resumes from the newest complete checkpoint of that folder.",
    ]
    lines += [f"#SBATCH {opt}" for opt in sb]
    lines += [
        "",
        "set -euo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        "export PYTHONUNBUFFERED=1",
        'echo "[launch.slurm] job ${SLURM_JOB_ID} restart ${SLURM_RESTART_COUNT:-0} on $(hostname) at $(date -Is)"',
    ]
    lines += list(setup_lines)
    lines += [
        "",
        "# srun starts one task per device; signals from SLURM reach every task.",
        f"srun --kill-on-bad-exit=1 {task_cmd}",
        "",
    ]
    script = run_path / "job.sbatch"
    tmp = script.with_suffix(".sbatch.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, script)
    script.chmod(0o755)
    return script


def submit(script: os.PathLike | str, *, sbatch: str = "sbatch", extra_args: Sequence[str] = ()) -> tuple[str, Path]:
    """Submit with ``sbatch --parsable``; returns ``(job_id, log_path)``."""
    script = Path(script)
    exe = shutil.which(sbatch)
    if exe is None:
        raise SlurmNotAvailableError(
            f"`{sbatch}` is not on PATH, so the job cannot be submitted: this machine is not a SLURM submit host, "
            "or the SLURM client tools are not installed/loaded (e.g. `module load slurm`). The batch script is "
            f"written at {script}; submit it from a login node with `sbatch {script}`, or use --dry-run."
        )
    proc = subprocess.run([exe, "--parsable", *extra_args, str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SlurmError(f"sbatch failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    job_id = proc.stdout.strip().split(";")[0]
    if not re.fullmatch(r"\d+(_\d+)?", job_id):
        raise SlurmError(f"sbatch returned no job id: {proc.stdout!r}")
    return job_id, script.parent / f"slurm-{job_id}.out"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, overrides = split_overrides(argv)
    p = argparse.ArgumentParser(prog="python -m launch.slurm", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", action="append", default=[], help="config file; repeat to overlay (passed on in order)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0, help="GPUs (= tasks) per node; 0 for a CPU job")
    p.add_argument("--devices", type=int, default=None, help="tasks per node of a CPU job (default 1)")
    p.add_argument("--cpus-per-task", type=int, default=None)
    p.add_argument("--mem", default=None, help="memory per node, e.g. 480G")
    p.add_argument("--time", default=None, help="time limit, e.g. 48:00:00")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--job-name", default=None)
    p.add_argument("--run-dir", default=None, help="run folder (default runs/<config>/slurm-<job>-<time>)")
    p.add_argument("--command", default=None, help="what each task runs (default: <python> cli.py fit)")
    p.add_argument("--max-gpus-per-node", type=int, default=None, help="node size when sinfo is not reachable")
    p.add_argument("--signal-seconds", type=int, default=DEFAULT_SIGNAL_SECONDS,
                   help="send SIGUSR1 this many seconds before the time limit (0: never)")
    p.add_argument("--no-requeue", action="store_true")
    p.add_argument("--no-trainer-args", action="store_true",
                   help="do not add --trainer.num_nodes/devices/accelerator to the command")
    p.add_argument("--setup", action="append", default=[], help="shell line run before srun (module load, ...)")
    p.add_argument("--sbatch-option", action="append", default=[], help="extra #SBATCH option, e.g. --qos=high")
    p.add_argument("--dry-run", action="store_true", help="write the script, do not submit")
    args = p.parse_args(argv)
    if not args.config:
        p.error("at least one --config is required")
    args.overrides = overrides
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        script = write_sbatch(
            args.config, nodes=args.nodes, gpus_per_node=args.gpus_per_node, devices=args.devices,
            cpus_per_task=args.cpus_per_task, mem=args.mem, time=args.time, partition=args.partition,
            account=args.account, job_name=args.job_name, run_dir=args.run_dir, command=args.command,
            overrides=args.overrides, max_gpus_per_node=args.max_gpus_per_node, signal_seconds=args.signal_seconds,
            requeue=not args.no_requeue, trainer_args=not args.no_trainer_args, setup_lines=args.setup,
            extra_sbatch=args.sbatch_option,
        )
        print(f"batch script: {script}")
        if args.dry_run:
            print(script.read_text())
            print("dry run: not submitted (nothing else was written)")
            return 0
        job_id, log_path = submit(script)
    except SlurmError as err:
        print(f"launch.slurm: error: {err}", file=sys.stderr)
        return 2
    print(f"submitted job {job_id}")
    print(f"log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
