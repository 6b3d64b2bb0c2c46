"""Integration tests of the real pvc-evictor binary in watch mode: fanotify
keeps each file's last use from open/read/close events, whoever reads it
and through whichever mount, so files in use survive even where atime
says nothing (noatime, relatime).

R is the cache root (mount/kv), M = R/llama_0123456789ab_r0; "old" means
atime and mtime hours back. Usage is pushed over the cleanup threshold
(85 %) with a non-cache file, filler.dat, at the top of the mount. Tests
never sleep to make time pass: they backdate files and wait on log lines,
the daemon's endpoint (--metrics-address 127.0.0.1:0) or conditions with
bounded timeouts. A test that fails here because the daemon misbehaves is
kept failing on purpose. Needs root.

Run: /usr/bin/python3 tests/integration/test_watch_mode.py
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import re
import signal
import tempfile
import time
import unittest

import harness
from evictor_testlib import (CACHE_DIR, HOUR, KIB, MIB, Block, Daemon,
                             base_args, block_path, clean_env, count,
                             fill_blocks, fill_to, make_model, new_hash,
                             until, write_block)
from watch_testlib import (CAP_BITS, CAP_SYS_ADMIN, CRAWL_DONE_RE,
                           FALLBACK_RE, KEPT_CAPS, Endpoint, WatchTestCase,
                           atimes, bind_mount, bits, capability_sets,
                           fanotify_queue_limit, find_series,
                           overlay_on_tmpfs, run_in_other_mount_ns,
                           series_labels, set_times)

SETPRIV = "/usr/bin/setpriv"
NO_SYS_ADMIN = ["--inh-caps=-sys_admin", "--bounding-set=-sys_admin"]
OVERFLOW_RE = r"overflowed"
RESUMED_RE = r"rescan after lost events done; deletion resumes"


def exists(path: str) -> bool:
    return os.path.lexists(path)


def rel(root: str, paths) -> list[str]:
    return [os.path.relpath(p, root) for p in paths]


class OtherMountsTest(WatchTestCase):
    """Reads through another mount of the volume, and from another mount
    namespace, are seen: a filesystem mark covers the superblock."""

    def test_reads_from_bind_mount_and_other_namespace_protect_blocks(self):
        with harness.LoopFs(128, options="relatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_blocks(model, 78, seed=21)
            by_age = sorted(blocks, key=lambda b: b.t_ns)
            # The oldest blocks: without the events they would go first.
            via_bind, via_ns = by_age[:3], by_age[3:6]
            protected = via_bind + via_ns
            others = by_age[6:]

            with bind_mount(fs.path) as bind, \
                    self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                for b in via_bind:
                    with open(os.path.join(bind, os.path.relpath(
                            b.path, fs.path)), "rb") as block:
                        block.read()
                run_in_other_mount_ns(fs.path, rel(fs.path, [
                    b.path for b in via_ns]))
                for b in protected:
                    # relatime: the first read after the backdate moved
                    # atime (else this test would prove nothing about it);
                    # put it back so that only the events protect them.
                    self.assertGreater(os.stat(b.path).st_atime_ns, b.t_ns,
                                       f"relatime did not update atime of "
                                       f"{b.path} on read")
                    set_times(b.path, b.t_ns, b.t_ns)
                entries = self.wait_hot_by_event(ep, root, [
                    b.path for b in protected])
                fill_to(fs.path, 90)
                self.assertGreater(harness.df_usage(fs.path), 88)
                self.wait_episode_end(d, 30)
                hot = ep.files("hotset")
                skipped_hot = ep.metric("pvc_evictor_skipped_files_total",
                                        reason="hot")
                self.assertEqual(d.stop()[0], 0, self.ctx(d))

            self.assertEqual([b.path for b in protected if not exists(
                b.path)], [], self.ctx(
                    d, "blocks read through the bind mount or another "
                    f"mount namespace were deleted; hotset had {entries}"))
            for path in rel(root, [b.path for b in protected]):
                self.assertIn(path, hot, self.ctx(d, f"{path} not hot"))
                self.assertEqual(hot[path]["source"], "event", self.ctx(
                    d, f"{path}: {hot[path]}"))
            self.assertEqual(skipped_hot, 0, self.ctx(
                d, "victims were chosen that the pre-unlink check found "
                "hot: the index did not know about a use"))
            self.assert_oldest_first(d, others)
            self.assert_at_target(fs.path, d, low=69, high=71)


class RenameTest(WatchTestCase):
    """The writer's temp-then-rename ends as one block in the index, and
    deletions by others leave it, without a crawl. Blocks are written in
    four ways: each in a new bucket (makedirs, temp file, rename), into
    existing buckets, into new buckets made beforehand, and in new buckets
    while the daemon is busy (paused with SIGSTOP, so that the watcher
    reads a makedirs' two mkdirs and the block's events in one buffer, as
    it does whenever it falls behind)."""

    def test_temp_then_rename_and_unlink_keep_the_index_exact(self):
        with harness.LoopFs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            seen: set = set()
            initial = fill_blocks(model, 30, size=256 * KIB, seed=22,
                                  seen=seen)
            self.assertGreater(len(initial), 40)
            rng = random.Random("watch-rename")

            def new_bucket_hash():
                while True:
                    digest = new_hash(rng, seen)
                    if not exists(os.path.join(model, digest[:3])):
                        return digest

            def write(digest):
                """The writer's way: makedirs, temp file, rename."""
                path = block_path(model, digest)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                tmp = f"{path}_{rng.randrange(10 ** 6)}.tmp"
                with open(tmp, "wb") as out:
                    out.write(os.urandom(16 * KIB))
                os.rename(tmp, path)
                return path

            with self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                n0 = ep.metric("pvc_evictor_index_files")
                self.assertEqual(n0, len(initial), self.ctx(d))
                groups: dict[str, list[str]] = {}
                # One block at a time, each in a new <3hex>/<2hex>_g0.
                groups["new buckets, one block each"] = [
                    write(new_bucket_hash()) for _ in range(20)]
                # Into second-level buckets that already exist.
                existing = []
                for b in initial[:10]:
                    bucket = os.path.dirname(b.path)
                    digest = (os.path.basename(os.path.dirname(bucket)) +
                              os.path.basename(bucket)[:2] +
                              f"{rng.getrandbits(44):011x}")
                    seen.add(digest)
                    existing.append(write(digest))
                groups["existing buckets"] = existing
                # A writer that makes its bucket directories first, then
                # fills them.
                digests = [new_bucket_hash() for _ in range(10)]
                for digest in digests:
                    os.makedirs(os.path.dirname(block_path(model, digest)))
                groups["new buckets made before their blocks"] = [
                    write(digest) for digest in digests]
                # While the daemon is busy (paused here): the watcher then
                # reads each makedirs' two mkdirs and the files in one go.
                os.kill(d.pid, signal.SIGSTOP)
                try:
                    groups["new buckets, written while the daemon was "
                           "busy"] = [write(new_bucket_hash())
                                      for _ in range(10)]
                finally:
                    os.kill(d.pid, signal.SIGCONT)
                new = [p for paths in groups.values() for p in paths]
                want = set(rel(root, new))

                def settled():
                    listed = ep.files("coldest")
                    n = ep.metric("pvc_evictor_index_files")
                    if want <= set(listed) and n == n0 + len(new):
                        return listed
                    return None
                try:
                    listed = harness.wait_until(settled, 10, 0.1)
                except AssertionError:
                    listed = ep.files("coldest")
                    missing = {
                        what: f"{len(set(rel(root, paths)) - set(listed))}"
                              f" of {len(paths)} missing"
                        for what, paths in groups.items()}
                    raise AssertionError(self.ctx(d, (
                        f"index never held the {len(new)} renamed blocks: "
                        f"{missing}; pvc_evictor_index_files "
                        f"{ep.metric('pvc_evictor_index_files')} (want "
                        f"{n0 + len(new)}); e.g. missing "
                        f"{sorted(want - set(listed))[:3]}; temp paths "
                        f"{[p for p in listed if '.tmp' in p][:5]}"))) \
                        from None
                self.assertEqual([p for p in listed if ".tmp" in p], [],
                                 self.ctx(d, "temp files left in the index"))
                self.assertEqual(len(listed), n0 + len(new), self.ctx(d))
                hot = ep.files("hotset")
                self.assertEqual(sorted(want - set(hot)), [], self.ctx(
                    d, "new blocks missing from /debug/hotset"))
                self.assertEqual([p for p in hot if ".tmp" in p], [])

                gone = new[::3] + [b.path for b in initial[-5:]]
                for path in gone:
                    os.unlink(path)
                left = n0 + len(new) - len(gone)
                gone_rel = set(rel(root, gone))

                def dropped():
                    listed = ep.files("coldest")
                    n = ep.metric("pvc_evictor_index_files")
                    return n == left and not gone_rel & set(listed)
                until(dropped, 10, f"index dropping the {len(gone)} "
                      f"unlinked blocks (want {left} files, has "
                      f"{ep.metric('pvc_evictor_index_files')})", d)
                self.assertEqual(count(d.log(), CRAWL_DONE_RE), 1, self.ctx(
                    d, "a crawl ran; the events alone should have done it"))
                self.assertEqual(d.stop()[0], 0, self.ctx(d))


