"""Tests for the integration-test tools: harness.py and scripts/gencache.py.

The daemon's integration tests trust these tools to build filesystems and
caches exactly as asked, so the tools get tests of their own. Mount tests
need root (require_root: skipped without it, failed in CI).

Run: /usr/bin/python3 tests/integration/test_harness.py
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

import harness
from harness import gencache

GENCACHE = os.path.join(harness.REPO_ROOT, "scripts", "gencache.py")
NOW = 1_700_000_000.0  # a fixed clock makes whole manifests comparable
HEX16 = "[0-9a-f]{16}"


def walk_files(root: str) -> set[str]:
    """Every regular file below `root`, as a path relative to it."""
    found = set()
    for dirpath, _, names in os.walk(root):
        for name in names:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def run_gencache(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, GENCACHE, *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def block_regex(layout: str, bucket_len: int) -> re.Pattern:
    """The writer's block path pattern, relative to the cache root."""
    buckets = (rf"(?P<b1>[0-9a-f]{{{bucket_len}}})/(?P<b2>[0-9a-f]{{2}})")
    if layout == "current":
        return re.compile(
            rf"(?P<model>org_model-\d+)_(?P<cfg>[0-9a-f]{{12}})_r(?P<rank>\d+)"
            rf"/{buckets}_g(?P<group>\d+)/(?P<hash>{HEX16})\.bin")
    return re.compile(
        rf"(?P<model>org_model-\d+)/(?P<cfg>[0-9a-f]{{12}})/tp_(?P<tp>\d+)"
        rf"/rank_(?P<rank>\d+)/auto/{buckets}/(?P<hash>{HEX16})\.bin")


def superblock_field(image: str, field: str) -> int:
    """A number from an ext4 image's superblock, e.g. "Block count"."""
    info = subprocess.run(["tune2fs", "-l", image], capture_output=True,
                          text=True, check=True).stdout
    return int(re.search(rf"^{field}:\s+(\d+)$", info, re.MULTILINE)[1])


