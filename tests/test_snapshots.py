"""Damaged snapshots: resume from the newest valid one, keep the bad file aside, end with the
results of an uninterrupted run; every snapshot damaged is one clear error."""

from __future__ import annotations

import logging

import pytest

from al.errors import DataError
from al.loop import run
from al.store import RunStore

from conftest import read_results, without_timings

STAGES = ["budget.stages=3", "trainer.max_epochs=3"]


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path) -> None:
    path.write_bytes(b"\x80\x04not a snapshot at all" * 10)


def flip_one_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: one run of three stages, never damaged."""
    from conftest import TINY, compose_config

    cfg = compose_config(*TINY, *STAGES)
    run_dir = tmp_path_factory.mktemp("whole")
    run(cfg, run_dir)
    return cfg, run_dir


@pytest.mark.parametrize("damage", [truncate, garbage, flip_one_byte], ids=lambda f: f.__name__)
def test_a_damaged_last_snapshot_resumes_from_the_one_before(
    uninterrupted, tmp_path, caplog, damage
):
    cfg, whole = uninterrupted
    run(cfg, tmp_path)
    last = tmp_path / "state" / "stage_002.pt"
    damage(last)
    damaged_bytes = last.read_bytes()
    with caplog.at_level(logging.WARNING, logger="al.store"):
        run(cfg, tmp_path)
    aside = tmp_path / "state" / "damaged" / "stage_002.pt"
    assert aside.read_bytes() == damaged_bytes  # kept, never deleted
    assert (tmp_path / "state" / "damaged" / "stage_002.pt.sha256").exists()
    [warning] = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert str(last) in warning and f"moved to {aside}" in warning
    assert "resuming after stage 1" in warning
    assert without_timings(read_results(tmp_path)) == without_timings(read_results(whole))
    assert (tmp_path / "state" / "stage_002.pt").exists()  # the stage ran again


def test_snapshots_damaged_twice_are_all_kept(uninterrupted, tmp_path):
    cfg, _ = uninterrupted
    run(cfg, tmp_path)
    for _ in range(2):
        truncate(tmp_path / "state" / "stage_002.pt")
        run(cfg, tmp_path)
    kept = sorted(p.name for p in (tmp_path / "state" / "damaged").glob("stage_002.pt*"))
    assert kept == [
        "stage_002.pt",
        "stage_002.pt.1",
        "stage_002.pt.1.sha256",
        "stage_002.pt.sha256",
    ]


def test_every_snapshot_damaged_is_one_error_and_nothing_moves(uninterrupted, tmp_path):
    cfg, _ = uninterrupted
    run(cfg, tmp_path)
    snapshots = sorted((tmp_path / "state").glob("stage_*.pt"))
    for path in snapshots:
        garbage(path)
    with pytest.raises(DataError, match=r"no valid snapshot in .*stage_002\.pt: checksum mismatch"):
        RunStore(tmp_path).latest()
    assert sorted((tmp_path / "state").glob("stage_*.pt")) == snapshots
    assert not (tmp_path / "state" / "damaged").exists()


def test_a_snapshot_without_its_checksum_is_verified_by_loading(uninterrupted, tmp_path):
    cfg, _ = uninterrupted
    run(cfg, tmp_path)
    (tmp_path / "state" / "stage_002.pt.sha256").unlink()  # killed between the two writes
    assert len(RunStore(tmp_path).latest()["records"]) == 3
    truncate(tmp_path / "state" / "stage_002.pt")
    assert len(RunStore(tmp_path).latest()["records"]) == 2
