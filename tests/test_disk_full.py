"""A full disk while writing the curve or the metric log warns and the run goes on; the stage
snapshots (written while there is room) keep the results exact. Needs a tiny tmpfs."""

from __future__ import annotations

import errno
import logging
import subprocess
from pathlib import Path

import pytest

from al.errors import StorageError
from al.loop import run
from al.store import RunStore

from conftest import read_results, without_timings


@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(disk: Path) -> None:
    """Write zeros until the disk is full."""
    with open(disk / "filler", "wb") as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


def test_a_full_disk_for_curve_and_logs_does_not_fail_the_stages(
    tiny_config, tmp_path, tiny_disk, monkeypatch, caplog
):
    cfg = tiny_config("logger=csv")
    run(cfg, tmp_path / "reference")
    save_picks, save_stage = RunStore.save_picks, RunStore.save_stage

    def with_room(store, *args):  # the stage's own files are written with room to spare…
        (tiny_disk / "filler").unlink(missing_ok=True)
        save_picks(store, *args)

    def then_full(store, *args):  # …then the disk is full for everything else
        save_stage(store, *args)
        fill(tiny_disk)

    monkeypatch.setattr(RunStore, "save_picks", with_room)
    monkeypatch.setattr(RunStore, "save_stage", then_full)
    with caplog.at_level(logging.WARNING, logger="al.store"):
        records = run(cfg, tiny_disk / "run")
    assert len(records) == 3
    assert without_timings(read_results(tiny_disk / "run")) == without_timings(
        read_results(tmp_path / "reference")
    )
    warnings = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Could not write curve.png (No space left") for m in warnings)
    assert any(m.startswith("Could not write the CsvSink log (No space left") for m in warnings)


def test_no_room_for_a_snapshot_or_the_lock_is_one_error_saying_how_to_resume(
    tiny_config, tiny_disk, monkeypatch
):
    run_dir = tiny_disk / "run"
    save_stage = RunStore.save_stage

    def on_a_full_disk(store, *args):
        fill(tiny_disk)
        save_stage(store, *args)

    monkeypatch.setattr(RunStore, "save_stage", on_a_full_disk)
    with pytest.raises(StorageError, match=r"cannot write .*stage_000\.pt.*No space left on dev"):
        run(tiny_config(), run_dir)
    assert list((run_dir / "state").glob("stage_*")) == []  # no partial snapshot
    with pytest.raises(StorageError, match=r"No space left on device\. Free .* rerun the same"):
        run(tiny_config(), run_dir)
    (tiny_disk / "filler").unlink()
    monkeypatch.undo()
    assert len(run(tiny_config(), run_dir)) == 3
