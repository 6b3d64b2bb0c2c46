"""Integration tests of the real pvc-evictor binary in crawl mode.

Each test mounts its own small filesystem (ext4 on a loop device, or a
tmpfs), builds a cache on it with gencache or the helpers in
evictor_testlib, runs build/pvc-evictor (or $PVC_EVICTOR_BIN) against it
and checks what the daemon did to the files and what it logged. Time is
never slept away: files are backdated and the tests wait on log lines or
conditions with bounded timeouts. Needs root.

Run: /usr/bin/python3 tests/integration/test_crawl_mode.py
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
import unittest

import harness
from harness import gencache
from evictor_testlib import (CACHE_DIR, MIB, Daemon, EvictorTestCase,
                             base_args, clean_env, count, episodes_deleted,
                             listing, until)


class EpisodeTest(EvictorTestCase):
    def test_episode_deletes_oldest_cold_blocks_down_to_target(self):
        """~90% full: delete oldest-first to 70%, sparing hot blocks."""
        with harness.LoopFs(256, options="strictatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            old = [r for r in gencache.generate(
                root, fill_percent=86, seed=7, size=MIB,
                age_min_minutes=120, age_max_minutes=600)
                if r["kind"] == "block"]
            recent = [r for r in gencache.generate(
                root, files=10, seed=8, size=MIB, age_min_minutes=1,
                age_max_minutes=1) if r["kind"] == "block"]
            self.assertFalse({r["path"] for r in old}
                             & {r["path"] for r in recent})
            start_usage = harness.df_usage(fs.path)
            self.assertGreater(start_usage, 87)
            self.assertLess(start_usage, 93)

            def full(record):
                return os.path.join(root, record["path"])

            # The five OLDEST blocks are read by a client: with strictatime
            # their atime becomes fresh, so they are hot despite their
            # mtime. An evictor that looks at mtime only deletes them first.
            old.sort(key=lambda r: r["mtime"])
            read = old[:5]
            unread = old[5:]
            reader = harness.Reader([full(r) for r in read], period=0.05)
            with reader:
                until(lambda: all(reader.reads[full(r)] >= 1 for r in read),
                      10, "reader read every block once")
                with self.daemon(fs.path) as d:
                    d.wait_for_log(r"DELETION_START:", 15)
                    end = self.wait_episode_end(d, 30)
                    d.wait_for_log(r"DELETION_END:", 5)
                    usage = harness.df_usage(fs.path)
                    log = d.log()
                    code, _ = d.stop()
                    self.assertEqual(code, 0, self.ctx(d))

            self.assertTrue(69.0 <= usage <= 71.0,
                            self.ctx(d, f"final usage {usage:.2f}%"))
            self.assertFalse(reader.missing, self.ctx(
                d, f"reader saw ENOENT for {sorted(reader.missing)}"))
            self.assertFalse(reader.errors, list(reader.errors))
            gone_recent = [r["path"] for r in recent
                           if not os.path.exists(full(r))]
            self.assertEqual(gone_recent, [], self.ctx(
                d, "recent (hot) blocks were deleted"))
            gone_read = [r["path"] for r in read
                         if not os.path.exists(full(r))]
            self.assertEqual(gone_read, [], self.ctx(
                d, "blocks in use by the reader were deleted"))

            deleted = [r for r in unread if not os.path.exists(full(r))]
            kept = [r for r in unread if os.path.exists(full(r))]
            self.assertTrue(deleted, self.ctx(d, "nothing was deleted"))
            self.assertTrue(kept, self.ctx(d, "every old block was deleted"))
            newest_deleted = max(r["mtime"] for r in deleted)
            oldest_kept = min(r["mtime"] for r in kept)
            out_of_order = [r["path"] for r in deleted
                            if r["mtime"] > oldest_kept]
            self.assertLess(newest_deleted, oldest_kept, self.ctx(
                d, f"not oldest first: {len(out_of_order)} deleted blocks "
                f"are younger than the oldest kept one: {out_of_order[:5]}"))

            self.assertEqual(episodes_deleted(log), [len(deleted)],
                             self.ctx(d, f"{len(deleted)} blocks are gone "
                                      f"({end[0]})"))
            self.assertIn(",statvfs", log)


class SignalTest(EvictorTestCase):
    def test_sigterm_when_idle_exits_zero_quickly(self):
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=20, size=64 << 10)
            with self.daemon(fs.path) as d:
                d.wait_for_log(r"crawl done: 20 files", 10)
                code, seconds = d.stop(signal.SIGTERM, timeout=5)
                self.assertEqual(code, 0, self.ctx(d))
                self.assertLess(seconds, 2.0, self.ctx(d))
                self.assertIn("received SIGTERM", d.log())

    def test_sigterm_while_crawling_exits_zero_quickly(self):
        """SIGTERM lands in the first crawl of ~200k (sparse) files."""
        with harness.Tmpfs(64) as fs:
            rank = os.path.join(fs.path, CACHE_DIR, "llama_0123456789ab_r0")
            files = 0
            for bucket in range(4096):
                leaf = os.path.join(rank, f"{bucket:03x}", "00_g0")
                os.makedirs(leaf)
                for k in range(49):
                    fd = os.open(os.path.join(
                        leaf, f"{bucket:03x}00{k:011x}.bin"),
                        os.O_WRONLY | os.O_CREAT, 0o644)
                    os.ftruncate(fd, MIB)  # sparse: no space used
                    os.close(fd)
                    files += 1
            self.assertGreater(files, 200_000)
            with self.daemon(fs.path) as d:
                # The crawl starts right after the "mode:" line; poll the
                # log tightly so the signal lands while it runs.
                deadline = time.monotonic() + 10
                while "mode: crawl" not in d.log():
                    self.assertTrue(d.alive(), self.ctx(d, "daemon died"))
                    self.assertLess(time.monotonic(), deadline, self.ctx(d))
                    time.sleep(0.002)
                crawled_before = "crawl done" in d.log()
                code, seconds = d.stop(signal.SIGTERM, timeout=5)
                self.assertFalse(crawled_before, self.ctx(
                    d, "the crawl ended before the signal was sent; the "
                    "test did not test a signal during a crawl"))
                self.assertEqual(code, 0, self.ctx(d))
                self.assertLess(seconds, 2.0, self.ctx(
                    d, f"took {seconds:.2f} s to exit"))
                self.assertNotIn("crawl done", d.log(), self.ctx(
                    d, "the crawl finished instead of stopping"))


class IdleTest(EvictorTestCase):
    def test_idle_daemon_crawls_once_and_deletes_nothing(self):
        with harness.Tmpfs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, files=30, size=256 << 10)
            before = listing(fs.path)
            with self.daemon(fs.path) as d:
                d.wait_for_log(r"crawl done: 30 files", 10)
                started = time.monotonic()
                # Watching that nothing happens takes the time it takes.
                while time.monotonic() - started < 3:
                    self.assertTrue(d.alive(), self.ctx(d))
                    time.sleep(0.1)
                log = d.log()
                self.assertEqual(count(log, r"crawl done"), 1, self.ctx(d))
                self.assertEqual(count(log, r"DELETION_START"), 0,
                                 self.ctx(d))
                self.assertEqual(count(log, r"CACHE_PERCENT_LOG:"), 1,
                                 self.ctx(d, "idle usage lines should come "
                                          "once per 60 s"))
                code, _ = d.stop()
                self.assertEqual(code, 0)
            self.assertEqual(listing(fs.path), before)


class ConfigTest(EvictorTestCase):
    """Bad settings stop the daemon before it does anything."""

    def run_binary(self, mount, *args, env=None, timeout=5):
        full_env = dict(os.environ)
        for name, value in clean_env(env).items():
            if value is None:
                full_env.pop(name, None)
            else:
                full_env[name] = value
        started = time.monotonic()
        proc = subprocess.run(
            [harness.find_binary(), *base_args(mount, *args)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=full_env, timeout=timeout)
        return proc, time.monotonic() - started

    def test_invalid_settings_exit_before_doing_anything(self):
        cases = [
            # (flags, env, words the stderr message must contain)
            (["--crawlers", "3"], {},
             ["--crawlers", "NUM_CRAWLER_PROCESSES", '"3"']),
            (["--cleanup-threshold", "80", "--target-threshold", "80"], {},
             ["--target-threshold", "TARGET_THRESHOLD", "80",
              "--cleanup-threshold"]),
            (["--target-threshold", "90"], {},
             ["--target-threshold", "TARGET_THRESHOLD", "90"]),
            (["--cleanup-threshold", "150"], {},
             ["--cleanup-threshold", "CLEANUP_THRESHOLD", '"150"']),
            (["--cleanup-threshold", "abc"], {},
             ["--cleanup-threshold", "CLEANUP_THRESHOLD", '"abc"']),
            (["--hex-bucket-len", "5"], {},
             ["--hex-bucket-len", "HEX_BUCKET_LEN", '"5"']),
            (["--no-such-flag", "1"], {}, ["--no-such-flag"]),
            ([], {"NUM_CRAWLER_PROCESSES": "3"},
             ["--crawlers", "NUM_CRAWLER_PROCESSES", '"3"']),
            ([], {"CLEANUP_THRESHOLD": "abc"},
             ["--cleanup-threshold", "CLEANUP_THRESHOLD", '"abc"']),
            ([], {"CLEANUP_THRESHOLD": "150"},
             ["--cleanup-threshold", "CLEANUP_THRESHOLD", '"150"']),
            ([], {"TARGET_THRESHOLD": "85"},
             ["--target-threshold", "TARGET_THRESHOLD", "85"]),
            ([], {"HEX_BUCKET_LEN": "5"},
             ["--hex-bucket-len", "HEX_BUCKET_LEN", '"5"']),
            ([], {"FILE_QUEUE_MAXSIZE": "abc"},
             ["FILE_QUEUE_MAXSIZE", '"abc"']),
        ]
        with harness.Tmpfs(8) as fs:
            for flags, env, words in cases:
                with self.subTest(flags=flags, env=env):
                    proc, seconds = self.run_binary(fs.path, *flags, env=env)
                    detail = (f"exit {proc.returncode} after {seconds:.2f} s"
                              f"\nstdout: {proc.stdout!r}\nstderr: "
                              f"{proc.stderr!r}")
                    self.assertNotEqual(proc.returncode, 0, detail)
                    self.assertLess(seconds, 2, detail)
                    for word in words:
                        self.assertIn(word, proc.stderr, detail)
                    # Nothing started: no start-up line, nothing created.
                    self.assertNotIn("starting", proc.stdout, detail)
                    self.assertEqual(os.listdir(fs.path), [], detail)
            # Per-setting errors follow the documented shape.
            proc, _ = self.run_binary(fs.path, "--crawlers", "3")
            self.assertEqual(proc.returncode, 2, proc.stderr)
            self.assertRegex(
                proc.stderr, r'^pvc-evictor: invalid setting --crawlers '
                r'\(NUM_CRAWLER_PROCESSES\) = "3": expected ')

    def test_reference_queue_settings_are_accepted_and_ignored(self):
        with harness.Tmpfs(8) as fs:
            os.mkdir(os.path.join(fs.path, CACHE_DIR))
            env = {"FILE_QUEUE_MAXSIZE": "10000",
                   "FILE_QUEUE_MIN_SIZE": "1000"}
            with self.daemon(fs.path, env=env) as d:
                d.wait_for_log(r"crawl done", 10)
                log = d.log()
                for name in env:
                    self.assertRegex(log, rf"{name}\b.*ignored", self.ctx(d))
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))

    def test_flag_wins_over_env(self):
        with harness.Tmpfs(8) as fs:
            os.mkdir(os.path.join(fs.path, CACHE_DIR))
            env = {"CLEANUP_THRESHOLD": "50", "TARGET_THRESHOLD": "60"}
            with self.daemon(fs.path, "--cleanup-threshold", "85",
                             env=env) as d:
                line = d.wait_for_log(r"starting: .*$", 10)[0]
                # The flag beats its variable; the other variable applies.
                self.assertIn(" cleanup=85% ", line, self.ctx(d))
                self.assertIn(" target=60% ", line, self.ctx(d))
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))


class MountTest(EvictorTestCase):
    def test_missing_mount_path_fails_after_mount_wait(self):
        with tempfile.TemporaryDirectory(prefix="pvc-nomount-") as tmp:
            missing = os.path.join(tmp, "not-mounted")
            with Daemon(base_args(missing, "--mount-wait", "0.5"),
                        env=clean_env()) as d:
                started = time.monotonic()
                code = d.wait(timeout=5)
                seconds = time.monotonic() - started
                self.assertNotEqual(code, 0, self.ctx(d))
                self.assertLess(seconds, 4, self.ctx(d))
                errors = [line for line in d.log().splitlines()
                          if re.search(r"\berror\b", line)]
                self.assertTrue(any(missing in line for line in errors),
                                self.ctx(d, "no error line names the path"))
            self.assertFalse(os.path.exists(missing))


class DryRunTest(EvictorTestCase):
    def test_dry_run_deletes_nothing_but_accounts(self):
        with harness.LoopFs(128) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            gencache.generate(root, fill_percent=90, seed=3)
            self.assertGreater(harness.df_usage(fs.path), 86)
            before = listing(fs.path)
            with self.daemon(fs.path, "--dry-run") as d:
                d.wait_for_log(r"DELETION_START:", 10)
                end = self.wait_episode_end(d, 30)
                self.assertIn("would have deleted", end[0], self.ctx(d))
                d.wait_for_log(r"DELETION_END:", 5)
                log = d.log()
                self.assertRegex(log, r"would delete ", self.ctx(d))
                self.assertEqual(count(log, r"would delete "),
                                 int(re.search(r"would have deleted (\d+)",
                                               end[0])[1]), self.ctx(d))
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
            after = listing(fs.path)
            # The daemon's log file is not on this volume; only atime of
            # directories may move (listing() does not record it).
            self.assertEqual(sorted(set(before) ^ set(after)), [])
            self.assertEqual(after, before)
            self.assertGreater(harness.df_usage(fs.path), 86)


class BudgetTest(EvictorTestCase):
    def test_max_cache_bytes_budget(self):
        """Usage is the cache's own bytes over --max-cache-bytes."""
        with harness.Tmpfs(512) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            records = gencache.generate(root, files=40, size=MIB, seed=5)
            blocks = [os.path.join(root, r["path"]) for r in records
                      if r["kind"] == "block"]
            volume_usage = harness.df_usage(fs.path)
            self.assertLess(volume_usage, 15)  # statvfs alone: no episode
            with self.daemon(fs.path, "--max-cache-bytes", "40Mi",
                             "--cleanup-threshold", "85",
                             "--target-threshold", "70") as d:
                d.wait_for_log(r"DELETION_START:", 10)
                self.wait_episode_end(d, 30)
                log = d.log()
                code, _ = d.stop()
                self.assertEqual(code, 0, self.ctx(d))
            self.assertRegex(log, r"CACHE_PERCENT_LOG:[\d.]+,[\d.]+,budget")
            left = sum(os.stat(p).st_blocks * 512 for p in blocks
                       if os.path.exists(p))
            target = 0.70 * 40 * MIB
            self.assertLessEqual(abs(left - target), MIB, self.ctx(
                d, f"cache holds {left / MIB:.2f} MiB, expected about "
                f"{target / MIB:.2f} MiB"))
            self.assertEqual(episodes_deleted(log),
                             [sum(not os.path.exists(p) for p in blocks)])


if __name__ == "__main__":
    unittest.main()
