"""SIGTERM and SIGINT stop a run at any moment — training, testing, selection, a selector's own
training loops, writing — with one line saying where, and rerunning the command resumes.

The handler raises `RunStopped` in the main thread, so the stop lands between two Python
bytecodes wherever the run is, inside Lightning's loops or a selector's own. Writes that make a
stage finished run `deferred()`: a signal during them takes effect once they are done, so a
stage is saved whole or not at all. A SIGTERM handler someone installed first (submitit's, which
lets SLURM's SIGTERM pass while its USR2 requeues the job) is left in place.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType


class RunStopped(BaseException):
    """A stop asked for by a signal. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` (ours, Lightning's, a library's) swallows it; not a KeyboardInterrupt,
    which Lightning answers with `exit(1)`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended: 143 for
        SIGTERM, 130 for SIGINT."""
        return 128 + self.signum


@dataclass
class Whereabouts:
    """Where the run is: its stage (None before the first) and the phase within it."""

    stage: int | None = None
    phase: str = "start-up"

    def __str__(self) -> str:
        return self.phase if self.stage is None else f"stage {self.stage} ({self.phase})"


WHERE = Whereabouts()
_deferred: list[int] = []  # signals held while a write finishes
_deferring = False
_installed = False
_stopping = False


def install() -> None:
    """Stop on SIGINT, and on SIGTERM unless a handler other than the default is in place.
    Forked children (loader workers) get the defaults back: they end as PyTorch expects."""
    signal.signal(signal.SIGINT, _stop)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _stop)
    global _installed
    if not _installed:
        os.register_at_fork(after_in_child=_restore_defaults)
        _installed = True


def _restore_defaults() -> None:
    if signal.getsignal(signal.SIGINT) is _stop:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGTERM) is _stop:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(signum: int, _frame: FrameType | None) -> None:
    if _stopping:
        return
    if _deferring:
        _deferred.append(signum)
        return
    raise stopping(signum)


def stopping(signum: int) -> RunStopped:
    """The stop to raise; later signals are ignored while the run unwinds (a second one, say
    the copy DDP ranks get from both Lightning and `signal_children`, would otherwise land in
    its cleanup; SIGKILL still ends a run stuck there)."""
    global _stopping
    _stopping = True
    return RunStopped(signum)


def enter(phase: str, stage: int | None = None) -> None:
    """Record that the run entered `phase` (of `stage`, when given)."""
    if stage is not None:
        WHERE.stage = stage
    WHERE.phase = phase


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGTERM and SIGINT until the block is done, then stop if one came."""
    global _deferring
    outer = _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
    if not outer and _deferred:
        signum = _deferred[0]
        _deferred.clear()
        raise stopping(signum)


@contextmanager
def exit_when_stopped(prints_line: bool = True) -> Iterator[None]:
    """A RunStopped becomes its exit status after passing the signal on to this process's
    children (the DDP ranks it started, loader workers), with one line on stderr when
    `prints_line` (the rank that writes)."""
    try:
        yield
    except RunStopped as stop:
        signal_children(stop.signum)
        if prints_line:
            print(
                f"Stopped by {stop} during {WHERE}: rerun the same command to resume after the "
                "last finished stage",
                file=sys.stderr,
            )
        raise SystemExit(stop.exit_status) from None


def signal_children(signum: int) -> None:
    """Send `signum` to every live child of this process (read from /proc; nowhere else)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == os.getpid():
                os.kill(int(stat.parent.name), signum)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to signal
