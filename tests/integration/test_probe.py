"""`pvc-evictor probe`, the init container's job, against real mounts.

Each test mounts a fresh ext4 image with one atime option and checks every
field the report gives: the mount, its usage, fanotify availability with
and without CAP_SYS_ADMIN, and the atime behaviour the probe measured by
reading a file (which must match the mount option, whatever mountinfo
claims). The probe must clean up after itself and fail only when the
volume is unusable.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import unittest

import harness

NO_SYS_ADMIN = ["setpriv", "--inh-caps=-sys_admin",
                "--bounding-set=-sys_admin"]


def probe(args, prefix=()):
    proc = subprocess.run([*prefix, harness.find_binary(), "probe", *args],
                          capture_output=True, text=True, timeout=60)
    return proc


class ProbeTest(unittest.TestCase):
    def setUp(self):
        harness.require_root(self)

    def run_probe(self, fs, prefix=(), extra=()):
        out = os.path.join(tempfile.mkdtemp(prefix="pvc-probe-"),
                           "report.json")
        proc = probe(["--mount-path", fs.path, "--output", out, *extra],
                     prefix)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(out, encoding="utf-8") as f:
            written = json.load(f)
        self.assertEqual(json.loads(proc.stdout), written,
                         "stdout and the report file differ")
        return written

    def check_mount_fields(self, report, fs):
        m = report["mount"]
        self.assertTrue(m["usable"])
        self.assertEqual(m["filesystem"], "ext4")
        self.assertEqual(m["mount_point"], fs.path)
        self.assertEqual(m["mount_fstype"], "ext4")
        st = os.statvfs(fs.path)
        self.assertEqual(m["capacity_bytes"], st.f_blocks * st.f_frsize)
        self.assertAlmostEqual(m["usage_percent"], harness.df_usage(fs.path),
                               delta=0.5)
        self.assertEqual(m["inodes_total"], st.f_files)
        self.assertTrue(m["writable"])
        self.assertFalse(m["read_only"])
        # The probe file is gone.
        self.assertEqual([n for n in os.listdir(fs.path)
                          if n.startswith(".pvc-evictor")], [])

    def test_atime_behaviour_matches_each_mount_option(self):
        for option in ("strictatime", "relatime", "noatime"):
            with self.subTest(option=option), \
                    harness.LoopFs(64, options=option) as fs:
                report = self.run_probe(fs)
                self.check_mount_fields(report, fs)
                self.assertEqual(report["atime"]["behaviour"], option,
                                 report["atime"])
                f = report["fanotify"]
                self.assertTrue(f["available"], f)
                self.assertEqual(f["level"], "rename+target-fid")
                self.assertFalse(f["events_may_be_incomplete"])
                with open("/proc/sys/fs/fanotify/max_queued_events") as q:
                    self.assertEqual(f["queue_events"], int(q.read()))
                self.assertEqual(report["verdict"]["recommended_mode"],
                                 "watch")
                self.assertTrue(report["privileges"]["cap_sys_admin"])

    def test_without_cap_sys_admin_fanotify_is_a_finding_not_a_failure(self):
        with harness.LoopFs(64, options="relatime") as fs:
            report = self.run_probe(fs, prefix=NO_SYS_ADMIN)
            f = report["fanotify"]
            self.assertFalse(f["available"])
            self.assertEqual(f["errno_name"], "EPERM")
            self.assertIn("CAP_SYS_ADMIN", f["reason"])
            self.assertFalse(report["privileges"]["cap_sys_admin"])
            self.assertEqual(report["atime"]["behaviour"], "relatime")
            self.assertEqual(report["verdict"]["recommended_mode"], "crawl")
            self.assertTrue(any("relatime" in n
                                for n in report["verdict"]["notes"]))

    def test_strictatime_remount_is_reported_honestly(self):
        with harness.LoopFs(64, options="noatime") as fs:
            report = self.run_probe(fs, extra=["--try-strictatime"])
            r = report["strictatime_remount"]
            self.assertTrue(r["remounted"], r)
            self.assertEqual(r["atime_after"], "strictatime")
            self.assertIn("this pod's mount only", r["note"])
            # Before the remount the volume measured noatime.
            self.assertEqual(report["atime"]["behaviour"], "noatime")
            denied = self.run_probe(fs, prefix=NO_SYS_ADMIN,
                                    extra=["--try-strictatime"])
            self.assertFalse(denied["strictatime_remount"]["remounted"])
            self.assertIn("EPERM", denied["strictatime_remount"]["error"])

    def test_raise_queue_reports_before_and_after_and_is_restored(self):
        path = "/proc/sys/fs/fanotify/max_queued_events"
        with open(path) as f:
            original = int(f.read())
        self.addCleanup(lambda: open(path, "w").write(f"{original}\n"))
        with harness.LoopFs(64) as fs:
            report = self.run_probe(fs, extra=["--raise-queue",
                                               str(original + 1024)])
            q = report["queue_raise"]
            self.assertEqual(q["before"], original)
            self.assertEqual(q["after"], original + 1024)
            self.assertTrue(q["changed"])
            self.assertEqual(report["fanotify"]["queue_events"],
                             original + 1024)

    def test_unusable_volume_fails(self):
        proc = probe(["--mount-path", "/nonexistent/volume"])
        self.assertNotEqual(proc.returncode, 0)
        report = json.loads(proc.stdout)
        self.assertFalse(report["mount"]["usable"])
        self.assertIn("ENOENT", report["mount"]["error"])
        self.assertFalse(report["verdict"]["usable"])

    def test_daemon_uses_the_report_in_auto_mode(self):
        with harness.LoopFs(64, options="relatime") as fs:
            report = self.run_probe(fs, prefix=NO_SYS_ADMIN)
            path = os.path.join(tempfile.mkdtemp(prefix="pvc-probe-"),
                                "r.json")
            with open(path, "w", encoding="utf-8") as f:
                json.dump(report, f)
            with harness.Daemon(["--mount-path", fs.path, "--cache-dir",
                                 "kv", "--probe-report", path]) as d:
                d.wait_for_log(r"probe report: fanotify unavailable, atime "
                               r"behaves as relatime", 10)
                d.wait_for_log(r"falling back to crawl mode", 10)
                d.wait_for_log(r"mode: crawl", 10)
                d.wait_for_log(r"atime behaves as relatime: a file read", 10)
                self.assertEqual(d.stop()[0], 0)


if __name__ == "__main__":
    unittest.main()
