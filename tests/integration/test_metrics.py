"""Integration tests of the daemon's HTTP endpoint (--metrics-address):
/metrics, /healthz, /readyz, /debug/hotset and /debug/coldest, the SIGUSR1
dump, the `pvc-evictor dump` client, and the Grafana dashboard in
manifests/monitoring/ (every metric it queries must be one the daemon
exports).

Every /metrics answer is parsed with prometheus_client's parser and then
checked more strictly than that lax parser does (see check_exposition).
The daemon listens on 127.0.0.1:0 and the tests read the port it chose
from its log, so parallel runs never collide on a port. Tests never sleep
to make time pass: files are backdated and the tests poll with bounded
timeouts. A test that fails because the daemon misbehaves is kept failing
on purpose. Needs root (loop and tmpfs mounts) except DashboardTest, and
Debian's python3-prometheus-client.

Run: /usr/bin/python3 tests/integration/test_metrics.py
"""

from __future__ import annotations

import glob
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import harness
from harness import gencache
from evictor_testlib import (CACHE_DIR, HOUR, KIB, Daemon, EvictorTestCase,
                             base_args, block_path, clean_env, df_bytes,
                             fill_to,
                             until, write_block)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as exc:  # reported by setUp: skipped, or failed in CI
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

REPO_ROOT = harness.REPO_ROOT
DASHBOARD = os.path.join(REPO_ROOT, "manifests", "monitoring",
                         "grafana-dashboard.json")
PREFIX = "pvc_evictor_"
MAX_PAGE = 10000  # the endpoint's cap on ?limit=
DEFAULT_PAGE = 100
STALL_ENV = "PVC_EVICTOR_TEST_STALL_LOOP"
# A test-only override of the loops' health deadlines, proposed for
# src/daemon/daemon.cpp beside PVC_EVICTOR_TEST_STALL_LOOP; a daemon that
# does not read it ignores it. With it the stall test takes seconds
# instead of the 30 s floor; without it the test of healthy beats under a
# short deadline is skipped.
DEADLINE_ENV = "PVC_EVICTOR_TEST_LOOP_DEADLINE_SECONDS"
TEST_DEADLINE = 2.0

# Variables of the endpoint and its test switches, on top of the ones
# evictor_testlib.clean_env removes: a developer's shell must not change
# what these tests run.
METRICS_ENV = {"METRICS_ADDRESS": None, "DUMP_DIR": None, STALL_ENV: None,
               DEADLINE_ENV: None, "STORAGE_EVENTS_ENDPOINT": None}

# Labels Prometheus adds to every series from its target; dashboards may
# select on them although the daemon never exports them.
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service",
                 "container", "endpoint"}

SERVING_RE = r"serving /metrics.* on port (\d+)"
METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# ------------------------------------------------------------------ http --

# No proxy: an http_proxy in the environment must not see 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 10) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET; HTTP errors are answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as res:
            return res.status, res.headers.get("Content-Type", ""), res.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers.get("Content-Type", ""), err.read()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Endpoint:
    """The daemon's HTTP endpoint at 127.0.0.1:`port`."""

    def __init__(self, test: unittest.TestCase, port: int):
        self.test = test
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.base = f"http://{self.address}"

    def get(self, path: str) -> tuple[int, str, bytes]:
        return http_get(self.base + path)

    def json(self, path: str, status: int = 200) -> dict:
        code, ctype, body = self.get(path)
        self.test.assertEqual(code, status, f"GET {path}: {body[:500]!r}")
        self.test.assertTrue(ctype.startswith("application/json"),
                             f"GET {path}: Content-Type {ctype!r}")
        return json.loads(body.decode("utf-8"))

    def metrics_text(self) -> str:
        code, ctype, body = self.get("/metrics")
        self.test.assertEqual(code, 200, body[:500])
        self.test.assertTrue(ctype.startswith("text/plain"), ctype)
        self.test.assertIn("version=0.0.4", ctype)
        return body.decode("utf-8")

    def scrape(self) -> "Scrape":
        return Scrape(self.test, self.metrics_text())


class Scraper:
    """Background thread scraping /metrics back to back; keeps every
    answer (monotonic time, status, content type, body)."""

    def __init__(self, endpoint: Endpoint, pause: float = 0.002):
        self.endpoint = endpoint
        self.pause = pause
        self.answers: list[tuple[float, int, str, bytes]] = []
        self.errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name="Scraper")

    def start(self) -> "Scraper":
        self._thread.start()
        return self

    def stop(self) -> "Scraper":
        self._stopping.set()
        self._thread.join()
        return self

    def __len__(self) -> int:
        return len(self.answers)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                code, ctype, body = self.endpoint.get("/metrics")
            except OSError as exc:
                self.errors.append(exc)
            else:
                self.answers.append((time.monotonic(), code, ctype, body))
            self._stopping.wait(self.pause)


# ------------------------------------------------------------ exposition --

def series_key(name: str, labels: dict) -> tuple:
    return (name, tuple(sorted(labels.items())))


class Scrape:
    """One /metrics answer: parsed with prometheus_client (a parse error
    fails the test), checked by check_exposition, and indexed by series."""

    def __init__(self, test: unittest.TestCase, text: str, what: str = ""):
        self.text = text
        try:
            self.families = list(text_string_to_metric_families(text))
        except Exception as exc:  # the parser raises ValueError and others
            raise AssertionError(
                f"prometheus_client cannot parse {what or 'a scrape'}: "
                f"{exc!r}\n{text}") from exc
        check_exposition(test, text, self.families, what)
        self.types: dict[str, str] = {}  # sample name -> family type
        self.series: dict[tuple, float] = {}
        for family in self.families:
            for sample in family.samples:
                self.types[sample.name] = family.type
                self.series[series_key(sample.name, sample.labels)] = \
                    sample.value

    def value(self, name: str, **labels) -> float:
        """The one sample of `name` whose labels include `labels`."""
        found = [v for (n, lbls), v in self.series.items()
                 if n == name and labels.items() <= dict(lbls).items()]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples of {name} with "
                                 f"{labels}:\n{self.text}")
        return found[0]

    def samples(self, name: str) -> dict[tuple, float]:
        """label items -> value, for every sample called `name`."""
        return {lbls: v for (n, lbls), v in self.series.items() if n == name}

    def names(self) -> set[str]:
        return {n for n, _ in self.series}

    def labels_of(self, name: str) -> dict[str, set[str]]:
        """label name -> values seen, over every sample called `name`."""
        out: dict[str, set[str]] = {}
        for lbls in self.samples(name):
            for key, value in lbls:
                out.setdefault(key, set()).add(value)
        return out

    def monotonic_series(self) -> dict[tuple, float]:
        """Series that must never decrease: counters and histograms."""
        return {k: v for k, v in self.series.items()
                if self.types[k[0]] in ("counter", "histogram")}