class TempDirTest(unittest.TestCase):
    """Gives each test a fresh directory on the host filesystem."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="pvc-gencache-test-")
        self.addCleanup(self._tmp.cleanup)
        self.tmp = self._tmp.name


# ----------------------------------------------------------------- mounts --

class LoopFsTest(unittest.TestCase):
    def setUp(self):
        harness.require_root(self)

    def test_mounts_ext4_with_options_and_cleans_up(self):
        with harness.LoopFs(32) as fs:
            path, image = fs.path, fs.image
            fstype, options = harness.mount_options(path)
            self.assertEqual(fstype, "ext4")
            self.assertIn("rw", options)
            # strictatime shows as the absence of relatime and noatime.
            self.assertNotIn("relatime", options)
            self.assertNotIn("noatime", options)
            st = os.statvfs(path)
            self.assertLessEqual(st.f_blocks * st.f_frsize, 32 << 20)
            self.assertGreater(st.f_blocks * st.f_frsize, 24 << 20)
            self.assertEqual(superblock_field(image, "Reserved block count"),
                             0)
        self.assertIsNone(harness.mount_options(path))
        self.assertFalse(os.path.exists(path))
        self.assertFalse(os.path.exists(image))
        loops = subprocess.run(["losetup", "-a"], capture_output=True,
                               text=True).stdout
        self.assertNotIn(image, loops)

    def test_strictatime_updates_atime_that_relatime_would_keep(self):
        with harness.LoopFs(16) as fs:
            path = os.path.join(fs.path, "f")
            with open(path, "wb") as out:
                out.write(b"x" * 100)
            # atime newer than mtime and under a day old: relatime would
            # not update it on a read, strictatime must.
            harness.backdate(path, 7200, atime=False)
            old_atime = harness.backdate(path, 3600, mtime=False)
            with open(path, "rb") as file:
                file.read()
            self.assertGreater(os.stat(path).st_atime_ns,
                               old_atime + 3000 * 10**9)

    def test_options_and_remount(self):
        with harness.LoopFs(16, options="noatime") as fs:
            self.assertIn("noatime", harness.mount_options(fs.path)[1])
            fs.remount("strictatime")
            options = harness.mount_options(fs.path)[1]
            self.assertNotIn("noatime", options)
            self.assertNotIn("relatime", options)
            fs.remount("nodiratime")
            self.assertIn("nodiratime", harness.mount_options(fs.path)[1])

    def test_inodes_and_reserved_percent(self):
        with harness.LoopFs(16, inodes=64, reserved_percent=5) as fs:
            st = os.statvfs(fs.path)
            # mkfs rounds the inode count up to fill whole inode tables.
            self.assertGreaterEqual(st.f_files, 64)
            self.assertLess(st.f_files, 512)
            reserved = superblock_field(fs.image, "Reserved block count")
            blocks = superblock_field(fs.image, "Block count")
            self.assertAlmostEqual(reserved / blocks, 0.05, delta=0.001)

    def test_unmounts_after_error_even_when_busy(self):
        busy = None
        try:
            with self.assertRaises(KeyError):
                with harness.LoopFs(16) as fs:
                    path = fs.path
                    # An open file makes umount fail: the lazy path runs.
                    busy = open(os.path.join(path, "busy"), "w")
                    raise KeyError("boom")
        finally:
            if busy:
                busy.close()
        self.assertIsNone(harness.mount_options(path))
        self.assertFalse(os.path.exists(os.path.dirname(path)))


class TmpfsTest(unittest.TestCase):
    def setUp(self):
        harness.require_root(self)

    def test_mounts_tmpfs_of_the_given_size(self):
        with harness.Tmpfs(8, options="mode=0700") as fs:
            path = fs.path
            fstype, options = harness.mount_options(path)
            self.assertEqual(fstype, "tmpfs")
            self.assertIn("mode=700", options)
            st = os.statvfs(path)
            self.assertEqual(st.f_blocks * st.f_frsize, 8 << 20)
            self.assertEqual(harness.df_usage(path), 0.0)
        self.assertIsNone(harness.mount_options(path))
        self.assertFalse(os.path.exists(path))


# ----------------------------------------------------------------- gencache --

class GencacheDeterminismTest(TempDirTest):
    OPTIONS = dict(files=60, models=2, ranks=2, groups=3, size_min=1,
                   size_max=9000, orphan_temps=3, now=NOW)

    def disk_state(self, root: str) -> dict:
        """What a reader would see: names, sizes and timestamps."""
        state = {}
        for rel in walk_files(root):
            st = os.stat(os.path.join(root, rel))
            state[rel] = (st.st_size, st.st_atime_ns, st.st_mtime_ns)
        return state

    def test_same_seed_gives_identical_caches(self):
        one = gencache.generate(f"{self.tmp}/a", seed=7, **self.OPTIONS)
        two = gencache.generate(f"{self.tmp}/b", seed=7, **self.OPTIONS)
        self.assertEqual(one, two)
        self.assertEqual(len(one), 2 + 3 + 60)
        self.assertEqual(self.disk_state(f"{self.tmp}/a"),
                         self.disk_state(f"{self.tmp}/b"))

    def test_different_seeds_differ(self):
        one = gencache.generate(f"{self.tmp}/a", seed=7, **self.OPTIONS)
        two = gencache.generate(f"{self.tmp}/b", seed=8, **self.OPTIONS)
        hashes = [{r["hash"] for r in records if r["hash"]}
                  for records in (one, two)]
        self.assertEqual(len(hashes[0]), 63)  # never the same hash twice
        self.assertFalse(hashes[0] & hashes[1])
        self.assertNotEqual([r["size"] for r in one],
                            [r["size"] for r in two])

    def test_cli_manifest_matches_module(self):
        manifest = f"{self.tmp}/m.jsonl"
        proc = run_gencache(f"{self.tmp}/cli", "--seed", 3, "--files", 20,
                            "--size", "4K", "--orphan-temps", 2, "--now",
                            NOW, "--manifest", manifest)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertRegex(proc.stdout, r"^gencache: 20 blocks, 2 orphan temps,"
                         r" 1 configs, \d+ bytes in [\d.]+ s")
        with open(manifest, encoding="utf-8") as lines:
            from_cli = [json.loads(line) for line in lines]
        from_api = gencache.generate(f"{self.tmp}/api", seed=3, files=20,
                                     size=4096, orphan_temps=2, now=NOW)
        self.assertEqual(from_cli, from_api)
        self.assertEqual(set(from_cli[0]),
                         {"path", "hash", "size", "atime", "mtime", "kind"})

    def test_orphans_do_not_change_the_blocks(self):
        plain = gencache.generate(f"{self.tmp}/a", files=10, now=NOW)
        mixed = gencache.generate(f"{self.tmp}/b", files=10, now=NOW,
                                  orphan_temps=4)
        self.assertEqual(plain, [r for r in mixed if r["kind"] != "temp"])


class GencacheLayoutTest(TempDirTest):
    def test_block_paths_match_the_writer_layout(self):
        for layout in gencache.LAYOUTS:
            for bucket_len in gencache.BUCKET_LENS:
                with self.subTest(layout=layout, bucket_len=bucket_len):
                    self.check_layout(layout, bucket_len)

    def check_layout(self, layout: str, bucket_len: int) -> None:
        root = f"{self.tmp}/{layout}{bucket_len}"
        records = gencache.generate(root, files=120, size=0, models=2,
                                    ranks=3, groups=2, layout=layout,
                                    bucket_len=bucket_len)
        pattern = block_regex(layout, bucket_len)
        on_disk = walk_files(root)
        blocks = {rel for rel in on_disk if not rel.endswith("config.json")}
        self.assertEqual(len(blocks), 120)
        self.assertEqual(blocks, {r["path"] for r in records
                                  if r["kind"] == "block"})
        ranks, groups = set(), set()
        for rel in blocks:
            match = pattern.fullmatch(rel)
            self.assertIsNotNone(match, rel)
            digest = match["hash"]
            self.assertEqual(match["b1"], digest[:bucket_len])
            self.assertEqual(match["b2"],
                             digest[bucket_len:bucket_len + 2])
            self.assertIn(self.config_of(layout, match), on_disk)
            ranks.add(int(match["rank"]))
            if layout == "current":
                groups.add(int(match["group"]))
            else:
                self.assertEqual(match["tp"], "3")
        self.assertEqual(ranks, {0, 1, 2})
        self.assertEqual(groups, {0, 1} if layout == "current" else set())

    @staticmethod
    def config_of(layout: str, match: re.Match) -> str:
        separator = "_" if layout == "current" else "/"
        return f"{match['model']}{separator}{match['cfg']}/config.json"

    def test_one_config_per_model_with_its_name(self):
        root = f"{self.tmp}/c"
        gencache.generate(root, files=4, size=0, models=3, ranks=2)
        configs = sorted(rel for rel in walk_files(root)
                         if rel.endswith("config.json"))
        self.assertEqual(len(configs), 3)
        for index, rel in enumerate(configs):
            self.assertRegex(rel, rf"^org_model-{index}_[0-9a-f]{{12}}"
                             r"/config\.json$")
            with open(os.path.join(root, rel), encoding="utf-8") as file:
                self.assertEqual(json.load(file)["model_name"],
                                 f"org/model-{index}")

    def test_block_relpath_helper(self):
        self.assertEqual(
            gencache.block_relpath("m_0123456789ab_r1", "0123456789abcdef",
                                   "current", 3, 2),
            "m_0123456789ab_r1/012/34_g2/0123456789abcdef.bin")
        self.assertEqual(
            gencache.block_relpath("m/p/tp_1/rank_0/auto",
                                   "0123456789abcdef", "deep", 4, 0),
            "m/p/tp_1/rank_0/auto/0123/45/0123456789abcdef.bin")
        with self.assertRaises(ValueError):
            gencache.block_relpath("m", "0123", "current", 3, 0)

    def test_no_temp_files_but_the_requested_orphans(self):
        for orphans in (0, 5):
            with self.subTest(orphans=orphans):
                root = f"{self.tmp}/o{orphans}"
                records = gencache.generate(root, files=30, size=10,
                                            orphan_temps=orphans)
                temps = {rel for rel in walk_files(root)
                         if rel.endswith(".tmp")}
                self.assertEqual(temps, {r["path"] for r in records
                                         if r["kind"] == "temp"})
                self.assertEqual(len(temps), orphans)
                for rel in temps:
                    name = os.path.basename(rel)
                    self.assertRegex(name, rf"^{HEX16}\.bin_\d+\.tmp$")
                    final = os.path.join(root, rel.rsplit("_", 1)[0])
                    self.assertTrue(final.endswith(".bin"))
                    self.assertFalse(os.path.exists(final))

    def test_ages_within_range(self):
        before = time.time()
        records = gencache.generate(f"{self.tmp}/a", files=200, size=0,
                                    orphan_temps=10, age_min_minutes=10,
                                    age_max_minutes=20)
        after = time.time()
        ages = []
        for record in records:
            st = os.stat(os.path.join(self.tmp, "a", record["path"]))
            self.assertEqual(st.st_atime_ns, st.st_mtime_ns)
            self.assertAlmostEqual(st.st_mtime, record["mtime"], places=5)
            if record["kind"] == "config":
                continue
            # Generated at some instant in [before, after].
            self.assertGreaterEqual(after - st.st_mtime, 600 - 1e-3)
            self.assertLessEqual(before - st.st_mtime, 1200 + 1e-3)
            ages.append(before - st.st_mtime)
        # Seeded spread, not one fixed age.
        self.assertGreater(max(ages) - min(ages), 300)

    def test_size_spread_and_suffixes(self):
        records = gencache.generate(f"{self.tmp}/s", files=100,
                                    size_min=100, size_max=5000)
        sizes = [r["size"] for r in records if r["kind"] == "block"]
        self.assertTrue(all(100 <= size <= 5000 for size in sizes))
        self.assertGreater(len(set(sizes)), 50)
        for record in records:
            path = os.path.join(self.tmp, "s", record["path"])
            self.assertEqual(os.path.getsize(path), record["size"])
        self.assertEqual(gencache.parse_size("4096"), 4096)
        self.assertEqual(gencache.parse_size("3K"), 3 << 10)
        self.assertEqual(gencache.parse_size("1M"), 1 << 20)
        self.assertEqual(gencache.parse_size("2G"), 2 << 30)
        self.assertEqual(gencache.parse_size("5MiB"), 5 << 20)
        with self.assertRaises(ValueError):
            gencache.parse_size("1T")

    def test_rejects_bad_options(self):
        bad = [dict(), dict(files=1, fill_percent=50),
               dict(fill_percent=50, sparse=True), dict(files=1, groups=0),
               dict(files=1, bucket_len=5), dict(files=1, layout="flat"),
               dict(files=1, size_min=5), dict(files=1, age_min_minutes=9,
                                               age_max_minutes=1)]
        for options in bad:
            with self.subTest(**options), self.assertRaises(ValueError):
                gencache.generate(f"{self.tmp}/x", **options)
        proc = run_gencache(f"{self.tmp}/x", "--files", 1, "--size", "1X")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("not a size", proc.stderr)

    def test_writes_zeros_without_fallocate(self):
        unsupported = OSError(errno.EOPNOTSUPP, "not supported")
        with mock.patch("os.posix_fallocate", side_effect=unsupported) as fa:
            records = gencache.generate(f"{self.tmp}/z", files=3,
                                        size=(1 << 20) + 5)
        self.assertEqual(fa.call_count, 1)  # not retried for each file
        path = os.path.join(self.tmp, "z", records[-1]["path"])
        with open(path, "rb") as file:
            self.assertEqual(file.read(), bytes((1 << 20) + 5))


class GencacheFilesystemTest(unittest.TestCase):
    """gencache against real, small filesystems (needs root)."""

    def setUp(self):
        harness.require_root(self)

    def test_fill_percent_stops_near_target(self):
        with harness.LoopFs(64) as fs:
            proc = run_gencache(f"{fs.path}/cache", "--fill-percent", 80)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            usage = harness.df_usage(fs.path)
            self.assertGreaterEqual(usage, 78)
            self.assertLessEqual(usage, 81)
            self.assertNotIn("ENOSPC", proc.stdout)
            self.assertFalse([p for p in walk_files(fs.path)
                              if p.endswith(".tmp")])

    def test_fill_stops_cleanly_when_inodes_run_out(self):
        with harness.LoopFs(16, inodes=64) as fs:
            proc = run_gencache(f"{fs.path}/cache", "--fill-percent", 90,
                                "--size", "4K")
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn("stopped early: filesystem full (ENOSPC)",
                          proc.stdout)
            self.assertLess(harness.df_usage(fs.path), 90)
            self.assertGreater(harness.inode_usage(fs.path), 95)
            self.assertFalse([p for p in walk_files(fs.path)
                              if p.endswith(".tmp")])

    def test_files_beyond_capacity_is_an_error(self):
        with harness.LoopFs(16) as fs:
            manifest = os.path.join(fs.path, "m.jsonl")
            proc = run_gencache(f"{fs.path}/cache", "--files", 3, "--size",
                                "6M", "--manifest", manifest)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("filesystem full (ENOSPC)", proc.stderr)
            with open(manifest, encoding="utf-8") as lines:
                kinds = [json.loads(line)["kind"] for line in lines]
            self.assertEqual(kinds, ["config", "block", "block"])
            # The failed block's partial temp file is gone.
            self.assertFalse([p for p in walk_files(fs.path)
                              if p.endswith(".tmp")])

    def test_sparse_files_allocate_nothing(self):
        with harness.LoopFs(32) as fs:
            records = gencache.generate(f"{fs.path}/s", files=50, sparse=True,
                                        size=4 << 20)
            dense = gencache.generate(f"{fs.path}/d", files=5, size=1 << 20,
                                      seed=2)
            for record in records[1:]:
                st = os.stat(os.path.join(fs.path, "s", record["path"]))
                self.assertEqual((st.st_size, st.st_blocks), (4 << 20, 0))
            for record in dense[1:]:
                st = os.stat(os.path.join(fs.path, "d", record["path"]))
                self.assertGreaterEqual(st.st_blocks * 512, 1 << 20)
            self.assertLess(harness.df_usage(fs.path), 50)


# -------------------------------------------------------- harness helpers --

class RequireRootTest(unittest.TestCase):
    def test_skips_locally_but_fails_in_ci(self):
        with mock.patch("os.geteuid", return_value=1000):
            with mock.patch.dict(os.environ, {"CI": "true"}):
                with self.assertRaisesRegex(AssertionError, "CI"):
                    harness.require_root(self)
            with mock.patch.dict(os.environ, {"CI": ""}):
                with self.assertRaises(unittest.SkipTest):
                    harness.require_root(self)
        with mock.patch("os.geteuid", return_value=0):
            self.assertIsNone(harness.require_root(self))


class UsageTest(unittest.TestCase):
    def setUp(self):
        harness.require_root(self)

    def test_usage_agrees_with_df(self):
        with harness.LoopFs(16, inodes=128) as fs:
            gencache.generate(fs.path, files=5, size=1 << 20)
            df = subprocess.run(["df", "--output=pcent,ipcent", fs.path],
                                capture_output=True, text=True, check=True)
            pcent, ipcent = df.stdout.splitlines()[1].split()
            # df rounds percentages up to whole numbers.
            self.assertEqual(math.ceil(harness.df_usage(fs.path)),
                             int(pcent.rstrip("%")))
            self.assertEqual(math.ceil(harness.inode_usage(fs.path)),
                             int(ipcent.rstrip("%")))
            self.assertGreater(harness.df_usage(fs.path), 30)


class PollingTest(TempDirTest):
    def test_wait_until(self):
        self.assertEqual(harness.wait_until(lambda: 42, timeout=1), 42)
        started = time.monotonic()
        with self.assertRaisesRegex(AssertionError, "never true"):
            harness.wait_until(lambda: False, timeout=0.2,
                               message="never true")
        self.assertLess(time.monotonic() - started, 2)

    def test_backdate(self):
        path = os.path.join(self.tmp, "f")
        open(path, "w").close()
        mtime = os.stat(path).st_mtime_ns
        harness.backdate(path, 3600, mtime=False)
        st = os.stat(path)
        self.assertEqual(st.st_mtime_ns, mtime)
        self.assertAlmostEqual(time.time() - st.st_atime, 3600, delta=5)
        harness.backdate(path, 60)
        st = os.stat(path)
        self.assertEqual(st.st_atime_ns, st.st_mtime_ns)
        self.assertAlmostEqual(time.time() - st.st_mtime, 60, delta=5)

    def test_reader_counts_reads_and_missing_files(self):
        kept, removed = (os.path.join(self.tmp, n) for n in ("a", "b"))
        for path in (kept, removed):
            with open(path, "wb") as out:
                out.write(os.urandom(3 << 20))
        with harness.Reader([kept, removed], period=0.01) as reader:
            harness.wait_until(lambda: reader.passes >= 2, timeout=5)
            os.unlink(removed)
            harness.wait_until(lambda: reader.missing, timeout=5)
        self.assertEqual(reader.missing, {removed})
        self.assertGreaterEqual(reader.reads[kept], 2)
        self.assertGreaterEqual(reader.reads[removed], 2)
        self.assertGreaterEqual(reader.not_found[removed], 1)
        self.assertEqual(sum(reader.failures.values()), 0)


class DaemonTest(unittest.TestCase):
    """Daemon, with /bin/sh standing in for the real binary."""

    GRACEFUL = ("trap 'echo bye; exit 0' TERM; echo ready; "
                "while :; do sleep 0.05; done")
    STUBBORN = "trap '' TERM; echo ready; while :; do sleep 0.05; done"

    def shell(self, script: str, **kwargs) -> harness.Daemon:
        return harness.Daemon(["-c", script], binary="/bin/sh", **kwargs)

    def test_logs_and_stops_gracefully(self):
        with self.shell(self.GRACEFUL + "", env={"GREETING": "hi"}) as d:
            self.assertIsInstance(d.pid, int)
            match = d.wait_for_log(r"^ready$", timeout=5)
            self.assertTrue(d.alive())
            code, seconds = d.stop()
            self.assertEqual(code, 0)
            self.assertLess(seconds, 5)
            self.assertFalse(d.alive())
            self.assertEqual(d.log(), "ready\nbye\n")
            self.assertEqual(d.wait_for_log("bye", 1, pos=match.end())[0],
                             "bye")

    def test_env_is_added_and_removed(self):
        os.environ["PVC_HARNESS_DROP"] = "x"
        self.addCleanup(os.environ.pop, "PVC_HARNESS_DROP", None)
        script = 'echo "[$GREETING][${PVC_HARNESS_DROP-unset}]"'
        with self.shell(script, env={"GREETING": "hi",
                                     "PVC_HARNESS_DROP": None}) as d:
            self.assertEqual(d.wait(), 0)
            self.assertEqual(d.log(), "[hi][unset]\n")

    def test_wait_for_log_fails_with_log_tail(self):
        with self.shell("echo started; exit 3") as d:
            with self.assertRaisesRegex(AssertionError,
                                        r"(?s)exited with 3.*started"):
                d.wait_for_log("never printed", timeout=5)
        with self.shell(self.GRACEFUL) as d:
            with self.assertRaisesRegex(AssertionError, "timed out"):
                d.wait_for_log("never printed", timeout=0.2)

    def test_stop_kills_a_daemon_that_ignores_the_signal(self):
        with self.shell(self.STUBBORN) as d:
            d.wait_for_log("ready", timeout=5)
            with self.assertRaisesRegex(AssertionError, "did not exit"):
                d.stop(timeout=0.3)
            self.assertFalse(d.alive())

    def test_exception_prints_log_tail_and_kills(self):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            with self.assertRaises(ValueError):
                with self.shell(self.STUBBORN) as d:
                    d.wait_for_log("ready", timeout=5)
                    raise ValueError
        self.assertFalse(d.alive())
        self.assertIn("ready", stderr.getvalue())
        self.assertIn(d.log_path, stderr.getvalue())
        os.unlink(d.log_path)
        os.rmdir(os.path.dirname(d.log_path))

    def test_find_binary(self):
        with mock.patch.dict(os.environ, {"PVC_EVICTOR_BIN": "/no/such"}):
            with self.assertRaisesRegex(FileNotFoundError, "PVC_EVICTOR_BIN"):
                harness.find_binary()
        with mock.patch.dict(os.environ, {"PVC_EVICTOR_BIN": "/bin/true"}):
            self.assertEqual(harness.find_binary(), "/bin/true")


if __name__ == "__main__":
    unittest.main()
