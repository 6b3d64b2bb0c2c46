#!/usr/bin/env bash
# Soak test: pvc-evictor on a 256 MiB ext4 loop volume for a while, under
# writers that add blocks the way the cache writer does (temp file, then
# rename) and readers that keep reading the same blocks. Not part of CI.
#
# Usage: scripts/soak.sh [--minutes N] [--mode crawl|watch] [--keep]
#   --minutes N   how long the load runs (default 10)
#   --mode M      the daemon's --mode: crawl (default) or watch
#   --keep        keep the work directory (logs, samples) at the end
#
# At the end it prints and checks:
#   - the writers never got ENOSPC (nor any other error);
#   - the readers never got ENOENT on a block they were reading all along
#     (the daemon never deleted a block in use);
#   - the daemon's memory did not grow: its RSS, sampled every 10 s, is at
#     most 20 % + 4 MiB above the first minute's maximum in the last
#     minute;
#   - the daemon is still running and logged no error.
# Exits 0 when every check passes, 1 otherwise. Needs root (loop mount).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
minutes=10
mode=crawl
keep=0
while (($#)); do
  case "$1" in
    --minutes) minutes="${2:?--minutes needs a number}"; shift 2 ;;
    --mode) mode="${2:?--mode needs crawl or watch}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "soak.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$minutes" =~ ^[0-9]+$ && "$minutes" -ge 1 ]]; then
  echo "soak.sh: --minutes must be a whole number of at least 1" >&2
  exit 2
fi
if [[ "$mode" != crawl && "$mode" != watch ]]; then
  echo "soak.sh: --mode must be crawl or watch" >&2
  exit 2
fi
if ((EUID != 0)); then
  echo "soak.sh: needs root (it loop-mounts an ext4 image)" >&2
  exit 2
fi

binary="${PVC_EVICTOR_BIN:-$repo/build/pvc-evictor}"
if [[ ! -x "$binary" ]]; then
  "$repo/scripts/deps.sh" build
  cmake -S "$repo" -B "$repo/build" >/dev/null
  cmake --build "$repo/build" -j"$(nproc)" --target pvc-evictor >/dev/null
fi

seconds=$((minutes * 60))
work="$(mktemp -d /tmp/pvc-soak-XXXXXX)"
mnt="$work/mnt"
mkdir "$mnt"
pids=()
daemon_pid=""
mounted=0

