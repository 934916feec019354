"""A real single-node SLURM cluster for the launch tests (Debian slurm + munge).

Follows ../shared/ENVIRONMENT.md ("SLURM on one machine"): ``apt-get install slurmctld
slurmd slurm-client munge`` (skipped when already installed), start ``munged`` as the
munge user, then ``slurmctld`` and ``slurmd`` as root with a one-node ``slurm.conf``.

Two choices so that it coexists with anything else on the machine: the ``slurm.conf``
lives in a private folder (``SLURM_CONF`` points clients, jobs and daemons at it) with
its own ports, spool and state folders, and an already running ``munged`` is reused.
``KillWait=5`` shortens the SIGTERM->SIGKILL grace of a requeued job (Lightning's SLURM
handler ignores SIGTERM, so the default 30 s would only slow the test down).

Daemons this fixture starts are stopped by their PID at the end of the session.
The tests that use it are marked ``slurm``; without root or apt-get they skip and say why.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _install() -> Optional[str]:
    """Install the packages if needed; returns a reason to skip, or None."""
    if all(shutil.which(b) or os.path.exists(f"/usr/sbin/{b}") for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        return None
    if os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root (apt-get)"
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    upd = _run(["apt-get", "update"], timeout=300, env=env)
    if upd.returncode != 0:
        return f"apt-get update failed: {upd.stderr.strip()[-500:]}"
    inst = _run(["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES], timeout=600, env=env)
    if inst.returncode != 0:
        return f"apt-get install {' '.join(PACKAGES)} failed: {inst.stderr.strip()[-500:]}"
    return None


def _munge_alive() -> bool:
    return shutil.which("munge") is not None and _run(["sh", "-c", "munge -n | unmunge"], timeout=10).returncode == 0


def _pid_from(path: Path, timeout: float = 15) -> Optional[int]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.2)
    return None


@dataclass
class SlurmCluster:
    """Handle on the running cluster: its environment and a few helpers."""

    root: Path
    conf: Path
    node: str
    cpus: int
    env: dict[str, str]
    pids: dict[str, int] = field(default_factory=dict)

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return _run(list(cmd), timeout=timeout, env=self.env)

    def job_state(self, job_id: str) -> dict[str, str]:
        out = self.run("scontrol", "-o", "show", "job", job_id).stdout
        fields = {}
        for token in out.split():
            if "=" in token:
                k, v = token.split("=", 1)
                fields[k] = v
        return fields

    def wait_for_state(self, job_id: str, states: set[str], timeout: float = 120, poll: float = 0.5) -> dict[str, str]:
        deadline = time.time() + timeout
        info: dict[str, str] = {}
        while time.time() < deadline:
            info = self.job_state(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(poll)
        raise TimeoutError(f"job {job_id} did not reach {states} in {timeout}s; last: {info.get('JobState')} "
                           f"reason={info.get('Reason')}")


def _write_conf(root: Path, node: str, node_line: str) -> Path:
    conf = root / "slurm.conf"
    ctld_port, d_port = _free_port(), _free_port()
    conf.write_text("\n".join([
        "ClusterName=testcluster",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={d_port}",
        "AuthType=auth/munge",
        "SlurmUser=root",
        "SlurmdUser=root",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "ReturnToService=2",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "MpiDefault=none",
        "KillWait=5",
        "MinJobAge=600",
        "SchedulerParameters=sched_interval=1",
        f"StateSaveLocation={root / 'ctld'}",
        f"SlurmdSpoolDir={root / 'd'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    return conf


def start_cluster() -> SlurmCluster:
    """Install (if needed) and start munge + slurmctld + slurmd; raise ``pytest.skip`` when impossible."""
    reason = _install()
    if reason:
        pytest.skip(f"real SLURM cluster unavailable: {reason}")
    if os.geteuid() != 0:
        pytest.skip("real SLURM cluster unavailable: starting slurmctld/slurmd needs root")

    started: dict[str, int] = {}
    if not _munge_alive():
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        if not os.path.exists("/etc/munge/munge.key"):
            _run(["runuser", "-u", "munge", "--", "/usr/sbin/mungekey", "--create"], timeout=30)
        r = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], timeout=30)
        if r.returncode != 0:
            pytest.skip(f"real SLURM cluster unavailable: munged did not start: {r.stderr.strip()}")
        pid = _pid_from(Path("/run/munge/munged.pid"), timeout=10)
        if pid:
            started["munged"] = pid

    root = Path(tempfile.mkdtemp(prefix="slurm-test-"))
    for d in ("ctld", "d"):
        (root / d).mkdir()
    node = socket.gethostname().split(".")[0]
    probe = _run(["/usr/sbin/slurmd", "-C"], timeout=30)
    node_line = next((ln for ln in probe.stdout.splitlines() if ln.startswith("NodeName=")), "")
    if not node_line:
        node_line = f"NodeName={node} CPUs={os.cpu_count() or 1}"
    node = node_line.split()[0].split("=", 1)[1]
    cpus = int(next((t.split("=")[1] for t in node_line.split() if t.startswith("CPUs=")), os.cpu_count() or 1))
    conf = _write_conf(root, node, node_line)
    env = dict(os.environ, SLURM_CONF=str(conf))
    env = {k: v for k, v in env.items() if not (k.startswith("SLURM_") and k != "SLURM_CONF")}
    cluster = SlurmCluster(root=root, conf=conf, node=node, cpus=cpus, env=env, pids=started)
    try:
        r = _run(["/usr/sbin/slurmctld", "-f", str(conf)], env=env)
        if r.returncode != 0:
            raise RuntimeError(f"slurmctld failed: {r.stderr}")
        pid = _pid_from(root / "slurmctld.pid")
        if pid:
            cluster.pids["slurmctld"] = pid
        time.sleep(1)
        r = _run(["/usr/sbin/slurmd", "-f", str(conf)], env=env)
        if r.returncode != 0:
            raise RuntimeError(f"slurmd failed: {r.stderr}")
        pid = _pid_from(root / "slurmd.pid")
        if pid:
            cluster.pids["slurmd"] = pid
        deadline = time.time() + 60
        state = ""
        while time.time() < deadline:
            state = cluster.run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
            if state.startswith("idle") or state.startswith("mixed"):
                break
            time.sleep(0.5)
        else:
            log = (root / "slurmctld.log").read_text()[-2000:] if (root / "slurmctld.log").exists() else ""
            raise RuntimeError(f"node never became idle (state {state!r}); slurmctld.log tail:\n{log}")
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: SlurmCluster) -> None:
    """Stop the daemons this module started, by PID (slurmd, then slurmctld, then munged)."""
    for name in ("slurmd", "slurmctld", "munged"):
        pid = cluster.pids.get(name)
        if not pid:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="session")
def slurm_cluster():
    """Session-scoped real SLURM cluster (see module docstring)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