class HotReaderTest(WatchTestCase):
    """A block read every 100 ms whose atime and mtime are 2 h old
    survives an episode that deletes colder-looking blocks."""

    def hot_reader_case(self, options: str):
        with harness.LoopFs(128, options=options) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_blocks(model, 78, seed=23)
            by_age = sorted(blocks, key=lambda b: b.t_ns)
            x = by_age[0]  # the oldest by atime and mtime
            with self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                with harness.Reader([x.path], period=0.1) as reader:
                    until(lambda: reader.reads[x.path] >= 2, 5, "reads", d)
                    entries = self.wait_hot_by_event(ep, root, [x.path])
                    if "noatime" in options:
                        self.assertEqual(os.stat(x.path).st_atime_ns, x.t_ns,
                                         "noatime mount updated atime")
                    else:
                        # relatime moves atime on the first read after a
                        # change of ctime, and backdating changes ctime,
                        # so atime cannot be kept old under a reader. What
                        # shows the events protect X is that X is never
                        # chosen as a victim (skipped "hot" stays 0) and
                        # the index's record is an event.
                        set_times(x.path, x.t_ns, x.t_ns)
                    fill_to(fs.path, 90)
                    self.wait_episode_end(d, 30)
                    hot = ep.files("hotset")
                    skipped_hot = ep.metric(
                        "pvc_evictor_skipped_files_total", reason="hot")
                    # And it is still there to read after the episode.
                    reads = reader.reads[x.path]
                    until(lambda: reader.reads[x.path] >= reads + 2, 5,
                          "two more reads after the episode", d)
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assertTrue(exists(x.path), self.ctx(
                d, f"the block read every 100 ms was deleted ({entries})"))
            self.assertEqual(reader.missing, set(), self.ctx(d))
            self.assertEqual(list(reader.errors), [], self.ctx(d))
            rel_x = os.path.relpath(x.path, root)
            self.assertIn(rel_x, hot, self.ctx(d))
            self.assertEqual(hot[rel_x]["source"], "event", self.ctx(d))
            self.assertEqual(skipped_hot, 0, self.ctx(
                d, "a block was chosen as a victim and then found hot on "
                "disk: the index had missed a use"))
            self.assert_oldest_first(d, by_age[1:])
            self.assert_at_target(fs.path, d, low=69, high=71)

    def test_noatime(self):
        self.hot_reader_case("noatime")

    def test_relatime(self):
        self.hot_reader_case("relatime")


