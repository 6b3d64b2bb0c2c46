"""Helpers for the watch-mode integration tests (test_watch_mode.py): a
TestCase base that starts the daemon in watch mode with its HTTP endpoint,
a small client for that endpoint, a bind mount, a way to push usage over
the cleanup threshold with a non-cache file, the fanotify queue sysctl, and
capability sets read from /proc.

Standard library only, for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import harness
from evictor_testlib import CACHE_DIR, EvictorTestCase, until

SERVING_RE = r"serving /metrics.* on port (\d+)"
CRAWL_DONE_RE = r"crawl done"
WATCH_MODE_RE = (r"mode: watch \(fanotify filesystem mark on .* level "
                 r"[a-z+-]+\)")
FALLBACK_RE = r"watch mode unavailable, falling back to crawl mode"
QUEUE_SYSCTL = "/proc/sys/fs/fanotify/max_queued_events"

# Capability numbers from linux/capability.h.
CAP_BITS = {"chown": 0, "dac_override": 1, "dac_read_search": 2,
            "fowner": 3, "setpcap": 8, "sys_admin": 21, "lease": 28}
CAP_SYS_ADMIN = CAP_BITS["sys_admin"]
KEPT_CAPS = ("dac_override", "dac_read_search", "fowner", "lease")

# No proxy: an http_proxy in the environment must not see 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

_SAMPLE_RE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


# ------------------------------------------------------------------ http --

class Endpoint:
    """The daemon's HTTP endpoint; the port is read from its log."""

    def __init__(self, daemon: harness.Daemon, timeout: float = 10):
        match = daemon.wait_for_log(SERVING_RE, timeout)
        self.daemon = daemon
        self.base = f"http://127.0.0.1:{match[1]}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with _OPENER.open(self.base + path, timeout=10) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()

    def json(self, path: str) -> dict:
        status, body = self.get(path)
        if status != 200:
            raise AssertionError(
                f"GET {path}: HTTP {status}: {body[:300]!r}\n--- log tail "
                f"---\n{self.daemon.tail()}")
        return json.loads(body.decode("utf-8"))

    def metrics(self) -> dict:
        """{(name, frozenset(labels.items())): value} of /metrics."""
        status, body = self.get("/metrics")
        if status != 200:
            raise AssertionError(f"GET /metrics: HTTP {status}")
        return parse_metrics(body.decode("utf-8"))

    def metric(self, name: str, **labels) -> float | None:
        """The value of one series, None if it is not exported."""
        return find_series(self.metrics(), name, **labels)

    def files(self, kind: str = "hotset", limit: int = 10000) -> dict:
        """{path relative to the cache root: entry} of /debug/<kind>."""
        page = self.json(f"/debug/{kind}?limit={limit}")
        return {f["path"]: f for f in page["files"]}


def parse_metrics(text: str) -> dict:
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_RE.match(line)
        if not match:
            raise AssertionError(f"unparsable /metrics line: {line!r}")
        labels = frozenset(
            (k, re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m[1], m[1]), v))
            for k, v in _LABEL_RE.findall(match[2] or ""))
        samples[(match[1], labels)] = float(match[3])
    return samples


def find_series(samples: dict, name: str, **labels) -> float | None:
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and set(labels.items()) <= sample_labels:
            return value
    return None


def series_labels(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for (sample_name, labels) in samples
            if sample_name == name]


# ----------------------------------------------------------- filesystems --

@contextlib.contextmanager
def bind_mount(source: str):
    """`source` bind-mounted a second time on a fresh directory."""
    parent = tempfile.mkdtemp(prefix="pvc-bind-")
    target = os.path.join(parent, "mnt")
    os.mkdir(target)
    mounted = False
    try:
        harness._run(["mount", "--bind", source, target])
        mounted = True
        yield target
    finally:
        if mounted:
            harness._unmount(target)
        shutil.rmtree(parent, ignore_errors=True)


@contextlib.contextmanager
def overlay_on_tmpfs(size_mib: int):
    """An overlayfs whose upper and work dirs are on a fresh tmpfs; yields
    the overlay's mount point. Undone on exit."""
    with harness.Tmpfs(size_mib) as tmpfs:
        for name in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(tmpfs.path, name))
        merged = os.path.join(tmpfs.path, "merged")
        harness._run(["mount", "-t", "overlay", "overlay", "-o",
                      f"lowerdir={tmpfs.path}/lower,upperdir={tmpfs.path}"
                      f"/upper,workdir={tmpfs.path}/work", merged])
        try:
            yield merged
        finally:
            harness._unmount(merged)


def set_times(path: str, atime_ns: int, mtime_ns: int | None = None) -> None:
    """Put atime (and mtime) back to exact values."""
    st = os.lstat(path)
    os.utime(path, ns=(atime_ns, st.st_mtime_ns if mtime_ns is None
                       else mtime_ns), follow_symlinks=False)


def atimes(paths) -> dict:
    return {p: os.lstat(p).st_atime_ns for p in paths}


