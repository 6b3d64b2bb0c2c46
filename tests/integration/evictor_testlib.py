"""Shared pieces of the daemon's integration tests (test_crawl_mode.py,
test_field_cases.py): a TestCase base that starts the real binary with the
usual test settings, block writers that lay files out like the cache
writer, file listings for before/after comparisons, and log parsing.

Standard library only, for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import collections
import errno
import os
import random
import re
import stat
import subprocess
import unittest

import harness
from harness import gencache

MIB = 1 << 20
KIB = 1 << 10
HOUR = 3600.0

# Cache root below the mount, and the model layout the field cases use:
# R/llama_0123456789ab/config.json beside R/llama_0123456789ab_r0 (= M).
CACHE_DIR = "kv"
MODEL = "llama_0123456789ab"

# Every variable the daemon reads (see --help) plus the reference evictor's
# ignored ones: removed from the daemon's environment so that a developer's
# or CI's shell cannot change what a test runs.
DAEMON_ENV_VARS = (
    "PVC_MOUNT_PATH", "CACHE_DIRECTORY", "CLEANUP_THRESHOLD",
    "TARGET_THRESHOLD", "INODE_CLEANUP_THRESHOLD", "INODE_TARGET_THRESHOLD",
    "EMERGENCY_THRESHOLD", "FILE_ACCESS_TIME_THRESHOLD_MINUTES",
    "NUM_CRAWLER_PROCESSES", "LOGGER_INTERVAL_SECONDS", "DELETION_BATCH_SIZE",
    "HEX_BUCKET_LEN", "ENABLE_DIR_CLEANUP", "DIR_CLEANUP_TTL_SECONDS",
    "TEMP_FILE_MAX_AGE_MINUTES", "RESCAN_INTERVAL_SECONDS", "MAX_CACHE_BYTES",
    "MOUNT_WAIT_SECONDS", "USAGE_LOG_INTERVAL_SECONDS", "DRY_RUN", "LOG_LEVEL",
    "LOG_FILE_PATH", "EVICTOR_MODE", "FILE_QUEUE_MAXSIZE",
    "FILE_QUEUE_MIN_SIZE", "TIMING_FILE_PATH")

Block = collections.namedtuple("Block", "path t_ns size")


def clean_env(extra: dict | None = None) -> dict:
    """An env overlay for harness.Daemon: no daemon variable inherited."""
    env = {name: None for name in DAEMON_ENV_VARS}
    env.update(extra or {})
    return env


TEST_DEFAULTS = (("--mode", "crawl"), ("--interval", "0.1"),
                 ("--hot-minutes", "10"))


def base_args(mount: str, *extra, cache_dir: str = CACHE_DIR) -> list[str]:
    """The typical test invocation, with `extra` flags appended; a default
    that `extra` gives again is left out (the daemon refuses a flag given
    twice)."""
    extra = [str(arg) for arg in extra]
    args = ["--mount-path", mount, "--cache-dir", cache_dir]
    for flag, value in TEST_DEFAULTS:
        if flag not in extra:
            args += [flag, value]
    return args + extra


# ------------------------------------------------------------ filesystem --

def df_bytes(path) -> tuple[int, int]:
    """(used, used + available) bytes as df computes them."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return used, used + st.f_bavail * st.f_frsize


def fill_to(mount: str, percent: float, name: str = "filler.dat") -> str:
    """Grow (or create) a non-cache file at the top of `mount` until df
    usage is about `percent`; return its path."""
    path = os.path.join(mount, name)
    used, total = df_bytes(mount)
    want = int(percent / 100 * total) - used
    if want <= 0:
        raise AssertionError(f"usage already {harness.df_usage(mount):.1f}%,"
                             f" above {percent}%")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.posix_fallocate(fd, os.fstat(fd).st_size, want)
    finally:
        os.close(fd)
    return path


