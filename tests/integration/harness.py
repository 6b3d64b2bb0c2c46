"""Helpers for the integration tests of the real pvc-evictor binary.

The tests (tests/integration/test_*.py, plain unittest, each runnable as
`/usr/bin/python3 tests/integration/test_x.py`) run the daemon against small
real filesystems and watch what it does:

- require_root(): skip without root, but fail in CI (CI must never skip).
- LoopFs, Tmpfs: throw-away ext4-on-loop and tmpfs mounts.
- df_usage(), inode_usage(): usage figures as df computes them.
- find_binary(), Daemon: start the daemon, read and wait on its log, stop it.
- wait_until(), backdate(): tests never sleep to make time pass; they poll
  with a bounded timeout and backdate timestamps instead.
- Reader: a background reader that keeps files hot and notices deletions.
- gencache: scripts/gencache.py, the synthetic cache generator.

Standard library only, for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
import gencache  # noqa: E402  (needs the path set up above)

LOG_TAIL_LINES = 50
_EXT_FSTYPES = ("ext2", "ext3", "ext4")


# ------------------------------------------------------------ environment --

def in_ci() -> bool:
    """True when the CI variable is set to anything but a false value."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_root(testcase) -> None:
    """Skip `testcase` (a TestCase or its class) unless running as root.

    In CI (CI=true) a missing privilege fails instead: a CI job that skips
    the integration tests silently would look green while testing nothing.
    """
    if os.geteuid() == 0:
        return
    reason = "needs root (mounts loop devices and tmpfs)"
    if in_ci():
        raise AssertionError(f"{reason}, and CI is set: refusing to skip")
    raise unittest.SkipTest(reason)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a system tool; raise with its output if it fails."""
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def df_usage(path) -> float:
    """Percent of the filesystem in use, as df computes it."""
    return gencache.df_usage_percent(path)


def inode_usage(path) -> float:
    """Percent of inodes in use; 0 for filesystems without an inode count."""
    st = os.statvfs(path)
    if st.f_files == 0:
        return 0.0
    return 100.0 * (st.f_files - st.f_ffree) / st.f_files


def mount_options(path) -> tuple[str, list[str]] | None:
    """(fstype, options) of the mount at `path` from /proc/mounts."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            # /proc/mounts escapes spaces and such as octal (\040).
            mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)),
                         fields[1])
            if mnt == target:
                found = (fields[2], fields[3].split(","))  # last one wins
    return found


# ----------------------------------------------------------------- mounts --

