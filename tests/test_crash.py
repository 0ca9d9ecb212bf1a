"""Crash loop (tests/harness/crash_loop.py), short: SIGKILL a writing child at random moments, reopen, check that
every acknowledged write and delete is there (default and 's' modes) or that the state is an untorn prefix
('f' mode), and that the database is fully usable. The long run is documented in the README's Reliability section."""

from __future__ import annotations

import pytest

from tests.harness import crash_loop


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["default", "s", "f"])
def test_crash_loop(tmp_path, mode: str) -> None:
    summary = crash_loop.crash_loop(str(tmp_path / "db"), mode, trials=6, seed=7, max_run=0.3)
    assert summary["trials"] == 6
    assert summary["final_ops"] > 0


def test_checker_catches_a_lost_write(tmp_path) -> None:
    """The check itself can fail: a state missing an acknowledged write does not match."""
    stream = crash_loop.Stream(seed=1, keys=50)
    stream.advance(30)
    wrong = dict(stream.model)
    wrong.pop(next(iter(wrong)))
    assert crash_loop.Stream(seed=1, keys=50).match(wrong, 30, 31) is None
    assert crash_loop.Stream(seed=1, keys=50).match(dict(stream.model), 30, 31) == 30


def test_stream_is_deterministic() -> None:
    assert [crash_loop.make_op(3, i, 100) for i in range(50)] == [crash_loop.make_op(3, i, 100) for i in range(50)]
    kinds = {crash_loop.make_op(3, i, 100)[0] for i in range(200)}
    assert kinds == {"put", "del", "batch"}
