"""One run per directory: the lock file, its fallback without OS locks, and two real processes
started on one run directory."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from al.errors import RunDirectoryBusy
from al.runtime.lock import RunDirectoryLock

from conftest import ROOT, read_results
from conftest import start_train as train


def test_a_second_holder_is_refused_naming_the_first_until_it_releases(tmp_path):
    with RunDirectoryLock(tmp_path):
        with pytest.raises(RunDirectoryBusy) as refused:
            RunDirectoryLock(tmp_path).acquire()
        message = str(refused.value)
        assert (
            f"{tmp_path} is in use by PID {os.getpid()} on host {socket.gethostname()}" in message
        )
        assert "choose another hydra.run.dir" in message
    assert (tmp_path / ".lock").read_text() == ""  # a clean release empties the record
    with RunDirectoryLock(tmp_path):
        pass


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, caplog):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from al.runtime.lock import RunDirectoryLock; "
            "RunDirectoryLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(RunDirectoryBusy, match=f"PID {holder.pid} "):
        RunDirectoryLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    with caplog.at_level(logging.INFO, logger="al.runtime.lock"), RunDirectoryLock(tmp_path):
        assert (tmp_path / ".lock").read_text().split()[0] == str(os.getpid())
    assert f"taking over the lock of PID {holder.pid} " in caplog.text


def without_os_locks(monkeypatch) -> None:
    def unsupported(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", unsupported)


def test_without_os_locks_the_record_decides(tmp_path, monkeypatch):
    without_os_locks(monkeypatch)
    lock_file = tmp_path / ".lock"
    lock_file.write_text(f"{os.getpid()} {socket.gethostname()} 2026-01-01T00:00:00\n")
    with pytest.raises(RunDirectoryBusy, match=f"PID {os.getpid()} on host"):
        RunDirectoryLock(tmp_path).acquire()
    lock_file.write_text("12345 another-node 2026-01-01T00:00:00\n")
    with pytest.raises(RunDirectoryBusy, match=f"another-node.*delete {lock_file}"):
        RunDirectoryLock(tmp_path).acquire()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    lock_file.write_text(f"{dead} {socket.gethostname()} 2026-01-01T00:00:00\n")
    with RunDirectoryLock(tmp_path):
        assert lock_file.read_text().split()[0] == str(os.getpid())
    assert lock_file.read_text() == ""


@pytest.mark.slow
def test_a_second_process_on_a_run_directory_exits_2_and_the_first_finishes(tmp_path):
    first = train(tmp_path, "seed=0")
    deadline = time.monotonic() + 120
    while not (tmp_path / "state" / "stage_000.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)  # paused mid-run, holding the lock
    hydra_config = (tmp_path / ".hydra" / "config.yaml").read_text()
    # Another run, and the same run twice, while the first is at work.
    seconds = [train(tmp_path, "seed=1"), train(tmp_path, "seed=0")]
    holder = f"Error: {tmp_path} is in use by PID {first.pid} on host {socket.gethostname()}"
    for second in seconds:
        _, stderr = second.communicate(timeout=120)
        assert second.returncode == 2
        [line] = stderr.strip().splitlines()
        assert line.startswith(holder + " (since ") and "choose another hydra.run.dir" in line
    assert first.poll() is None
    first.send_signal(signal.SIGCONT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    assert [r["n_labeled"] for r in read_results(tmp_path)] == [20, 30, 40]
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == hydra_config
    assert "seed: 0" in hydra_config