@contextlib.contextmanager
def fanotify_queue_limit(value: int):
    """fs.fanotify.max_queued_events set to `value`; the original is put
    back on exit (and by restore(), which may be called earlier: the
    kernel reads the value when a group is created)."""
    with open(QUEUE_SYSCTL, encoding="ascii") as sysctl:
        original = sysctl.read().strip()

    def restore():
        with open(QUEUE_SYSCTL, "w", encoding="ascii") as sysctl:
            sysctl.write(original)

    with open(QUEUE_SYSCTL, "w", encoding="ascii") as sysctl:
        sysctl.write(str(value))
    try:
        yield restore
    finally:
        restore()


# ----------------------------------------------------------- processes --

def capability_sets(pid: int) -> dict:
    """{tid: {"CapEff": int, "CapPrm": int, ...}} for every thread."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status",
                      encoding="ascii") as status:
                text = status.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # a crawler thread that just ended
        sets = dict(re.findall(r"^(Cap\w+):\s*([0-9a-f]+)$", text, re.M))
        found[int(tid)] = {k: int(v, 16) for k, v in sets.items()}
    return found


def bits(mask: int) -> list[int]:
    return [b for b in range(64) if mask >> b & 1]


def run_in_other_mount_ns(source: str, relpaths: list[str]) -> None:
    """In a new mount namespace, bind-mount `source` on a directory only
    that namespace sees and read `relpaths` through it with cat."""
    private = tempfile.mkdtemp(prefix="pvc-ns-")
    try:
        script = ('set -e; mount --bind "$1" "$2"; shift 2; '
                  'cat "$@" >/dev/null')
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             script, "sh", source, private,
             *[os.path.join(private, rel) for rel in relpaths]],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"reader in another mount namespace failed "
                                 f"({proc.returncode}): {proc.stderr}")
        # The namespace's mount died with it.
        if os.listdir(private):
            raise AssertionError(f"{private} shows the other namespace's "
                                 "mount")
    finally:
        shutil.rmtree(private, ignore_errors=True)


# -------------------------------------------------------------- testcase --

class WatchTestCase(EvictorTestCase):
    """EvictorTestCase whose daemons run in watch mode with an endpoint."""

    def watch_daemon(self, mount: str, *extra, mode: str = "watch",
                     cache_dir: str = CACHE_DIR, env: dict | None = None):
        return self.daemon(mount, "--mode", mode, "--metrics-address",
                           "127.0.0.1:0", *extra, cache_dir=cache_dir,
                           env=env)

    def start_watching(self, daemon) -> Endpoint:
        """Wait for watch mode and the first crawl; return the endpoint."""
        daemon.wait_for_log(WATCH_MODE_RE, 10)
        endpoint = Endpoint(daemon)
        daemon.wait_for_log(CRAWL_DONE_RE, 20)
        return endpoint

    def wait_hot_by_event(self, endpoint: Endpoint, root: str, paths,
                          timeout: float = 10) -> dict:
        """Wait until every path is in /debug/hotset with source "event";
        return those entries."""
        rels = {os.path.relpath(p, root) for p in paths}

        def seen():
            hot = endpoint.files("hotset")
            entries = {r: hot.get(r) for r in rels}
            if all(e and e["source"] == "event" for e in entries.values()):
                return entries
            return None
        try:
            return harness.wait_until(seen, timeout, 0.1)
        except AssertionError:
            hot = endpoint.files("hotset")
            raise AssertionError(self.ctx(
                endpoint.daemon, f"not all of {sorted(rels)} in /debug/hotset"
                f" with source 'event' within {timeout} s; hotset has "
                f"{ {r: hot.get(r) for r in rels} }")) from None

    def assert_oldest_first(self, daemon, blocks) -> tuple[list, list]:
        """Among `blocks` (Block tuples), every deleted one is older than
        every kept one. Returns (gone, kept)."""
        gone = [b for b in blocks if not os.path.lexists(b.path)]
        kept = [b for b in blocks if os.path.lexists(b.path)]
        self.assertTrue(gone, self.ctx(daemon, "no block was deleted"))
        self.assertTrue(kept, self.ctx(daemon, "every block was deleted"))
        newest_gone = max(b.t_ns for b in gone)
        oldest_kept = min(b.t_ns for b in kept)
        self.assertLess(newest_gone, oldest_kept, self.ctx(
            daemon, f"not oldest first: a block of age "
            f"{(time.time_ns() - newest_gone) / 3.6e12:.3f} h was "
            f"deleted while one of age "
            f"{(time.time_ns() - oldest_kept) / 3.6e12:.3f} h "
            "was kept"))
        return gone, kept


__all__ = ["Endpoint", "WatchTestCase", "bind_mount", "set_times",
           "atimes", "fanotify_queue_limit", "capability_sets", "bits",
           "run_in_other_mount_ns", "overlay_on_tmpfs", "parse_metrics",
           "find_series", "series_labels", "until", "CAP_BITS",
           "CAP_SYS_ADMIN", "KEPT_CAPS", "CRAWL_DONE_RE", "WATCH_MODE_RE",
           "FALLBACK_RE", "SERVING_RE", "QUEUE_SYSCTL"]
