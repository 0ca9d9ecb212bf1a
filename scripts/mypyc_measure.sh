#!/usr/bin/env bash
# mypyc_measure.sh: what compiling byrondbm's hot modules with mypyc would give, measured and not shipped.
#
# What it does
#   1. Copies the checked-out tree (the tracked files, as they are in the work tree) twice into a temporary
#      directory: "pure" and "compiled".
#   2. Compiles MODULES in the "compiled" copy with mypyc (timed), then checks that Python imports the .so
#      files from that copy (it stops if not). The background worker processes (flushes, compactions) are
#      started with `python -c` and import byrondbm from where the parent did: the fill probe reports how
#      many of the compiled .so files they have mapped ("worker .so", 0 for the pure copy).
#   3. Optionally (--test) runs a few test modules against the compiled copy.
#   4. For ROUNDS rounds, pure and compiled alternately (pure first in odd rounds, compiled first in even
#      ones, so drift in the machine's load hits both alike):
#        - `python -m byrondbm bench` on byrondbm and plyvel (same N, same workloads, --repeat R);
#        - a fill probe: N random puts with the default options (flushes and compactions run), then close;
#          CPU of the writing process and of its worker processes (RUSAGE_CHILDREN once they are reaped);
#        - scripts/put_cost.py (a put's CPU cost, layer by layer, memtable never full).
#   5. Prints a side-by-side table: ops/s, process CPU µs/op and compiled ÷ pure ratios (medians over the
#      rounds), then the fill probe, put_cost, the build time and the size of the compiled files.
#
# It ships nothing: both copies live in the temporary directory, which is removed at exit (unless --keep).
# Nothing is written to the checkout; byrondbm stays pure Python and mypyc never becomes a dependency.
#
# Usage
#   scripts/mypyc_measure.sh [--n N] [--repeat R] [--rounds K] [--modules "byrondbm/x.py ..."] [--test] [--keep]
#     --n N         keys per workload (default 200000)
#     --repeat R    bench repeats per run, median reported (default 1)
#     --rounds K    pure/compiled alternations (default 2)
#     --modules M   files to compile (default: the hot modules that compile and keep every behaviour, below)
#     --test        also run tests/test_sstable_table.py, test_scan.py, test_mapping.py on the compiled copy
#     --keep        keep the temporary directory (its path is printed)
# Needs: mypy/mypyc (`python -c "import mypyc"`), a C compiler and the Python headers; plyvel for its column.
#
# Why these modules: of the hot-path candidates, these fail with mypyc without editing the product code
#   engine/memtable.py       mypyc internal error at build time (`reversed()` over a value narrowed from a
#                            Union with bare `list`: "AssertionError: Any")
#   engine/sstable/reader.py weakref.finalize(self): native classes take no weak references (TypeError)
#   engine/iterators.py      the engine puts weakref.finalize on merge_visible's generator: compiled
#                            generators take no weak references (TypeError on every scan)
#   engine/sstable/format.py frozen dataclass TableProperties: FrozenInstanceError when one is built
#   database.py              Database/Snapshot subclass MutableMapping/Mapping, so they compile as
#                            non-native classes, whose `reorganize = compact` aliases fail (KeyError ->
#                            SystemError on open); with mapping.py too: "Multiple inheritance is not supported"
#   mapping.py               its native ScanViews cannot be subclassed by the interpreted Database
#                            ("interpreted classes cannot inherit from compiled")
set -euo pipefail

N=200000
REPEAT=1
ROUNDS=2
TEST=0
KEEP=0
MODULES="byrondbm/engine/sstable/block.py byrondbm/engine/sstable/bloom.py byrondbm/engine/sstable/hash_index.py
byrondbm/engine/sstable/cache.py byrondbm/engine/sstable/writer.py byrondbm/engine/sstable/codec.py
byrondbm/engine/wal.py byrondbm/engine/version.py byrondbm/engine/records.py byrondbm/engine/framing.py"
BENCHMARKS=fillrandom,fillseq,overwrite,readrandom,readmissing,readseq,seekrandom

while [ $# -gt 0 ]; do
    case "$1" in
        --n) N=$2; shift 2 ;;
        --repeat) REPEAT=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --modules) MODULES=$2; shift 2 ;;
        --test) TEST=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "mypyc_measure.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python}
ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/byrondbm-mypyc.XXXXXX")
if [ "$KEEP" = 1 ]; then echo "keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
PURE=$WORK/pure
COMPILED=$WORK/compiled
OUT=$WORK/out
mkdir -p "$PURE" "$COMPILED" "$OUT"

