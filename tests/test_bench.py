"""`byrondbm bench`: it runs every workload, checks what it reads, and fails when an engine returns wrong data.

No timing is asserted anywhere: the bench reports numbers, these tests check structure and verification.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from byrondbm import bench
from byrondbm.bench import baselines, report
from byrondbm.bench.__main__ import main
from byrondbm.bench.baselines import Engine, Handle
from byrondbm.bench.workloads import (
    ROWS,
    SEEK_OPS,
    SYNC_OPS,
    WORKLOADS,
    Context,
    KeySpace,
    Measurement,
    Skipped,
    rows_for,
    run_engine,
    run_scale,
)

REPO = Path(__file__).resolve().parent.parent
ALWAYS = ("byrondbm", "dbm.dumb", "sqlite3")
"""Engines present on every machine (the others are optional baselines, tested in-process when installed)."""


def _bench(tmp_path: Path, *args: str, module: str = "byrondbm.bench") -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", *module.split(), *args, "--json", str(out), "--dir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())


def _expected_ops(row: str, n: int, engine: str) -> int:
    if row == "reopen":
        return 1  # one close + open + get
    limit = {"seekrandom": SEEK_OPS, "fillsync_1t": SYNC_OPS, "fillsync_8t": SYNC_OPS}.get(row, n)
    return min(n, limit, baselines.ENGINES[engine].caps.get(row, n))


@pytest.mark.slow  # ~45 s: the sqlite3 mapping commits (fsyncs) each of its ~10,000 writes
def test_every_workload_runs_and_verifies(tmp_path: Path) -> None:
    n = 2000
    proc, doc = _bench(tmp_path, "--n", str(n), "--repeat", "1", "--engines", ",".join(ALWAYS))
    all_rows = [row for w in WORKLOADS for row in ROWS[w]]
    assert doc["complete"] is True
    assert doc["meta"]["n"] == n and doc["meta"]["key_size"] == 16 and doc["meta"]["value_size"] == 100
    assert set(doc["results"]) == set(ALWAYS)
    for engine, rows in doc["results"].items():
        assert set(rows) == set(all_rows), engine
        assert doc["engines"][engine]["available"] is True
        for row, r in rows.items():
            assert r["status"] in ("ok", "n/a"), (engine, row, r)
            if r["status"] == "ok":
                assert r["ops"] == _expected_ops(row, n, engine), (engine, row)
                assert r["ops_per_sec"] > 0 and len(r["samples"]) == 1 and r["cpu_us_per_op"] > 0
    assert all(r["status"] == "ok" for r in doc["results"]["byrondbm"].values())
    dumb = doc["results"]["dbm.dumb"]
    assert {row for row, r in dumb.items() if r["status"] == "n/a"} == {"seekrandom", "fillbatch", "fillsync_1t", "fillsync_8t"}
    assert set(doc["ratios"]) == {"dbm.dumb", "sqlite3"}
    assert doc["ratios"]["dbm.dumb"]["readrandom"] == pytest.approx(
        doc["results"]["byrondbm"]["readrandom"]["ops_per_sec"] / dumb["readrandom"]["ops_per_sec"])
    measured = {t["target"] for t in doc["targets"] if t["measured"] is not None}
    assert "fillrandom ≥ 5× dbm.dumb" in measured and "fillsync_8t ≥ 4× byrondbm fillsync_1t" in measured
    assert "stats_after_load" in doc["facts"]["byrondbm"][0] and "compact_seconds" in doc["facts"]["byrondbm"][0]
    assert set(doc["ratios_cpu"]) == {"dbm.dumb", "sqlite3"}
    assert "ops/s" in proc.stdout and "byrondbm ÷ engine" in proc.stdout and "CPU µs per operation" in proc.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("byrondbm-bench-")], "databases left behind"


@pytest.mark.skipif(not (REPO / "byrondbm" / "cli.py").exists(), reason="the command line has not landed")
def test_cli_subcommand(tmp_path: Path) -> None:
    _, doc = _bench(tmp_path, "bench", "--n", "300", "--repeat", "2", "--engines", "byrondbm",
                    "--benchmarks", "fillrandom,readrandom", module="byrondbm")
    rows = doc["results"]["byrondbm"]
    assert set(rows) == {"fillrandom", "readrandom", "readrandom_compacted"}
    assert all(r["status"] == "ok" and len(r["samples"]) == 2 for r in rows.values())


def test_unknown_workload_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--benchmarks", "fillrandom,nosuch"])
    assert exc.value.code == 2
    assert "nosuch" in capsys.readouterr().err


# -- verification catches wrong data -----------------------------------------------------------------------


class DictEngine(Engine):
    """An in-memory engine over a dict; `fault` names one operation that misbehaves (None: all correct)."""

    name = "dict"
    module = "collections"
    thread_safe = True

    def __init__(self, fault: str | None = None) -> None:
        self.fault = fault
        self.stores: dict[str, dict[bytes, bytes]] = {}  # what a reopen of the same path finds

    def _open(self, path: str, sync: bool) -> Handle:
        data = self.stores.setdefault(path, {})
        fault = self.fault
        writes = 0

        def put(k: bytes, v: bytes) -> None:
            nonlocal writes
            writes += 1
            if fault == "put" and writes == 50:
                v = v[::-1]
            data[k] = v

        def get(k: bytes) -> bytes | None:
            v = data.get(k)
            if fault == "get" and v is not None and k.endswith(b"00"):
                return v + b"!"
            if fault == "missing" and v is None and k.endswith(b"1"):
                return b"ghost"
            return v

        def delete(k: bytes) -> None:
            if not (fault == "delete" and k.endswith(b"0")):
                del data[k]

        def items() -> Iterator[tuple[bytes, bytes]]:
            pairs = sorted(data.items())
            return iter(pairs[1:] if fault == "scan" else pairs)

        def seek(k: bytes) -> Iterator[tuple[bytes, bytes]]:
            pairs = [p for p in sorted(data.items()) if p[0] >= k]
            return iter(pairs[1:] if fault == "seek" else pairs)

        def batch(pairs: list[tuple[bytes, bytes]]) -> None:
            data.update(pairs[:-1] if fault == "batch" else pairs)

        return Handle(put=put, get=get, delete=delete, items=items, ordered=True, seek=seek, batch=batch,
                      compact=lambda: None, count=lambda: len(data), close=lambda: None)


def _ctx(tmp_path: Path, n: int = 400) -> Context:
    return Context(KeySpace(20), n, str(tmp_path), progress=False)


def test_a_correct_engine_passes_every_row(tmp_path: Path) -> None:
    run = run_engine(_ctx(tmp_path), DictEngine(), WORKLOADS)
    assert set(run.outcomes) == set(rows_for(WORKLOADS))
    assert all(isinstance(o, Measurement) for o in run.outcomes.values()), run.outcomes


@pytest.mark.parametrize(
    ("fault", "row"),
    [("put", "fillrandom"), ("get", "readrandom"), ("missing", "readmissing"), ("scan", "readseq"),
     ("seek", "seekrandom"), ("delete", "deleterandom"), ("batch", "fillbatch")],
)
def test_wrong_data_fails_the_row(tmp_path: Path, fault: str, row: str) -> None:
    workload = next(w for w in WORKLOADS if row in ROWS[w])
    run = run_engine(_ctx(tmp_path), DictEngine(fault), [workload])
    outcome = run.outcomes[row]
    assert isinstance(outcome, Skipped) and outcome.error, outcome
    assert "verification failed" in outcome.reason


def test_a_failed_row_makes_the_run_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(bench.ENGINES, "dict", DictEngine("get"))
    code = main(["--n", "300", "--repeat", "1", "--engines", "dict", "--benchmarks", "readrandom",
                 "--dir", str(tmp_path)])
    assert code == 1
    assert "verification failed" in capsys.readouterr().out


# -- the optional baselines, each when installed ---------------------------------------------------------


@pytest.mark.parametrize("name", ["semidbm", "lmdb", "plyvel", "rocksdict"])
def test_optional_baseline(tmp_path: Path, name: str) -> None:
    engine = baselines.ENGINES[name]
    if engine.unavailable():
        pytest.skip(f"{name} is not installed")
    run = run_engine(_ctx(tmp_path, 300), engine, WORKLOADS)
    for row, outcome in run.outcomes.items():
        assert isinstance(outcome, Measurement) or not outcome.error, (row, outcome)


def test_a_missing_baseline_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    class Absent(DictEngine):
        module = "no_such_module_for_byrondbm_bench"

    monkeypatch.setitem(bench.ENGINES, "absent", Absent())
    out = tmp_path / "out.json"
    code = main(["--n", "200", "--repeat", "1", "--engines", "dbm.dumb,absent", "--benchmarks", "fillseq",
                 "--dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    assert doc["engines"]["absent"]["available"] is False and "absent" not in doc["results"]
    assert "absent: skipped" in capsys.readouterr().out


# -- key space, report ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 10, 97, 1000, 4096])
def test_permutation_is_a_permutation(n: int) -> None:
    space = KeySpace(10)
    assert sorted(space.permutation(n, "x")) == list(range(n))


def test_keys_values_and_missing_keys() -> None:
    space = KeySpace(100)
    assert len(space.key(123)) == 16 and space.index(space.key(123)) == 123
    assert space.key(5) < space.missing_key(5) < space.key(6)
    assert space.index(space.missing_key(5)) == -1
    assert len(space.value(7)) == 100 and space.value(7) != space.value(8) and space.value(7, 1) != space.value(7)


def test_summary_median_and_errors() -> None:
    class Run:
        def __init__(self, **outcomes: Any) -> None:
            self.outcomes = outcomes

    runs = [Run(a=Measurement(10, 1.0, 0.5), b=Skipped("n/a reason"), c=Measurement(10, 1.0)),
            Run(a=Measurement(10, 0.5, 0.1), b=Skipped("n/a reason"), c=Skipped("boom", error=True)),
            Run(a=Measurement(10, 0.1, 0.2), b=Skipped("n/a reason"), c=Measurement(10, 1.0))]
    summary = report.summarize(runs, ["a", "b", "c"])  # type: ignore[arg-type]
    assert summary["a"].ops_per_sec == pytest.approx(20.0) and summary["a"].status == "ok"
    assert summary["a"].cpu_us_per_op == pytest.approx(20_000.0) and summary["a"].cpu_ops_per_sec == pytest.approx(50.0)
    assert summary["b"].status == "n/a" and summary["b"].reason == "n/a reason"
    assert summary["c"].status == "error" and summary["c"].reason == "boom"


def test_targets_are_byrondbm_over_the_other_engine() -> None:
    ok = report.RowResult("ok", 1, 100.0)
    results = {"byrondbm": {"fillrandom": ok, "fillsync_8t": report.RowResult("ok", 1, 300.0),
                            "fillsync_1t": report.RowResult("ok", 1, 100.0)},
               "plyvel": {"fillrandom": report.RowResult("ok", 1, 400.0)}}
    targets = {t["target"]: t for t in report.check_targets(results)}
    assert targets["fillrandom ≥ 0.5× plyvel"]["measured"] == pytest.approx(0.25)
    assert targets["fillrandom ≥ 0.5× plyvel"]["met"] is False
    assert targets["fillsync_8t ≥ 4× byrondbm fillsync_1t"]["measured"] == pytest.approx(3.0)
    assert targets["readseq ≥ 0.4× plyvel"]["measured"] is None


# -- --scale, in miniature ---------------------------------------------------------------------------------


def test_scale_reports_memory_and_amplification(tmp_path: Path) -> None:
    checkpoints: list[dict[str, Any]] = []
    result = run_scale(_ctx(tmp_path), baselines.ENGINES["byrondbm"], {"small": 300, "large": 900}, 300,
                       float("inf"), lambda r: checkpoints.append(json.loads(json.dumps(r, default=str))))
    large = result["large"]
    assert large["keys"] == 900 and large["complete"] is True
    assert large["space_amplification_after_compact"] > 0.5 and large["write_amplification_after_fill"] >= 1.0
    assert large["readrandom_ops_per_sec"] > 0 and large["readrandom_compacted_ops_per_sec"] > 0
    assert large["peak_rss_mib"] > 0 and result["small"]["keys"] == 300
    assert len(checkpoints) >= 6 and "large" in checkpoints[-1]
    assert "large ÷ small" in report.render_scale(result)


def test_scale_time_limit_measures_what_was_written(tmp_path: Path) -> None:
    result = run_scale(_ctx(tmp_path), baselines.ENGINES["byrondbm"], {"large": 500}, 100, 0.0, lambda r: None)
    assert result["large"]["keys"] == 0 and result["large"]["complete"] is False



def test_text_report_shows_measurements_and_ratios_not_planning_words() -> None:
    class Stub:
        notes: dict[str, str] = {}

    results = {"byrondbm": {"fillrandom": report.RowResult("ok", 1, 100.0),
                            "fillsync_1t": report.RowResult("ok", 1, 100.0),
                            "fillsync_8t": report.RowResult("ok", 1, 300.0)},
               "plyvel": {"fillrandom": report.RowResult("ok", 1, 400.0)}}
    meta = {"n": 1000, "key_size": 16, "value_size": 100, "repeat": 1, "date": "today"}
    text = report.render(results, ["fillrandom", "fillsync_1t", "fillsync_8t"], {"byrondbm": Stub(), "plyvel": Stub()},
                         {}, meta)  # type: ignore[dict-item]
    assert "0.25×" in text  # byrondbm ÷ plyvel, in the ratio table
    assert "fillsync_8t ÷ fillsync_1t = 3.00×" in text
    words = text.split()
    assert "NO" not in words and "issue" not in text and "target" not in text and "met" not in words