class _Mount:
    """A mount on a fresh directory, undone on exit even after errors."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._dir: str | None = None
        self.path: str | None = None
        self._mounted = False

    def __enter__(self):
        self._dir = tempfile.mkdtemp(prefix=self._prefix)
        self.path = os.path.join(self._dir, "mnt")
        os.mkdir(self.path)
        try:
            self._mount()
            self._mounted = True
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc_info):
        self._cleanup()
        return False

    def _mount(self) -> None:
        raise NotImplementedError

    def remount(self, options: str) -> None:
        """Change mount options in place, e.g. remount("noatime").

        mount keeps flags it is not told to clear: remount("relatime")
        leaves noatime set; use "strictatime" or "atime,relatime".
        """
        _run(["mount", "-o", f"remount,{options}", self.path])

    def _cleanup(self) -> None:
        if self._mounted:
            _unmount(self.path)
            self._mounted = False
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _unmount(path: str, tries: int = 10, delay: float = 0.1) -> None:
    """Unmount; if still busy after a few tries, detach it lazily."""
    for _ in range(tries):
        if subprocess.run(["umount", path], capture_output=True).returncode \
                == 0:
            return
        time.sleep(delay)  # a process may still be closing its files
    _run(["umount", "-l", path])


class LoopFs(_Mount):
    """An ext4 (or ext2/ext3) filesystem in a sparse image, loop-mounted.

    with LoopFs(64) as fs: ... fs.path is the mount point.
    """

    def __init__(self, size_mib: int, fstype: str = "ext4",
                 options: str = "strictatime", inodes: int | None = None,
                 reserved_percent: float = 0):
        if fstype not in _EXT_FSTYPES:
            raise ValueError(f"LoopFs supports {_EXT_FSTYPES}, not {fstype}")
        super().__init__("pvc-loopfs-")
        self.size_mib = size_mib
        self.fstype = fstype
        self.options = options
        self.inodes = inodes
        self.reserved_percent = reserved_percent
        self.image: str | None = None

    def _mount(self) -> None:
        self.image = os.path.join(self._dir, "fs.img")
        with open(self.image, "wb") as image:
            image.truncate(self.size_mib << 20)
        mkfs = [f"mkfs.{self.fstype}", "-q", "-F",
                "-m", str(self.reserved_percent),
                # Background inode-table/journal init would change the usage
                # figures under the tests' feet.
                "-E", "lazy_itable_init=0,lazy_journal_init=0"]
        if self.inodes is not None:
            mkfs += ["-N", str(self.inodes)]
        _run(mkfs + [self.image])
        options = ",".join(filter(None, ["loop", self.options]))
        _run(["mount", "-t", self.fstype, "-o", options, self.image,
              self.path])


class Tmpfs(_Mount):
    """A tmpfs of `size_mib` MiB on a fresh mount point."""

    def __init__(self, size_mib: int, options: str = ""):
        super().__init__("pvc-tmpfs-")
        self.size_mib = size_mib
        self.options = options

    def _mount(self) -> None:
        options = ",".join(filter(None, [f"size={self.size_mib}m",
                                         self.options]))
        _run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", self.path])


# ----------------------------------------------------------------- daemon --

def find_binary() -> str:
    """The daemon: $PVC_EVICTOR_BIN, else <repo>/build/pvc-evictor."""
    path = os.environ.get("PVC_EVICTOR_BIN") or os.path.join(
        REPO_ROOT, "build", "pvc-evictor")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"pvc-evictor binary not found or not executable at {path}; "
            "build it (cmake -B build && cmake --build build) or set "
            "PVC_EVICTOR_BIN")
    return path


class Daemon:
    """Runs the real daemon binary; its stdout and stderr go to a log file.

    with Daemon(["--root", fs.path, ...]) as d:
        d.wait_for_log(r"started", timeout=5)

    `env` adds to (or, with a None value, removes from) the inherited
    environment. On an exception inside the with-block the last log lines
    are printed to stderr and the log file is kept.
    """

    def __init__(self, args, env: dict | None = None,
                 binary: str | None = None):
        self.binary = binary or find_binary()
        self.args = [os.fspath(arg) for arg in args]
        self.env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.proc: subprocess.Popen | None = None
        self.log_path: str | None = None
        self._log_dir: str | None = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.alive():
            self.proc.kill()
        if self.proc:
            self.proc.wait()
        if exc_type is not None:
            print(f"\n--- last {LOG_TAIL_LINES} lines of {self.log_path} "
                  f"---\n{self.tail()}\n--- end of log ---", file=sys.stderr)
        elif self._log_dir:
            shutil.rmtree(self._log_dir, ignore_errors=True)
        return False

    def start(self) -> "Daemon":
        self._log_dir = tempfile.mkdtemp(prefix="pvc-evictor-log-")
        self.log_path = os.path.join(self._log_dir, "daemon.log")
        try:
            with open(self.log_path, "wb") as log:
                # Own session: a ^C aimed at the test runner must not also
                # hit the daemon, whose signal handling is under test.
                self.proc = subprocess.Popen(
                    [self.binary, *self.args], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, env=self.env,
                    start_new_session=True)
        except BaseException:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            raise
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit code once exited (negative: killed by that signal)."""
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """The whole log so far."""
        with open(self.log_path, "rb") as log:
            return log.read().decode("utf-8", errors="replace")

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, regex: str, timeout: float = 10,
                     pos: int = 0) -> re.Match:
        """Wait until `regex` matches the log at or after offset `pos`.

        Pass the previous match's .end() as `pos` to wait for a later line.
        """
        pattern = re.compile(regex, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            exited = not self.alive()  # read the log after checking this
            match = pattern.search(self.log(), pos)
            if match:
                return match
            if exited or time.monotonic() >= deadline:
                why = (f"daemon exited with {self.returncode}" if exited
                       else f"timed out after {timeout} s")
                raise AssertionError(
                    f"log never matched {regex!r}: {why}\n--- log tail ---\n"
                    f"{self.tail()}")
            time.sleep(0.05)

    def wait(self, timeout: float = 5) -> int:
        """Wait for the daemon to exit by itself; return its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon still running after {timeout} s\n"
                                 f"--- log tail ---\n{self.tail()}") from None

    def stop(self, sig: int = signal.SIGTERM,
             timeout: float = 5) -> tuple[int, float]:
        """Send `sig`; return (exit code, seconds it took to exit).

        If it does not exit within `timeout` it is killed and the test
        fails. Already exited: (exit code, 0.0) without a signal.
        """
        if not self.alive():
            return self.proc.poll(), 0.0
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not exit within {timeout} s of signal "
                f"{signal.Signals(sig).name}; killed it\n--- log tail ---\n"
                f"{self.tail()}") from None
        return code, time.monotonic() - started


# --------------------------------------------------------------- polling --

def wait_until(predicate, timeout: float, interval: float = 0.05,
               message: str = ""):
    """Poll `predicate` until it returns something true; return that.

    Raises AssertionError(message) after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                message or f"condition not met within {timeout} s")
        time.sleep(interval)