def check_exposition(test: unittest.TestCase, text: str, families,
                     what: str = "") -> None:
    """What prometheus_client's lax parser lets through but Prometheus (or
    good practice) does not: samples outside a declared family (the parser
    turns them into "untyped" families), families declared twice, duplicate
    series, names without the pvc_evictor_ prefix, counters not ending in
    _total, HELP missing, histograms whose buckets do not add up."""
    where = f" in {what}" if what else ""
    test.assertTrue(text.endswith("\n"), f"no final newline{where}")
    helps: dict[str, str] = {}
    typed: dict[str, str] = {}
    for line in text.splitlines():
        test.assertEqual(line, line.strip(), f"stray blank{where}: {line!r}")
        test.assertTrue(line, f"empty line{where}")
        if line.startswith("#"):
            parts = line.split(None, 3)
            test.assertIn(parts[1], ("HELP", "TYPE"), f"{line!r}{where}")
            name = parts[2]
            test.assertTrue(name.startswith(PREFIX), f"{line!r}{where}")
            test.assertRegex(name, METRIC_NAME_RE)
            if parts[1] == "HELP":
                test.assertNotIn(name, helps, f"second HELP{where}: {line}")
                helps[name] = parts[3] if len(parts) == 4 else ""
                test.assertTrue(helps[name].strip(),
                                f"empty HELP{where}: {line!r}")
            else:
                test.assertNotIn(name, typed, f"second TYPE{where}: {line}")
                test.assertEqual(len(parts), 4, line)
                typed[name] = parts[3]
                test.assertIn(parts[3], ("counter", "gauge", "histogram"),
                              f"{line!r}{where}")
                test.assertIn(name, helps, f"TYPE before HELP{where}: {line}")
                if parts[3] == "counter":
                    test.assertTrue(name.endswith("_total"),
                                    f"counter not named *_total{where}: "
                                    f"{name}")
                else:
                    test.assertFalse(name.endswith("_total"),
                                     f"{parts[3]} named *_total{where}: "
                                     f"{name}")
        else:
            test.assertTrue(line.startswith(PREFIX), f"{line!r}{where}")
    test.assertEqual(set(helps), set(typed), f"HELP without TYPE{where}")

    seen_series = set()
    family_names = []
    for family in families:
        test.assertNotEqual(
            family.type, "untyped",
            f"sample(s) outside a declared family{where}: "
            f"{[s.name for s in family.samples]}")
        family_names.append(family.name)
        for s in family.samples:
            test.assertTrue(s.name.startswith(PREFIX), s.name)
            for label in s.labels:
                test.assertRegex(label, LABEL_NAME_RE)
                test.assertFalse(label.startswith("__"), label)
            test.assertFalse(math.isnan(s.value),
                             f"NaN{where}: {s.name} {s.labels}")
            key = series_key(s.name, s.labels)
            test.assertNotIn(key, seen_series, f"duplicate series{where}: "
                             f"{s.name}{s.labels}")
            seen_series.add(key)
            if family.type == "counter":
                test.assertTrue(s.name.endswith("_total"), s.name)
                test.assertGreaterEqual(s.value, 0, f"{s.name}{where}")
        if family.type == "histogram":
            check_histogram(test, family, where)
    # A family split in two (samples of one name in two places) shows as
    # the same family twice.
    test.assertEqual(len(family_names), len(set(family_names)),
                     f"a family appears twice{where}: {family_names}")


def check_histogram(test: unittest.TestCase, family, where: str) -> None:
    buckets = [(s.labels["le"], s.value) for s in family.samples
               if s.name == family.name + "_bucket"]
    count = [s.value for s in family.samples
             if s.name == family.name + "_count"]
    total = [s.value for s in family.samples
             if s.name == family.name + "_sum"]
    test.assertEqual(len(count), 1, f"{family.name}_count{where}")
    test.assertEqual(len(total), 1, f"{family.name}_sum{where}")
    test.assertTrue(buckets, f"{family.name} has no buckets{where}")
    test.assertEqual(buckets[-1][0], "+Inf", f"{family.name}{where}")
    bounds = [float(le) for le, _ in buckets]
    test.assertEqual(bounds, sorted(bounds), f"{family.name}{where}")
    test.assertEqual(len(bounds), len(set(bounds)), f"{family.name}{where}")
    values = [v for _, v in buckets]
    test.assertEqual(values, sorted(values),
                     f"{family.name} buckets not cumulative{where}: "
                     f"{buckets}")
    test.assertEqual(values[-1], count[0],
                     f"{family.name} +Inf bucket != _count{where}")
    test.assertGreaterEqual(total[0], 0)


def assert_never_decrease(test: unittest.TestCase,
                          scrapes: list[Scrape]) -> None:
    """Counters and histogram series never go down from one scrape to the
    next (a decrease is a counter reset to Prometheus, and rate() then
    counts the whole value again)."""
    for k in range(1, len(scrapes)):
        before = scrapes[k - 1].monotonic_series()
        after = scrapes[k].monotonic_series()
        for key, old in before.items():
            if key in after:
                test.assertGreaterEqual(
                    after[key], old,
                    f"{key[0]}{dict(key[1])} went down from {old} to "
                    f"{after[key]} between scrapes {k - 1} and {k}")


# -------------------------------------------------------------- the disk --

