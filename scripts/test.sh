#!/usr/bin/env bash
# Builds pvc-evictor and runs the whole test suite: unit tests, integration
# tests against the real binary on loop-mounted filesystems (as root), and
# the deployment checks. This is the command CI runs.
#
# Usage: scripts/test.sh [--sanitize address|undefined|thread] [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=""
if [[ "${1:-}" == --sanitize ]]; then
  sanitize="${2:?--sanitize needs address, undefined or thread}"
  case "$sanitize" in
    address|undefined|thread) ;;
    *) echo "test.sh: --sanitize must be address, undefined or thread" >&2
       exit 2 ;;
  esac
  shift 2
fi

scripts/deps.sh test

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ -n "$sanitize" ]]; then
  build_dir="build-$sanitize"
  cmake_args+=(-DPVC_SANITIZE="$sanitize")
fi
cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

cd "$build_dir"
ctest --output-on-failure --no-tests=error -j"$(nproc)" "$@"
