#!/usr/bin/env bash
# The long `byrondbm bench --scale` run: KEYS keys (default 10,000,000) written at random, then
# peak RSS, write amplification, space amplification (disk bytes / user bytes) and readrandom throughput,
# before and after compact(), compared with the same measures at 200,000 keys.
#
# Usage: scripts/bench_scale.sh [KEYS] [FILL_MINUTES] [OUT.json]
# The fill stops by itself after FILL_MINUTES (default 60) and the rest is measured on what was written;
# `timeout` is the hard stop 30 minutes later (a compaction cannot be interrupted). OUT.json (default
# bench-scale.json) is rewritten after every phase, so a run cut short keeps what it measured.
set -euo pipefail
keys=${1:-10000000}
minutes=${2:-60}
out=${3:-bench-scale.json}
cd "$(dirname "$0")/.."
exec timeout --signal=INT "$(( (minutes + 30) * 60 ))" \
    python -m byrondbm.bench --scale "$keys" --time-limit "$(( minutes * 60 ))" --json "$out"
