"""Corruption sweep: damage every kind of file at many positions; wrong data must never come back.

A reference database is built with small options (so it has tables on several levels, large values, a
manifest with many edits and a log holding the last writes, with the memtable image close saves of it).
Then, for each file (CURRENT, the MANIFEST, the log, its image, every table) and each kind of damage — flip one byte, truncate, zero a 4 KiB page, append
garbage, delete the file — at many positions, a copy is damaged and:

1. opened read-only and read whole (scan, point lookups, ``len``). The outcome must be a clean
   `byrondbm.CorruptionError` / `byrondbm.error` (at open or at the read), or contents equal to the state
   after some prefix of the writes (a damaged *last* log record is a torn write: dropping it is correct).
   Any other exception, or any other contents, is a failure ("wrong").
2. checked with `byrondbm.check`: it must not raise, and must report ``ok: False`` whenever step 1 hit an error.
3. (every ``--repair-every``-th case) repaired with `byrondbm.repair`: the report must say ``ok``, and the
   repaired database must open, pass ``_check()``, take a write, and hold for every key a value that key
   really had at some point (repair may lose data, never invent it).

Usage::

    python scripts/corruption_sweep.py --positions 60 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time
from typing import Any, Optional


import byrondbm
from .crash_loop import SMALL_OPTIONS, Stream, apply, perform, verify_usable

DAMAGES = ("flip", "truncate", "zero_page", "append", "delete")
PAGE = 4096


def state_hash(state: dict[bytes, bytes]) -> int:
    """Order-independent hash of a state, so the prefix states can be looked up in a set."""
    return sum(hash((k, v)) for k, v in state.items()) & ((1 << 64) - 1)


class Reference:
    """A closed database built by ``ops`` seeded writes, with everything needed to judge a damaged copy."""

    def __init__(self, path: str, seed: int, ops: int, keys: int = 150) -> None:
        self.path = path
        stream = Stream(seed, keys)
        self.prefix_hashes = {state_hash({})}
        self.history: dict[bytes, set[bytes]] = collections.defaultdict(set)
        opts = dict(SMALL_OPTIONS, background_compaction=False)  # the same files for the same seed
        with byrondbm.open(path, "c", **opts) as db:
            for i in range(ops):
                op = stream.op(i)

                perform(db, op)
                apply(stream.model, op)
                stream.done += 1
                self.prefix_hashes.add(state_hash(stream.model))
                for k, v in stream.model.items():
                    self.history[k].add(v)
        self.final = dict(stream.model)
        self.files = sorted(n for n in os.listdir(path) if n != "LOCK")

    def kinds(self) -> dict[str, str]:
        """file name -> kind (current, manifest, log, image, table)."""
        out = {}
        for n in self.files:
            out[n] = ("current" if n == "CURRENT" else "manifest" if n.startswith("MANIFEST") else
                      "log" if n.endswith(".log") else "image" if n.endswith(".img") else "table")
        return out


def damage(path: str, name: str, how: str, pos: int, rng: random.Random) -> None:
    target = os.path.join(path, name)
    if how == "delete":
        os.unlink(target)
        return
    with open(target, "r+b") as f:
        data = bytearray(f.read())
        if how == "flip":
            data[pos] ^= rng.randrange(1, 256)
        elif how == "truncate":
            del data[pos:]
        elif how == "zero_page":
            start = pos - pos % PAGE
            data[start : start + PAGE] = bytes(len(data[start : start + PAGE]))
        elif how == "append":
            data += rng.randbytes(rng.randrange(1, 64))
        f.seek(0)
        f.truncate()
        f.write(bytes(data))


def read_outcome(path: str, ref: Reference) -> tuple[str, str]:
    """("correct" | "error" | "wrong", detail) for a read-only open and full read of ``path``."""
    try:
        with byrondbm.open(path, "r") as db:
            contents = dict(db.items())
            for k, v in contents.items():
                if db[k] != v:
                    return "wrong", f"get({k!r}) disagrees with the scan"
            for k in ref.final:
                if k not in contents and k in db:
                    return "wrong", f"{k!r} is in the database but the scan missed it"
            if len(db) != len(contents):
                return "wrong", f"len() {len(db)} but the scan saw {len(contents)}"
    except byrondbm.error as e:  # CorruptionError included
        return "error", f"{type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - anything else is the bug this sweep looks for
        return "wrong", f"unclean exception {type(e).__name__}: {e}"
    if state_hash(contents) in ref.prefix_hashes:
        return "correct", "full" if contents == ref.final else "prefix"
    return "wrong", "contents are not the state after any prefix of the writes"


def repair_outcome(path: str, ref: Reference) -> tuple[bool, str]:
    try:
        report = byrondbm.repair(path)
    except Exception as e:  # noqa: BLE001
        return False, f"repair raised {type(e).__name__}: {e}"
    if not report["ok"]:
        return False, f"repair report not ok: {report['problems'][:3]}"
    try:
        with byrondbm.open(path, "w") as db:
            for k, v in db.items():
                if v not in ref.history.get(k, ()):
                    return False, f"repaired database holds a value {k!r} never had"
            verify_usable(db)
    except Exception as e:  # noqa: BLE001
        return False, f"repaired database fails: {type(e).__name__}: {e}"
    return True, f"kept {report['kept_records']}"


def sweep(workdir: str, seed: int, ops: int, positions: int, repair_every: int) -> dict[str, Any]:
    rng = random.Random(seed)
    ref = Reference(os.path.join(workdir, "ref"), seed, ops)
    kinds = ref.kinds()
    summary: dict[str, Any] = {"seed": seed, "files": collections.Counter(kinds.values()), "cases": 0,
                               "outcomes": collections.Counter(), "wrong": 0, "check_disagreements": 0,
                               "repairs": 0, "repair_failures": 0, "failures": []}
    case = os.path.join(workdir, "case")
    n = 0
    for name in ref.files:
        size = os.path.getsize(os.path.join(ref.path, name))
        for how in DAMAGES:
            if how == "delete":
                spots: list[int] = [0]
            elif how == "append":
                spots = [size]
            else:
                edge = [p for p in (0, 1, size // 2, size - 1) if 0 <= p < size]
                spots = edge + [rng.randrange(size) for _ in range(max(0, positions - len(edge)))] if size else []
            for pos in spots:
                n += 1
                if os.path.exists(case):
                    shutil.rmtree(case)
                shutil.copytree(ref.path, case)
                damage(case, name, how, pos, rng)
                outcome, detail = read_outcome(case, ref)
                label = f"{kinds[name]}:{how}@{pos} ({name})"
                summary["cases"] += 1
                summary["outcomes"][f"{kinds[name]}/{outcome}"] += 1
                if outcome == "wrong":
                    summary["wrong"] += 1
                    summary["failures"].append(f"{label}: {detail}")
                try:
                    report = byrondbm.check(case)
                    if outcome == "error" and report["ok"]:
                        raise AssertionError(f"check says ok but reading failed: {detail}")
                except Exception as e:  # noqa: BLE001
                    summary["check_disagreements"] += 1
                    summary["failures"].append(f"{label}: check: {type(e).__name__}: {e}")
                if repair_every and n % repair_every == 0:
                    summary["repairs"] += 1
                    ok, detail = repair_outcome(case, ref)
                    if not ok:
                        summary["repair_failures"] += 1
                        summary["failures"].append(f"{label}: repair: {detail}")
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ops", type=int, default=600)
    p.add_argument("--positions", type=int, default=40, help="damage positions per file and kind")
    p.add_argument("--repair-every", type=int, default=3, help="repair every n-th damaged copy (0: never)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="byrondbm-corrupt-")
    started = time.monotonic()
    summary = sweep(workdir, args.seed, args.ops, args.positions, args.repair_every)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["failures"] = summary["failures"][:20]
    print(json.dumps(summary, default=dict))
    shutil.rmtree(workdir)
    failed = summary["wrong"] or summary["check_disagreements"] or summary["repair_failures"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
