"""Integration tests of the llm-d BlockRemoved events (--events-endpoint).

A real deletion episode on a loop-mounted ext4 volume holding a two-model
cache, with a ZeroMQ SUB socket subscribed to "kv@" the way the llm-d
KV-cache index subscribes: every message is decoded field by field as the
index decodes it, and the block hashes announced must be exactly the
block files that disappeared from disk. A dry run must announce nothing.

PUB drops what it sends before a subscription has reached it (the "slow
joiner"), and the daemon sends nothing before an episode. So the daemon
starts below the cleanup threshold, the SUB connects and completes its
handshake, and only then does a big file outside the cache push usage
over the threshold. Sequence numbers start at 0, so a message lost to a
late subscription would show as a first sequence number above 0.

Needs root (loop mounts), python3-zmq and python3-msgpack.
Run: /usr/bin/python3 tests/integration/test_events.py
"""

from __future__ import annotations

import glob
import json
import os
import re
import socket
import struct
import time
import unittest

import harness
from evictor_testlib import fill_to

try:
    import msgpack
    import zmq
    from zmq.utils.monitor import recv_monitor_message
except ImportError as exc:  # reported by setUp: skipped, or failed in CI
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None

MIB = 1 << 20
CACHE_DIR = "kv"
BATCH = 10  # --batch-size: several batches per episode
TOPIC_PREFIX = "kv@SHARED_STORAGE@"
BLOCK_RE = re.compile(r"[0-9a-f]{16}\.bin")
RANK_DIR_RE = re.compile(r"(.+_[0-9a-f]{12})_r\d+")

# Every variable the daemon reads: a developer's or CI's shell must not
# change what these tests run.
DAEMON_ENV_VARS = (
    "PVC_MOUNT_PATH", "CACHE_DIRECTORY", "CLEANUP_THRESHOLD",
    "TARGET_THRESHOLD", "INODE_CLEANUP_THRESHOLD", "INODE_TARGET_THRESHOLD",
    "EMERGENCY_THRESHOLD", "FILE_ACCESS_TIME_THRESHOLD_MINUTES",
    "NUM_CRAWLER_PROCESSES", "LOGGER_INTERVAL_SECONDS", "DELETION_BATCH_SIZE",
    "HEX_BUCKET_LEN", "ENABLE_DIR_CLEANUP", "DIR_CLEANUP_TTL_SECONDS",
    "TEMP_FILE_MAX_AGE_MINUTES", "RESCAN_INTERVAL_SECONDS", "MAX_CACHE_BYTES",
    "MOUNT_WAIT_SECONDS", "USAGE_LOG_INTERVAL_SECONDS", "DRY_RUN", "LOG_LEVEL",
    "LOG_FILE_PATH", "EVICTOR_MODE", "STORAGE_EVENTS_ENDPOINT")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def block_files(root: str) -> dict[int, str]:
    """hash -> path relative to `root` of every "<16 hex>.bin" below it."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            if BLOCK_RE.fullmatch(name):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                found[int(name[:16], 16)] = rel
    return found


def model_of(root: str, relpath: str) -> str:
    """The model_name in the config.json of the block at `relpath`."""
    rank_dir = relpath.split("/", 1)[0]
    match = RANK_DIR_RE.fullmatch(rank_dir)
    assert match, f"{relpath} is not below a rank directory"
    with open(os.path.join(root, match[1], "config.json"),
              encoding="utf-8") as config:
        return json.load(config)["model_name"]


def thread_names(pid: int) -> list[str]:
    """The names of a process's threads."""
    names = []
    for comm in glob.glob(f"/proc/{pid}/task/*/comm"):
        try:
            with open(comm, encoding="utf-8", errors="replace") as f:
                names.append(f.read().strip())
        except FileNotFoundError:
            pass  # the thread ended
    return names