def block_alloc(root: str) -> dict[str, int]:
    """Relative path -> allocated bytes (st_blocks * 512) of every .bin
    file below `root`."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if name.endswith(".bin"):
                path = os.path.join(dirpath, name)
                found[os.path.relpath(path, root)] = \
                    os.lstat(path).st_blocks * 512
    return found


def escaped(raw: bytes) -> str:
    """A path as the daemon escapes it (common/escape.cpp)."""
    special = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\n"): "\\n",
               ord("\t"): "\\t", ord("\r"): "\\r"}
    out = []
    for byte in raw:
        if byte in special:
            out.append(special[byte])
        elif 0x20 <= byte < 0x7f:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


# -------------------------------------------------------------- testcase --

class MetricsTestCase(EvictorTestCase):
    """Root-only tests of the daemon with its HTTP endpoint on."""

    def setUp(self):
        super().setUp()
        require_prometheus_client()

    def metrics_daemon(self, mount: str, *extra, env: dict | None = None,
                       cache_dir: str = CACHE_DIR) -> Daemon:
        """A (not started) daemon with the endpoint on 127.0.0.1:0."""
        return Daemon(base_args(mount, "--metrics-address", "127.0.0.1:0",
                                *extra, cache_dir=cache_dir),
                      env=clean_env({**METRICS_ENV, **(env or {})}))

    def endpoint(self, daemon: Daemon, timeout: float = 10) -> Endpoint:
        """The endpoint of a started daemon, once it listens."""
        return Endpoint(self, int(daemon.wait_for_log(SERVING_RE,
                                                      timeout)[1]))

    def check_files(self, body: dict, kind: str) -> list[dict]:
        """The file list of a /debug answer, checked field by field."""
        self.assertEqual(body["kind"], kind)
        self.assertEqual(body["mode"], "crawl")
        files = body["files"]
        self.assertEqual(body["count"], len(files))
        self.assertLessEqual(len(files), body["limit"])
        self.assertLessEqual(body["limit"], MAX_PAGE)
        for f in files:
            self.assertEqual(set(f), {"path", "size", "last_use",
                                      "age_seconds", "source", "open"}, f)
            self.assertIsInstance(f["path"], str)
            self.assertTrue(f["path"].isascii() and f["path"].isprintable(),
                            f"path not escaped: {f['path']!r}")
            self.assertFalse(f["path"].startswith("/"), f["path"])
            self.assertIsInstance(f["size"], int)
            self.assertIn(f["source"], ("event", "atime"))
            self.assertEqual(f["source"], "atime", "crawl mode")
            self.assertEqual(f["open"], 0, "crawl mode sees no opens")
            self.assertAlmostEqual(f["age_seconds"],
                                   time.time() - f["last_use"], delta=30)
        return files


def require_prometheus_client() -> None:
    if _IMPORT_ERROR is None:
        return
    reason = f"needs python3-prometheus-client ({_IMPORT_ERROR})"
    if harness.in_ci():
        raise AssertionError(f"{reason}, and CI is set")
    raise unittest.SkipTest(reason)


# ----------------------------------------------------------------- tests --

class EpisodeMetricsTest(MetricsTestCase):
    BATCH = 5

    def test_metrics_follow_a_deletion_episode(self):
        """/metrics scraped back to back through a real episode: every
        answer parses, counters never go down, and the end state matches
        the disk."""
        with harness.LoopFs(256) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            # Many small blocks, so that the episode takes hundreds of
            # batches and spans many scrapes.
            gencache.generate(root, fill_percent=80, seed=21, size=32 * KIB,
                              age_min_minutes=120, age_max_minutes=600)
            before = block_alloc(root)
            self.assertGreater(len(before), 3000)
            self.assertLess(harness.df_usage(fs.path), 84)

            with self.metrics_daemon(fs.path, "--batch-size",
                                     str(self.BATCH)) as d:
                ep = self.endpoint(d)
                d.wait_for_log(r"index ready", 60)
                crawled = int(d.wait_for_log(r"crawl done: (\d+) files")[1])
                self.assertEqual(crawled, len(before), self.ctx(d))

                idle = Scrape(self, ep.metrics_text(), "the idle scrape")
                self.check_idle(d, idle, before)

                scraper = Scraper(ep).start()
                try:
                    until(lambda: len(scraper) >= 5, 10, "first scrapes", d)
                    fill_to(fs.path, 90, "not-cache")
                    end = d.wait_for_log(r"episode ended: .*$", 60)
                    # A few polls more, so the scrapes see the idle state.
                    seen = len(scraper)
                    until(lambda: len(scraper) >= seen + 20, 10,
                          "scrapes after the episode", d)
                finally:
                    scraper.stop()
                self.assertFalse(scraper.errors, scraper.errors[:3])
                # The usage the daemon reports is read at every poll.
                time.sleep(0.3)  # three polls, for the final usage reading
                df_now = harness.df_usage(fs.path)
                final = Scrape(self, ep.metrics_text(), "the final scrape")
                df_after = harness.df_usage(fs.path)
                after = block_alloc(root)
                log = d.log()
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))

            scrapes = [idle]
            for k, (_, status, ctype, body) in enumerate(scraper.answers):
                self.assertEqual(status, 200, f"scrape {k}")
                self.assertIn("version=0.0.4", ctype)
                scrapes.append(Scrape(self, body.decode("utf-8"),
                                      f"scrape {k}"))
            scrapes.append(final)
            assert_never_decrease(self, scrapes)

            gone = set(before) - set(after)
            self.assertFalse(set(after) - set(before), "blocks appeared")
            self.assertGreater(len(gone), 50 * self.BATCH, self.ctx(
                d, "the episode deleted too little to be a test"))
            deleted = int(re.search(r"episode ended: deleted (\d+) files",
                                    end[0])[1])
            self.assertEqual(deleted, len(gone), end[0])

            # Seen during the episode, not just before and after it.
            during = [s for s in scrapes
                      if s.value("pvc_evictor_episode_active") == 1]
            progress = {s.value("pvc_evictor_deleted_files_total",
                                reason="age") for s in during}
            self.assertGreaterEqual(len(during), 3, self.ctx(
                d, f"only {len(during)} of {len(scrapes)} scrapes saw the "
                f"episode; it is too short to test scraping during it"))
            self.assertGreaterEqual(len(progress - {0, len(gone)}), 2,
                                    f"no progress seen: {sorted(progress)}")
            for s in during:
                self.assertEqual(s.value("pvc_evictor_episodes_total"), 1)
                # The index shrinks before the totals grow, never after.
                self.assertLessEqual(
                    s.value("pvc_evictor_index_files")
                    + s.value("pvc_evictor_deleted_files_total",
                              reason="age"), len(before))

            self.check_final(d, final, before, after, gone, log, end[0])
            ratio = final.value("pvc_evictor_usage_ratio", resource="bytes")
            self.assertAlmostEqual(ratio * 100, df_now, delta=0.5)
            self.assertAlmostEqual(df_now, df_after, delta=0.05,
                                   msg="usage moved after the episode")
            used, total = df_bytes(fs.path)
            self.assertAlmostEqual(final.value("pvc_evictor_used_bytes"),
                                   used, delta=total / 200)
            self.assertAlmostEqual(final.value("pvc_evictor_capacity_bytes"),
                                   total, delta=total / 200)
            inodes = final.value("pvc_evictor_usage_ratio",
                                 resource="inodes")
            # Emptied bucket directories waiting for removal count as free.
            self.assertLessEqual(inodes * 100,
                                 harness.inode_usage(fs.path) + 0.5)
            self.assertGreater(inodes, 0)

    def check_idle(self, d: Daemon, s: Scrape, before: dict) -> None:
        """Before the episode: the first crawl's results, nothing deleted."""
        self.assertEqual(s.value("pvc_evictor_ready"), 1)
        self.assertEqual(s.value("pvc_evictor_episodes_total"), 0)
        self.assertEqual(s.value("pvc_evictor_episode_active"), 0)
        self.assertEqual(s.value("pvc_evictor_episode_duration_seconds_count"),
                         0)
        for reason in ("age", "emergency", "temp"):
            self.assertEqual(s.value("pvc_evictor_deleted_files_total",
                                     reason=reason), 0)
        self.assertEqual(s.value("pvc_evictor_index_files"), len(before))
        self.assertEqual(s.value("pvc_evictor_index_bytes"),
                         sum(before.values()))
        self.assertEqual(s.value("pvc_evictor_crawl_files"), len(before))
        self.assertEqual(s.value("pvc_evictor_crawls_total",
                                 result="complete"), 1)
        self.assertEqual(s.value("pvc_evictor_crawl_running"), 0)
        self.assertGreater(s.value("pvc_evictor_crawl_duration_seconds"), 0)
        self.assertGreater(s.value("pvc_evictor_crawl_files_per_second"), 0)
        self.assertEqual(s.value("pvc_evictor_hot_files"), 0)
        self.assertEqual(s.value("pvc_evictor_hot_window_seconds"), 600)
        thresholds = {(r, t): s.value("pvc_evictor_threshold_ratio",
                                      resource=r, threshold=t)
                      for r, t in (("bytes", "cleanup"), ("bytes", "target"),
                                   ("bytes", "emergency"),
                                   ("inodes", "cleanup"),
                                   ("inodes", "target"))}
        self.assertEqual(thresholds, {
            ("bytes", "cleanup"): 0.85, ("bytes", "target"): 0.70,
            ("bytes", "emergency"): 0.95, ("inodes", "cleanup"): 0.85,
            ("inodes", "target"): 0.70})
        self.check_identity(s)

    def check_final(self, d: Daemon, s: Scrape, before: dict, after: dict,
                    gone: set, log: str, summary: str) -> None:
        msg = self.ctx(d, summary)
        self.assertEqual(s.value("pvc_evictor_deleted_files_total",
                                 reason="age"), len(gone), msg)
        self.assertEqual(s.value("pvc_evictor_deleted_bytes_total",
                                 reason="age"),
                         sum(before[p] for p in gone), msg)
        for reason in ("emergency", "temp"):
            self.assertEqual(s.value("pvc_evictor_deleted_files_total",
                                     reason=reason), 0, msg)
            self.assertEqual(s.value("pvc_evictor_deleted_bytes_total",
                                     reason=reason), 0, msg)
        self.assertEqual(s.value("pvc_evictor_episodes_total"), 1, msg)
        self.assertEqual(s.value("pvc_evictor_episode_active"), 0, msg)
        self.assertEqual(s.value("pvc_evictor_stuck"), 0, msg)
        self.assertEqual(
            s.value("pvc_evictor_episode_duration_seconds_count"), 1, msg)
        # The summary line rounds the duration to 10 ms.
        logged = float(re.search(r" in ([\d.]+)s;", summary)[1])
        seconds = s.value("pvc_evictor_episode_duration_seconds_sum")
        self.assertAlmostEqual(seconds, logged, delta=0.006, msg=msg)
        for lbls, value in s.samples(
                "pvc_evictor_episode_duration_seconds_bucket").items():
            le = float(dict(lbls)["le"])
            self.assertEqual(value, 1 if seconds <= le else 0,
                             f"bucket le={le} for {seconds}s")
        for reason, value in s.samples(
                "pvc_evictor_skipped_files_total").items():
            self.assertEqual(value, 0, f"skipped {reason}")
        # No errors: no series, or one placeholder series at 0.
        errors = s.samples("pvc_evictor_delete_errors_total")
        self.assertLessEqual({dict(k)["errno"] for k in errors}, {"none"})
        self.assertFalse(any(errors.values()), errors)
        # The index follows the deletions exactly: what the crawl found
        # minus what was deleted is what is on disk now.
        self.assertEqual(s.value("pvc_evictor_index_files"), len(after), msg)
        self.assertEqual(s.value("pvc_evictor_index_files"),
                         len(before) - len(gone))
        self.assertEqual(s.value("pvc_evictor_index_bytes"),
                         sum(after.values()), msg)
        self.assertEqual(s.value("pvc_evictor_index_temp_files"), 0)
        self.assertGreater(s.value("pvc_evictor_index_memory_bytes"), 0)
        self.assertGreater(s.value("pvc_evictor_index_dirs"), 0)
        self.assertEqual(s.value("pvc_evictor_hot_files"), 0)
        self.assertEqual(s.value("pvc_evictor_crawls_total",
                                 result="complete"),
                         len(re.findall(r"crawl done", log)))
        # The oldest block left is between 2 and 10 hours old.
        coldest = s.value("pvc_evictor_coldest_age_seconds")
        self.assertTrue(2 * HOUR <= coldest <= 10 * HOUR, coldest)
        self.check_identity(s)

    def check_identity(self, s: Scrape) -> None:
        versions = s.samples("pvc_evictor_build_info")
        self.assertEqual(len(versions), 1, versions)
        (lbls, value), = versions.items()
        self.assertEqual(value, 1)
        self.assertTrue(dict(lbls).get("version"), lbls)
        modes = s.samples("pvc_evictor_mode")
        self.assertEqual(len(modes), 1, modes)
        (lbls, value), = modes.items()
        self.assertEqual(value, 1)
        self.assertEqual(dict(lbls)["mode"], "crawl")
        self.assertTrue(dict(lbls).get("reason"), lbls)
        self.assertEqual(set(dict(k)["loop"] for k in s.samples(
            "pvc_evictor_loop_stalled")), {"evictor", "crawler"})
        for lbls, value in s.samples("pvc_evictor_loop_stalled").items():
            self.assertEqual(value, 0, lbls)
        for lbls, value in s.samples(
                "pvc_evictor_loop_last_progress_timestamp_seconds").items():
            self.assertAlmostEqual(value, time.time(), delta=60)
        for name in ("pvc_evictor_events_received_total",
                     "pvc_evictor_events_applied_total",
                     "pvc_evictor_event_overflows_total",
                     "pvc_evictor_events_malformed_total"):
            self.assertEqual(s.value(name), 0, name)


