"""`python tests/stop_run.py [overrides]`: `python -m al.train` that sends itself the signal
named by $STOP_SIGNAL (in the first process of a run: not in DDP ranks 1…) the first time the
function $STOP_AT (`module:qualname`) is called, so a test stops a run in a known phase."""

from __future__ import annotations

import importlib
import os
import runpy
import signal
import sys
from pathlib import Path


def stop_at(target: str, signum: int) -> None:
    module_name, qualname = target.split(":")
    owner = importlib.import_module(module_name)
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    calls = []

    def stopping(*args, **kwargs):
        if not calls and os.environ.get("LOCAL_RANK", "0") == "0":
            calls.append(True)
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    setattr(owner, name, stopping)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    stop_at(os.environ["STOP_AT"], getattr(signal, os.environ["STOP_SIGNAL"]))
    runpy.run_module("al.train", run_name="__main__", alter_sys=True)
