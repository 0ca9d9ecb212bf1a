"""Power-loss emulation (tests/harness/powerloss.py), short: record the file-system calls of an 's'-mode run,
build the directories power cuts at random points would leave (unsynced data dropped, torn or zeroed,
unsynced directory entries lost or kept), and check every acknowledged write is in each."""

from __future__ import annotations

import os
import random

import pytest

from tests.harness import powerloss


@pytest.mark.slow
def test_power_cuts_lose_nothing_acknowledged(tmp_path) -> None:
    summary = powerloss.powerloss(str(tmp_path), seed=5, ops=250, cuts=60)
    assert summary["cuts"] == 60
    assert summary["fsyncs"] > 0


@pytest.mark.slow
def test_power_cuts_with_group_commit(tmp_path) -> None:
    """Four writer threads share fsyncs; a cut anywhere keeps every thread's acknowledged writes."""
    summary = powerloss.powerloss(str(tmp_path), seed=8, ops=80, cuts=50, threads=4)
    assert summary["cuts"] == 50 and summary["threads"] == 4


@pytest.mark.slow
def test_emulation_catches_a_database_that_skips_fsync(tmp_path) -> None:
    with pytest.raises(AssertionError, match="power cut"):
        powerloss.powerloss(str(tmp_path), seed=6, ops=150, cuts=60, skip_log_fsync=True)


def test_model_fs_keeps_only_synced_bytes_and_entries() -> None:
    fs = powerloss.ModelFS({"CURRENT": b"MANIFEST-000001\n"})
    for event in [
        ("open", 3, "000002.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND),
        ("write", 3, b"hello"),
        ("fsync", 3),
        ("fsyncdir",),
        ("write", 3, b" world"),
        ("open", 4, "x.tmp", os.O_WRONLY | os.O_CREAT),
        ("write", 4, b"new"),
        ("fsync", 4),
        ("rename", "x.tmp", "CURRENT"),
    ]:
        fs.apply(event)
    rng = random.Random(0)
    synced = fs.crash_image("synced", rng)
    assert synced == {"CURRENT": b"MANIFEST-000001\n", "000002.log": b"hello"}
    torn = fs.crash_image("torn", rng)
    assert torn["CURRENT"] == b"new" and b"hello world".startswith(torn["000002.log"])
    zeroed = fs.crash_image("zeroed", rng)
    assert zeroed["000002.log"][:5] == b"hello" and set(zeroed["000002.log"][5:]) <= {0}