class OpenFileTest(WatchTestCase):
    """Files open or mapped right now are never deleted, even when they
    are the oldest (the deleter's write lease is refused), and a block
    read every 5 s survives although it is the oldest by mtime (C13)."""

    def test_open_mapped_and_periodically_read_blocks_survive(self):
        with harness.LoopFs(128, options="noatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            rng = random.Random("watch-open")
            seen: set = set()
            special = {}
            for name, age in (("held", 10), ("mapped", 9.5),
                              ("held_after", 9), ("reread", 8.5)):
                path = block_path(model, new_hash(rng, seen))
                write_block(path, MIB, age * HOUR)
                special[name] = path
            blocks = fill_blocks(model, 78, seed=24, seen=seen)

            # Opened before the daemon starts: no event ever says so, the
            # crawl sees the oldest file, only the lease can save it.
            held = open(special["held"], "rb")
            self.addCleanup(held.close)
            held.read(4096)
            harness.backdate(special["held"], 10 * HOUR)
            fd = os.open(special["mapped"], os.O_RDONLY)
            try:
                mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
            self.addCleanup(mapped.close)
            self.assertEqual(mapped[:1], b"\0")
            harness.backdate(special["mapped"], 9.5 * HOUR)

            with self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                # Opened once the daemon watches: the index counts it open.
                held_after = open(special["held_after"], "rb")
                self.addCleanup(held_after.close)
                held_after.read(4096)
                harness.backdate(special["held_after"], 9 * HOUR)
                with harness.Reader([special["reread"]], period=5) as reader:
                    entries = self.wait_hot_by_event(
                        ep, root, [special["held_after"], special["reread"]])
                    rel_after = os.path.relpath(special["held_after"], root)
                    until(lambda: ep.files("hotset").get(
                        rel_after, {}).get("open", 0) >= 1, 5,
                        f"/debug/hotset showing {rel_after} open", d)
                    fill_to(fs.path, 90)
                    self.wait_episode_end(d, 30)
                    skipped_open = ep.metric(
                        "pvc_evictor_skipped_files_total", reason="open")
                    open_files = ep.metric("pvc_evictor_open_files")
                self.assertEqual(d.stop()[0], 0, self.ctx(d))

            kept_out = {name: path for name, path in special.items()
                        if not exists(path)}
            self.assertEqual(kept_out, {}, self.ctx(
                d, f"open, mapped or re-read blocks were deleted; hotset "
                f"entries {entries}"))
            self.assertEqual(reader.missing, set(), self.ctx(d))
            self.assertGreaterEqual(skipped_open, 2, self.ctx(
                d, "the held and the mapped block (the two oldest, unknown "
                "to events) should each have been refused by the lease"))
            self.assertGreaterEqual(open_files, 1, self.ctx(d))
            self.assert_oldest_first(d, blocks)
            self.assert_at_target(fs.path, d, low=69, high=71)


class CapabilitiesTest(WatchTestCase):
    """After start-up no thread holds CAP_SYS_ADMIN, and what is kept is
    what the log says."""

    def test_capabilities_dropped_in_every_thread(self):
        with harness.Tmpfs(32) as fs:
            make_model(os.path.join(fs.path, CACHE_DIR))
            with self.watch_daemon(fs.path) as d:
                self.start_watching(d)
                line = d.wait_for_log(
                    r"capabilities: kept ([a-z_, ]+); dropped", 5)
                sets = capability_sets(d.pid)
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            named = sorted(n.strip() for n in line[1].split(","))
            self.assertEqual(named, sorted(KEPT_CAPS), self.ctx(d, line[0]))
            want = sum(1 << CAP_BITS[n] for n in named)
            self.assertGreaterEqual(len(sets), 3, f"threads: {sets}")
            for tid, caps in sets.items():
                for name in ("CapEff", "CapPrm", "CapBnd", "CapInh",
                             "CapAmb"):
                    self.assertFalse(caps[name] >> CAP_SYS_ADMIN & 1, (
                        f"thread {tid} {name} has CAP_SYS_ADMIN: "
                        f"{caps[name]:#x}"))
                self.assertEqual(caps["CapEff"], want, (
                    f"thread {tid} CapEff {caps['CapEff']:#x} = bits "
                    f"{bits(caps['CapEff'])}, the log says {named} = bits "
                    f"{bits(want)}"))
                self.assertEqual(caps["CapPrm"], want, f"thread {tid}")
                self.assertEqual(caps["CapBnd"] & ~want, 0, (
                    f"thread {tid} CapBnd {caps['CapBnd']:#x} = bits "
                    f"{bits(caps['CapBnd'])}"))


class FallbackTest(WatchTestCase):
    """C9: fanotify unavailable. --mode auto falls back to crawl mode with
    one warning and still meets the target; --mode watch exits 1."""

    def no_sys_admin(self, mount: str, *extra) -> Daemon:
        return Daemon(NO_SYS_ADMIN + ["--", harness.find_binary()] +
                      base_args(mount, "--metrics-address", "127.0.0.1:0",
                                *extra),
                      env=clean_env(), binary=SETPRIV)

    def assert_fallback_meets_target(self, d, mount: str, reason_re: str):
        """The daemon `d` (started, --mode auto) fell back: check the
        warning, the metrics and health, then an episode."""
        ep = Endpoint(d)
        d.wait_for_log(r"mode: crawl \(auto fallback: ", 10)
        d.wait_for_log(CRAWL_DONE_RE, 20)
        fill_to(mount, 90)
        self.wait_episode_end(d, 30)
        samples = ep.metrics()
        health = ep.json("/healthz")
        log = d.log()
        self.assertEqual(d.stop()[0], 0, self.ctx(d))

        warnings = [line for line in log.splitlines()
                    if re.search(FALLBACK_RE, line)]
        self.assertEqual(len(warnings), 1, self.ctx(
            d, "want exactly one fallback warning"))
        self.assertRegex(warnings[0], r"\bwarn", self.ctx(d))
        self.assertRegex(warnings[0], reason_re, self.ctx(d))
        modes = series_labels(samples, "pvc_evictor_mode")
        self.assertEqual(len(modes), 1, modes)
        self.assertEqual(modes[0]["mode"], "crawl", modes)
        self.assertRegex(modes[0]["reason"], reason_re, modes)
        self.assertEqual(health["mode"], "crawl", health)
        self.assertRegex(health["mode_reason"], reason_re, health)
        self.assertNotIn("watcher", health["loops"], health)
        self.assert_at_target(mount, d, low=69, high=71)

    def test_without_cap_sys_admin_auto_falls_back(self):
        with harness.LoopFs(128) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            blocks = fill_blocks(make_model(root), 78, seed=26)
            with self.no_sys_admin(fs.path, "--mode", "auto") as d:
                self.assert_fallback_meets_target(
                    d, fs.path, r"EPERM.*CAP_SYS_ADMIN")
            self.assert_oldest_first(d, blocks)

    def test_without_cap_sys_admin_watch_mode_exits_1(self):
        with harness.LoopFs(32) as fs:
            with self.no_sys_admin(fs.path, "--mode", "watch") as d:
                code = d.wait(10)
                log = d.log()
            self.assertEqual(code, 1, self.ctx(d))
            errors = [line for line in log.splitlines() if re.search(
                r"--mode watch \(EVICTOR_MODE\) cannot be used: ", line)]
            self.assertEqual(len(errors), 1, self.ctx(d))
            self.assertRegex(errors[0], r"\berror", self.ctx(d))
            self.assertRegex(errors[0], r"EPERM.*CAP_SYS_ADMIN", self.ctx(d))
            self.assertNotIn("crawl done", log, self.ctx(d))

    def test_filesystem_refusing_the_mark_auto_falls_back(self):
        # overlayfs here refuses FAN_MARK_FILESYSTEM with file-handle
        # reporting (EOPNOTSUPP); its statvfs is the upper tmpfs's.
        with overlay_on_tmpfs(128) as mount:
            root = os.path.join(mount, CACHE_DIR)
            blocks = fill_blocks(make_model(root), 78, seed=27)
            with self.watch_daemon(mount, mode="auto") as d:
                self.assert_fallback_meets_target(
                    d, mount, r"fanotify.*(EOPNOTSUPP|EXDEV|ENODEV)")
            self.assert_oldest_first(d, blocks)

    def test_filesystem_refusing_the_mark_watch_mode_exits_1(self):
        for fstype, mounted in (("overlay", overlay_on_tmpfs(16)),
                                ("ramfs", ramfs())):
            with self.subTest(fstype), mounted as mount:
                with self.watch_daemon(mount) as d:
                    code = d.wait(10)
                    log = d.log()
                self.assertEqual(code, 1, self.ctx(d))
                self.assertRegex(
                    log, r"--mode watch \(EVICTOR_MODE\) cannot be used: "
                    r"fanotify on .*(EOPNOTSUPP|EXDEV|ENODEV)", self.ctx(d))
                self.assertNotIn("crawl done", log, self.ctx(d))


@contextlib.contextmanager
def ramfs():
    """A ramfs (no file handles, so no fanotify filesystem mark)."""
    with tempfile.TemporaryDirectory(prefix="pvc-ramfs-") as top:
        mount = os.path.join(top, "mnt")
        os.mkdir(mount)
        harness._run(["mount", "-t", "ramfs", "ramfs", mount])
        try:
            yield mount
        finally:
            harness._unmount(mount)


class OverflowTest(WatchTestCase):
    """C8: the kernel's event queue overflows. One warning, a rescan
    before anything is judged cold again, and the files read in the burst
    (whose relatime atime the rescan merges) are not deleted."""

    BURST = 20_000
    # Small next to the default 16384, yet more than the first crawl of
    # this tree (~800 directories, about one event each, from the
    # daemon's own opendir) can fill even if the watcher read nothing.
    QUEUE = 4096

    def make_burst_blocks(self, model: str, seen: set) -> list[str]:
        """BURST 4 KiB blocks, 5 to 6 h old, in 64 x 4 buckets."""
        rng = random.Random("watch-overflow")
        burst = []
        now = time.time_ns()
        payload = b"k" * 4096
        for _ in range(self.BURST):
            while True:
                digest = (f"{rng.randrange(64):03x}{rng.randrange(4):x}0"
                          f"{rng.getrandbits(44):011x}")
                if digest not in seen:
                    seen.add(digest)
                    break
            path = block_path(model, digest)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(payload)
            t = now - int(rng.uniform(5 * HOUR, 6 * HOUR) * 1e9)
            os.utime(path, ns=(t, t))
            burst.append(path)
        return burst

    def test_queue_overflow_rescans_and_keeps_the_burst(self):
        with harness.LoopFs(512, options="relatime", inodes=65536) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            seen: set = set()
            burst = self.make_burst_blocks(model, seen)
            # Younger than the burst's blocks: what the episode may take.
            old = fill_blocks(model, 70, seed=28, seen=seen)
            self.assertGreater(len(old), 150)

            with fanotify_queue_limit(self.QUEUE) as restore:
                with self.watch_daemon(fs.path) as d:
                    d.wait_for_log(
                        rf"kernel queue holds {self.QUEUE} events", 10)
                    restore()  # the group has read it; others need not
                    ep = self.start_watching(d)
                    self.assertEqual(
                        ep.metric("pvc_evictor_event_overflows_total"), 0,
                        self.ctx(d, "the queue overflowed before the "
                                 "burst"))
                    crawls_before = count(d.log(), CRAWL_DONE_RE)
                    # The daemon falls behind (paused), as it would under
                    # load: the burst then overflows the queue for sure.
                    started = time.monotonic()
                    buffer = bytearray(8192)
                    os.kill(d.pid, signal.SIGSTOP)
                    try:
                        for path in burst:
                            with open(path, "rb", buffering=0) as block:
                                block.readinto(buffer)
                    finally:
                        os.kill(d.pid, signal.SIGCONT)
                    burst_s = time.monotonic() - started
                    overflow = d.wait_for_log(OVERFLOW_RE, 10)
                    # Only now: a usage check between SIGCONT and the
                    # watcher reading the overflow would work from the
                    # index as it was before the burst.
                    fill_to(fs.path, 90)
                    d.wait_for_log(RESUMED_RE, 30, overflow.end())
                    self.wait_episode_end(d, 30)
                    samples = ep.metrics()
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))

            def value(name, **labels):
                return find_series(samples, name, **labels)
            note = (f"burst of {self.BURST} reads took {burst_s:.2f} s; "
                    f"events {value('pvc_evictor_events_received_total')}, "
                    f"overflows {value('pvc_evictor_event_overflows_total')}")
            print(f"\nC8: {note}", flush=True)
            warned = [line for line in log.splitlines()
                      if re.search(OVERFLOW_RE, line)]
            self.assertEqual(len(warned), 1, self.ctx(d, note))
            self.assertRegex(warned[0], r"\bwarn", self.ctx(d))
            self.assertGreaterEqual(
                value("pvc_evictor_event_overflows_total"), 1,
                self.ctx(d, note))
            self.assertGreater(count(log, CRAWL_DONE_RE), crawls_before,
                               self.ctx(d, "no rescan after the overflow"))
            self.assertLess(log.index(warned[0]),
                            log.rindex("crawl done"), self.ctx(d))
            lost = [p for p in burst if not exists(p)]
            self.assertEqual(len(lost), 0, self.ctx(
                d, f"{len(lost)} blocks read in the burst were deleted, "
                f"e.g. {lost[:3]}; {note}"))
            self.assertEqual(value("pvc_evictor_skipped_files_total",
                                   reason="hot"), 0, self.ctx(
                d, "victims chosen from a stale index (found hot by the "
                "pre-unlink check): deletion did not wait for the rescan"))
            self.assert_oldest_first(d, old)
            self.assert_at_target(fs.path, d, low=69, high=71)

    def test_own_crawl_overflowing_the_queue_does_not_hold_forever(self):
        """Overflows caused by the daemon's own crawls end in time.

        The crawl opens every directory, and on a filesystem mark with
        FAN_ONDIR each opendir is an event in the same kernel queue. When
        a rescan's own events overflow the queue, the next rescan must not
        be held hostage the same way: deletion has to resume and the
        episode end. Nothing but the daemon touches the volume meanwhile.
        """
        with harness.LoopFs(256, inodes=32768) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            rng = random.Random("watch-own-overflow")
            # 1024 x 4 bucket directories, one 32 KiB block in each.
            blocks = []
            now = time.time_ns()
            for a in range(1024):
                for b in range(4):
                    digest = f"{a:03x}{b:02x}{rng.getrandbits(44):011x}"
                    path = block_path(model, digest)
                    os.makedirs(os.path.dirname(path))
                    with open(path, "wb") as out:
                        out.write(b"b" * (32 * KIB))
                    t = now - int(rng.uniform(2 * HOUR, 4 * HOUR) * 1e9)
                    os.utime(path, ns=(t, t))
                    blocks.append(Block(path, t, 32 * KIB))
            with fanotify_queue_limit(256) as restore:
                with self.watch_daemon(fs.path) as d:
                    d.wait_for_log(r"kernel queue holds 256 events", 10)
                    restore()
                    self.start_watching(d)
                    fill_to(fs.path, 90)
                    d.wait_for_log(r"DELETION_START", 10)
                    try:
                        self.wait_episode_end(d, 30)
                    except AssertionError:
                        log = d.log()
                        firsts = "\n".join(
                            next((line for line in log.splitlines()
                                  if re.search(regex, line)), "")
                            for regex in (OVERFLOW_RE, r"events were lost",
                                          r"deletion waits"))
                        raise AssertionError(self.ctx(d, (
                            f"episode never ended: {count(log, 'crawl done')}"
                            f" crawls, {count(log, RESUMED_RE)} resumes; "
                            "deletion held for lost events that the "
                            "daemon's own crawls caused. First lines:\n"
                            f"{firsts}"))) from None
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assert_oldest_first(d, blocks)
            self.assert_at_target(fs.path, d, low=69, high=71)