echo "== $(date -u '+%Y-%m-%d %H:%M UTC')  tree $ROOT ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet || echo ', with uncommitted changes'))"
echo "== $($PYTHON --version), mypy $($PYTHON -c 'import mypy.version; print(mypy.version.__version__)'), $(${CC:-gcc} --version | head -1)"
echo "== uptime: $(uptime)"
for dest in "$PURE" "$COMPILED"; do
    git -C "$ROOT" ls-files -z | (cd "$ROOT" && xargs -0 tar -cf -) | tar -xf - -C "$dest"
done

# -- build ------------------------------------------------------------------------------------------------
# shellcheck disable=SC2086  # MODULES is a word list
read -r -a MODLIST <<< "$(echo $MODULES)"
echo "== compiling ${#MODLIST[@]} modules with mypyc (log: $OUT/build.log)"
start=$(date +%s)
if ! (cd "$COMPILED" && $PYTHON -m mypyc --ignore-missing-imports "${MODLIST[@]}") > "$OUT/build.log" 2>&1; then
    grep -v '^gcc' "$OUT/build.log" | tail -20 >&2
    echo "mypyc_measure.sh: the build failed" >&2
    exit 1
fi
BUILD_SECONDS=$(( $(date +%s) - start ))
SO_BYTES=$(find "$COMPILED" -name '*.so' -printf '%s\n' | awk '{s += $1} END {print s}')
grep ': warning:' "$OUT/build.log" | sed 's/^/   mypyc /' || true

# Each compiled module must be imported from its .so in the compiled copy (not the .py, not the editable
# install): `python -m` puts the working directory first on sys.path, so each run starts in its own copy.
MODNAMES=$(printf '%s\n' "${MODLIST[@]}" | sed 's/\.py$//; s#/#.#g' | paste -sd, -)
(cd "$COMPILED" && PYTHONPATH=$COMPILED $PYTHON - "$COMPILED" "$MODNAMES") <<'EOF'
import importlib, sys
root, names = sys.argv[1], sys.argv[2].split(",")
for name in names:
    path = importlib.import_module(name).__file__ or ""
    if not (path.startswith(root) and path.endswith(".so")):
        sys.exit(f"mypyc_measure.sh: {name} imports from {path}, not a .so under {root}")
print(f"== imports: {len(names)} modules from .so files under {root}")
EOF

if [ "$TEST" = 1 ]; then
    echo "== tests on the compiled copy"
    (cd "$COMPILED" && PYTHONPATH=$COMPILED $PYTHON -m pytest -q -p no:cacheprovider \
        tests/test_sstable_table.py tests/test_scan.py tests/test_mapping.py 2>&1 | tail -3)
fi

# -- the fill probe (written to the temporary directory; run in each copy) -------------------------------
cat > "$OUT/fill_probe.py" <<'EOF'
"""N random puts with the default options, then close: CPU µs a put of this process and of its workers."""
import json, os, random, resource, sys, tempfile, time
import byrondbm

n, check = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(7)
keys = [b"%016d" % rnd.randrange(10**16) for _ in range(n)]
value = rnd.randbytes(100)
with tempfile.TemporaryDirectory() as work:
    db = byrondbm.open(os.path.join(work, "db"), "c")
    cpu, wall = time.process_time(), time.perf_counter()
    for key in keys:
        db[key] = value
    mapped = set()
    for pid in db.stats().get("workers", []):  # which byrondbm .so files each live worker has mapped
        with open(f"/proc/{pid}/maps") as f:
            mapped |= {line.split()[-1] for line in f if line.rstrip().endswith(".so") and check in line}
    db.close()  # waits for the background jobs, stops and reaps the workers
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "self_us": cpu / n * 1e6,
                  "workers_us": (children.ru_utime + children.ru_stime) / n * 1e6, "worker_so": len(mapped)}))
EOF

# -- the runs ---------------------------------------------------------------------------------------------
run_tree() {  # run_tree LABEL ROUND
    local label=$1 round=$2 tree
    tree=$([ "$label" = pure ] && echo "$PURE" || echo "$COMPILED")
    echo "== round $round: $label  (load $(cut -d' ' -f1-3 /proc/loadavg))"
    (cd "$tree" && PYTHONPATH=$tree $PYTHON -m byrondbm bench --n "$N" --repeat "$REPEAT" -q \
        --engines byrondbm,plyvel --benchmarks "$BENCHMARKS" --json "$OUT/bench-$label-$round.json" > /dev/null)
    (cd "$tree" && PYTHONPATH=$tree $PYTHON "$OUT/fill_probe.py" "$N" "$COMPILED") > "$OUT/fill-$label-$round.json"
    (cd "$tree" && PYTHONPATH=$tree $PYTHON scripts/put_cost.py --repeat 3) > "$OUT/put-$label-$round.txt"
}
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then order="pure compiled"; else order="compiled pure"; fi
    for label in $order; do run_tree "$label" "$round"; done