cleanup() {
  local pid
  for pid in "${pids[@]}" "$daemon_pid"; do
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if ((mounted)); then
    umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
  fi
  if ((keep)); then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- volume --
truncate -s 256M "$work/fs.img"
mkfs.ext4 -q -F -m 0 -E lazy_itable_init=0,lazy_journal_init=0 "$work/fs.img"
mount -o loop,strictatime "$work/fs.img" "$mnt"
mounted=1
root="$mnt/kv"
python3 "$repo/scripts/gencache.py" --fill-percent 55 --seed 42 \
  --size-min 64K --size-max 1M --quiet "$root"
model="$(find "$root" -mindepth 1 -maxdepth 1 -type d -name '*_r0' | head -1)"
if [[ -z "$model" ]]; then
  echo "soak.sh: gencache made no rank directory under $root" >&2
  exit 1
fi

# -------------------------------------------------------------- workers --
cat >"$work/worker.py" <<'PY'
"""soak.sh's load: `writer MODEL SECONDS SEED MIB_PER_S OUT` writes blocks
(temp file, then rename) at about MIB_PER_S; `reader OUT SECONDS PATH...`
reads whole files over and over. Each writes its counters to OUT as JSON."""
import errno
import json
import os
import random
import sys
import time


def writer(model, seconds, seed, rate, out):
    rng = random.Random(seed)
    stats = {"written": 0, "bytes": 0, "enospc": 0, "errors": 0,
             "last_errors": []}
    chunk = bytes(64 << 10)
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        size = rng.choice((64, 128, 256, 512, 1024)) << 10
        digest = f"{rng.getrandbits(64):016x}"
        final = os.path.join(model, digest[:3], digest[3:5] + "_g0",
                             digest + ".bin")
        tmp = f"{final}_{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                for _ in range(size // len(chunk)):
                    os.write(fd, chunk)
            finally:
                os.close(fd)
            os.rename(tmp, final)
            stats["written"] += 1
            stats["bytes"] += size
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                stats["enospc"] += 1
            else:
                stats["errors"] += 1
            stats["last_errors"] = (stats["last_errors"] + [str(exc)])[-5:]
            try:
                os.unlink(tmp)
            except OSError:
                pass
        next_at += size / (rate * (1 << 20))
        time.sleep(max(0.0, next_at - time.monotonic()))
    with open(out, "w") as f:
        json.dump(stats, f)


def reader(out, seconds, paths):
    stats = {"reads": 0, "enoent": 0, "errors": 0, "missing": [],
             "last_errors": []}
    buf = bytearray(1 << 20)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in paths:
            try:
                with open(path, "rb", buffering=0) as f:
                    while f.readinto(buf):
                        pass
                stats["reads"] += 1
            except FileNotFoundError:
                stats["enoent"] += 1
                if path not in stats["missing"]:
                    stats["missing"].append(path)
            except OSError as exc:
                stats["errors"] += 1
                stats["last_errors"] = (stats["last_errors"]
                                        + [str(exc)])[-5:]
        time.sleep(0.2)
    with open(out, "w") as f:
        json.dump(stats, f)


if __name__ == "__main__":
    if sys.argv[1] == "writer":
        writer(sys.argv[2], float(sys.argv[3]), sys.argv[4],
               float(sys.argv[5]), sys.argv[6])
    else:
        reader(sys.argv[2], float(sys.argv[3]), sys.argv[4:])
PY

# The readers' blocks: 16 of the pre-filled (old) ones, read once before
# the daemon starts so that they are hot from its first look on.
mapfile -t read_set < <(find "$model" -name '*.bin' -type f | sort | head -16)
python3 "$work/worker.py" reader "$work/reader.json" "$((seconds + 15))" \
  "${read_set[@]}" &
pids+=("$!")
sleep 1

daemon_args=(--mount-path "$mnt" --cache-dir kv --mode "$mode"
             --hot-minutes 0.5 --rescan-interval 10 --interval 0.5
             --metrics-address 127.0.0.1:0 --dir-cleanup-ttl 5)
"$binary" "${daemon_args[@]}" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
  grep -q 'crawl done' "$work/daemon.log" && break
  kill -0 "$daemon_pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q 'crawl done' "$work/daemon.log"; then
  echo "soak.sh: the daemon did not complete its first crawl:" >&2
  tail -20 "$work/daemon.log" >&2
  exit 1
fi
port="$(sed -n 's/.*serving .* on port \([0-9]*\).*/\1/p' \
  "$work/daemon.log" | head -1)"

# Two writers at 1 MiB/s each: with a 30 s hot window, about 60 MiB of the
# 256 MiB stay hot; the rest must be evicted in time.
for w in 1 2; do
  python3 "$work/worker.py" writer "$model" "$seconds" "soak-$w" 1 \
    "$work/writer-$w.json" &
  pids+=("$!")
done

echo "soak: $minutes min, mode $mode, volume $mnt (256 MiB), daemon pid" \
  "$daemon_pid, work $work"
: >"$work/samples"
start=$SECONDS
while ((SECONDS - start < seconds)); do
  rss="$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon_pid/status" 2>/dev/null ||
    echo 0)"
  usage="$(df --output=pcent "$mnt" | tail -1 | tr -dc '0-9')"
  echo "$((SECONDS - start)) $rss $usage" >>"$work/samples"
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "soak: the daemon exited early" >&2
    break
  fi
  sleep 10
done

# Writers end on their own at the deadline, the reader a little later.
for pid in "${pids[@]}"; do
  wait "$pid" || true
done
pids=()
metrics=""
if [[ -n "$port" ]]; then
  metrics="$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" ||
    python3 -c 'import sys, urllib.request as u; print(u.urlopen(sys.argv[1], timeout=5).read().decode())' \
      "http://127.0.0.1:$port/metrics" 2>/dev/null || true)"