class CounterResetTest(MetricsTestCase):
    def test_counters_do_not_go_down_across_rescans(self):
        """Counters must survive rescans. A symlink in the cache is
        skipped by the first crawl and gone before the second."""
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            records = [r for r in gencache.generate(root, files=10,
                                                    size=4 * KIB)
                       if r["kind"] == "block"]
            block = os.path.join(root, records[-1]["path"])
            link = os.path.join(os.path.dirname(block),
                                "0123456789abcdef.bin")
            os.symlink(block, link)
            with self.metrics_daemon(fs.path, "--rescan-interval", "1") as d:
                ep = self.endpoint(d)

                def after_crawl(n):
                    """A scrape once the status holds n complete crawls
                    (the "crawl done" line comes just before that)."""
                    def done():
                        s = ep.scrape()
                        return s if s.value("pvc_evictor_crawls_total",
                                            result="complete") >= n else None
                    return until(done, 30, f"crawl {n} in the metrics", d)
                scrapes = [after_crawl(1)]
                os.unlink(link)
                scrapes.append(after_crawl(2))
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
            self.assertEqual(scrapes[0].value(
                "pvc_evictor_crawl_skipped_total", reason="link"), 1)
            self.assertGreaterEqual(scrapes[1].value(
                "pvc_evictor_crawls_total", result="complete"), 2)
            assert_never_decrease(self, scrapes)


