"""Helpers for the hardening tests (test_hardening.py): mounts inside the
cache tree that are always undone, hostile file names as bytes, a usage
filler, the daemon's log-line format, an age-order check, and a clock the
test can move for the daemon alone (libfaketime).

Standard library only, for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time

import harness
from evictor_testlib import df_bytes

# Every line the daemon writes: "<ISO time> <level> <message>" (see
# src/daemon/logging.cpp). A raw newline inside a message would start a
# line that does not match.
LOG_LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:?\d\d "
    r"(trace|debug|info|warning|error|critical) ")

FAKETIME_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/faketime",
                     "/usr/lib/aarch64-linux-gnu/faketime",
                     "/usr/lib/faketime")


# ------------------------------------------------------------------ mounts --

def run(cmd: list[str]) -> None:
    harness._run(cmd)  # raises with the tool's output on failure


@contextlib.contextmanager
def mounted(cmd: list[str], target: str):
    """Run a mount command for `target`; unmount on exit, whatever
    happened (lazily if it stays busy)."""
    run(cmd)
    try:
        yield target
    finally:
        unmount_quietly(target)


def unmount_quietly(target: str) -> None:
    if is_mount_point(target):
        harness._unmount(target)


def is_mount_point(path: str) -> bool:
    return subprocess.run(["mountpoint", "-q", path],
                          stdin=subprocess.DEVNULL).returncode == 0


def bind(source: str, target: str):
    return mounted(["mount", "--bind", source, target], target)


def tmpfs_on(target: str, size_mib: int = 16):
    return mounted(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m",
                    "tmpfs", target], target)


# -------------------------------------------------------------- files --

def fspath(raw: bytes) -> str:
    """A path given as bytes, as the str os functions accept for any
    bytes (surrogateescape)."""
    return os.fsdecode(raw)


def write_raw(path: str, size: int, age_s: float) -> int:
    """A block written in place (no temp file: a 255-byte name leaves no
    room for the writer's temp suffix), backdated by `age_s`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                 0o644)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    return harness.backdate(path, age_s)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def snapshot(root: str) -> dict:
    """Every entry below `root` with what deleting or rewriting it would
    change: relpath -> (kind, size, inode) (plus the link target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir", st.st_ino)
            else:
                found[rel] = ("file", st.st_size, st.st_ino)
    return found


# ---------------------------------------------------------------- log --

def malformed_log_lines(log: str) -> list[str]:
    """Lines that are not "<time> <level> <message>": a raw newline (or
    other line break) in a logged name would produce one."""
    return [line for line in log.split("\n")[:-1]
            if not LOG_LINE_RE.match(line)]


def warnings(log: str, pattern: str = "") -> list[str]:
    return [line for line in log.splitlines()
            if " warning " in line[:40] and re.search(pattern, line)]


# ---------------------------------------------------------------- time --

def faketime_library() -> str | None:
    for directory in FAKETIME_LIB_DIRS:
        path = os.path.join(directory, "libfaketime.so.1")
        if os.path.exists(path):
            return path
    return None


class FakeClock:
    """The daemon's wall clock, offset by libfaketime and movable while it
    runs: env() goes into the daemon's environment; set("+1d") moves its
    clock (within about a second: libfaketime re-reads the file that
    often). Only CLOCK_REALTIME moves, as in a real clock step; the
    monotonic clock and file timestamps from stat() are left alone."""

    def __init__(self, offset: str = "+0"):
        self.library = faketime_library()
        self._dir = tempfile.mkdtemp(prefix="pvc-faketime-")
        self.path = os.path.join(self._dir, "faketimerc")
        self.set(offset)

    def env(self) -> dict:
        return {"LD_PRELOAD": self.library,
                "FAKETIME_TIMESTAMP_FILE": self.path,
                "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                "NO_FAKE_STAT": "1",
                "FAKETIME": None}

    def set(self, offset: str) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w", encoding="ascii") as out:
            out.write(offset + "\n")
        os.replace(tmp, self.path)
        self.changed_at = time.monotonic()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def cache_percent_times(log: str) -> list[float]:
    """The unix time of every CACHE_PERCENT_LOG line, in order."""
    return [float(t) for t in re.findall(r"CACHE_PERCENT_LOG:([\d.]+),", log)]


# ------------------------------------------------------------- process --

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M)
    return int(match[1]) if match else 0


# ------------------------------------------------------------- blocks --

def fill_cold(model_dir: str, percent: float, *, seed: int,
              size: int = 1 << 20, age_min_s: float = 2 * 3600.0,
              age_max_s: float = 4 * 3600.0, avoid: tuple = (),
              seen: set | None = None, buckets: int | None = None) -> list:
    """evictor_testlib.fill_blocks, but never in a first-level bucket named
    in `avoid` (tests that mount or swap those buckets must know exactly
    what is in them), and with `buckets` set, in only that many bucket
    directories (many tiny blocks would otherwise cost an inode for a
    directory each)."""
    import random

    from evictor_testlib import Block, block_path, new_hash, write_block
    rng = random.Random(f"hardening-fill:{seed}")
    seen = set() if seen is None else seen
    prefixes = None
    if buckets:
        prefixes = []
        while len(prefixes) < buckets:
            prefix = f"{rng.getrandbits(20):05x}"
            if prefix[:3] not in avoid and prefix not in prefixes:
                prefixes.append(prefix)
    blocks = []
    last_cost = 0
    while True:
        used, total = df_bytes(model_dir)
        if (used + max(size, last_cost)) * 100 > percent * total:
            return blocks
        digest = new_hash(rng, seen)
        if prefixes:
            digest = rng.choice(prefixes) + digest[5:]
            if digest in seen:
                continue
            seen.add(digest)
        elif digest[:3] in avoid:
            continue
        path = block_path(model_dir, digest)
        t_ns = write_block(path, size, rng.uniform(age_min_s, age_max_s))
        blocks.append(Block(path, t_ns, size))
        last_cost = df_bytes(model_dir)[0] - used
