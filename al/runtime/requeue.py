"""A preempted SLURM job's requeue that survives the signals of its own cancellation.

On SIGUSR2 submitit runs `scontrol requeue JOB` as a child of the job's process. SLURM then
cancels the running step, which signals every process of the step with SIGTERM — the
`scontrol` child too. On a busy node that SIGTERM can land before `scontrol` has exited: the
job is requeued, yet submitit sees `CalledProcessError(... died with SIGTERM)`, the run
returns as failed, and the sweep exits 1 while the job reruns unattended.

`shield_requeue()` makes submitit start `scontrol` with SIGTERM ignored (a disposition the
child inherits through exec), so it always finishes and reports its real exit status.
"""

from __future__ import annotations

import signal
import subprocess

REQUEUE_TIMEOUT_S = 60  # submitit's


def requeue_ignoring_sigterm(job_id: str) -> None:
    """`scontrol requeue job_id`, started with SIGTERM ignored; raises on a non-zero exit."""
    command = ["scontrol", "requeue", job_id]
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        child = subprocess.Popen(command)
    finally:
        signal.signal(signal.SIGTERM, previous)
    status = child.wait(timeout=REQUEUE_TIMEOUT_S)
    if status != 0:
        raise subprocess.CalledProcessError(status, command)


def shield_requeue() -> None:
    """Route submitit's SLURM requeue through `requeue_ignoring_sigterm` in this process (a
    submitit job; anywhere else submitit never requeues, so this changes nothing)."""
    from submitit.core import logger
    from submitit.slurm.slurm import SlurmJobEnvironment

    def _requeue(self: SlurmJobEnvironment, countdown: int) -> None:
        requeue_ignoring_sigterm(self.job_id)
        logger.get_logger().info(f"Requeued job {self.job_id} ({countdown} remaining timeouts)")

    SlurmJobEnvironment._requeue = _requeue