class HealthTest(MetricsTestCase):
    def test_healthz_and_readyz_when_all_is_well(self):
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=20, size=4 * KIB)
            with self.metrics_daemon(fs.path) as d:
                ep = self.endpoint(d)
                d.wait_for_log(r"index ready", 30)
                health = ep.json("/healthz")
                self.assertEqual(health["status"], "ok", health)
                self.assertEqual(health["stalled"], [])
                self.assertEqual(set(health["loops"]), {"evictor", "crawler"})
                evictor = health["loops"]["evictor"]
                self.assertFalse(evictor["stalled"])
                self.assertFalse(evictor["parked"])
                # max(30 s, 20 x --interval 0.1)
                self.assertEqual(evictor["deadline_seconds"], 30)
                self.assertLess(evictor["seconds_since_progress"], 5)
                crawler = health["loops"]["crawler"]
                self.assertTrue(crawler["parked"], "no crawl runs now")
                self.assertFalse(crawler["stalled"])
                self.assertEqual(health["mode"], "crawl")
                self.assertTrue(health["ready"])
                self.assertEqual(ep.json("/readyz"), {"ready": True})
                s = ep.scrape()
                self.assertEqual(s.value("pvc_evictor_loop_stalled",
                                         loop="evictor"), 0)
                self.assertEqual(s.value("pvc_evictor_ready"), 1)
                code, _, _ = ep.get("/no-such-page")
                self.assertEqual(code, 404)
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))

    def test_idle_and_kept_alive_connections_block_neither_probes_nor_exit(
            self):
        """Scrapers keep connections alive and clients can hold sockets
        open without a request: health must still answer within a probe's
        usual timeout, and SIGTERM must still end the daemon within 2 s."""
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=20, size=4 * KIB)
            with self.metrics_daemon(fs.path) as d:
                ep = self.endpoint(d)
                d.wait_for_log(r"index ready", 30)
                kept = http.client.HTTPConnection("127.0.0.1", ep.port,
                                                  timeout=5)
                kept.request("GET", "/metrics")
                self.assertEqual(kept.getresponse().read()[:5], b"# HEL")
                idle = [socket.create_connection(("127.0.0.1", ep.port))
                        for _ in range(16)]
                try:
                    t0 = time.monotonic()
                    code, _, body = ep.get("/healthz")
                    waited = time.monotonic() - t0
                    self.assertEqual(code, 200, body)
                    self.assertLess(waited, 3.0, "healthz behind 16 idle "
                                    "connections")
                    t0 = time.monotonic()
                    code, _ = d.stop()
                    took = time.monotonic() - t0
                finally:
                    kept.close()
                    for sock in idle:
                        sock.close()
                self.assertEqual(code, 0, self.ctx(d))
                self.assertLess(took, 2.0, self.ctx(
                    d, f"SIGTERM to exit took {took:.2f} s with a kept-alive "
                    "and 16 idle connections"))
                print(f"healthz behind 16 idle connections in {waited:.2f} s; "
                      f"exit {took:.2f} s after SIGTERM")

    def test_an_address_that_cannot_be_bound_stops_start_up_with_the_reason(
            self):
        with harness.Tmpfs(16) as fs, socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            cases = {f"127.0.0.1:{port}": r"EADDRINUSE",
                     # The daemon keeps no CAP_NET_BIND_SERVICE, even as root.
                     "127.0.0.1:900": r"EACCES .*ports below 1024 need "
                                      r"CAP_NET_BIND_SERVICE"}
            for address, reason in cases.items():
                r = subprocess.run(
                    [harness.find_binary(), "--mount-path", fs.path,
                     "--cache-dir", "kv", "--mode", "crawl",
                     "--metrics-address", address],
                    capture_output=True, text=True, timeout=30, check=False,
                    env={k: v for k, v in os.environ.items()
                         if k not in clean_env()})
                out = r.stdout + r.stderr
                self.assertEqual(r.returncode, 1, out)
                self.assertRegex(out, r"--metrics-address .*cannot listen on "
                                 + re.escape(address) + ": " + reason, out)

    def test_healthz_turns_503_when_the_evictor_loop_stalls(self):
        """PVC_EVICTOR_TEST_STALL_LOOP=evictor: the loop's beats are
        ignored, so /healthz must turn 503 once its deadline passes (and
        not before), naming the loop, while everything else goes on."""
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=20, size=4 * KIB)
            env = {STALL_ENV: "evictor", DEADLINE_ENV: str(TEST_DEADLINE)}
            with self.metrics_daemon(fs.path, env=env) as d:
                ep = self.endpoint(d)
                started = time.monotonic()
                code, _, body = ep.get("/healthz")
                early = time.monotonic() - started
                health = json.loads(body)
                deadline = health["loops"]["evictor"]["deadline_seconds"]
                self.assertIn(deadline, (TEST_DEADLINE, 30), health)
                if early < deadline - 0.5:
                    self.assertEqual(code, 200, health)
                    self.assertEqual(health["status"], "ok", health)

                def stalled():
                    code, _, body = ep.get("/healthz")
                    return (code, json.loads(body)) if code != 200 else None
                code, health = until(stalled, deadline + 10,
                                     "/healthz turns 503", d)
                waited = time.monotonic() - started
                self.assertEqual(code, 503, health)
                self.assertEqual(health["status"], "stalled", health)
                self.assertEqual(health["stalled"], ["evictor"], health)
                self.assertTrue(health["loops"]["evictor"]["stalled"])
                self.assertFalse(health["loops"]["crawler"]["stalled"])
                self.assertGreater(
                    health["loops"]["evictor"]["seconds_since_progress"],
                    deadline)
                # Not before the deadline (the daemon started before our
                # clock did, by less than the time to its first log line).
                self.assertGreater(waited, deadline - 1.0, health)
                s = ep.scrape()
                self.assertEqual(s.value("pvc_evictor_loop_stalled",
                                         loop="evictor"), 1)
                self.assertEqual(s.value("pvc_evictor_loop_stalled",
                                         loop="crawler"), 0)
                # Only the heartbeat is ignored: the daemon works on.
                self.assertEqual(ep.json("/readyz"), {"ready": True})
                self.assertTrue(d.alive())
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
                print(f"\n[stall test: evictor deadline {deadline:g} s, "
                      f"503 after {waited:.1f} s]", flush=True)

    def test_healthz_stays_200_while_the_loops_beat(self):
        """With a short deadline (the proposed test override) and frequent
        rescans, neither loop ever misses it: the beats really happen."""
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=200, size=4 * KIB)
            env = {DEADLINE_ENV: str(TEST_DEADLINE)}
            with self.metrics_daemon(fs.path, "--rescan-interval", "1",
                                     env=env) as d:
                ep = self.endpoint(d)
                health = ep.json("/healthz")
                deadline = health["loops"]["evictor"]["deadline_seconds"]
                if deadline == TEST_DEADLINE:
                    self.assertEqual(
                        health["loops"]["crawler"]["deadline_seconds"],
                        TEST_DEADLINE)
                    first = d.wait_for_log(r"crawl done", 30)
                    watched_until = time.monotonic() + 3 * TEST_DEADLINE
                    while time.monotonic() < watched_until:
                        code, _, body = ep.get("/healthz")
                        self.assertEqual(code, 200, self.ctx(d, body))
                        time.sleep(0.05)
                    # Crawls ran (and parked) meanwhile.
                    d.wait_for_log(r"crawl done", 10, first.end())
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
        if deadline != TEST_DEADLINE:
            self.skipTest(f"the daemon does not read {DEADLINE_ENV} "
                          f"(evictor deadline {deadline:g} s), and waiting "
                          "out 30 s would prove little")

    def test_readyz_turns_200_when_the_first_crawl_completes(self):
        """The cache directory appears only after the endpoint is up:
        /readyz says 503 while there is nothing to crawl (and /healthz
        200), then 200 once the first crawl is done, and never 503
        again."""
        with harness.Tmpfs(64) as fs:
            staging = os.path.join(fs.path, "staging")
            gencache.generate(staging, files=20, size=4 * KIB)
            with self.metrics_daemon(fs.path) as d:
                ep = self.endpoint(d)
                d.wait_for_log(r"cache directory: .*retrying", 10)
                self.assertEqual(ep.json("/readyz", 503), {"ready": False})
                self.assertEqual(ep.json("/healthz")["status"], "ok")
                s = ep.scrape()
                self.assertEqual(s.value("pvc_evictor_ready"), 0)
                self.assertEqual(s.value("pvc_evictor_crawls_total",
                                         result="complete"), 0)
                answers = []
                stop = threading.Event()

                def poll():
                    while not stop.is_set():
                        code, _, body = ep.get("/readyz")
                        answers.append((code, json.loads(body)["ready"]))
                        stop.wait(0.005)
                poller = threading.Thread(target=poll, daemon=True)
                poller.start()
                try:
                    until(lambda: len(answers) >= 5, 10, "polls", d)
                    os.rename(staging, os.path.join(fs.path, CACHE_DIR))
                    d.wait_for_log(r"index ready", 30)
                    seen = len(answers)
                    until(lambda: len(answers) >= seen + 5, 10, "polls", d)
                finally:
                    stop.set()
                    poller.join()
                self.assertEqual(ep.json("/readyz"), {"ready": True})
                self.assertEqual(ep.scrape().value("pvc_evictor_ready"), 1)
                log = d.log()
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
            self.assertLess(log.index("crawl done"), log.index("index ready"))
            for code, ready in answers:
                self.assertEqual(code, 200 if ready else 503)
            codes = [code for code, _ in answers]
            self.assertEqual(codes[0], 503)
            first_ok = codes.index(200)
            self.assertNotIn(503, codes[first_ok:], "ready went back")


