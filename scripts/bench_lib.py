"""Shared pieces of the benchmark suite (scripts/bench.sh).

Scratch filesystems that are always cleaned up, processes measured by CPU
time (wait4 rusage, /proc/<pid>/stat), the daemon started and stopped the
way the integration tests do it, its /metrics, an inotify reader (ctypes,
no extra packages) and the machine description recorded with every result.

Standard library only, for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
GENCACHE = os.path.join(HERE, "gencache.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Every variable the daemon reads, removed from its environment so that the
# caller's shell cannot change what a benchmark measures.
DAEMON_ENV_VARS = (
    "PVC_MOUNT_PATH", "CACHE_DIRECTORY", "CLEANUP_THRESHOLD",
    "TARGET_THRESHOLD", "INODE_CLEANUP_THRESHOLD", "INODE_TARGET_THRESHOLD",
    "EMERGENCY_THRESHOLD", "FILE_ACCESS_TIME_THRESHOLD_MINUTES",
    "NUM_CRAWLER_PROCESSES", "LOGGER_INTERVAL_SECONDS", "DELETION_BATCH_SIZE",
    "HEX_BUCKET_LEN", "ENABLE_DIR_CLEANUP", "DIR_CLEANUP_TTL_SECONDS",
    "TEMP_FILE_MAX_AGE_MINUTES", "RESCAN_INTERVAL_SECONDS", "MAX_CACHE_BYTES",
    "MOUNT_WAIT_SECONDS", "USAGE_LOG_INTERVAL_SECONDS", "DRY_RUN", "LOG_LEVEL",
    "LOG_FILE_PATH", "EVICTOR_MODE", "FILE_QUEUE_MAXSIZE",
    "FILE_QUEUE_MIN_SIZE", "TIMING_FILE_PATH", "METRICS_ADDRESS",
    "STORAGE_EVENTS_ENDPOINT", "PROBE_REPORT", "DUMP_DIR")


class BenchError(RuntimeError):
    """A benchmark could not run (as opposed to: it ran slowly)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr,
          flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def is_root() -> bool:
    return os.geteuid() == 0


# ------------------------------------------------------------- machine --

def machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    root_fs = ""
    try:
        root_fs = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "/"],
                                 capture_output=True, text=True,
                                 check=False).stdout.strip()
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "kernel": platform.release(), "memory_bytes": mem,
            "root_fs": root_fs, "python": platform.python_version(),
            "hostname": platform.node()}


# --------------------------------------------------- scratch filesystems --

class Scratch:
    """Loop-mounted ext4 images and tmpfs mounts under one temp directory.

    Everything is unmounted and deleted on close(), also after an error or
    a signal (the suite turns SIGTERM into KeyboardInterrupt).
    """

    def __init__(self, base_dir: str = "/var/tmp"):
        self.base = tempfile.mkdtemp(prefix="pvc-bench-", dir=base_dir)
        self.mounts: list[tuple[str, str | None]] = []  # (mountpoint, image)

    def path(self, name: str) -> str:
        return os.path.join(self.base, name)

    def ext4(self, name: str, size: int, *, inodes: int | None = None,
             options: str = "", mkfs_args: tuple = ()) -> str:
        if not is_root():
            raise BenchError("mounting a loop ext4 image needs root")
        image = self.path(name + ".img")
        mnt = self.path(name)
        os.makedirs(mnt)
        with open(image, "wb") as f:
            f.truncate(size)
        cmd = ["mkfs.ext4", "-q", "-F", "-E",
               "lazy_itable_init=0,lazy_journal_init=0"]
        if inodes:
            cmd += ["-N", str(inodes)]
        subprocess.run(cmd + list(mkfs_args) + [image], check=True)
        opts = "loop" + ("," + options if options else "")
        subprocess.run(["mount", "-o", opts, image, mnt], check=True)
        self.mounts.append((mnt, image))
        return mnt

    def tmpfs(self, name: str, size: int) -> str:
        mnt = self.path(name)
        os.makedirs(mnt)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                        "tmpfs", mnt], check=True)
        self.mounts.append((mnt, None))
        return mnt

    def release(self, mnt: str) -> None:
        """Unmounts one filesystem early and deletes its image."""
        for i, (m, image) in enumerate(self.mounts):
            if m == mnt:
                self._umount(m, image)
                del self.mounts[i]
                return

    @staticmethod
    def _umount(mnt: str, image: str | None) -> None:
        for attempt in range(20):
            r = subprocess.run(["umount", mnt], capture_output=True,
                               check=False)
            if r.returncode == 0:
                break
            time.sleep(0.25 * (attempt + 1))
        else:
            subprocess.run(["umount", "-l", mnt], check=False)
        if image:
            try:
                os.unlink(image)
            except OSError:
                pass
        try:
            os.rmdir(mnt)
        except OSError:
            pass

    def close(self) -> None:
        while self.mounts:
            mnt, image = self.mounts.pop()
            self._umount(mnt, image)
        shutil.rmtree(self.base, ignore_errors=True)


