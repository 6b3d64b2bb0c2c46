"""Eviction quality: a skewed read-and-write trace replayed against a small
loop-mounted volume with the daemon running, next to exact LRU and
Belady's optimal policy computed offline from the same trace.

The trace. K blocks have Zipf(s) popularity (rank r is requested with
weight 1/r^s; ranks are shuffled over block ids so popularity has nothing
to do with names). Each operation is, with probability p_new, the write of
a brand-new block that is never read again (a one-off prompt), and
otherwise a read of a block drawn by popularity. A read that finds its
block is a hit. A read that does not is a miss and, like vLLM recomputing
the KV and storing it, writes the block. The first read of a block is a
compulsory miss (it never existed); every later miss means the block was
evicted, and the share of reads that find their block evicted is the
figure of merit:

    evicted-miss ratio = evicted misses / reads of blocks written before

The offline policies see exactly the same reference string (every read and
every write is a reference; a miss inserts the block) and a capacity in
blocks derived from the volume: C_hi blocks fit below the cleanup
threshold, C_lo below the target. Reported:

    lru         exact LRU holding at most C_hi blocks
    lru_hyst    exact LRU with the daemon's hysteresis: when the cache
                exceeds C_hi, evict least recent blocks down to C_lo
    belady      Belady's MIN (evict the block whose next reference is
                furthest away) holding at most C_hi blocks: a lower bound
                for any policy that never holds more

Time is accelerated: the trace is replayed at a fixed rate (default 150
operations/s) and the daemon runs with a hot window of seconds instead of
an hour, and in crawl mode rescans every few seconds instead of every five
minutes (the ratio of rescan interval to hot window is kept at 1:3).

Standard library only.
"""

from __future__ import annotations

import bisect
import collections
import errno
import heapq
import itertools
import math
import os
import random
import threading
import time

MODEL_DIR = "org_model-0_0123456789ab_r0"
CONFIG_DIR = "org_model-0_0123456789ab"
FIRST_BUCKETS = 16   # 3-hex buckets 000..00f: one per crawler slot
SECOND_BUCKETS = 4   # 2-hex buckets per first-level bucket


# ---------------------------------------------------------------- trace --

def make_trace(seed: int, ops: int, blocks: int, zipf_s: float,
               p_new: float) -> list[tuple[str, int]]:
    """[(kind, block id)], kind "r" (read, write on miss) or "w" (one-off
    write). Zipf ids are 0..blocks-1; one-off ids start at `blocks`."""
    rng = random.Random(f"pvc-bench-trace:{seed}")
    ranks = list(range(blocks))
    rng.shuffle(ranks)  # ranks[r] is the id of the r-th most popular block
    cum = list(itertools.accumulate(1.0 / (r + 1) ** zipf_s
                                    for r in range(blocks)))
    total = cum[-1]
    trace = []
    next_new = blocks
    for _ in range(ops):
        if rng.random() < p_new:
            trace.append(("w", next_new))
            next_new += 1
        else:
            r = bisect.bisect_left(cum, rng.random() * total)
            trace.append(("r", ranks[min(r, blocks - 1)]))
    return trace


def block_hex(block: int) -> str:
    """16 hex digits whose first 3 pick one of 16 first-level buckets and
    next 2 one of 4 second-level buckets, so a small volume is not mostly
    directory blocks."""
    return (f"{block % FIRST_BUCKETS:03x}"
            f"{(block // FIRST_BUCKETS) % SECOND_BUCKETS:02x}"
            f"{block:011x}")


def block_relpath(block: int) -> str:
    h = block_hex(block)
    return f"{MODEL_DIR}/{h[:3]}/{h[3:5]}_g0/{h}.bin"


# -------------------------------------------------------------- offline --

def _counts() -> dict:
    return {"reads": 0, "hits": 0, "compulsory": 0, "evicted_misses": 0}


def _ratio(c: dict) -> float:
    rereads = c["reads"] - c["compulsory"]
    return c["evicted_misses"] / rereads if rereads else 0.0


def simulate_lru(trace, cap_hi: int, cap_lo: int | None = None) -> dict:
    """Exact LRU; with cap_lo, evict down to cap_lo whenever cap_hi is
    exceeded (the daemon's hysteresis)."""
    cache: collections.OrderedDict[int, None] = collections.OrderedDict()
    seen: set[int] = set()
    c = _counts()
    low = cap_hi if cap_lo is None else cap_lo
    for kind, b in trace:
        if kind == "r":
            c["reads"] += 1
            if b in cache:
                c["hits"] += 1
                cache.move_to_end(b)
                continue
            if b in seen:
                c["evicted_misses"] += 1
            else:
                c["compulsory"] += 1
        seen.add(b)
        cache[b] = None
        cache.move_to_end(b)
        if len(cache) > cap_hi:
            while len(cache) > low:
                cache.popitem(last=False)
    c["evicted_miss_ratio"] = _ratio(c)
    return c


