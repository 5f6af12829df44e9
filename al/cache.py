"""Results shared by runs, under `paths.cache`: pretrained weights and encoded features.

An entry is named by the hash of what determines it (its `key`: resolved config nodes and a
seed), holds that key beside its tensors and a SHA-256 of its bytes, and is computed by one
process at a time (an `flock` on `NAME.lock`; the others wait and then read it). An entry whose
bytes fail their checksum, or whose stored key differs from the one asked for, is stale: it is
recomputed, never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from al.runtime import signals
from al.store import atomic_write_bytes

log = logging.getLogger(__name__)


def key_digest(key: dict[str, Any]) -> str:
    """A short, stable name for `key` (JSON with sorted keys, SHA-256)."""
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CacheEntry:
    """`root/kind/DIGEST.pt` for `key`; `get_or_compute(compute)` returns its tensors."""

    def __init__(self, root: Path, kind: str, key: dict[str, Any]) -> None:
        self.key = json.loads(json.dumps(key, sort_keys=True, default=str))
        self.digest = key_digest(key)
        self.path = Path(root) / kind / f"{self.digest}.pt"

    def get_or_compute(self, compute: Callable[[], dict[str, torch.Tensor]]) -> dict:
        """The stored tensors, or `compute()`'s, stored first (one process computes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.held():
            stored = self.read()
            if stored is not None:
                return stored
            tensors = compute()
            signals.enter("saving the cache")
            with signals.deferred():
                self.write(tensors)
            return tensors

    def read(self) -> dict | None:
        """The entry's tensors if it exists, is whole and was made for this key; else None."""
        if not self.path.exists():
            return None
        payload = self.path.read_bytes()
        digest_file = self.path.with_name(self.path.name + ".sha256")
        if not digest_file.exists() or digest_file.read_text() != sha256(payload):
            log.warning("Cache entry %s is damaged: computing it again", self.path)
            return None
        entry = torch.load(io.BytesIO(payload), weights_only=True)
        if entry.get("key") != self.key:
            log.warning("Cache entry %s was made for another config: computing it again", self.path)
            return None
        return entry["tensors"]

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        buffer = io.BytesIO()
        torch.save({"key": self.key, "tensors": tensors}, buffer)
        payload = buffer.getvalue()
        digest_file = self.path.with_name(self.path.name + ".sha256")
        digest_file.unlink(missing_ok=True)  # no checksum: not whole yet
        atomic_write_bytes(self.path, payload)
        atomic_write_bytes(digest_file, sha256(payload).encode())

    @contextmanager
    def held(self) -> Iterator[None]:
        """This entry's lock, waited for: runs of a sweep that need it compute it once."""
        with open(self.path.with_suffix(".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