class HotSetTest(MetricsTestCase):
    READ = 5
    BLOCKS = 40

    def test_hotset_lists_exactly_the_files_being_read(self):
        """strictatime: a reader keeps 5 old blocks hot; the first crawl
        runs after the reads started, so /debug/hotset, the metric and
        `pvc-evictor dump` name exactly those 5."""
        with harness.LoopFs(64, options="strictatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            blocks = sorted(r["path"] for r in gencache.generate(
                root, files=self.BLOCKS, seed=5, size=64 * KIB,
                age_min_minutes=120, age_max_minutes=600)
                if r["kind"] == "block")
            self.assertEqual(len(blocks), self.BLOCKS)
            self.assertTrue(all(p.isascii() and p.isprintable()
                                for p in blocks))
            read = blocks[7:7 + self.READ]
            reader = harness.Reader([os.path.join(root, p) for p in read],
                                    period=0.05)
            with reader:
                until(lambda: all(reader.reads[os.path.join(root, p)] >= 1
                                  for p in read), 10, "each block read once")
                with self.metrics_daemon(fs.path) as d:
                    ep = self.endpoint(d)
                    d.wait_for_log(r"crawl done", 30)
                    body = ep.json(f"/debug/hotset?limit={MAX_PAGE}")
                    files = self.check_files(body, "hotset")
                    self.assertEqual(sorted(f["path"] for f in files), read,
                                     self.ctx(d))
                    self.assertEqual(body["hot_files"], self.READ)
                    self.assertEqual(body["index_files"], self.BLOCKS)
                    self.assertEqual(body["hot_window_seconds"], 600)
                    self.assertEqual(body["offset"], 0)
                    self.assertEqual(body["limit"], MAX_PAGE)
                    uses = [f["last_use"] for f in files]
                    self.assertEqual(uses, sorted(uses, reverse=True),
                                     "hottest first")
                    for f in files:
                        self.assertLess(f["age_seconds"], 600, f)
                        self.assertEqual(f["size"], 64 * KIB, f)
                    s = ep.scrape()
                    self.assertEqual(s.value("pvc_evictor_hot_files"),
                                     self.READ)
                    # Paging the hot set.
                    page = ep.json("/debug/hotset?offset=1&limit=2")
                    self.assertEqual([f["path"] for f in page["files"]],
                                     [f["path"] for f in files[1:3]])

                    self.check_dump_client(d, ep, read)
                    code, _ = d.stop()
                    self.assertEqual(code, 0, self.ctx(d))
            self.assertFalse(reader.missing)

    def check_dump_client(self, d: Daemon, ep: Endpoint,
                          read: list[str]) -> None:
        binary = harness.find_binary()

        def dump(*args):
            return subprocess.run([binary, "dump", *args],
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=30)

        proc = dump("hotset", "--address", ep.address)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertRegex(lines[0], rf"^hotset: {self.READ} shown .* "
                         rf"{self.READ} hot of {self.BLOCKS} indexed")
        self.assertEqual(lines[1].split(),
                         ["AGE", "SIZE", "SOURCE", "OPEN", "PATH"])
        self.assertEqual(sorted(line.split()[-1] for line in lines[2:]), read,
                         proc.stdout)
        for line in lines[2:]:
            self.assertIn(" atime ", line)

        proc = dump("hotset", "--address", ep.address, "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        body = json.loads(proc.stdout)
        self.assertEqual(sorted(f["path"] for f in body["files"]), read)

        proc = dump("coldest", "--address", ep.address, "--limit", "3")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(len(proc.stdout.splitlines()), 2 + 3, proc.stdout)
        self.assertTrue(proc.stdout.startswith("coldest: 3 shown"),
                        proc.stdout)

        dead = f"127.0.0.1:{free_port()}"
        proc = dump("hotset", "--address", dead)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertIn(dead, proc.stderr)
        self.assertIn("cannot reach", proc.stderr)
        self.assertEqual(proc.stdout, "")

        proc = dump("lukewarm", "--address", ep.address)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertTrue(proc.stderr.strip())


class ColdestTest(MetricsTestCase):
    FILES = MAX_PAGE + 50

    def test_coldest_is_in_age_order_pages_and_is_capped(self):
        """More files than one page may hold, each with its own age: the
        coldest list is exactly the files in age order, paged by offset
        and cut at 10000 files."""
        with harness.Tmpfs(128) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            rank = os.path.join(root, "llama_0123456789ab_r0")
            expected = []  # oldest first
            now = time.time_ns()
            for k in range(self.FILES):
                digest = f"{k * 0x9e3779b97f4a7c15 % (1 << 64):016x}"
                path = block_path(rank, digest)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as out:
                    out.write(b"x")
                when = now - (self.FILES - k) * 1_000_000_000 - 2 * 3600 * \
                    1_000_000_000
                os.utime(path, ns=(when, when))
                expected.append(os.path.relpath(path, root))
            with self.metrics_daemon(fs.path) as d:
                ep = self.endpoint(d)
                d.wait_for_log(rf"crawl done: {self.FILES} files", 60)

                full = ep.json(f"/debug/coldest?limit={MAX_PAGE}")
                files = self.check_files(full, "coldest")
                self.assertEqual(full["index_files"], self.FILES)
                self.assertEqual(full["count"], MAX_PAGE)
                self.assertEqual([f["path"] for f in files],
                                 expected[:MAX_PAGE])
                uses = [f["last_use"] for f in files]
                self.assertEqual(uses, sorted(uses), "coldest first")
                self.assertTrue(all(f["size"] == 4096 for f in files))

                over = ep.json(f"/debug/coldest?limit={10 * MAX_PAGE}")
                self.assertEqual(over["limit"], MAX_PAGE)
                self.assertEqual(over["count"], MAX_PAGE)
                self.assertEqual([f["path"] for f in over["files"]],
                                 expected[:MAX_PAGE])

                page = ep.json("/debug/coldest?offset=2&limit=2")
                self.assertEqual((page["offset"], page["limit"],
                                  page["count"]), (2, 2, 2))
                self.assertEqual(page["files"], [
                    {**f, "age_seconds": p["age_seconds"]}
                    for f, p in zip(files[2:4], page["files"])])

                tail = ep.json(f"/debug/coldest?offset={MAX_PAGE + 40}"
                               f"&limit=100")
                self.assertEqual([f["path"] for f in tail["files"]],
                                 expected[MAX_PAGE + 40:])
                beyond = ep.json(f"/debug/coldest?offset={self.FILES}")
                self.assertEqual(beyond["files"], [])

                default = ep.json("/debug/coldest")
                self.assertEqual(default["limit"], DEFAULT_PAGE)
                self.assertEqual([f["path"] for f in default["files"]],
                                 expected[:DEFAULT_PAGE])
                # A value that is not a whole number is an error, not a
                # silent default.
                for query in ("limit=lots", "offset=-1", "limit=", "limit=1x"):
                    bad = ep.json(f"/debug/coldest?{query}", status=400)
                    self.assertIn("whole numbers", bad["error"], query)
                self.assertEqual(ep.json("/debug/hotset?limit=10")["files"],
                                 [])

                s = ep.scrape()
                self.assertAlmostEqual(
                    s.value("pvc_evictor_coldest_age_seconds"),
                    (time.time_ns() - now) / 1e9 + self.FILES + 2 * 3600,
                    delta=30)
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))


