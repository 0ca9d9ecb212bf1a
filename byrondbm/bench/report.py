"""Turns the bench's measurements into medians, ratios to byrondbm, reference ratios, tables and JSON.

A row's number is the median ops/s over the repeats; a row that failed in any repeat is an error (the bench
exits non-zero), and a row an engine cannot run is "n/a". Ratios are byrondbm ÷ engine, as the reference
ratios are written ("fillrandom ≥ 0.5× plyvel" means byrondbm's ops/s is at least half of plyvel's).

The text report shows measurements and ratios only; the reference ratios (the project's performance goals)
are in the --json document, under ``targets``, for tracking across runs.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from byrondbm.bench.baselines import Engine
from byrondbm.bench.workloads import EngineRun, Measurement, Skipped

REFERENCE = "byrondbm"


@dataclasses.dataclass
class RowResult:
    status: str
    """"ok", "n/a" or "error"."""
    ops: int | None = None
    ops_per_sec: float | None = None
    """Median over the repeats."""
    samples: list[float] = dataclasses.field(default_factory=list)
    cpu_us_per_op: float | None = None
    """Median process CPU time per operation (see Measurement.cpu_seconds)."""
    reason: str = ""

    @property
    def cpu_ops_per_sec(self) -> float | None:
        """Operations per second of process CPU time: a throughput that other jobs on the machine skew less."""
        return 1e6 / self.cpu_us_per_op if self.cpu_us_per_op else None


def summarize(runs: Sequence[EngineRun], rows: Iterable[str]) -> dict[str, RowResult]:
    """One engine's repeats folded into one result per row."""
    out: dict[str, RowResult] = {}
    for row in rows:
        outcomes = [run.outcomes[row] for run in runs if row in run.outcomes]
        errors = [o for o in outcomes if isinstance(o, Skipped) and o.error]
        measured = [o for o in outcomes if isinstance(o, Measurement)]
        if errors or not outcomes:
            out[row] = RowResult("error", reason=errors[0].reason if errors else "did not run")
        elif not measured:
            out[row] = RowResult("n/a", reason=outcomes[0].reason)  # type: ignore[union-attr]
        else:
            samples = [m.ops_per_sec for m in measured]
            cpu = statistics.median(m.cpu_us_per_op for m in measured)
            out[row] = RowResult("ok", measured[0].ops, statistics.median(samples), samples, cpu)
    return out


def ratios(results: dict[str, dict[str, RowResult]], cpu: bool = False) -> dict[str, dict[str, float | None]]:
    """engine -> row -> byrondbm's ops/s ÷ the engine's (of CPU time with `cpu`; None where one is missing)."""
    ours = results.get(REFERENCE, {})
    return {
        engine: {row: _ratio(ours.get(row), r, cpu) for row, r in rows.items()}
        for engine, rows in results.items() if engine != REFERENCE
    }


def _ratio(a: RowResult | None, b: RowResult | None, cpu: bool = False) -> float | None:
    if a is None or b is None:
        return None
    x, y = (a.cpu_ops_per_sec, b.cpu_ops_per_sec) if cpu else (a.ops_per_sec, b.ops_per_sec)
    return x / y if x and y else None


@dataclasses.dataclass(frozen=True)
class Target:
    """A reference ratio: byrondbm's `row` ÷ `engine`'s `other_row` is meant to be at least `minimum`
    (at N = 200,000)."""

    row: str
    engine: str
    other_row: str
    minimum: float

    @property
    def name(self) -> str:
        other = self.engine if self.other_row == self.row else f"{self.engine} {self.other_row}"
        return f"{self.row} ≥ {self.minimum:g}× {other}"


TARGETS = (
    Target("fillrandom", "plyvel", "fillrandom", 0.5),
    Target("fillrandom", "sqlite3", "fillrandom", 20),
    Target("fillrandom", "dbm.dumb", "fillrandom", 5),
    Target("fillbatch", "plyvel", "fillrandom", 1.0),
    Target("readrandom", "plyvel", "readrandom", 0.4),
    Target("readrandom", "dbm.dumb", "readrandom", 1.5),
    Target("readrandom_compacted", "plyvel", "readrandom_compacted", 0.4),
    Target("readrandom_compacted", "dbm.dumb", "readrandom_compacted", 1.5),
    Target("readseq", "plyvel", "readseq", 0.4),
    Target("seekrandom", "plyvel", "seekrandom", 0.5),
    Target("fillsync_8t", REFERENCE, "fillsync_1t", 4.0),
)


def check_targets(results: dict[str, dict[str, RowResult]]) -> list[dict[str, Any]]:
    """Each target with its measured ratio and whether it is met (None when not measured in this run)."""
    ours = results.get(REFERENCE, {})
    checked = []
    for t in TARGETS:
        a, b = ours.get(t.row), results.get(t.engine, {}).get(t.other_row)
        measured = _ratio(a, b)
        checked.append({
            "target": t.name, "minimum": t.minimum, "measured": measured,
            "met": None if measured is None else measured >= t.minimum,
            # fsync waits are not CPU time, so a CPU ratio says nothing about group commit
            "measured_cpu": None if t.row.startswith("fillsync") else _ratio(a, b, cpu=True),
        })
    return checked


def human(ops_per_sec: float) -> str:
    if ops_per_sec >= 1e6:
        return f"{ops_per_sec / 1e6:.2f}M"
    if ops_per_sec >= 1e3:
        return f"{ops_per_sec / 1e3:.1f}k"
    return f"{ops_per_sec:.0f}"