class Message:
    """One message, decoded and checked as the llm-d index decodes it."""

    def __init__(self, test: unittest.TestCase, frames: list[bytes]):
        test.assertEqual(len(frames), 3, "frames per message")
        topic, seq, payload = frames
        self.topic = topic.decode("utf-8")
        test.assertTrue(self.topic.startswith(TOPIC_PREFIX), self.topic)
        self.model = self.topic[len(TOPIC_PREFIX):]
        test.assertEqual(len(seq), 8, "sequence frame")
        self.seq = struct.unpack(">Q", seq)[0]

        # fixarray(3), then float64 (0xcb): not float32, not an integer.
        test.assertEqual(payload[0], 0x93, payload[:16].hex())
        test.assertEqual(payload[1], 0xcb, payload[:16].hex())
        batch = msgpack.unpackb(payload, raw=False)
        test.assertIsInstance(batch, list)
        test.assertEqual(len(batch), 3)
        self.timestamp, events, dp_rank = batch
        test.assertIsInstance(self.timestamp, float)
        test.assertIsNone(dp_rank, "data-parallel rank")
        test.assertIsInstance(events, list)
        test.assertEqual(len(events), 1, "events per message")
        self.hashes: list[int] = []
        for event in events:
            # An array in place, not wrapped as msgpack bin or str.
            test.assertNotIsInstance(event, (bytes, str))
            test.assertIsInstance(event, list)
            test.assertEqual(len(event), 3, event)
            tag, hashes, medium = event
            test.assertEqual(tag, "BlockRemoved")
            test.assertEqual(medium, "SHARED_STORAGE")
            test.assertIsInstance(hashes, list)
            for value in hashes:
                test.assertIsInstance(value, int)
                test.assertTrue(0 <= value < 1 << 64, value)
            self.hashes += hashes


class Subscriber:
    """A SUB socket subscribed to "kv@", connected once its handshake with
    the daemon's PUB socket has completed."""

    def __init__(self, endpoint: str, timeout: float = 10):
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"kv@")
        monitor = self.socket.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self.socket.connect(endpoint)
            if not monitor.poll(timeout * 1000):
                raise AssertionError(
                    f"no ZeroMQ handshake with {endpoint} within {timeout} s")
            recv_monitor_message(monitor)
        finally:
            self.socket.disable_monitor()
            monitor.close(linger=0)
        # The subscription goes out right after the handshake; give it time
        # to reach the PUB socket, which drops anything sent before it.
        time.sleep(0.5)

    def receive(self, timeout: float) -> list[bytes] | None:
        """One whole message, or None after `timeout` seconds."""
        if not self.socket.poll(timeout * 1000):
            return None
        return self.socket.recv_multipart()

    def drain(self, quiet: float) -> list[list[bytes]]:
        """Every message until none arrives for `quiet` seconds."""
        messages = []
        while (frames := self.receive(quiet)) is not None:
            messages.append(frames)
        return messages

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


class Episode:
    """What run_episode saw: block files (hash -> relpath) before and
    after, each block's model name, the raw messages, the daemon's log and
    the wall-clock span of the episode."""
    before: dict[int, str]
    after: dict[int, str]
    models: dict[int, str]
    raw: list[list[bytes]]
    log: str
    started: float
    ended: float


