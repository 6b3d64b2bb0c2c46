#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each one for a
# while; fails if any of them finds a crash, a leak, undefined behaviour, a
# broken invariant or a timeout, or if a committed reproducer in
# tests/fuzz/crashes/ still fails.
#
# Usage: tests/fuzz/run.sh [--seconds N] [--build-dir DIR] [TARGET...]
#   --seconds N     how long each target runs (default 30)
#   --build-dir DIR where to build (default build-fuzz at the repository root)
#   TARGET          decode_events, parse_settings (default: both)
#
# The committed seed corpus (tests/fuzz/corpus/<target>/) is only read; new
# inputs go to a scratch corpus under the build directory, kept between
# runs. A crash is saved as <build-dir>/artifacts/<target>-crash-<sha1>;
# copy it to tests/fuzz/crashes/<target>-<what> to keep it as a regression.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
seconds=30
build_dir="$repo/build-fuzz"
targets=()

while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --build-dir) build_dir="${2:?--build-dir needs a path}"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    decode_events|parse_settings) targets+=("$1"); shift ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ && "$seconds" -gt 0 ]]; then
  echo "run.sh: --seconds must be a positive whole number" >&2
  exit 2
fi
if ((${#targets[@]} == 0)); then
  targets=(decode_events parse_settings)
fi

# clang and its fuzzer runtime come from Debian (clang-14,
# libclang-rt-14-dev); scripts/deps.sh installs them when missing.
cxx="$(command -v clang++ || command -v clang++-14 || true)"
if [[ -z "$cxx" ]] ||
    ! "$cxx" -print-file-name=libclang_rt.fuzzer-x86_64.a |
      grep -q /; then
  "$repo/scripts/deps.sh" test
  cxx="$(command -v clang++ || command -v clang++-14)"
fi

cmake -S "$here" -B "$build_dir" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$build_dir" -j"$(nproc)" \
  --target "${targets[@]/%/_fuzzer}" >/dev/null

failed=()
summary=()
for target in "${targets[@]}"; do
  binary="$build_dir/${target}_fuzzer"
  seeds="$here/corpus/$target"
  work="$build_dir/corpus/$target"
  artifacts="$build_dir/artifacts"
  mkdir -p "$work" "$artifacts"
  extra=()
  if [[ -f "$here/$target.dict" ]]; then
    extra+=("-dict=$here/$target.dict")
  fi

  # Committed reproducers first: each must now run clean.
  shopt -s nullglob
  repros=("$here/crashes/$target"-*)
  shopt -u nullglob
  for repro in "${repros[@]}"; do
    if ! "$binary" "${extra[@]}" -runs=1 "$repro" \
        >"$build_dir/$target.repro.log" 2>&1; then
      echo "FAIL $target: reproducer $(basename "$repro") still fails:"
      grep -E 'ERROR|runtime error|invariant|SUMMARY' \
        "$build_dir/$target.repro.log" | head -5 || true
      failed+=("$target:$(basename "$repro")")
    fi
  done

  log="$build_dir/$target.log"
  echo "fuzzing $target for ${seconds}s (log: $log)"
  status=0
  "$binary" "${extra[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=4096 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$target-" \
    "$work" "$seeds" >"$log" 2>&1 || status=$?
  execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" |
    awk '{s += $2} END {print s + 0}')"
  rate="$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" |
    awk '{s += $2} END {print s + 0}')"
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)"
  if ((status != 0)) || grep -qE '^==[0-9]+==ERROR|runtime error:|invariant broken|deadly signal' "$log"; then
    echo "FAIL $target (exit $status); see $log"
    grep -E 'ERROR|runtime error|invariant broken|Test unit written|SUMMARY' \
      "$log" | head -10 || true
    failed+=("$target")
  else
    echo "ok   $target"
  fi
  summary+=("$target: ${execs} runs, ${rate} exec/s, ${cov:-no coverage line}")
done

echo
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} != 0)); then
  echo "fuzzing FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzzing passed"
