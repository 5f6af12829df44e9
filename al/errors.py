"""Errors a user can act on: each message names the bad value and the fix."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate


class UserError(Exception):
    """An error the user caused and can fix. `al.train` prints it as one line on stderr and
    exits with status 2 (the traceback only with HYDRA_FULL_ERROR=1)."""


class ConfigError(UserError, ValueError):
    """A configuration value that cannot run; raised before anything is written."""


class DataError(UserError):
    """Data that cannot be read: a damaged file, an empty class folder."""


class NonFiniteLossError(UserError, FloatingPointError):
    """The training loss became NaN or infinite."""


class StorageError(UserError):
    """The run directory cannot be written: a full disk or quota."""


DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def storage_error(path: Path, error: OSError) -> StorageError:
    return StorageError(
        f"cannot write {path}: {error.strerror}. Free some space and rerun the same command: it "
        "resumes after the last finished stage"
    )


class RunDirectoryBusy(UserError):
    """Another live process holds the run directory."""


def build(node: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate`, letting a UserError through unwrapped so its message leads."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


@contextmanager
def report_user_errors(run_dir: Path | None = None) -> Iterator[None]:
    """A UserError becomes one line on stderr and exit status 2 (HYDRA_FULL_ERROR=1 keeps the
    traceback); a `run_dir` it leaves empty (Hydra creates it first) is removed."""
    try:
        yield
    except UserError as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if run_dir is not None and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