class EventsTest(unittest.TestCase):
    def setUp(self):
        harness.require_root(self)
        if _IMPORT_ERROR is not None:
            reason = (f"needs python3-zmq and python3-msgpack "
                      f"({_IMPORT_ERROR})")
            if harness.in_ci():
                raise AssertionError(f"{reason}, and CI is set")
            raise unittest.SkipTest(reason)

    def run_episode(self, *extra_args) -> Episode:
        """A two-model cache at ~80 %, the daemon publishing events, a
        subscriber connected, then usage pushed to ~90 % by a file outside
        the cache and one episode run to its end."""
        ep = Episode()
        with harness.LoopFs(256) as fs:
            root = os.path.join(fs.path, CACHE_DIR)
            harness.gencache.generate(root, models=2, fill_percent=80,
                                      seed=11, size=MIB,
                                      age_min_minutes=120,
                                      age_max_minutes=600)
            self.assertLess(harness.df_usage(fs.path), 84)
            endpoint = f"tcp://127.0.0.1:{free_port()}"
            args = ["--mount-path", fs.path, "--cache-dir", CACHE_DIR,
                    "--mode", "crawl", "--interval", "0.1",
                    "--hot-minutes", "10", "--batch-size", str(BATCH),
                    "--events-endpoint", endpoint, *extra_args]
            env = {name: None for name in DAEMON_ENV_VARS}
            with harness.Daemon(args, env=env) as daemon:
                daemon.wait_for_log(r"publishing BlockRemoved events on "
                                    + re.escape(endpoint), 10)
                daemon.wait_for_log(r"crawl done", 30)
                subscriber = Subscriber(endpoint)
                try:
                    ep.before = block_files(root)
                    ep.models = {h: model_of(root, rel)
                                 for h, rel in ep.before.items()}
                    self.assertFalse(subscriber.drain(0.2),
                                     "messages before any deletion")
                    ep.started = time.time()
                    fill_to(fs.path, 90, "not-cache")
                    daemon.wait_for_log(r"episode ended: .*$", 60)
                    # Deletion is over; the last batch's messages may still
                    # be on their way.
                    ep.raw = subscriber.drain(1.0)
                    ep.ended = time.time()
                finally:
                    subscriber.close()
                code, _ = daemon.stop()
                ep.log = daemon.log()
                self.assertEqual(code, 0, daemon.tail())
            ep.after = block_files(root)
        return ep

    def test_every_deleted_block_is_announced_once_under_its_model(self):
        ep = self.run_episode()
        gone = set(ep.before) - set(ep.after)
        self.assertFalse(set(ep.after) - set(ep.before), "blocks appeared")
        self.assertGreater(len(gone), 2 * BATCH,
                           "the episode deleted too little to be a test")

        messages = [Message(self, frames) for frames in ep.raw]
        self.assertTrue(messages, "no events received")
        self.assertEqual([m.seq for m in messages],
                         list(range(len(messages))),
                         "sequence numbers must start at 0 and rise by one")

        announced = [h for m in messages for h in m.hashes]
        self.assertEqual(len(announced), len(set(announced)),
                         "a block was announced twice")
        self.assertEqual(
            set(announced), gone,
            f"announced but not deleted: {sorted(set(announced) - gone)[:5]}"
            f"; deleted but not announced: {sorted(gone - set(announced))[:5]}")

        # One topic per model, each with the model_name of its config.json,
        # and every hash under the topic of its own model.
        self.assertEqual({m.model for m in messages},
                         {"org/model-0", "org/model-1"})
        for m in messages:
            for h in m.hashes:
                self.assertEqual(ep.models[h], m.model, f"{h:016x}")
            self.assertTrue(ep.started - 1 <= m.timestamp <= ep.ended + 1,
                            (m.timestamp, ep.started, ep.ended))

        # One message per model per batch: a batch holds at most BATCH
        # blocks and all of a batch's messages carry its timestamp.
        batches: dict[float, list[str]] = {}
        for m in messages:
            self.assertLessEqual(len(m.hashes), BATCH)
            batches.setdefault(m.timestamp, []).append(m.model)
        for ts, models in batches.items():
            self.assertEqual(len(models), len(set(models)),
                             f"two messages for one model in batch {ts}")
        self.assertGreater(len(batches), 1, "expected several batches")

        self.assertNotRegex(ep.log, r"(?m)^\S+ warning events:")
        self.assertRegex(ep.log, r"events: stopped after sending %d messages "
                         r"for %d blocks; dropped 0 messages"
                         % (len(messages), len(announced)))

    def test_dry_run_publishes_nothing(self):
        ep = self.run_episode("--dry-run")
        self.assertRegex(ep.log, r"dry run: would delete")
        self.assertEqual(set(ep.before), set(ep.after),
                         "a dry run deleted blocks")
        self.assertEqual(ep.raw, [], "a dry run published events")
        self.assertRegex(ep.log, r"events: stopped after sending 0 messages")


    def test_zeromq_exists_only_with_an_endpoint(self):
        """Without --events-endpoint no ZeroMQ context (and so none of its
        "ZMQbg/..." threads) is created; with one, it is."""
        with harness.LoopFs(32) as fs:
            os.makedirs(os.path.join(fs.path, CACHE_DIR))
            for extra in ([], ["--events-endpoint",
                               f"tcp://127.0.0.1:{free_port()}"]):
                args = ["--mount-path", fs.path, "--cache-dir", CACHE_DIR,
                        "--mode", "crawl", "--interval", "0.1", *extra]
                env = {name: None for name in DAEMON_ENV_VARS}
                with harness.Daemon(args, env=env) as daemon:
                    daemon.wait_for_log(r"crawl done", 30)
                    names = thread_names(daemon.pid)
                    code, _ = daemon.stop()
                    self.assertEqual(code, 0, daemon.tail())
                zeromq = [n for n in names if n.startswith("ZMQbg")]
                if extra:
                    self.assertTrue(zeromq, names)
                else:
                    self.assertEqual(zeromq, [], names)


if __name__ == "__main__":
    unittest.main()
