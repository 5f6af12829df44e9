"""A throwaway single-node SLURM cluster (Debian's slurm-wlm and munge) for the SLURM tests.

`SlurmCluster(workdir)` writes a munge key, a `slurm.conf` (this host as
controller and only node, one partition `debug`) and every state, spool, pid
and log path under `workdir`, then runs `munged`, `slurmctld` and `slurmd` in
the foreground as its own child processes. `stop()` cancels the cluster's jobs
and stops exactly those processes. Clients reach it through `env()`
(`SLURM_CONF`). Needs root, as slurmd does.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
INSTALL_HINT = "install them with: apt-get install slurm-wlm munge (and run as root)"


def missing_binaries() -> list[str]:
    """SLURM and munge programs this machine lacks (searched on PATH and in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(workdir: Path, host: str, cpus: int, memory_mb: int, ports: tuple[int, int]) -> str:
    """The single-node configuration: no cgroups, no accounting, paths under `workdir`."""
    return f"""\
ClusterName=al-test
SlurmctldHost={host}
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
AuthType=auth/munge
AuthInfo=socket={workdir / "munge.socket"},cred_expire=10
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
StateSaveLocation={workdir / "state"}
SlurmdSpoolDir={workdir / "spool"}
SlurmctldPidFile={workdir / "slurmctld.pid"}
SlurmdPidFile={workdir / "slurmd.pid"}
SlurmctldLogFile={workdir / "slurmctld.log"}
SlurmdLogFile={workdir / "slurmd.log"}
SchedulerParameters=defer_batch=0
NodeName={host} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def machine_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


class SlurmCluster:
    """Start with `start()`, use `env()` for clients, end with `stop()`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.conf_path = self.workdir / "slurm.conf"
        self.processes: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        """The environment of a client (sbatch, a Hydra sweep) of this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf_path)}

    def start(self, timeout_s: float = 60) -> None:
        self._write_files()
        sbin = Path("/usr/sbin")
        self._spawn(
            [
                str(sbin / "munged"),
                "--foreground",
                "--force",
                f"--socket={self.workdir / 'munge.socket'}",
                f"--key-file={self.workdir / 'munge.key'}",
                f"--pid-file={self.workdir / 'munged.pid'}",
                f"--log-file={self.workdir / 'munged.log'}",
                f"--seed-file={self.workdir / 'munged.seed'}",
            ],
            "munged.out",
        )
        self._wait_for(lambda: (self.workdir / "munge.socket").exists(), "munged", timeout_s)
        self._spawn([str(sbin / "slurmctld"), "-D", "-i", "-f", str(self.conf_path)], "ctld.out")
        self._spawn([str(sbin / "slurmd"), "-D", "-f", str(self.conf_path)], "slurmd.out")
        self._wait_for(self._node_idle, "an idle node", timeout_s)

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop the daemons this object started."""
        if self._controller_alive():
            subprocess.run(["scancel", "--full", "--user", "root"], env=self.env(), check=False)
            self._wait_for(lambda: not self.job_ids(), "jobs to end", 30, raise_on_timeout=False)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def job_ids(self) -> list[str]:
        """Every job id the controller still knows (pending, running or completing)."""
        return self.query("squeue", "--noheader", "--format=%i").split()

    def query(self, *command: str) -> str:
        """The output of a SLURM client command run against this cluster ('' on failure)."""
        return subprocess.run(
            command, env=self.env(), capture_output=True, text=True, check=False
        ).stdout

    def logs(self) -> str:
        """The daemons' log files, for a failing test's message."""
        names = ("slurmctld.log", "slurmd.log", "munged.log", "ctld.out", "slurmd.out")
        return "\n".join(
            f"--- {name}\n{(self.workdir / name).read_text()[-3000:]}"
            for name in names
            if (self.workdir / name).exists()
        )

    def _write_files(self) -> None:
        for name in ("state", "spool"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        key = self.workdir / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        key.chmod(0o400)
        ports = (free_port(), free_port())
        memory_mb = int(machine_memory_mb() * 0.9)
        text = slurm_conf(self.workdir, socket.gethostname(), os.cpu_count() or 1, memory_mb, ports)
        self.conf_path.write_text(text)

    def _spawn(self, command: list[str], log_name: str) -> None:
        log = (self.workdir / log_name).open("w")
        self.processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env())
        )

    def _controller_alive(self) -> bool:
        return any(process.poll() is None for process in self.processes[1:2])

    def _node_idle(self) -> bool:
        return self.query("sinfo", "--noheader", "--format=%t").strip() == "idle"

    def _wait_for(self, ready, what: str, timeout_s: float, raise_on_timeout: bool = True) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            if any(process.poll() is not None for process in self.processes):
                break
            time.sleep(0.5)
        if raise_on_timeout:
            self.stop()
            raise RuntimeError(f"SLURM test cluster: no {what} after {timeout_s} s\n{self.logs()}")
