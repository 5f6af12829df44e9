"""One run per directory: an OS-level lock on `RUN_DIR/.lock`, held for the life of the run.

The lock is `flock` on the lock file, so the kernel releases it whenever the holder exits,
however it dies; on NFS, Linux maps `flock` to byte-range locks that the server arbitrates
between nodes. The file records the holder (PID, host, start time) for the message a second
process gets, and is emptied on a clean release, so a non-empty file found unlocked is the
trace of a holder that died. Where the filesystem supports no locks at all, the lock falls
back to the recorded holder: a dead PID on this host is taken over, a holder on another host
is trusted until its file is removed.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from al.errors import DISK_FULL, RunDirectoryBusy, storage_error

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def holder_line() -> str:
    return f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n"


def describe(holder: str) -> str:
    """'PID 123 on host node1 (since …)' from a lock file's line."""
    pid, host, since = ([*holder.split(), "?", "?", "?"])[:3]
    return f"PID {pid} on host {host} (since {since})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDirectoryLock:
    """`with RunDirectoryLock(run_dir):` — or RunDirectoryBusy naming the holder and the fix."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.fd: int | None = None

    def __enter__(self) -> RunDirectoryLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 256, 0).decode(errors="replace")
            os.close(fd)
            raise self.busy(holder) from None
        except OSError as error:
            os.close(fd)
            if error.errno not in NO_LOCKS:
                raise
            self.acquire_by_record()
            return
        previous = os.pread(fd, 256, 0).decode(errors="replace").strip()
        if previous:
            log.info(
                "%s: taking over the lock of %s, which ended without releasing it",
                self.run_dir,
                describe(previous),
            )
        self.fd = fd
        self.write_holder()

    def acquire_by_record(self) -> None:
        """The fallback without OS locks: the lock file's record decides."""
        previous = self.path.read_text(errors="replace").strip() if self.path.exists() else ""
        if previous:
            pid, host = ([*previous.split(), "0", ""])[:2]
            on_this_host = host == socket.gethostname()
            if not on_this_host or (pid.isdigit() and pid_alive(int(pid))):
                raise self.busy(previous, also=f"if that process is gone, delete {self.path}")
            log.info(
                "%s: taking over the lock of %s, which is gone", self.run_dir, describe(previous)
            )
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.write_holder()

    def write_holder(self) -> None:
        """Record this process as the holder; on failure (a full disk) let the lock go."""
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, holder_line().encode(), 0)
            os.fsync(self.fd)
        except OSError as error:
            os.close(self.fd)
            self.fd = None
            if error.errno not in DISK_FULL:
                raise
            raise storage_error(self.path, error) from None

    def release(self) -> None:
        """Empty the record (a clean exit), then unlock."""
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = None

    def busy(self, holder: str, also: str = "") -> RunDirectoryBusy:
        fix = "wait for it to finish, stop it, or choose another hydra.run.dir"
        return RunDirectoryBusy(
            f"{self.run_dir} is in use by {describe(holder.strip())}: {fix}"
            + (f"; {also}" if also else "")
        )
