"""Corruption sweep (tests/harness/corruption_sweep.py), short: every file kind, flips, truncations, zeroed
pages, appended garbage and deletions; a damaged database gives correct data or a clean error, `check`
agrees, and `repair` salvages without inventing values."""

from __future__ import annotations

import os

import pytest

from tests.harness import corruption_sweep


@pytest.mark.slow
def test_sweep_finds_no_wrong_value(tmp_path) -> None:
    summary = corruption_sweep.sweep(str(tmp_path), seed=3, ops=400, positions=3, repair_every=4)
    assert summary["wrong"] == 0, summary["failures"]
    assert summary["check_disagreements"] == 0, summary["failures"]
    assert summary["repair_failures"] == 0, summary["failures"]
    kinds = {k.split("/")[0] for k in summary["outcomes"]}
    assert kinds == {"current", "manifest", "log", "image", "table"}
    assert summary["repairs"] > 10


def test_judge_rejects_invented_data(tmp_path) -> None:
    """The sweep's judge can fail: a database holding a state no prefix of the writes produced is wrong."""
    ref = corruption_sweep.Reference(str(tmp_path / "ref"), seed=2, ops=60)
    import byrondbm

    other = str(tmp_path / "other")
    with byrondbm.open(other, "c") as db:
        db.update(ref.final)
        db[b"invented"] = b"value"
    assert corruption_sweep.read_outcome(other, ref)[0] == "wrong"
    assert corruption_sweep.read_outcome(ref.path, ref) == ("correct", "full")


def test_random_bytes_in_place_of_each_file(tmp_path) -> None:
    """Any file replaced by arbitrary bytes (hypothesis): a clean error or correct data, never a crash."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ref = corruption_sweep.Reference(str(tmp_path / "ref"), seed=4, ops=200)
    case = str(tmp_path / "case")

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(name=st.sampled_from(ref.files), data=st.binary(max_size=2000), keep=st.integers(0, 4000))
    def damaged(name: str, data: bytes, keep: int) -> None:
        if os.path.exists(case):
            shutil.rmtree(case)
        shutil.copytree(ref.path, case)
        target = os.path.join(case, name)
        with open(target, "rb") as f:
            original = f.read()
        with open(target, "wb") as f:
            f.write(original[:keep] + data)  # a prefix of the real file, then garbage
        outcome, detail = corruption_sweep.read_outcome(case, ref)
        assert outcome != "wrong", f"{name}: {detail}"

    damaged()