class AtimeUnreliableTest(WatchTestCase):
    """C10: atime cannot be trusted, and the daemon must not spoil it."""

    def test_block_read_every_5s_on_noatime_survives(self):
        with harness.LoopFs(128, options="noatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_blocks(model, 78, seed=29)
            by_age = sorted(blocks, key=lambda b: b.t_ns)
            x = by_age[0]
            with self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                with harness.Reader([x.path], period=5) as reader:
                    self.wait_hot_by_event(ep, root, [x.path])
                    fill_to(fs.path, 90)
                    self.wait_episode_end(d, 30)
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assertEqual(os.stat(x.path).st_atime_ns, x.t_ns,
                             "noatime mount updated atime")
            self.assertTrue(exists(x.path), self.ctx(
                d, "the block read every 5 s (2 h old by atime) was "
                "deleted"))
            self.assertEqual(reader.missing, set())
            self.assert_oldest_first(d, by_age[1:])
            self.assert_at_target(fs.path, d, low=69, high=71)

    def test_daemon_crawls_change_no_atime(self):
        # strictatime: any read of a file by the daemon would move atime.
        with harness.LoopFs(64, options="strictatime") as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_blocks(model, 78, size=256 * KIB, seed=30)
            paths = [b.path for b in blocks]
            before = atimes(paths)
            # --rescan-interval 1: in watch mode a rescan every 12 s.
            with self.watch_daemon(fs.path, "--rescan-interval", "1") as d:
                self.start_watching(d)
                fill_to(fs.path, 90)
                end = self.wait_episode_end(d, 30)
                d.wait_for_log(CRAWL_DONE_RE, 20, end.end())
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            kept = [p for p in paths if exists(p)]
            self.assertTrue(kept and len(kept) < len(paths), self.ctx(d))
            after = atimes(kept)
            changed = {p: (before[p], after[p]) for p in kept
                       if after[p] != before[p]}
            self.assertEqual(changed, {}, self.ctx(
                d, f"{len(changed)} of {len(kept)} atimes changed"))
            self.assertGreaterEqual(count(d.log(), CRAWL_DONE_RE), 2)


class SignalTest(WatchTestCase):
    """SIGTERM in watch mode, while events flow: exit 0 within 2 s."""

    def test_sigterm_exits_0_within_2s(self):
        with harness.LoopFs(64) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            blocks = fill_blocks(make_model(root), 50, size=256 * KIB,
                                 seed=31)
            with self.watch_daemon(fs.path) as d:
                ep = self.start_watching(d)
                with harness.Reader([b.path for b in blocks],
                                    period=0) as reader:
                    until(lambda: ep.metric(
                        "pvc_evictor_events_applied_total") > 100, 10,
                        "events applied", d)
                    code, took = d.stop(signal.SIGTERM, timeout=5)
                self.assertEqual(code, 0, self.ctx(d))
                self.assertLess(took, 2.0, self.ctx(d, f"took {took:.2f} s"))
                self.assertIn("stopped", d.log())
                self.assertEqual(reader.missing, set())


if __name__ == "__main__":
    unittest.main()