def _cell(r: RowResult | None) -> str:
    if r is None:
        return "-"
    if r.status == "ok" and r.ops_per_sec is not None:
        return human(r.ops_per_sec)
    return "n/a" if r.status == "n/a" else "ERROR"


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio else "-"


def _cpu_cell(r: RowResult | None) -> str:
    if r is None or r.status != "ok" or r.cpu_us_per_op is None:
        return _cell(r)
    return f"{r.cpu_us_per_op:.1f}"


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = [header, ["-" * w for w in widths], *body]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
        for line in lines
    )


def render(
    results: dict[str, dict[str, RowResult]], rows: Sequence[str], engines: dict[str, Engine],
    skipped: dict[str, str], meta: dict[str, Any],
) -> str:
    """The text report: ops/s, ratios, CPU cost, group commit's gain, then every note, n/a reason and error."""
    names = list(results)
    out = [
        f"byrondbm bench — n={meta['n']:,}, {meta['key_size']}-byte keys, {meta['value_size']}-byte values, "
        f"median of {meta['repeat']} — {meta['date']}",
        "",
        "ops/s (higher is better)",
        _table(["workload", *names], [[row, *(_cell(results[e].get(row)) for e in names)] for row in rows]),
    ]
    rel = ratios(results)
    if REFERENCE in results and rel:
        others = list(rel)
        out += ["", "byrondbm ÷ engine, ops/s (above 1: byrondbm is faster)", _table(
            ["workload", *others],
            [[row, *(_times(rel[e].get(row)) for e in others)] for row in rows],
        )]
    out += ["", "process CPU µs per operation, all threads (less skewed by other jobs; excludes fsync waits)",
            _table(["workload", *names], [[row, *(_cpu_cell(results[e].get(row)) for e in names)] for row in rows])]
    ours = results.get(REFERENCE, {})
    group = _ratio(ours.get("fillsync_8t"), ours.get("fillsync_1t"))
    if group is not None:
        out += ["", f"group commit: byrondbm fillsync_8t ÷ fillsync_1t = {_times(group)}"
                    " (8 writer threads sharing fsyncs)"]
    out += ["", "notes"]
    for name in names:
        for row, text in engines[name].notes.items():
            if row == "*" or row in rows:
                out.append(f"  {name} {'' if row == '*' else row + ': '}{text}")
        for row in rows:
            r = results[name].get(row)
            if r is not None and r.status != "ok":
                out.append(f"  {name} {row}: {r.status}: {r.reason}")
    out += [f"  {name}: skipped: {why}" for name, why in skipped.items()]
    return "\n".join(out)


def document(
    meta: dict[str, Any], results: dict[str, dict[str, RowResult]], facts: dict[str, list[dict[str, Any]]],
    engines: dict[str, Engine], skipped: dict[str, str],
) -> dict[str, Any]:
    """The --json document (structure checked by tests/test_bench.py)."""
    return {
        "meta": meta,
        "engines": {
            **{name: {"available": True, "version": engines[name].version(), "notes": engines[name].notes,
                      "caps": engines[name].caps} for name in results},
            **{name: {"available": False, "reason": why} for name, why in skipped.items()},
        },
        "results": {name: {row: dataclasses.asdict(r) for row, r in rows.items()} for name, rows in results.items()},
        "ratios": ratios(results),
        "ratios_cpu": ratios(results, cpu=True),
        "targets": check_targets(results),
        "facts": facts,
    }


def render_scale(result: dict[str, Any]) -> str:
    """The text report of --scale: one column per size, then how reads and memory held up as it grew."""
    labels = [k for k in ("small", "large") if k in result]
    fields = (
        ("keys", "keys", "{:,}"), ("fillrandom ops/s", "fillrandom_ops_per_sec", "{:,.0f}"),
        ("readrandom ops/s", "readrandom_ops_per_sec", "{:,.0f}"),
        ("readrandom ops/s after compact", "readrandom_compacted_ops_per_sec", "{:,.0f}"),
        ("compact seconds", "compact_seconds", "{:,.1f}"),
        ("write amplification after fill", "write_amplification_after_fill", "{:.2f}"),
        ("write amplification after compact", "write_amplification_after_compact", "{:.2f}"),
        ("space amplification after fill", "space_amplification_after_fill", "{:.2f}"),
        ("space amplification after compact", "space_amplification_after_compact", "{:.2f}"),
        ("RSS MiB before the fill (harness)", "rss_mib_at_start", "{:,.0f}"),
        ("peak RSS MiB of the process during this size", "peak_rss_mib", "{:,.0f}"),
        ("peak RSS MiB of a worker process (after fill)", "worker_peak_rss_mib_after_fill", "{:,.0f}"),
    )
    body = [[name, *(fmt.format(result[l][key]) if result[l].get(key) is not None else "-" for l in labels)]
            for name, key, fmt in fields]
    out = [_table(["", *(f"{l} ({result[l]['target_keys']:,})" for l in labels)], body)]
    small, large = result.get("small", {}), result.get("large", {})
    for row in ("readrandom_ops_per_sec", "readrandom_compacted_ops_per_sec"):
        if small.get(row) and large.get(row):
            out.append(f"{row.replace('_ops_per_sec', '')} large ÷ small: {large[row] / small[row]:.2f}")
    peak = large.get("peak_rss_mib") or large.get("peak_rss_mib_after_fill")
    if peak is not None:
        out.append(f"peak RSS: {peak:,.0f} MiB")
    return "\n".join(out)
