#!/usr/bin/env bash
# Builds pvc-evictor and runs the whole test suite: unit tests, integration
# tests against the real binary on loop-mounted filesystems (as root), and
# the deployment checks and a smoke run of the benchmarks. This is the
# command CI runs first.
#
# Usage: scripts/test.sh [--sanitize address|undefined|thread|address,undefined]
#                        [ctest args, e.g. -R 'unit|integration.test_crawl']
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=""
if [[ "${1:-}" == --sanitize ]]; then
  sanitize="${2:?--sanitize needs address, undefined or thread}"
  case "$sanitize" in
    address|undefined|thread|address,undefined|undefined,address) ;;
    *) echo "test.sh: --sanitize must be address, undefined, thread or" \
         "address,undefined" >&2
       exit 2 ;;
  esac
  shift 2
fi

scripts/deps.sh test

build_dir=build
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ -n "$sanitize" ]]; then
  build_dir="build-${sanitize/,/-}"
  # Sanitized builds are for finding faults, not speed: skip benchmarks,
  # and optimise at -O1, which keeps reports readable and compiles in about
  # two thirds of the time -O2 takes.
  cmake_args+=(-DPVC_SANITIZE="$sanitize" -DPVC_BUILD_BENCH=OFF
               -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g")
  # libzmq is not instrumented; its internal races are not ours.
  export TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-}"
  # The clock tests preload libfaketime into the daemon; ASan's check that
  # its runtime comes first in the library list would refuse to start it.
  asan="detect_leaks=1 verify_asan_link_order=0"
  export ASAN_OPTIONS="$asan ${ASAN_OPTIONS:-}"
  export UBSAN_OPTIONS="print_stacktrace=1 ${UBSAN_OPTIONS:-}"
fi
cmake -S . -B "$build_dir" "${cmake_args[@]}" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"

cd "$build_dir"
ctest --output-on-failure --no-tests=error -j"$(nproc)" "$@"
