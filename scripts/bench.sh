#!/usr/bin/env bash
# Builds the benchmark programs and runs the benchmark suite: pvc-evictor
# against baselines (find, find -delete, offline LRU and Belady) on the
# same generated data, in the same run. Prints one table and writes it,
# with every raw figure, as JSON. See BENCHMARKS.md.
#
# Usage: scripts/bench.sh [--smoke] [--only SECTIONS] [--out FILE]
#                         [--build-dir DIR] [--no-build]
#
#   --smoke        tiny sizes, about two minutes: checks that every
#                  benchmark still runs. Exits non-zero only when one
#                  could not run or printed no result, never on slowness.
#   --only LIST    comma-separated subset of
#                  crawl,delete,events,idle,reaction,quality
#   --out FILE     results file (default bench-results/latest.json, or
#                  DIR/bench-smoke.json with --smoke)
#   --build-dir    build tree to use (default build-bench, configured as
#                  Release like the image; created when missing)
#   --no-build     use the build tree as it is (ctest does)
#
# Needs root for the loop-mounted filesystems and for dropping caches; it
# mounts everything it uses under /var/tmp/pvc-bench-* and removes it
# again, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=""
only=""
out=""
build_dir="build-bench"
build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) smoke="--smoke"; shift ;;
    --only) only="${2:?--only needs a list}"; shift 2 ;;
    --out) out="${2:?--out needs a file}"; shift 2 ;;
    --build-dir) build_dir="${2:?--build-dir needs a directory}"; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$out" ]]; then
  if [[ -n "$smoke" ]]; then
    out="$build_dir/bench-smoke.json"
  else
    out="bench-results/latest.json"
  fi
fi

targets=(pvc-evictor crawl_bench delete_bench apply_bench decode_bench
         reader_bench)
if [[ "$build" == 1 ]]; then
  if [[ ! -f "$build_dir/CMakeCache.txt" ]]; then
    cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]}"
fi

python=/usr/bin/python3
[[ -x "$python" ]] || python=python3
args=(--build-dir "$build_dir" --out "$out")
[[ -n "$smoke" ]] && args+=("$smoke")
[[ -n "$only" ]] && args+=(--only "$only")
exec "$python" scripts/bench_suite.py "${args[@]}"
