"""Hardening tests of the real pvc-evictor binary: hostile trees and faults
(issue 8).

R is the cache root (mount/kv), M = R/llama_0123456789ab_r0 with
R/llama_0123456789ab/config.json beside it; "old" means atime and mtime
hours back; "outside" is a directory that is not below R, on the same
filesystem unless said otherwise. Every test ends by checking that the
real blocks still brought usage to the target.

- Containment: hostile names (newline, invalid UTF-8, control bytes,
  255 bytes), directory symlinks at every level of the layout, a hard
  link to a file outside, a bind mount and a tmpfs inside R, a directory
  swapped for a symlink between crawl and unlink (before any deletion in
  it, and after the deleter has worked in it), R renamed away.
- Faults: EPERM (chattr +i on a file and a directory), EACCES (daemon run
  as an unprivileged user), EROFS (the volume remounted read-only under
  the daemon), statvfs failing (the mount path vanishes and comes back),
  SIGKILL in the middle of an episode and a restart, timestamps in the
  future, R deleted and recreated, wall-clock steps (libfaketime moves the
  daemon's clock alone).

Tests never sleep to make files old: they backdate. Where a test watches
the daemon for a while (to count warnings per poll) it says so. A test
that fails because the daemon misbehaves is kept failing on purpose.
Needs root.

Run: /usr/bin/python3 tests/integration/test_hardening.py [-k name]
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import tempfile
import time
import unittest

import harness
from evictor_testlib import (CACHE_DIR, HOUR, KIB, MIB, MODEL, Daemon,
                             EvictorTestCase, base_args, block_path, chattr,
                             clean_env, count, episodes_deleted, fill_to,
                             make_model, until, write_block)
from hardening_testlib import (FakeClock, bind, cache_percent_times,
                               digest, fill_cold, fspath,
                               malformed_log_lines, run,
                               snapshot, tmpfs_on, unmount_quietly,
                               warnings, write_raw)


def exists(path: str) -> bool:
    return os.path.lexists(path)


def escape_bytes(raw: bytes) -> str:
    """src/common/escape.cpp, for the expected log text."""
    out = []
    for byte in raw:
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif 0x20 <= byte < 0x7f:
            out.append(char)
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


class HardeningTestCase(EvictorTestCase):
    """EvictorTestCase with a volume-and-model fixture."""

    def volume(self, size_mib: int = 128, **kwargs):
        return harness.LoopFs(size_mib, **kwargs)

    def assert_untouched(self, daemon, before: dict, after: dict,
                         what: str) -> None:
        changed = sorted(k for k in set(before) | set(after)
                         if before.get(k) != after.get(k))
        self.assertEqual(changed, [], self.ctx(
            daemon, f"{what} changed: {changed[:10]}"))

    def push_after_crawl(self, daemon, mount: str, percent: float = 90):
        """Wait for the first crawl, then push usage over cleanup with a
        non-cache file: the episode then works from a complete index, so
        that what it deletes first does not depend on crawl timing."""
        daemon.wait_for_log(r"crawl done", 15)
        self.assertNotIn("DELETION_START", daemon.log(), self.ctx(
            daemon, "precondition: usage below cleanup at start"))
        fill_to(mount, percent)

    def assert_undeletable_reported(self, daemon, log: str, mount: str,
                                    blocks: list, undeletable: int,
                                    errname: str) -> None:
        """One warning naming `errname` per file that cannot be deleted,
        every other deletion counted once, and usage at target."""
        failures = warnings(log, "cannot delete")
        self.assertEqual(len(failures), undeletable, self.ctx(
            daemon, "expected one warning per undeletable file"))
        self.assertTrue(all(errname in line for line in failures), failures)
        gone = [b for b in blocks if not exists(b.path)]
        self.assertEqual(sum(episodes_deleted(log)), len(gone),
                         self.ctx(daemon))
        self.assert_at_target(mount, daemon)

    def assert_no_errors(self, daemon, log: str) -> None:
        self.assertNotRegex(log, r"^\S+ (error|critical) ", self.ctx(
            daemon, "an error line in the log"))


# ============================================================ containment ==

class HostileNameTest(HardeningTestCase):
    """Names are bytes: deleted like any other block, escaped in logs."""

    NAMES = [b"new\nline.bin", b"\xff\xfe.bin", b"with some spaces .bin",
             b"tab\there\r.bin", b"esc\x1b[31mred\x1b[0m.bin",
             b"back\\slash\"quote.bin", b"\x01\x7f\x80.bin",
             b"x" * 251 + b".bin"]

    def test_hostile_names_are_deleted_oldest_first_and_escaped(self):
        self.assertEqual(len(self.NAMES[-1]), 255)
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            bucket = os.path.join(model, "abc", "de_g0").encode()
            hostile = {}
            for k, name in enumerate(self.NAMES):
                raw = os.path.join(bucket, name)
                write_raw(fspath(raw), MIB, 10 * HOUR + k * 60)
                hostile[raw] = os.path.relpath(raw, root.encode())
            # A bucket directory with a hostile name too.
            odd_dir = os.path.join(model.encode(), b"abd",
                                   b"e\nf_g0\xff")
            raw = os.path.join(odd_dir, b"abdef00000000001.bin")
            write_raw(fspath(raw), MIB, 10 * HOUR + 3600)
            hostile[raw] = os.path.relpath(raw, root.encode())
            blocks = fill_cold(model, 78, seed=101, avoid=("abc", "abd"))

            with self.daemon(fs.path, "--log-level", "debug") as d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                log = d.log()
                self.assertTrue(d.alive(), self.ctx(d, "daemon died"))
                self.assertEqual(d.stop()[0], 0, self.ctx(d))

            left = [raw for raw in hostile if exists(fspath(raw))]
            self.assertEqual(left, [], self.ctx(
                d, "oldest blocks with hostile names were not deleted"))
            for raw, rel in hostile.items():
                self.assertIn(f"deleted {escape_bytes(rel)} (", log,
                              self.ctx(d, f"no escaped deletion line for "
                                       f"{rel!r}"))
            self.assertEqual(malformed_log_lines(log), [], self.ctx(
                d, "log lines broken by a raw name"))
            self.assertNotIn("\x1b", log, "a raw escape byte in the log")
            self.assertNotIn("\r", log, "a raw carriage return in the log")
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)),
                             len(gone) + len(hostile), self.ctx(d))
            self.assert_at_target(fs.path, d)
            self.assert_no_errors(d, log)


class HostileTreeTest(HardeningTestCase):
    def test_block_whose_path_is_longer_than_path_max_is_deleted(self):
        """A block 5,000 bytes of path below the root (PATH_MAX is 4,096):
        one openat2 call cannot reach it, the component walk can. The
        tree is built through directory descriptors for the same reason."""
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            os.makedirs(os.path.join(model, "abc", "de_g0"))
            fd = os.open(os.path.join(model, "abc", "de_g0"), os.O_RDONLY)
            depth = 0
            for level in range(25):
                name = f"{level:02d}" + "x" * 198
                os.mkdir(name, dir_fd=fd)
                child = os.open(name, os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = child
                depth += len(name) + 1
            self.assertGreater(depth, 4096)
            block = "abcde00000000000.bin"
            out = os.open(block, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
            os.write(out, b"\0" * (256 * KIB))
            os.close(out)
            old = time.time_ns() - 40 * 3600 * 10**9
            os.utime(block, ns=(old, old), dir_fd=fd)
            try:
                fill_cold(model, 78, seed=121, avoid=("abc",))
                with self.daemon(fs.path) as d:
                    self.push_after_crawl(d, fs.path)
                    self.wait_episode_end(d, 30)
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
                with self.assertRaises(FileNotFoundError, msg=self.ctx(
                        d, "the oldest block, on a long path, is still "
                        "there")):
                    os.stat(block, dir_fd=fd)
            finally:
                os.close(fd)
            self.assertNotIn("ENAMETOOLONG", log, self.ctx(d))

    def test_deep_tree_and_special_files_named_like_blocks(self):
        """A directory chain 100 deep with old blocks along it, and a FIFO,
        a socket and a device node named like old blocks: the crawl stops
        at its depth limit and says so, the special files are never
        opened or deleted, and the daemon neither hangs nor runs out of
        descriptors."""
        import socket
        import stat as stat_mod
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            deep = []
            path = os.path.join(model, "abc")
            for level in range(100):
                path = os.path.join(path, "de_g0" if level == 0 else "d")
                if level % 10 == 0:
                    deep.append((level, os.path.join(
                        path, f"abcde{level:011x}.bin")))
            for level, block in deep:
                write_block(block, 256 * KIB, 20 * HOUR + level)
            bucket = os.path.join(model, "abd", "ef_g0")
            os.makedirs(bucket)
            special = {}
            special["fifo"] = os.path.join(bucket, "abdef00000000001.bin")
            os.mkfifo(special["fifo"])
            special["socket"] = os.path.join(bucket, "abdef00000000002.bin")
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(special["socket"])
            self.addCleanup(sock.close)
            special["device"] = os.path.join(bucket, "abdef00000000003.bin")
            os.mknod(special["device"], 0o600 | stat_mod.S_IFCHR,
                     os.makedev(1, 3))  # /dev/null's numbers
            for path in special.values():
                harness.backdate(path, 30 * HOUR)
            blocks = fill_cold(model, 78, seed=120, avoid=("abc", "abd"))
            with self.daemon(fs.path, "--log-level", "debug") as d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                d.wait_for_log(r"crawl skipped", 15)
                log = d.log()
                fds = len(os.listdir(f"/proc/{d.pid}/fd"))
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            for kind, path in special.items():
                self.assertTrue(exists(path), self.ctx(d, f"the {kind} "
                                                      "named like a block "
                                                      "is gone"))
            self.assertLess(fds, 64, self.ctx(d, f"{fds} descriptors open"))
            too_deep = re.search(r"(\d+) directories below depth 64", log)
            self.assertTrue(too_deep and int(too_deep[1]) >= 1, self.ctx(
                d, "the crawl did not report the tree below its depth "
                "limit"))
            gone_deep = [level for level, p in deep if not exists(p)]
            print(f"\ndeep tree: blocks at levels {gone_deep} (of "
                  f"{[level for level, _ in deep]}) below M/abc deleted",
                  flush=True)
            # Blocks within the depth limit are ordinary candidates (the
            # oldest here); those below it are never seen.
            self.assertTrue(all(level in gone_deep for level, _ in deep
                                if level <= 50), self.ctx(d))
            self.assertFalse(any(level in gone_deep for level, _ in deep
                                 if level >= 70), self.ctx(d))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)),
                             len(gone) + len(gone_deep), self.ctx(d))
            self.assert_at_target(fs.path, d)


class CacheDirLinkTest(HardeningTestCase):
    """The cache directory setting itself names a link or another mount:
    the daemon must not treat what lies behind it as this volume's cache.
    Usage is over cleanup the whole time, so following the link would
    delete the outside blocks at once."""

    def run_refused(self, fs, cache_dir: str, outside: str, why: str):
        before = snapshot(outside)
        with self.daemon(fs.path, cache_dir=cache_dir) as d:
            d.wait_for_log(r"cache directory .*" + why, 15)
            # Usage is over cleanup at every one of these checks.
            until(lambda: d.log().count("CACHE_PERCENT_LOG") >= 20, 15,
                  "20 usage checks", d)
            log = d.log()
            self.assertEqual(d.stop()[0], 0, self.ctx(d))
        self.assert_untouched(d, before, snapshot(outside), outside)
        self.assertNotRegex(log, r"episode ended: deleted [1-9]",
                            self.ctx(d))
        self.assertEqual(len(re.findall(r"cache directory .*" + why, log)),
                         1, self.ctx(d, "the refusal is said once"))
        self.assertRegex(log, r"--cache-dir", self.ctx(d))

    def outside_cache(self, base: str) -> str:
        model = make_model(os.path.join(base, "kv"))
        for i in range(20):
            write_block(block_path(model, f"abc{i:013x}"), 64 * KIB,
                        30 * HOUR)
        return base

    def test_cache_dir_that_is_a_link_is_refused(self):
        outside = tempfile.mkdtemp(prefix="pvc-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        self.outside_cache(outside)
        with self.volume() as fs:
            fill_to(fs.path, 90)
            os.symlink(os.path.join(outside, "kv"),
                       os.path.join(fs.path, "linked"))
            self.run_refused(fs, "linked", outside, "symbolic link")
            # A link inside the volume, to a directory of the volume, is
            # refused the same way: the setting must name the directory.
            inside = os.path.join(fs.path, "real")
            self.outside_cache(inside)
            os.makedirs(os.path.join(fs.path, "a"))
            os.symlink("../real/kv", os.path.join(fs.path, "a", "kv"))
            self.run_refused(fs, "a/kv", inside, "symbolic link")

    def test_cache_dir_on_another_mount_is_refused(self):
        with self.volume() as fs:
            fill_to(fs.path, 90)
            target = os.path.join(fs.path, "other")
            os.makedirs(target)
            with tmpfs_on(target):
                self.outside_cache(target)
                self.run_refused(fs, "other/kv", target,
                                 "another filesystem or mount")


class SymlinkTest(HardeningTestCase):
    """A directory symlink at every level of the layout, pointing outside
    (on this filesystem and on another), old blocks behind each."""

    def test_directory_symlinks_at_every_level_are_not_followed(self):
        other_fs = tempfile.mkdtemp(prefix="pvc-outside-")
        self.addCleanup(shutil.rmtree, other_fs, True)
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            same_fs = os.path.join(fs.path, "outside")
            # Old blocks laid out so that whichever level a link replaces,
            # what lies behind it looks like the cache below that level.
            for base in (same_fs, other_fs):
                for rel in ("0123456789abcdef.bin",
                            "de_g0/abcde00000000000.bin",
                            "abc/de_g0/abcde00000000001.bin",
                            f"{MODEL}_r0/abc/de_g0/abcde00000000002.bin"):
                    write_block(os.path.join(base, rel), 64 * KIB, 30 * HOUR)
            links = {
                # a child of the root (any name)
                os.path.join(root, "evil_0123456789ab_r0"): same_fs,
                # a rank directory
                os.path.join(root, f"{MODEL}_r1"): other_fs,
                # a first-level bucket
                os.path.join(model, "abd"): os.path.join(same_fs),
                # a second-level bucket
                os.path.join(model, "abc", "df_g0"):
                    os.path.join(other_fs, "de_g0"),
                # and relative ones, with ".." in them
                os.path.join(model, "abe"): "../../outside",
                os.path.join(model, "abc", "dd_g0"): "../../../outside/de_g0",
            }
            for link, target in links.items():
                os.makedirs(os.path.dirname(link), exist_ok=True)
                os.symlink(target, link)
            write_block(block_path(model, "abcde00000000009"), MIB, 20 * HOUR)
            blocks = fill_cold(model, 78, seed=102,
                               avoid=("abc", "abd", "abe"))
            before = {base: snapshot(base) for base in (same_fs, other_fs)}

            with self.daemon(fs.path) as d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                d.wait_for_log(r"crawl skipped", 15)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            for base in (same_fs, other_fs):
                self.assert_untouched(d, before[base], snapshot(base),
                                      f"{base} (behind a link)")
            for link, target in links.items():
                self.assertEqual(os.readlink(link), target, link)
            skipped = re.search(r"crawl skipped (\d+) links", log)
            self.assertTrue(skipped and int(skipped[1]) >= len(links),
                            self.ctx(d, "the crawl did not report the "
                                     f"{len(links)} links it skipped"))
            self.assertFalse(exists(block_path(model, "abcde00000000009")))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)), len(gone) + 1,
                             self.ctx(d))
            self.assert_at_target(fs.path, d)


class HardLinkTest(HardeningTestCase):
    def test_hard_link_to_outside_file_leaves_the_file_intact(self):
        """A block that is a hard link to a file outside R: unlinking the
        link is allowed; the file outside keeps its name and content."""
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            outside = os.path.join(fs.path, "outside")
            os.makedirs(outside)
            precious = os.path.join(outside, "precious.bin")
            with open(precious, "wb") as out:
                out.write(os.urandom(256 * KIB))
            want = digest(precious)
            link = block_path(model, "abcde00000000001")
            os.makedirs(os.path.dirname(link))
            os.link(precious, link)
            harness.backdate(link, 20 * HOUR)  # the oldest "block"
            blocks = fill_cold(model, 78, seed=103, avoid=("abc",))

            with self.daemon(fs.path, "--log-level", "debug") as d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assertTrue(os.path.isfile(precious), self.ctx(
                d, "the file outside the root is gone"))
            self.assertEqual(digest(precious), want, "its content changed")
            st = os.stat(precious)
            self.assertEqual(st.st_nlink, 2 if exists(link) else 1)
            print(f"\nhard link: the link was "
                  f"{'kept' if exists(link) else 'deleted'}; the file "
                  "outside is intact", flush=True)
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)),
                             len(gone) + (0 if exists(link) else 1),
                             self.ctx(d))
            self.assert_at_target(fs.path, d)


class OtherMountTest(HardeningTestCase):
    """Mounts inside R: the daemon neither enters nor deletes in them."""

    def bind_mount_case(self, mode: str):
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            outside = os.path.join(fs.path, "outside")
            names = []
            for k in range(8):
                rel = f"de_g0/abcde0000000000{k}.bin"
                write_block(os.path.join(outside, rel), MIB, 30 * HOUR + k)
                names.append(rel)
            hidden = block_path(model, "abcff00000000000")
            write_block(hidden, MIB, 2 * HOUR)  # hidden under the mount
            blocks = fill_cold(model, 78, seed=104, avoid=("abc",))
            mount_point = os.path.join(model, "abc")
            with bind(outside, mount_point):
                args = ["--mode", mode] if mode != "crawl" else []
                with self.daemon(fs.path, *args) as d:
                    d.wait_for_log(r"crawl done", 15)
                    if mode == "watch":
                        d.wait_for_log(r"mode: watch", 1)
                    # Uses of the files behind the mount, through it and
                    # through its source, and a new file: in watch mode the
                    # filesystem mark reports them all.
                    for rel in names[:4]:
                        for base in (mount_point, outside):
                            with open(os.path.join(base, rel), "rb") as f:
                                f.read()
                    write_block(os.path.join(mount_point, "de_g0",
                                             "abcde00000000100.bin"),
                                64 * KIB, 40 * HOUR)
                    before = snapshot(outside)
                    fill_to(fs.path, 90)
                    self.wait_episode_end(d, 30)
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
                self.assert_untouched(d, before, snapshot(outside),
                                      "the bind mount's source")
            self.assertTrue(exists(hidden))
            foreign = re.search(r"(\d+) directories on other mounts", log)
            self.assertTrue(foreign and int(foreign[1]) >= 1, self.ctx(
                d, "the crawl did not report the mount it skipped"))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)), len(gone),
                             self.ctx(d))
            self.assert_at_target(fs.path, d)

    def test_bind_mount_inside_the_root_crawl_mode(self):
        self.bind_mount_case("crawl")

    def test_bind_mount_inside_the_root_watch_mode(self):
        self.bind_mount_case("watch")

    def test_tmpfs_inside_the_root(self):
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_cold(model, 90, seed=105, avoid=("abd",))
            points = [os.path.join(model, "abd"),
                      os.path.join(root, "other_0123456789ab_r0")]
            for point in points:
                os.makedirs(point)
            with tmpfs_on(points[0], 8), tmpfs_on(points[1], 8):
                for k in range(4):
                    write_block(os.path.join(points[0], "ef_g0",
                                             f"abdef0000000000{k}.bin"),
                                MIB, 30 * HOUR)
                    write_block(block_path(points[1],
                                           f"{k:x}bcde00000000000"),
                                MIB, 30 * HOUR)
                before = {p: snapshot(p) for p in points}
                with self.daemon(fs.path) as d:
                    self.wait_episode_end(d, 30)
                    d.wait_for_log(r"crawl skipped", 15)
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
                for point in points:
                    self.assert_untouched(d, before[point], snapshot(point),
                                          f"the tmpfs on {point}")
            foreign = re.search(r"(\d+) directories on other mounts", log)
            self.assertTrue(foreign and int(foreign[1]) >= 2, self.ctx(d))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)), len(gone),
                             self.ctx(d))
            self.assert_at_target(fs.path, d)


class SwapTest(HardeningTestCase):
    """A directory of known blocks replaced by a symlink to where it was
    moved, outside R, after the index learned its files."""

    def swap(self, model: str, outside: str) -> None:
        os.makedirs(outside, exist_ok=True)
        os.rename(os.path.join(model, "abc"), os.path.join(outside, "abc"))
        os.symlink(os.path.join(outside, "abc"), os.path.join(model, "abc"))

    def test_dir_swapped_for_symlink_between_crawl_and_unlink(self):
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            outside = os.path.join(fs.path, "outside")
            swapped = []
            for k in range(8):
                path = block_path(model, f"abcde{k:011x}")
                write_block(path, MIB, 10 * HOUR + k)
                swapped.append(path)
            blocks = fill_cold(model, 78, seed=106, avoid=("abc",))
            with self.daemon(fs.path) as d:
                d.wait_for_log(r"crawl done", 15)
                self.assertNotIn("DELETION_START", d.log())
                self.swap(model, outside)
                before = snapshot(outside)
                fill_to(fs.path, 90)
                self.wait_episode_end(d, 30)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assert_untouched(d, before, snapshot(outside),
                                  "the swapped-out directory")
            print(f"\nswap after crawl: {count(log, 'cannot delete')} "
                  "'cannot delete' warnings for the 8 blocks behind the "
                  "link", flush=True)
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)), len(gone),
                             self.ctx(d))
            self.assert_at_target(fs.path, d)

    def test_dir_swapped_for_symlink_after_the_deleter_worked_in_it(self):
        """The same swap, but after an episode deleted blocks in that very
        directory (so the deleter has resolved it before)."""
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            outside = os.path.join(fs.path, "outside")
            # The oldest 40 MiB, all in M/abc/de_g0: the first episode
            # (90% -> 70%, about 25 MiB) deletes only blocks from there.
            in_dir = []
            for k in range(40):
                path = block_path(model, f"abcde{k:011x}")
                write_block(path, MIB, 10 * HOUR - k * 60)
                in_dir.append(path)
            blocks = fill_cold(model, 75, seed=107, avoid=("abc",))
            with self.daemon(fs.path) as d:
                self.push_after_crawl(d, fs.path)
                first = self.wait_episode_end(d, 30)
                gone_first = [p for p in in_dir if not exists(p)]
                left = [p for p in in_dir if exists(p)]
                self.assertTrue(gone_first and left, self.ctx(
                    d, f"precondition: the first episode deleted "
                    f"{len(gone_first)} of the 40 blocks in abc/de_g0"))
                self.assertEqual([b for b in blocks if not exists(b.path)],
                                 [], self.ctx(d, "precondition: the first "
                                              "episode stayed in abc/de_g0"))
                self.swap(model, outside)
                before = snapshot(outside)
                fill_to(fs.path, 90)
                self.wait_episode_end(d, 30, pos=first.end())
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            after = snapshot(outside)
            lost = sorted(k for k in before if k not in after)
            print(f"\nswap after the deleter worked in it: {len(lost)} of "
                  f"{len(before)} entries behind the link deleted, "
                  f"{count(log, 'cannot delete')} 'cannot delete' warnings",
                  flush=True)
            self.assertEqual(lost, [], self.ctx(
                d, f"{len(lost)} files were deleted from {outside}, outside "
                "the cache root, through the directory the deleter had "
                f"resolved before the swap: {lost[:5]}"))
            self.assert_at_target(fs.path, d)


class RootRenamedTest(HardeningTestCase):
    def test_cache_root_renamed_away_and_recreated(self):
        """R is renamed (kept as a backup, say) and a new R made: what was
        moved away is outside the cache root now and is not deleted; the
        new R is managed."""
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            fill_cold(model, 45, seed=108, age_min_s=10 * HOUR,
                      age_max_s=12 * HOUR)
            with self.daemon(fs.path) as d:
                d.wait_for_log(r"crawl done", 15)
                moved = os.path.join(fs.path, "kv.bak")
                os.rename(root, moved)
                before = snapshot(moved)
                new_model = make_model(root)
                blocks = fill_cold(new_model, 90, seed=109)
                self.wait_episode_end(d, 40)
                log = d.log()
                self.assertTrue(d.alive(), self.ctx(d, "daemon died"))
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            after = snapshot(moved)
            lost = sorted(k for k in before if k not in after)
            self.assertEqual(lost, [], self.ctx(
                d, f"{len(lost)} files deleted from the renamed-away "
                f"{moved}, which is no longer the cache root"))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertTrue(gone, self.ctx(d, "nothing in the new R went"))
            self.assert_at_target(fs.path, d)
            self.assert_no_errors(d, log)


# ================================================================= faults ==

class PermissionTest(HardeningTestCase):
    def test_immutable_file_and_directory_eperm(self):
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            frozen_file = block_path(model, "abcde00000000001")
            write_block(frozen_file, MIB, 12 * HOUR)
            frozen_dir_files = []
            for k in range(3):
                path = block_path(model, f"abdef0000000000{k}")
                write_block(path, MIB, 11 * HOUR + k)
                frozen_dir_files.append(path)
            frozen_dir = os.path.dirname(frozen_dir_files[0])
            blocks = fill_cold(model, 78, seed=110, avoid=("abc", "abd"))
            chattr("+i", frozen_file)
            chattr("+i", frozen_dir)
            try:
                with self.daemon(fs.path) as d:
                    self.push_after_crawl(d, fs.path)
                    self.wait_episode_end(d, 30)
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
                for path in [frozen_file] + frozen_dir_files:
                    self.assertTrue(exists(path), path)
            finally:
                chattr("-i", frozen_file)
                chattr("-i", frozen_dir)
            self.assert_undeletable_reported(d, log, fs.path, blocks, 4,
                                             "EPERM")

    def test_eacces_when_running_unprivileged(self):
        """The daemon as an ordinary user (65534): blocks in a directory it
        may not write are EACCES, reported once each; the rest goes."""
        nobody = 65534
        with self.volume() as fs:
            os.chmod(os.path.dirname(fs.path), 0o755)
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            locked = []
            for k in range(2):
                path = block_path(model, f"abcde0000000000{k}")
                write_block(path, MIB, 12 * HOUR + k)
                locked.append(path)
            blocks = fill_cold(model, 78, seed=111, avoid=("abc",))
            for dirpath, dirnames, filenames in os.walk(root):
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), nobody, nobody)
            os.lchown(root, nobody, nobody)
            locked_dir = os.path.dirname(locked[0])
            os.chown(locked_dir, 0, 0)  # root's, 0755: no unlink for nobody
            os.chmod(locked_dir, 0o755)
            d = Daemon(["--reuid", str(nobody), "--regid", str(nobody),
                        "--clear-groups", harness.find_binary(),
                        *base_args(fs.path)], env=clean_env(),
                       binary=shutil.which("setpriv"))
            with d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            for path in locked:
                self.assertTrue(exists(path), path)
            self.assert_undeletable_reported(d, log, fs.path, blocks, 2,
                                             "EACCES")


class ReadOnlyTest(HardeningTestCase):
    def test_read_only_volume_reported_once_and_recovered(self):
        """Usage goes over cleanup while the daemon's view of the volume is
        read-only, then the whole volume is remounted read-only; after
        the volume is writable again the episode reaches the target.

        The daemon runs on a second (bind) mount of the volume, made
        read-only first, so that usage can be pushed over cleanup through
        the first mount without a race; then the filesystem itself goes
        read-only (every mount of it)."""
        with self.volume() as fs:
            view_parent = tempfile.mkdtemp(prefix="pvc-view-")
            self.addCleanup(shutil.rmtree, view_parent, True)
            view = os.path.join(view_parent, "mnt")
            os.mkdir(view)
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_cold(model, 78, seed=112)
            with bind(fs.path, view):
                try:
                    with self.daemon(view) as d:
                        d.wait_for_log(r"crawl done", 15)
                        run(["mount", "-o", "remount,bind,ro", view])
                        fill_to(fs.path, 90)
                        start = d.wait_for_log(r"DELETION_START", 10)
                        # Watch it fail for a while: count per poll.
                        until(lambda: count(d.log()[start.end():],
                                            "CACHE_PERCENT_LOG") >= 20, 20,
                              "20 usage checks during the episode", d)
                        run(["mount", "-o", "remount,ro", fs.path])
                        run(["mount", "-o", "remount,bind,rw", view])
                        mark = len(d.log())
                        until(lambda: count(d.log()[mark:],
                                            "CACHE_PERCENT_LOG") >= 20, 20,
                              "20 more usage checks", d)
                        self.assertTrue(d.alive(), self.ctx(d))
                        self.assertEqual(
                            [b for b in blocks if not exists(b.path)], [])
                        ro_log = d.log()
                        run(["mount", "-o", "remount,rw", fs.path])
                        rw_at = time.monotonic()
                        try:
                            self.wait_episode_end(d, 90)
                            recovered = time.monotonic() - rw_at
                        except AssertionError:
                            recovered = None
                        self.assertEqual(d.stop()[0], 0, self.ctx(d))
                finally:
                    run(["mount", "-o", "remount,rw", fs.path])
            erofs = warnings(ro_log, "EROFS|[Rr]ead-only")
            took = "never" if recovered is None else f"{recovered:.1f} s"
            print(f"\nEROFS: {len(erofs)} warning lines while read-only "
                  f"({count(ro_log, 'CACHE_PERCENT_LOG')} usage checks); "
                  f"target reached {took} after the volume became writable",
                  flush=True)
            with self.subTest("the fault is reported once, not per file"):
                self.assertLessEqual(len(erofs), 2, self.ctx(
                    d, f"{len(erofs)} EROFS warnings, e.g. {erofs[:3]}"))
            with self.subTest("the episode reaches the target once the "
                              "volume is writable"):
                self.assertIsNotNone(recovered, self.ctx(
                    d, "no episode end within 90 s of the remount rw"))
                self.assert_at_target(fs.path, d)
            with self.subTest("without waiting out a per-file back-off"):
                self.assertIsNotNone(recovered)
                self.assertLess(recovered, 15, self.ctx(
                    d, f"target reached only {recovered:.1f} s after the "
                    "volume became writable"))


class StatvfsTest(HardeningTestCase):
    def test_mount_path_vanishing_warns_once_and_resumes(self):
        """statvfs fails (the mount path is unmounted and removed) for a
        while, then the mount comes back at the same path."""
        with self.volume() as fs:
            parent = tempfile.mkdtemp(prefix="pvc-mnt-")
            self.addCleanup(shutil.rmtree, parent, True)
            path = os.path.join(parent, "mnt")
            os.mkdir(path)
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_cold(model, 78, seed=113)
            run(["mount", "--bind", fs.path, path])
            try:
                with self.daemon(path) as d:
                    d.wait_for_log(r"crawl done", 15)
                    run(["umount", "-l", path])
                    os.rmdir(path)
                    d.wait_for_log(r"usage: statvfs", 5)
                    # Watch it for a while: count warnings per poll.
                    watch_from = time.monotonic()
                    while time.monotonic() - watch_from < 2:
                        self.assertTrue(d.alive(),
                                        self.ctx(d, "daemon died"))
                        time.sleep(0.1)
                    os.mkdir(path)
                    run(["mount", "--bind", fs.path, path])
                    d.wait_for_log(r"statvfs on .* works again", 5)
                    fill_to(fs.path, 90)
                    self.wait_episode_end(d, 30)
                    log = d.log()
                    self.assertEqual(d.stop()[0], 0, self.ctx(d))
            finally:
                unmount_quietly(path)
            failures = warnings(log, r"usage: statvfs")
            self.assertEqual(len(failures), 1, self.ctx(
                d, f"{len(failures)} statvfs warnings"))
            self.assertIn("ENOENT", failures[0])
            self.assertEqual(count(log, r"statvfs on .* works again"), 1,
                             self.ctx(d))
            gone = [b for b in blocks if not exists(b.path)]
            self.assertEqual(sum(episodes_deleted(log)), len(gone),
                             self.ctx(d))
            self.assert_at_target(fs.path, d)


class KillTest(HardeningTestCase):
    def test_sigkill_mid_episode_then_restart_resumes_oldest_first(self):
        """SIGKILL a few batches into an episode (batch size 1, 8 KiB
        blocks: about 1500 batches to the cleanup threshold), restart:
        deletions across both runs are oldest-first, no hot block goes,
        the restarted daemon resumes the episode and reaches the target.
        The restart finds usage over cleanup at once, before its first
        crawl has finished: oldest-first then also says that it does not
        delete from a partly built index."""
        with self.volume(128) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            rng = random.Random("kill")
            hot = []
            for k in range(20):
                path = block_path(model, f"f{k:02x}{rng.getrandbits(52):013x}")
                write_block(path, 8 * KIB, 30)
                hot.append(path)
            blocks = fill_cold(model, 80, seed=114, size=8 * KIB,
                               avoid=("f00", "f01", "f02"), buckets=64)
            args = ("--batch-size", "1", "--emergency-threshold", "99.9")
            d1 = self.daemon(fs.path, *args)
            with d1:
                self.push_after_crawl(d1, fs.path, 95)
                # Stop it (SIGSTOP, at once) after a few batches, each of
                # which logs a usage line; then kill it.
                def batches() -> int:
                    log = d1.log()
                    start = log.find("DELETION_START")
                    return -1 if start < 0 else count(log[start:],
                                                      "CACHE_PERCENT_LOG")
                deadline = time.monotonic() + 30
                while batches() < 5:
                    self.assertLess(time.monotonic(), deadline,
                                    self.ctx(d1, "no episode"))
                    time.sleep(0.001)
                os.kill(d1.pid, signal.SIGSTOP)
                at_kill = harness.df_usage(fs.path)
                os.kill(d1.pid, signal.SIGKILL)
                d1.proc.wait()
                log1 = d1.log()
            self.assertEqual(d1.returncode, -signal.SIGKILL)
            self.assertNotIn("DELETION_END", log1)
            gone1 = [b for b in blocks if not exists(b.path)]
            self.assertTrue(gone1, "precondition: killed before any "
                            "deletion")
            self.assertGreater(at_kill, 85.5, "precondition: killed too late"
                               f" (usage {at_kill:.2f}%) for the restarted "
                               "daemon to see usage over cleanup")
            with self.daemon(fs.path, *args) as d2:
                d2.wait_for_log(r"DELETION_START", 15)
                self.wait_episode_end(d2, 60)
                log2 = d2.log()
                self.assertEqual(d2.stop()[0], 0, self.ctx(d2))
            gone = [b for b in blocks if not exists(b.path)]
            kept = [b for b in blocks if exists(b.path)]
            print(f"\nSIGKILL at {at_kill:.2f}% after {len(gone1)} "
                  f"deletions; restart deleted {len(gone) - len(gone1)} "
                  "more", flush=True)
            self.assertEqual([p for p in hot if not exists(p)], [],
                             self.ctx(d2, "hot blocks were deleted"))
            self.assertTrue(kept, self.ctx(d2))
            newest_gone = max(b.t_ns for b in gone)
            oldest_kept = min(b.t_ns for b in kept)
            self.assertLess(newest_gone, oldest_kept, self.ctx(
                d2, "not oldest first across the restart"))
            self.assertEqual(sum(episodes_deleted(log2)),
                             len(gone) - len(gone1), self.ctx(d2))
            self.assert_at_target(fs.path, d2, low=69.0)


class FutureTimestampTest(HardeningTestCase):
    def test_future_timestamps_are_neither_first_nor_kept_forever(self):
        """Blocks dated a day ahead (atime and mtime) count as used at that
        future time: kept while older blocks exist and while the daemon's
        clock is short of that time plus the hot window. With the daemon's
        clock two days ahead (libfaketime) they are old and go, after the
        blocks that are older still."""
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            future = []
            for k in range(8):
                path = block_path(model, f"abcde{k:011x}")
                write_block(path, MIB, -(24 * HOUR + k * 60))
                future.append(path)
            self.assertGreater(os.stat(future[0]).st_mtime, time.time()
                               + 23 * HOUR)
            blocks = fill_cold(model, 78, seed=115, avoid=("abc",))
            with self.daemon(fs.path) as d:
                self.push_after_crawl(d, fs.path)
                self.wait_episode_end(d, 30)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            self.assertEqual([p for p in future if not exists(p)], [],
                             self.ctx(d, "blocks dated in the future were "
                                      "deleted before older ones"))
            self.assert_at_target(fs.path, d)
            gone = [b for b in blocks if not exists(b.path)]
            kept = [b for b in blocks if exists(b.path)]
            self.assertTrue(gone and kept)
            self.assertLess(max(b.t_ns for b in gone),
                            min(b.t_ns for b in kept), self.ctx(d))

            clock = FakeClock("+2d")
            self.addCleanup(clock.close)
            if clock.library is None:
                self.skipTest("libfaketime is not installed (Debian: "
                              "apt-get install faketime): cannot show the "
                              "future blocks ageing")
            # Four old blocks stay, and blocks dated a day and a half ahead
            # join; usage over cleanup such that reaching the target takes
            # the old ones, all those a day ahead and some of the newest.
            older = kept[:4]
            for b in kept[4:]:
                os.unlink(b.path)
            newest = []
            for k in range(24):
                path = block_path(model, f"fedc{k:012x}")
                write_block(path, MIB, -(36 * HOUR + k * 60))
                newest.append(path)
            fill_to(fs.path, 91)
            with self.daemon(fs.path, "--log-level", "debug",
                             env=clock.env()) as d:
                end = self.wait_episode_end(d, 30)
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            stamps = cache_percent_times(log)
            self.assertTrue(stamps and stamps[0] > time.time() + 47 * HOUR,
                            self.ctx(d, "libfaketime did not move the "
                                     "daemon's clock"))
            order = re.findall(r"deleted (\S+) \(", log)
            rank = {os.path.relpath(b.path, root): 0 for b in older}
            rank.update({os.path.relpath(p, root): 1 for p in future})
            rank.update({os.path.relpath(p, root): 2 for p in newest})
            ranks = [rank.get(r, -1) for r in order]
            print(f"\nfuture timestamps: with the daemon's clock 2 days "
                  f"ahead it deleted {ranks.count(1)} of {len(future)} "
                  f"blocks dated a day ahead and {ranks.count(2)} dated "
                  f"1.5 days ahead ({end[0]})", flush=True)
            self.assertNotIn(-1, ranks, self.ctx(d, "an unexpected deletion"))
            self.assertEqual(ranks.count(1), len(future), self.ctx(
                d, "blocks dated one day ahead were still kept two days "
                "later"))
            self.assertEqual(ranks, sorted(ranks), self.ctx(
                d, "not oldest first: a block dated later went before one "
                "dated earlier"))
            self.assert_at_target(fs.path, d)


class RootRecreatedTest(HardeningTestCase):
    def test_cache_root_deleted_and_recreated(self):
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            fill_cold(model, 50, seed=116)
            with self.daemon(fs.path) as d:
                d.wait_for_log(r"crawl done", 15)
                shutil.rmtree(root)
                new_model = make_model(root)
                blocks = fill_cold(new_model, 90, seed=117)
                started = time.monotonic()
                self.wait_episode_end(d, 45)
                took = time.monotonic() - started
                self.assertTrue(d.alive(), self.ctx(d, "daemon died"))
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            print(f"\nnew root: target reached {took:.1f} s after it was "
                  "filled", flush=True)
            gone = [b for b in blocks if not exists(b.path)]
            kept = [b for b in blocks if exists(b.path)]
            self.assertTrue(gone and kept, self.ctx(d))
            self.assertLess(max(b.t_ns for b in gone),
                            min(b.t_ns for b in kept), self.ctx(d))
            self.assert_at_target(fs.path, d)
            self.assert_no_errors(d, log)


class ClockStepTest(HardeningTestCase):
    """The wall clock steps under the running daemon. The system clock of
    a shared machine is not to be touched, so libfaketime moves the
    daemon's CLOCK_REALTIME alone (its monotonic clock and the kernel's
    file timestamps stay real); a step is a change of the offset file the
    library re-reads every second."""

    def clock(self, offset: str) -> FakeClock:
        clock = FakeClock(offset)
        self.addCleanup(clock.close)
        if clock.library is None:
            self.skipTest("libfaketime is not installed (Debian: apt-get "
                          "install faketime); the system clock of a shared "
                          "machine must not be changed")
        return clock

    def wait_clock(self, d, after: float, near: float) -> None:
        """Wait for a CACHE_PERCENT_LOG stamped near `near` (unix time),
        logged after log offset `after`."""
        def seen():
            return any(abs(t - near) < 600
                       for t in cache_percent_times(d.log()[after:]))
        until(seen, 10, f"a usage line stamped near {near:.0f}", d)

    def test_clock_step_forward(self):
        """+1 day while idle, then usage over cleanup: every block now
        looks a day older; deletion is still oldest-first and stops at
        the target."""
        clock = self.clock("+0")
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_cold(model, 75, seed=118)
            fresh = []
            for k in range(10):
                path = block_path(model, f"fffe{k:012x}")
                write_block(path, MIB, 60)
                fresh.append(path)
            with self.daemon(fs.path, "--usage-log-interval", "1",
                             env=clock.env()) as d:
                d.wait_for_log(r"crawl done", 15)
                mark = len(d.log())
                clock.set("+1d")
                self.wait_clock(d, mark, time.time() + 24 * HOUR)
                fill_to(fs.path, 90)
                self.wait_episode_end(d, 30, pos=mark)
                self.assertTrue(d.alive(), self.ctx(d))
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            gone = [b for b in blocks if not exists(b.path)]
            kept = [b for b in blocks if exists(b.path)]
            self.assertTrue(gone and kept, self.ctx(d))
            self.assertLess(max(b.t_ns for b in gone),
                            min(b.t_ns for b in kept), self.ctx(d))
            self.assertEqual([p for p in fresh if not exists(p)], [],
                             self.ctx(d, "the newest blocks went first"))
            self.assert_at_target(fs.path, d)
            self.assertEqual(sum(episodes_deleted(log)), len(gone))

    def test_clock_step_back(self):
        """The clock was a day ahead and is stepped back (as NTP does on a
        node that booted with a wrong clock). The daemon keeps its
        periodic work going: idle CACHE_PERCENT_LOG lines every
        --usage-log-interval, and an episode after the step deletes
        oldest-first to the target."""
        clock = self.clock("+1d")
        with self.volume() as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            model = make_model(root)
            blocks = fill_cold(model, 75, seed=119, age_min_s=30 * HOUR,
                               age_max_s=40 * HOUR)
            with self.daemon(fs.path, "--usage-log-interval", "1",
                             env=clock.env()) as d:
                d.wait_for_log(r"crawl done", 15)
                self.wait_clock(d, 0, time.time() + 24 * HOUR)
                mark = len(d.log())
                clock.set("+0")
                stepped = time.monotonic()
                idle_lines = None
                try:
                    self.wait_clock(d, mark, time.time())
                    # Watch the idle daemon: a line a second is expected.
                    until(lambda: len(cache_percent_times(
                        d.log()[mark:])) >= 5, 8,
                        "idle usage lines after the step", d)
                except AssertionError:
                    idle_lines = len(cache_percent_times(d.log()[mark:]))
                waited = time.monotonic() - stepped
                mark2 = len(d.log())
                fill_to(fs.path, 90)
                self.wait_episode_end(d, 30, pos=mark2)
                self.assertTrue(d.alive(), self.ctx(d))
                log = d.log()
                self.assertEqual(d.stop()[0], 0, self.ctx(d))
            with self.subTest("idle usage lines continue after a step "
                              "back"):
                self.assertIsNone(idle_lines, self.ctx(
                    d, f"only {idle_lines} CACHE_PERCENT_LOG lines in "
                    f"{waited:.0f} s after the clock stepped back a day "
                    "(--usage-log-interval 1)"))
            gone = [b for b in blocks if not exists(b.path)]
            kept = [b for b in blocks if exists(b.path)]
            self.assertTrue(gone and kept, self.ctx(d))
            self.assertLess(max(b.t_ns for b in gone),
                            min(b.t_ns for b in kept), self.ctx(d))
            self.assert_at_target(fs.path, d)
            self.assertEqual(sum(episodes_deleted(log)), len(gone))


if __name__ == "__main__":
    unittest.main()
