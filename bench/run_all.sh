#!/usr/bin/env bash
# Runs every benchmark binary of a release build with 5 repetitions (medians reported) and keeps
# each binary's output, summary included, in OUT_DIR (default build/release/bench-results).
# Usage: bench/run_all.sh [benchmark filter regex] (e.g. 'N:256' for the shapes of the bars).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${BUILD_DIR:-$root/build/release}/bench"
out="${OUT_DIR:-$root/build/release/bench-results}"
filter="${1:-.}"
mkdir -p "$out"
for b in "$bin"/kdloss_bench_*; do
  [[ -f "$b" && -x "$b" ]] || continue  # the binaries only (not a stray folder of the same prefix)
  name="$(basename "$b")"
  echo "== $name" >&2
  "$b" --benchmark_filter="$filter" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
       --benchmark_color=false > "$out/$name.txt" 2>&1
  sed -n '/^Summary/,$p' "$out/$name.txt"
done
