#!/usr/bin/env bash
# A two-minute tour of pvc-evictor doing its job on a real filesystem.
#
# As root it makes a 512 MiB ext4 image, loop-mounts it with strictatime,
# fills it to 90 % with a synthetic KV cache in the writer's layout, keeps
# a few old blocks busy with a reader, and runs pvc-evictor in crawl mode
# until usage is back at the 70 % target. Without root it uses a plain
# directory and a byte budget (--max-cache-bytes) instead of a volume.
# Everything it creates is removed on exit.
#
# Usage: scripts/demo.sh [--keep-log FILE]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

keep_log=""
if [[ "${1:-}" == --keep-log ]]; then
  keep_log="${2:?--keep-log needs a file name}"
fi

say() { printf '\033[1m== %s\033[0m\n' "$*"; }

say "installing build dependencies (if missing) and building"
scripts/deps.sh build >/dev/null
if ! command -v mkfs.ext4 >/dev/null || ! command -v python3 >/dev/null; then
  scripts/deps.sh test >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target pvc-evictor >/dev/null
bin="$repo/build/pvc-evictor"

work="$(mktemp -d /tmp/pvc-evictor-demo.XXXXXX)"
mnt="$work/volume"
mkdir -p "$mnt"
daemon_pid=""
reader_pid=""
cleanup() {
  local pid
  for pid in "$reader_pid" "$daemon_pid"; do
    if [[ -n "$pid" ]]; then
      kill "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if mountpoint -q "$mnt"; then
    umount "$mnt" 2>/dev/null || umount -l "$mnt"
  fi
  if [[ -n "$keep_log" && -f "$work/evictor.log" ]]; then
    cp "$work/evictor.log" "$keep_log"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

budget_args=()
if ((EUID == 0)); then
  say "making a 512 MiB ext4 volume (loop device, strictatime)"
  truncate -s 512M "$work/volume.img"
  mkfs.ext4 -q -F -m 0 -E lazy_itable_init=0,lazy_journal_init=0 \
    "$work/volume.img"
  mount -o loop,strictatime "$work/volume.img" "$mnt"
  gen_args=(--fill-percent 90 --size-min 1M --size-max 8M)
  usage_of() { python3 -c 'import os,sys
s=os.statvfs(sys.argv[1]); u=(s.f_blocks-s.f_bfree)*s.f_frsize
print(f"{100*u/(u+s.f_bavail*s.f_frsize):.1f}")' "$mnt"; }
else
  say "not root: using a directory with a 256 MiB byte budget instead"
  budget_args=(--max-cache-bytes 256Mi)
  gen_args=(--files 230 --size 1M)
  usage_of() { du -sk "$mnt/kv" |
    awk '{printf "%.1f\n", 100*$1/(256*1024)}'; }
fi

say "writing a synthetic KV cache (2 models, temp-then-rename, 1-8 MiB blocks)"
python3 scripts/gencache.py "$mnt/kv" "${gen_args[@]}" --models 2 \
  --age-min-minutes 30 --age-max-minutes 600 \
  --orphan-temps 3 --seed 42 --manifest "$work/manifest.jsonl"
echo "   usage now: $(usage_of)%"

# The five oldest blocks are what vLLM keeps reading in this story: oldest
# by their timestamps, so only reads can save them.
mapfile -t hot < <(python3 -c 'import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if "\"block\"" in l]
rows.sort(key=lambda r: r["atime"])
for r in rows[:5]: print(sys.argv[2] + "/" + r["path"])' \
  "$work/manifest.jsonl" "$mnt/kv")
say "a reader keeps reading the 5 oldest blocks every 200 ms"
python3 - "${hot[@]}" <<'PY' &
import sys, time
while True:
    for p in sys.argv[1:]:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
    time.sleep(0.2)
PY
reader_pid=$!
sleep 0.5  # one pass of reads, so their atime is fresh

say "running pvc-evictor (crawl mode, cleanup 85 %, target 70 %, hot 5 min)"
start=$(date +%s.%N)
"$bin" --mount-path "$mnt" --cache-dir kv --mode crawl --hot-minutes 5 \
  --interval 0.2 --temp-max-age-minutes 60 "${budget_args[@]}" \
  >"$work/evictor.log" 2>&1 &
daemon_pid=$!

# Show usage as the daemon reports it, until the episode ends.
# While the first crawl runs the daemon re-reads an unchanged usage; print
# each figure once.
last=""
timeout 60 tail -n +1 -f "$work/evictor.log" | while read -r line; do
  case "$line" in
    *CACHE_PERCENT_LOG:*)
      pct="${line%,*}"; pct="${pct##*,}"
      [[ "$pct" == "$last" ]] || printf '   usage %6s%%\n' "$pct"
      last="$pct" ;;
    *DELETION_START:*) echo "   -- cleanup threshold crossed: deleting" ;;
    *"episode ended"*) echo "   -- ${line#* info }"; break ;;
  esac
done || true  # tail ends with SIGPIPE once the loop has seen enough
end=$(date +%s.%N)
# Orphaned temp files are reclaimed on the step after the first crawl.
timeout 5 grep -q reclaimed <(tail -n +1 -f "$work/evictor.log") || true
kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""
kill "$reader_pid" 2>/dev/null || true
wait "$reader_pid" 2>/dev/null || true
reader_pid=""

say "summary"
kept=0
for f in "${hot[@]}"; do [[ -f "$f" ]] && kept=$((kept + 1)); done
summary="$(grep -m1 'episode ended' "$work/evictor.log" || true)"
deleted="$(sed -n 's/.*deleted \([0-9]*\) files (\([^)]*\)).*/\1 files, \2/p' \
  <<<"$summary")"
orphans="$(grep -c 'reclaimed' "$work/evictor.log" || true)"
printf '   deleted:        %s\n' "${deleted:-nothing}"
episode_end="$(sed -n 's/.*usage [0-9.]*% -> \([0-9.]*\)%.*/\1/p' <<<"$summary")"
printf '   usage:          %s%% when the episode ended (target 70 %%),' \
  "${episode_end:-?}"
printf ' %s%% now\n' "$(usage_of)"
printf '                   (orphaned temp files are reclaimed after it)\n'
printf '   time to target: %.1f s (including the first crawl)\n' \
  "$(echo "$end - $start" | bc -l 2>/dev/null || echo 0)"
printf '   hot files kept: %d of %d still being read\n' "$kept" "${#hot[@]}"
printf '   orphan temps:   %s\n' \
  "$([[ $orphans -gt 0 ]] && echo reclaimed || echo none reclaimed)"
if ((kept != ${#hot[@]})); then
  echo "demo failed: a block that was being read was deleted" >&2
  exit 1
fi