done
echo "== uptime: $(uptime)"

# -- the report -------------------------------------------------------------------------------------------
$PYTHON - "$OUT" "$ROUNDS" "$N" "$REPEAT" "$BUILD_SECONDS" "$SO_BYTES" "${#MODLIST[@]}" <<'EOF'
import glob, json, os, re, statistics, sys

out, rounds, n, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
build_s, so_bytes, modules = float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
med = statistics.median
bench = {label: [json.load(open(f"{out}/bench-{label}-{r}.json")) for r in range(1, rounds + 1)]
         for label in ("pure", "compiled")}
rows = list(bench["pure"][0]["results"]["byrondbm"])


def values(label, engine, row, field):
    got = [doc["results"][engine][row].get(field) for doc in bench[label]]
    return [v for v in got if v]


def cell(vals, fmt):
    return fmt.format(med(vals)) if vals else "-"


def ratio(a, b):
    return f"{med(a) / med(b):.2f}" if a and b else "-"


head = ["workload", "pure ops/s", "mypyc ops/s", "mypyc÷pure", "pure µs/op", "mypyc µs/op", "mypyc÷pure CPU",
        "plyvel ops/s", "plyvel µs/op", "pure÷plyvel", "mypyc÷plyvel"]
table = []
for row in rows:
    p, c = values("pure", "byrondbm", row, "ops_per_sec"), values("compiled", "byrondbm", row, "ops_per_sec")
    pc, cc = (values(l, "byrondbm", row, "cpu_us_per_op") for l in ("pure", "compiled"))
    lv = values("pure", "plyvel", row, "ops_per_sec") + values("compiled", "plyvel", row, "ops_per_sec")
    lc = values("pure", "plyvel", row, "cpu_us_per_op") + values("compiled", "plyvel", row, "cpu_us_per_op")
    table.append([row, cell(p, "{:,.0f}"), cell(c, "{:,.0f}"), ratio(c, p), cell(pc, "{:.2f}"), cell(cc, "{:.2f}"),
                  ratio(cc, pc), cell(lv, "{:,.0f}"), cell(lc, "{:.2f}"), ratio(p, lv), ratio(c, lv)])
widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
print(f"\nbyrondbm bench, n={n:,}, --repeat {repeat}, median of {rounds} rounds per tree "
      "(ops/s: higher is better; µs/op = process CPU per operation: lower is better)")
for line in [head, ["-" * w for w in widths], *table]:
    print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths))))

fill = {label: [json.load(open(f"{out}/fill-{label}-{r}.json")) for r in range(1, rounds + 1)]
        for label in ("pure", "compiled")}
print(f"\nfill probe: {n:,} random puts, default options, then close (CPU µs a put; medians)")
print(f"{'':9}{'wall s':>8}{'writer µs':>11}{'workers µs':>12}{'worker .so':>12}")
for label in ("pure", "compiled"):
    f = fill[label]
    print(f"{label:9}{med(x['wall_s'] for x in f):8.2f}{med(x['self_us'] for x in f):11.2f}"
          f"{med(x['workers_us'] for x in f):12.2f}{min(x['worker_so'] for x in f):12d}")
w = [med(x[k] for x in fill[label]) for k in ("self_us", "workers_us") for label in ("compiled", "pure")]
print(f"{'mypyc÷pure':9}{'':8}{w[0] / w[1]:11.2f}{w[2] / w[3]:12.2f}")

print("\nscripts/put_cost.py (thread CPU µs a put, min of 3 × 100,000; medians over rounds)")
put = {}
for label in ("pure", "compiled"):
    for r in range(1, rounds + 1):
        for layer, us in re.findall(r"^\s*(\w+): ([\d.]+) µs", open(f"{out}/put-{label}-{r}.txt").read(), re.M):
            put.setdefault(layer, {}).setdefault(label, []).append(float(us))
for layer, by in put.items():
    print(f"  {layer:>9}: pure {med(by['pure']):.2f}  mypyc {med(by['compiled']):.2f}  "
          f"mypyc÷pure {med(by['compiled']) / med(by['pure']):.2f}")
print(f"\nbuild: {modules} modules, {build_s:.0f} s wall (mypyc + gcc -O3), {so_bytes / 2**20:.1f} MiB of .so files")
EOF