def drop_caches() -> bool:
    """Writes back and drops the page, dentry and inode caches (root)."""
    if not is_root():
        return False
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as f:
        f.write("3\n")
    return True


def df_percent(path: str) -> float:
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return 100.0 * used / (used + avail) if used + avail else 0.0


def df_bytes(path: str) -> tuple[int, int]:
    """(used, used + available) bytes as df computes them."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return used, used + st.f_bavail * st.f_frsize


def gencache(root: str, *args: str) -> None:
    subprocess.run([PYTHON, GENCACHE, root, "--quiet", *args], check=True)


# ------------------------------------------------------------ processes --

def run_json(argv: list[str], timeout: float = 3600) -> dict:
    """Runs a benchmark program and returns the JSON object it printed."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       check=False)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise BenchError(f"{' '.join(argv)} exited {r.returncode}: "
                         f"{r.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def run_measured(argv: list[str], stdout=subprocess.DEVNULL) -> dict:
    """Runs a command; returns its wall time and the CPU its process tree
    used (wait4 rusage, children included)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.stderr:
        p.stderr.close()
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited {p.returncode}: "
                         f"{err.strip()[-2000:]}")
    return {"seconds": wall, "cpu_user_s": ru.ru_utime,
            "cpu_sys_s": ru.ru_stime, "cpu_s": ru.ru_utime + ru.ru_stime}


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, all threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_ns(pid: int) -> float:
    """CPU seconds of a running process's live threads, from schedstat at
    nanosecond resolution (/proc/<pid>/stat counts in 10 ms ticks). Threads
    that exited are not included: use it only over windows in which no
    thread ends."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat",
                      encoding="ascii") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """build/pvc-evictor as a child process, its stdout in a log file."""

    def __init__(self, binary: str, mount: str, cache_dir: str, args: list,
                 log_path: str, metrics: bool = False):
        self.log_path = log_path
        self.port = free_port() if metrics else None
        argv = [binary, "--mount-path", mount, "--cache-dir", cache_dir,
                *[str(a) for a in args]]
        if metrics:
            argv += ["--metrics-address", f"127.0.0.1:{self.port}"]
        env = {k: v for k, v in os.environ.items()
               if k not in DAEMON_ENV_VARS}
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        self._offset = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """Waits for a log line matching `pattern` (regex) that appeared
        after the previous wait_for() match."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            m = rx.search(text, self._offset)
            if m:
                self._offset = m.end()
                return m
            if self.proc.poll() is not None:
                raise BenchError(f"daemon exited {self.proc.returncode} "
                                 f"before /{pattern}/; log tail:\n"
                                 f"{text[-3000:]}")
            if time.monotonic() > deadline:
                raise BenchError(f"no /{pattern}/ in the daemon log within "
                                 f"{timeout:.0f}s; log tail:\n{text[-3000:]}")
            time.sleep(0.02)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def cpu_fine(self) -> float:
        return proc_cpu_ns(self.proc.pid)

    def wait_idle(self, quiet: float = 0.3, timeout: float = 60) -> float:
        """Waits until the daemon's CPU time stops growing for `quiet`
        seconds; returns the monotonic time it last grew."""
        last, changed = self.cpu_fine(), time.monotonic()
        deadline = changed + timeout
        while time.monotonic() - changed < quiet and \
                time.monotonic() < deadline:
            time.sleep(0.01)
            now = self.cpu_fine()
            if now != last:
                last, changed = now, time.monotonic()
        return changed

    def rss(self) -> int:
        return proc_rss(self.proc.pid)

    def metrics(self) -> dict[str, float]:
        if self.port is None:
            raise BenchError("daemon started without --metrics-address")
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


# -------------------------------------------------------------- inotify --

IN_DELETE = 0x00000200
IN_MOVED_FROM = 0x00000040


class Inotify:
    """Deletions in a set of directories, with the time each was read."""

    def __init__(self):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")

    def watch(self, path: str, mask: int = IN_DELETE) -> None:
        if self._add(self.fd, os.fsencode(path), mask) < 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)

    def first_event(self, timeout: float) -> float | None:
        """time.time() when the first event was read, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], min(left, 0.5))
            if r:
                now = time.time()
                self.drain()
                return now

    def drain(self) -> int:
        n = 0
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return n
            off = 0
            while off + 16 <= len(buf):
                _, _, _, length = struct.unpack_from("iIII", buf, off)
                off += 16 + length
                n += 1

    def close(self) -> None:
        os.close(self.fd)


def leaf_dirs(root: str) -> list[str]:
    """Every directory below root that holds a file."""
    out = []
    for dirpath, _, files in os.walk(root):
        if files:
            out.append(dirpath)
    return out


def errno_name(e: int) -> str:
    return errno.errorcode.get(e, str(e))