def free_bytes(path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def write_block(path: str, size: int, age_s: float | None,
                atime_age_s: float | None = None) -> int:
    """Write a block like the writer does: temp file, allocate, rename.

    Then backdate it by `age_s` seconds (atime by `atime_age_s` if given);
    age_s None leaves it fresh. Returns its mtime in ns.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}_{random.randrange(100_000)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                 0o644)
    try:
        try:
            if size:
                os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    os.rename(tmp, path)
    if age_s is None:
        return os.stat(path).st_mtime_ns
    when = harness.backdate(path, age_s)
    if atime_age_s is not None:
        harness.backdate(path, atime_age_s, mtime=False)
    return when


def make_model(root: str, model: str = MODEL, rank: int = 0,
               config_age_s: float = 24 * HOUR) -> str:
    """R/<model>/config.json (old) and the rank dir R/<model>_r<rank>."""
    config_dir = os.path.join(root, model)
    os.makedirs(config_dir, exist_ok=True)
    config = os.path.join(config_dir, "config.json")
    with open(config, "w", encoding="utf-8") as out:
        out.write('{"model_name": "meta-llama/Llama-3.1-8B"}\n')
    harness.backdate(config, config_age_s)
    rank_dir = os.path.join(root, f"{model}_r{rank}")
    os.makedirs(rank_dir, exist_ok=True)
    return rank_dir


def new_hash(rng: random.Random, seen: set) -> str:
    while True:
        value = f"{rng.getrandbits(64):016x}"
        if value not in seen:
            seen.add(value)
            return value


def fill_blocks(model_dir: str, percent: float, *, size: int = MIB,
                age_min_s: float = 2 * HOUR, age_max_s: float = 4 * HOUR,
                seed: int = 1, bucket_len: int = 3,
                seen: set | None = None) -> list[Block]:
    """Old blocks in `model_dir` until df usage would pass `percent`."""
    rng = random.Random(f"fill:{seed}")
    seen = set() if seen is None else seen
    blocks = []
    last_cost = 0
    while True:
        used, total = df_bytes(model_dir)
        if (used + max(size, last_cost)) * 100 > percent * total:
            return blocks
        digest = new_hash(rng, seen)
        path = os.path.join(model_dir, gencache.block_relpath(
            "", digest, "current", bucket_len, 0))
        t_ns = write_block(path, size, rng.uniform(age_min_s, age_max_s))
        blocks.append(Block(path, t_ns, size))
        last_cost = df_bytes(model_dir)[0] - used


def block_path(model_dir: str, digest: str, bucket_len: int = 3) -> str:
    return os.path.join(model_dir, gencache.block_relpath(
        "", digest, "current", bucket_len, 0))


def listing(root: str) -> dict:
    """Every entry below `root`: relpath -> what a change would alter.

    Regular files: (kind, size, allocated blocks, mtime, atime, inode);
    links: (kind, target, lstat mtime); directories: (kind, inode).
    """
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", st.st_ino)
            else:
                found[rel] = ("file", st.st_size, st.st_blocks,
                              st.st_mtime_ns, st.st_atime_ns, st.st_ino)
    return found


def chattr(flag: str, path: str) -> None:
    subprocess.run(["chattr", flag, path], check=True, capture_output=True)


# -------------------------------------------------------------------- log --

def count(log: str, regex: str) -> int:
    return len(re.findall(regex, log, re.MULTILINE))


def episodes_deleted(log: str) -> list[int]:
    """N of every "episode ended: deleted N files" line, in order."""
    return [int(n) for n in
            re.findall(r"episode ended: deleted (\d+) files", log)]


def deletion_ends(log: str) -> list[float]:
    """The percent of every DELETION_END line."""
    return [float(p) for p in
            re.findall(r"DELETION_END:[\d.]+,([\d.]+)", log)]


# --------------------------------------------------------------- testcase --

class Daemon(harness.Daemon):
    """harness.Daemon that still answers log() and tail() after its
    with-block (whose clean exit removes the log file), so assertions made
    after the daemon stopped can show its log."""

    _final_log: str | None = None

    def __exit__(self, exc_type, exc, tb):
        if self.alive():
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        if self.log_path and os.path.exists(self.log_path):
            self._final_log = super().log()
        return super().__exit__(exc_type, exc, tb)

    def log(self) -> str:
        if self._final_log is not None:
            return self._final_log
        return super().log()


class EvictorTestCase(unittest.TestCase):
    """Root-only tests of the real daemon."""

    def setUp(self):
        harness.require_root(self)

    def daemon(self, mount: str, *extra, cache_dir: str = CACHE_DIR,
               env: dict | None = None) -> harness.Daemon:
        """A (not yet started) daemon on `mount` with the test defaults."""
        return Daemon(base_args(mount, *extra, cache_dir=cache_dir),
                      env=clean_env(env))

    @staticmethod
    def ctx(daemon: harness.Daemon, note: str = "") -> str:
        """Text for a failure message: `note` and the daemon's log tail."""
        return (f"{note}\n--- daemon log tail ({daemon.log_path}) ---\n"
                f"{daemon.tail()}\n--- end of log ---")

    def wait_episode_end(self, daemon: harness.Daemon, timeout: float = 30,
                         pos: int = 0) -> re.Match:
        return daemon.wait_for_log(r"episode ended: .*$", timeout, pos)

    def assert_at_target(self, mount: str, daemon: harness.Daemon,
                         low: float = 60.0, high: float = 71.0) -> float:
        usage = harness.df_usage(mount)
        self.assertTrue(low <= usage <= high, self.ctx(
            daemon, f"df usage {usage:.2f}% not in [{low}, {high}]"))
        return usage


def until(predicate, timeout: float, what: str, daemon=None):
    """Poll `predicate` like harness.wait_until; on timeout fail with
    `what` and, given a daemon, its log tail as it is at that moment."""
    try:
        return harness.wait_until(predicate, timeout)
    except AssertionError:
        message = f"{what}: not within {timeout} s"
        if daemon is not None:
            message = EvictorTestCase.ctx(daemon, message)
        raise AssertionError(message) from None


def enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC,
                                                      errno.EDQUOT)