def backdate(path, seconds_ago: float, atime: bool = True,
             mtime: bool = True) -> int:
    """Set atime and/or mtime to `seconds_ago` before now; return it in ns.

    The time not selected keeps its value. Symlinks are not followed.
    """
    when = time.time_ns() - round(seconds_ago * 1e9)
    st = os.lstat(path)
    os.utime(path, ns=(when if atime else st.st_atime_ns,
                       when if mtime else st.st_mtime_ns),
             follow_symlinks=False)
    return when


class Reader:
    """Background thread that keeps reading whole files, as a client would.

    Reading keeps files hot (atime) and shows whether the daemon ever
    removed a file that was in use. Counters are per path: `reads`
    (successful whole-file reads), `not_found` (ENOENT), `failures` (other
    errors, last ones in `errors`); `missing` is the set of paths that ever
    got ENOENT and `passes` counts completed rounds over all paths.
    """

    def __init__(self, paths, period: float = 0.1):
        self.paths = [os.fspath(path) for path in paths]
        self.period = period
        self.reads = collections.Counter()
        self.not_found = collections.Counter()
        self.failures = collections.Counter()
        self.errors: collections.deque = collections.deque(maxlen=20)
        self.missing: set[str] = set()
        self.passes = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="Reader")
        self._buffer = bytearray(1 << 20)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False

    def start(self) -> "Reader":
        self._thread.start()
        return self

    def stop(self) -> "Reader":
        self._stopping.set()
        self._thread.join()
        return self

    def _loop(self) -> None:
        while not self._stopping.is_set():
            for path in self.paths:
                self._read(path)
            self.passes += 1
            self._stopping.wait(self.period)

    def _read(self, path: str) -> None:
        try:
            with open(path, "rb", buffering=0) as file:
                while file.readinto(self._buffer):
                    pass
        except FileNotFoundError:
            self.not_found[path] += 1
            self.missing.add(path)
        except OSError as exc:
            self.failures[path] += 1
            self.errors.append((path, exc))
        else:
            self.reads[path] += 1
