#!/usr/bin/env bash
# ctest's check that every benchmark still runs: scripts/bench.sh --smoke on
# the build ctest tests. It fails only when a benchmark could not run or
# printed no result, never because the machine is slow. The benchmarks mount
# loop filesystems, so without root the check is skipped (exit 77) with a
# reason, except under CI, where a skip would hide a broken suite.
set -euo pipefail
build_dir="${1:?usage: smoke.sh BUILD_DIR}"
if ((EUID != 0)); then
  if [[ -n "${CI:-}" ]]; then
    echo "bench smoke: needs root for loop mounts, and CI is set" >&2
    exit 1
  fi
  echo "bench smoke: skipped, needs root to mount loop filesystems"
  exit 77
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
exec "$repo/scripts/bench.sh" --smoke --no-build --build-dir "$build_dir"
