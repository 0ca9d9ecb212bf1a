"""Fuzzed calls: hypothesis drives random sequences of public calls — with arguments of every accepted type
and of wrong types — against a database and a dict model, reopening and compacting along the way.

Every call must either do what the dict model says, or raise the contract's exception (TypeError for a
key or value of a wrong type, KeyError for a missing key, byrondbm.error for a misuse); nothing else,
and a failed call changes nothing. Small options make flushes and compactions happen within a few calls.

Usage (the long run in the README's Reliability section)::

    python scripts/fuzz_calls.py --examples 2000 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Optional


from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import byrondbm

OPTIONS = dict(memtable_size=1024, block_size=256, target_file_size=2048, level1_size=4096,
               l0_compaction_trigger=2, l0_slowdown_trigger=3, l0_stop_trigger=4, large_value_threshold=64)

CALLS = {"count": 0}
"""Calls made by every machine run in this process (the long run reports it)."""

raw_keys = st.sampled_from([b"", b"\x00", b"a", b"ab", b"abc", b"b", b"\xff", b"\xff\xff", b"k1", b"k2"]) | st.binary(
    max_size=12
)
raw_values = st.binary(max_size=40) | st.binary(min_size=60, max_size=300)
keys = raw_keys.flatmap(
    lambda k: st.sampled_from([k, bytearray(k), memoryview(k)] + ([k.decode()] if k.isascii() else []))
)
values = raw_values.flatmap(lambda v: st.sampled_from([v, bytearray(v), memoryview(v)]))
wrong = st.sampled_from([None, 1, 2.5, [b"a"], (b"a",), {b"a": 1}, object(), True])


def norm(k: Any) -> bytes:
    return k.encode() if isinstance(k, str) else bytes(k)


class FuzzMachine(RuleBasedStateMachine):
    """One database per run, checked against ``self.model`` after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="byrondbm-fuzz-")
        self.path = os.path.join(self.dir, "db")
        self.db = byrondbm.open(self.path, "c", **OPTIONS)
        self.model: dict[bytes, bytes] = {}

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _call(self) -> None:
        CALLS["count"] += 1

    @rule(k=keys, v=values)
    def put(self, k: Any, v: Any) -> None:
        self._call()
        self.db[k] = v
        self.model[norm(k)] = bytes(v)

    @rule(k=keys)
    def delete(self, k: Any) -> None:
        self._call()
        if norm(k) in self.model:
            del self.db[k]
            del self.model[norm(k)]
        else:
            try:
                del self.db[k]
                raise AssertionError("deleting a missing key did not raise KeyError")
            except KeyError:
                pass

    @rule(k=keys, default=st.none() | st.just(b"d"))
    def get(self, k: Any, default: Optional[bytes]) -> None:
        self._call()
        assert self.db.get(k, default) == self.model.get(norm(k), default)
        assert (k in self.db) == (norm(k) in self.model)

    @rule(k=keys, v=values)
    def setdefault_pop(self, k: Any, v: Any) -> None:
        self._call()
        assert self.db.setdefault(k, v) == self.model.setdefault(norm(k), bytes(v))
        self._call()
        assert self.db.pop(k) == self.model.pop(norm(k))
        self._call()
        assert self.db.pop(k, None) is None

    @rule(start=st.none() | keys, stop=st.none() | keys, prefix=st.none() | keys, reverse=st.booleans(),
          keys_only=st.booleans())
    def scan(self, start: Any, stop: Any, prefix: Any, reverse: bool, keys_only: bool) -> None:
        self._call()
        got = list(self.db.scan(start, stop, prefix=prefix, reverse=reverse, keys_only=keys_only))
        lo = None if start is None else norm(start)
        hi = None if stop is None else norm(stop)
        pre = None if prefix is None else norm(prefix)
        want = sorted(
            (k, v) for k, v in self.model.items()
            if (lo is None or k >= lo) and (hi is None or k < hi) and (pre is None or k.startswith(pre))
        )
        if reverse:
            want.reverse()
        assert got == ([k for k, _ in want] if keys_only else want)

    @rule(ops=st.lists(st.tuples(keys, st.none() | values), max_size=6), fail=st.booleans())
    def batch(self, ops: list, fail: bool) -> None:
        self._call()
        try:
            with self.db.batch() as b:
                for k, v in ops:
                    if v is None:
                        b.delete(k)
                    else:
                        b[k] = v
                if fail:
                    raise ZeroDivisionError
        except ZeroDivisionError:
            return  # nothing applied
        for k, v in ops:
            if v is None:
                self.model.pop(norm(k), None)
            else:
                self.model[norm(k)] = bytes(v)

    @rule(bad=wrong, good=values, where=st.sampled_from(["key", "value", "get", "del", "in", "scan", "batch"]))
    def wrong_type(self, bad: Any, good: Any, where: str) -> None:
        """A wrong type raises TypeError and changes nothing."""
        self._call()
        calls = {
            "key": lambda: self.db.__setitem__(bad, good),
            "value": lambda: self.db.__setitem__(b"k", bad),
            "get": lambda: self.db.get(bad),
            "del": lambda: self.db.__delitem__(bad),
            "in": lambda: bad in self.db,
            "scan": lambda: self.db.scan(bad),
            "batch": lambda: self.db.batch().put(bad, good),
        }
        if bad is None and where == "scan":
            return  # None is scan's "unbounded"
        try:
            calls[where]()
        except TypeError:
            return
        raise AssertionError(f"{where} with {type(bad).__name__} did not raise TypeError")

    @rule(k=keys)
    def snapshot_is_frozen(self, k: Any) -> None:
        self._call()
        with self.db.snapshot() as snap:
            before = dict(self.model)
            self.db[k] = b"after-snapshot"
            self.model[norm(k)] = b"after-snapshot"
            assert dict(snap.items()) == before
            assert snap.get(k) == before.get(norm(k))
            try:
                snap[k] = b"x"  # type: ignore[index]
                raise AssertionError("assigning to a snapshot did not raise TypeError")
            except TypeError:
                pass
        try:
            snap.get(k)
            raise AssertionError("a released snapshot did not raise")
        except byrondbm.error:
            pass

    @precondition(lambda self: len(self.model) < 400)
    @rule(n=st.integers(1, 80))
    def bulk(self, n: int) -> None:
        """Enough writes to fill a memtable, so flushes and compactions run."""
        self._call()
        with self.db.batch() as b:
            for i in range(n):
                k, v = b"bulk%03d" % i, b"v" * (i % 90)
                b[k] = v
                self.model[k] = v

    @rule(flag=st.sampled_from(["w", "ws", "wf", "c"]))
    def reopen(self, flag: str) -> None:
        self._call()
        self.db.close()
        self.db.close()  # idempotent
        try:
            self.db[b"x"] = b"y"
            raise AssertionError("a closed database accepted a write")
        except byrondbm.error:
            pass
        self.db = byrondbm.open(self.path, flag, **OPTIONS)

    @rule()
    def compact(self) -> None:
        self._call()
        self.db.compact()

    @invariant()
    def same_as_model(self) -> None:
        assert len(self.db) == len(self.model)
        assert self.db.keys() == sorted(self.model)


def run(examples: int, steps: int) -> dict[str, Any]:
    """Run the machine for ``examples`` generated call sequences of up to ``steps`` calls."""
    machine = settings(max_examples=examples, stateful_step_count=steps, deadline=None, derandomize=False,
                       suppress_health_check=list(HealthCheck))(FuzzMachine)
    before = CALLS["count"]
    started = time.monotonic()
    machine.TestCase().runTest()
    return {"examples": examples, "steps": steps, "calls": CALLS["count"] - before,
            "seconds": round(time.monotonic() - started, 1)}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args(argv)
    print(json.dumps(run(args.examples, args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