class SignalDumpTest(MetricsTestCase):
    ODD = b"odd\nname\xff.bin"

    def test_sigusr1_dump_is_valid_json_with_escaped_paths(self):
        with harness.Tmpfs(64) as fs, \
                tempfile.TemporaryDirectory(prefix="pvc-dump-") as dump_dir:
            root = os.path.join(fs.path, CACHE_DIR)
            records = [r for r in gencache.generate(
                root, files=20, size=4 * KIB, age_min_minutes=120,
                age_max_minutes=600) if r["kind"] == "block"]
            bucket = os.path.dirname(records[-1]["path"])
            odd = os.path.join(os.fsencode(root), os.fsencode(bucket),
                               self.ODD)
            with open(odd, "wb") as out:
                out.write(b"x" * 4096)
            harness.backdate(odd, 20 * HOUR)
            odd_rel = f"{bucket}/{escaped(self.ODD)}"
            self.assertEqual(escaped(self.ODD), "odd\\nname\\xff.bin")
            rank = bucket.split("/")[0]
            hot = block_path(os.path.join(root, rank), "fedcba9876543210")
            write_block(hot, 4096, None)
            hot_rel = os.path.relpath(hot, root)

            with self.metrics_daemon(fs.path, "--dump-dir", dump_dir) as d:
                ep = self.endpoint(d)
                d.wait_for_log(r"index ready", 30)
                os.kill(d.pid, signal.SIGUSR1)
                wrote = d.wait_for_log(
                    r"SIGUSR1: wrote diagnostics to (\S+)$", 10)
                dumps = glob.glob(os.path.join(dump_dir, "*"))
                self.assertEqual(len(dumps), 1, dumps)
                self.assertEqual(wrote[1], dumps[0])
                self.assertRegex(os.path.basename(dumps[0]),
                                 r"^pvc-evictor-dump-\d{10}\.json$")
                with open(dumps[0], "rb") as f:
                    raw = f.read()
                coldest = ep.json("/debug/coldest?limit=1")
                printed = subprocess.run(
                    [harness.find_binary(), "dump", "coldest", "--address",
                     ep.address, "--limit", "2"],
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

                # A dump directory that went away: a warning, no harm.
                shutil.rmtree(dump_dir)
                os.kill(d.pid, signal.SIGUSR1)
                d.wait_for_log(r"SIGUSR1: cannot write diagnostics", 10)
                self.assertEqual(ep.json("/healthz")["status"], "ok")
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
                os.mkdir(dump_dir)  # for TemporaryDirectory's cleanup

            self.assertTrue(raw.isascii(), "escaping leaves only ASCII")
            dump = json.loads(raw.decode("utf-8"))
            self.assertEqual(set(dump), {"status", "hotset", "coldest"})
            self.assertEqual(dump["status"]["status"], "ok")
            self.assertEqual(set(dump["status"]["loops"]),
                             {"evictor", "crawler"})
            self.assertTrue(dump["status"]["ready"])
            self.assertEqual([f["path"] for f in dump["hotset"]["files"]],
                             [hot_rel])
            paths = [f["path"] for f in dump["coldest"]["files"]]
            self.assertEqual(len(paths), 22)  # 20 + odd + hot
            self.assertEqual(paths[0], odd_rel)
            self.assertEqual(paths[-1], hot_rel)
            uses = [f["last_use"] for f in dump["coldest"]["files"]]
            self.assertEqual(uses, sorted(uses))
            # In the file, JSON escapes the escape's backslash once more.
            self.assertIn(b'odd\\\\nname\\\\xff.bin', raw)
            self.assertEqual(coldest["files"][0]["path"], odd_rel)

            self.assertEqual(printed.returncode, 0, printed.stderr)
            out = printed.stdout.decode("ascii")
            self.assertEqual(len(out.splitlines()), 2 + 2, out)
            self.assertTrue(out.splitlines()[2].endswith(" " + odd_rel), out)


class DashboardTest(unittest.TestCase):
    """manifests/monitoring/grafana-dashboard.json: valid, and every
    metric it queries is one a live daemon exports."""

    def setUp(self):
        require_prometheus_client()
        with open(DASHBOARD, encoding="utf-8") as f:
            self.dashboard = json.load(f)

    def exprs(self) -> list[str]:
        """Every PromQL expression: panel targets and variable queries."""
        out = []
        for panel in self.panels():
            for target in panel.get("targets", []):
                out.append(target["expr"])
        for var in self.dashboard["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]
                out.append(query["query"] if isinstance(query, dict)
                           else query)
        return out

    def panels(self) -> list[dict]:
        out = []
        for panel in self.dashboard["panels"]:
            out.append(panel)
            out.extend(panel.get("panels", []))  # collapsed rows
        return out

    def test_dashboard_structure(self):
        d = self.dashboard
        self.assertGreaterEqual(d["schemaVersion"], 36)
        self.assertTrue(d["title"])
        self.assertTrue(d["uid"])
        self.assertIsNone(d.get("id"))
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual(variables["DS_PROMETHEUS"]["type"], "datasource")
        self.assertEqual(variables["DS_PROMETHEUS"]["query"], "prometheus")
        ids = [p["id"] for p in self.panels()]
        self.assertEqual(len(ids), len(set(ids)), "panel ids repeat")
        for panel in self.panels():
            self.assertIn("gridPos", panel)
            if panel["type"] == "row":
                continue
            self.assertTrue(panel.get("title"), panel)
            self.assertEqual(panel["datasource"],
                             {"type": "prometheus", "uid": "${DS_PROMETHEUS}"},
                             panel["title"])
            self.assertTrue(panel["targets"], panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            self.assertEqual(len(refs), len(set(refs)), panel["title"])
            for t in panel["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${DS_PROMETHEUS}")
                self.assertIn(PREFIX, t["expr"], panel["title"])
                self.assertEqual(t["expr"].count("("), t["expr"].count(")"))
                self.assertEqual(t["expr"].count("{"), t["expr"].count("}"))
        # Everything the brief of the dashboard asks for is on it.
        queried = " ".join(self.exprs())
        for metric in (
                "usage_ratio", "threshold_ratio", "episode_active",
                "deleted_files_total", "deleted_bytes_total",
                "skipped_files_total", "delete_errors_total", "index_files",
                "index_bytes", "index_memory_bytes", "coldest_age_seconds",
                "hot_files", "crawl_duration_seconds",
                "crawl_files_per_second", "events_received_total",
                "events_applied_total", "event_overflows_total",
                "loop_stalled", "mode"):
            self.assertRegex(queried, rf"\b{PREFIX}{metric}\b")
        self.assertRegex(queried, r"rate\(pvc_evictor_deleted_files_total")
        self.assertRegex(queried, r"rate\(pvc_evictor_deleted_bytes_total")

    def test_dashboard_queries_only_exported_metrics(self):
        harness.find_binary()
        with tempfile.TemporaryDirectory(prefix="pvc-dash-") as mount:
            os.mkdir(os.path.join(mount, CACHE_DIR))
            args = base_args(mount, "--metrics-address", "127.0.0.1:0")
            with Daemon(args, env=clean_env(METRICS_ENV)) as d:
                port = int(d.wait_for_log(SERVING_RE, 10)[1])
                d.wait_for_log(r"index ready", 30)
                live = Scrape(self, Endpoint(self, port).metrics_text())
                code, _ = d.stop()
                self.assertEqual(code, 0, d.tail())

        exported = live.names()
        for expr in self.exprs():
            with self.subTest(expr=expr):
                names = set(re.findall(r"\bpvc_evictor_[a-zA-Z0-9_]+", expr))
                self.assertTrue(names, expr)
                self.assertLessEqual(names, exported,
                                     f"not exported: {names - exported}")
                self.check_labels(expr, live)

    def check_labels(self, expr: str, live: Scrape) -> None:
        """Label matchers select labels the metric has (and values it can
        have); by()/without() group by labels some queried metric has."""
        names = set(re.findall(r"\bpvc_evictor_[a-zA-Z0-9_]+", expr))
        known = set(TARGET_LABELS)
        for name in names:
            known |= set(live.labels_of(name))
        for name, matchers in re.findall(
                r"\b(pvc_evictor_[a-zA-Z0-9_]+)\{([^}]*)\}", expr):
            labels = live.labels_of(name)
            for label, op, value in re.findall(
                    r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"', matchers):
                if label in TARGET_LABELS:
                    continue
                self.assertIn(label, labels, f"{name} has no label {label}")
                if op == "=" and "$" not in value:
                    if name == "pvc_evictor_delete_errors_total":
                        continue  # errno values appear with the errors
                    self.assertIn(value, labels[label],
                                  f"{name}{{{label}={value!r}}}")
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                self.assertIn(label, known, f"grouping by {label}")


if __name__ == "__main__":
    unittest.main()