def simulate_belady(trace, cap: int) -> dict:
    """Belady's MIN with demand insertion: a missed block always enters;
    if the cache is full, the cached block referenced furthest in the
    future (or never again) leaves first."""
    n = len(trace)
    next_use = [math.inf] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        b = trace[i][1]
        next_use[i] = last.get(b, math.inf)
        last[b] = i
    cache: dict[int, float] = {}  # block -> its next reference
    heap: list[tuple[float, int]] = []  # (-next reference, block), lazy
    seen: set[int] = set()
    c = _counts()
    for i, (kind, b) in enumerate(trace):
        if kind == "r":
            c["reads"] += 1
            if b in cache:
                c["hits"] += 1
                cache[b] = next_use[i]
                heapq.heappush(heap, (-next_use[i], b))
                continue
            if b in seen:
                c["evicted_misses"] += 1
            else:
                c["compulsory"] += 1
        seen.add(b)
        while len(cache) >= cap:
            nu, victim = heapq.heappop(heap)
            if cache.get(victim) == -nu:  # not a stale entry
                del cache[victim]
        cache[b] = next_use[i]
        heapq.heappush(heap, (-next_use[i], b))
    c["evicted_miss_ratio"] = _ratio(c)
    return c


# --------------------------------------------------------------- replay --

class Replayer:
    """Performs the trace against `root` (the cache root) at `rate` ops/s:
    reads open and read the whole block; writes go to the writer's temp
    name and are renamed into place."""

    def __init__(self, root: str, block_bytes: int, rate: float):
        self.root = root
        self.block_bytes = block_bytes
        self.rate = rate
        self.payload = bytes(range(256)) * (block_bytes // 256)
        self.written: set[int] = set()
        self.c = _counts()
        self.write_failures = 0
        self.max_lag = 0.0
        self.samples: list[tuple[float, int, float]] = []  # (t, files, %)
        self._stop = threading.Event()

    @staticmethod
    def prepare(root: str) -> None:
        """The model's config and every bucket directory, made up front."""
        os.makedirs(os.path.join(root, CONFIG_DIR), exist_ok=True)
        with open(os.path.join(root, CONFIG_DIR, "config.json"), "w",
                  encoding="utf-8") as f:
            f.write('{"model_name": "org/model-0"}\n')
        for b1 in range(FIRST_BUCKETS):
            for b2 in range(SECOND_BUCKETS):
                os.makedirs(os.path.join(root, MODEL_DIR, f"{b1:03x}",
                                         f"{b2:02x}_g0"), exist_ok=True)

    def _write(self, block: int, rng: random.Random) -> None:
        path = os.path.join(self.root, block_relpath(block))
        tmp = f"{path}_{rng.randrange(10**9)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, self.payload)
            finally:
                os.close(fd)
            os.rename(tmp, path)
            self.written.add(block)
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self.write_failures += 1
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def _read(self, block: int) -> bool:
        path = os.path.join(self.root, block_relpath(block))
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)
        return True

    def _sampler(self) -> None:
        bucket_dirs = [os.path.join(self.root, MODEL_DIR, f"{b1:03x}",
                                    f"{b2:02x}_g0")
                       for b1 in range(FIRST_BUCKETS)
                       for b2 in range(SECOND_BUCKETS)]
        while not self._stop.wait(1.0):
            files = 0
            for d in bucket_dirs:
                try:
                    files += sum(1 for e in os.scandir(d)
                                 if e.name.endswith(".bin"))
                except FileNotFoundError:
                    pass
            st = os.statvfs(self.root)
            used = (st.f_blocks - st.f_bfree) * st.f_frsize
            total = used + st.f_bavail * st.f_frsize
            self.samples.append((time.monotonic(), files,
                                 100.0 * used / total))

    def run(self, trace) -> dict:
        rng = random.Random(1)
        sampler = threading.Thread(target=self._sampler, daemon=True)
        sampler.start()
        t0 = time.monotonic()
        try:
            for i, (kind, b) in enumerate(trace):
                due = t0 + i / self.rate
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    self.max_lag = max(self.max_lag, now - due)
                if kind == "r":
                    self.c["reads"] += 1
                    if self._read(b):
                        self.c["hits"] += 1
                        continue
                    if b in self.written:
                        self.c["evicted_misses"] += 1
                    else:
                        self.c["compulsory"] += 1
                self._write(b, rng)
        finally:
            self._stop.set()
            sampler.join()
        out = dict(self.c)
        out["evicted_miss_ratio"] = _ratio(self.c)
        out["write_failures"] = self.write_failures
        out["seconds"] = time.monotonic() - t0
        out["max_lag_s"] = self.max_lag
        files = [s[1] for s in self.samples]
        pct = [s[2] for s in self.samples]
        if files:
            out["files_min_after_fill"] = min(
                files[len(files) // 3:] or files)
            out["files_max"] = max(files)
            out["usage_max_percent"] = max(pct)
            out["usage_min_after_fill_percent"] = min(
                pct[len(pct) // 3:] or pct)
        return out


def capacities(root: str, block_bytes: int, cleanup: float,
               target: float) -> tuple[int, int]:
    """Blocks that fit below the cleanup and target thresholds, from the
    volume's df figures with the bucket directories already made."""
    st = os.statvfs(root)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    total = used + st.f_bavail * st.f_frsize
    alloc = -(-block_bytes // st.f_frsize) * st.f_frsize
    hi = int((cleanup / 100 * total - used) // alloc)
    lo = int((target / 100 * total - used) // alloc)
    return hi, lo