fi
daemon_alive=0
if kill -0 "$daemon_pid" 2>/dev/null; then
  daemon_alive=1
  kill "$daemon_pid"
  wait "$daemon_pid" || true
fi
daemon_pid=""

# --------------------------------------------------------------- report --
python3 - "$work" "$daemon_alive" "$metrics" <<'PY'
import json
import os
import re
import sys

work, alive, metrics = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
failed = []


def load(name):
    try:
        with open(os.path.join(work, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        failed.append(f"{name} missing: a worker died")
        return {}


writers = [load("writer-1.json"), load("writer-2.json")]
reader = load("reader.json")
written = sum(w.get("written", 0) for w in writers)
mib = sum(w.get("bytes", 0) for w in writers) / (1 << 20)
enospc = sum(w.get("enospc", 0) for w in writers)
werrors = sum(w.get("errors", 0) for w in writers)
print(f"writers: {written} blocks ({mib:.0f} MiB) written, ENOSPC {enospc}, "
      f"other errors {werrors}")
for w in writers:
    for e in w.get("last_errors", []):
        print(f"  writer error: {e}")
if enospc:
    failed.append(f"writers got ENOSPC {enospc} times")
if werrors:
    failed.append(f"writers got {werrors} other errors")
print(f"readers: {reader.get('reads', 0)} whole-file reads of 16 blocks, "
      f"ENOENT {reader.get('enoent', 0)}, other errors "
      f"{reader.get('errors', 0)}")
if reader.get("enoent") or reader.get("missing"):
    failed.append(f"blocks in use were deleted: {reader.get('missing')}")
if reader.get("errors"):
    failed.append(f"readers got errors: {reader.get('last_errors')}")
if not reader.get("reads"):
    failed.append("the readers read nothing")

samples = []
with open(os.path.join(work, "samples")) as f:
    for line in f:
        t, rss, usage = (int(x) for x in line.split())
        samples.append((t, rss, usage))
end = samples[-1][0] if samples else 0
first = [rss for t, rss, _ in samples if t < 60 and rss]
last = [rss for t, rss, _ in samples if t >= end - 60 and rss]
usages = [u for _, _, u in samples]
if first and last:
    limit = max(first) * 1.2 + 4096
    print(f"daemon RSS: first minute max {max(first)} KiB, last minute max "
          f"{max(last)} KiB (limit {limit:.0f} KiB); samples "
          f"{[rss for _, rss, _ in samples]}")
    if max(last) > limit:
        failed.append("the daemon's memory grew")
else:
    failed.append("no RSS samples")
print(f"volume usage (df, every 10 s): min {min(usages, default=0)}%, max "
      f"{max(usages, default=0)}%")

with open(os.path.join(work, "daemon.log"), errors="replace") as f:
    log = f.read()
episodes = re.findall(r"episode ended: deleted (\d+) files \(([\d.]+) (\w+)",
                      log)
deleted = sum(int(n) for n, _, _ in episodes)
errors = [line for line in log.splitlines() if " error " in line[:40]
          or " critical " in line[:40]]
warnings = [line for line in log.splitlines() if " warning " in line[:40]]
crawls = len(re.findall(r"crawl done", log))
print(f"daemon: {len(episodes)} episodes, {deleted} files deleted, "
      f"{crawls} crawls, {len(warnings)} warnings, {len(errors)} errors, "
      f"still running at the end: {'yes' if alive else 'no'}")
for line in (warnings[:5] + errors[:5]):
    print(f"  {line}")
for line in metrics.splitlines():
    if re.match(r"pvc_evictor_(deleted_files_total|skipped_files_total|"
                r"delete_errors_total|dirs_removed_total|episodes_total|"
                r"index_memory_bytes|index_files|event_overflows_total|"
                r"events_malformed_total)", line):
        print(f"  {line}")
if not alive:
    failed.append("the daemon exited")
if errors:
    failed.append("the daemon logged errors")
if not episodes:
    failed.append("no episode ended: the load never pushed usage over "
                  "cleanup, or the daemon never got it back")

if failed:
    print("SOAK FAILED: " + "; ".join(failed))
    sys.exit(1)
print("SOAK PASSED")
PY
