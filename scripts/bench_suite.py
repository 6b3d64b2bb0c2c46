#!/usr/bin/env python3
"""The pvc-evictor benchmark suite; run it through scripts/bench.sh.

Each section measures pvc-evictor and, where the issue names one, a
baseline on the same data in the same run, then adds rows to one table:

  crawl     files/s and CPU us/file over a generated tree, warm and cold
            page cache, 1 to 16 crawler threads, against find -printf
  memory    index bytes and resident bytes per tracked file
  delete    unlinks/s of one episode, re-checks included, against
            find -delete on an identical tree
  events    decode+apply rate on one core (Google Benchmark), and end to
            end from the kernel with a reader process
  idle      daemon CPU per minute with usage below cleanup, each mode
  reaction  time from crossing cleanup to the first unlink; final usage
            against the target
  quality   evicted-miss ratio of a Zipf trace replayed against a small
            volume, next to exact LRU and Belady computed offline

Figures are CPU time where possible (getrusage, /proc/<pid>/stat), each
with the load average when it was taken. Slowness never fails the run:
the exit status is non-zero only when a benchmark could not run or
printed no result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

import bench_lib as L
import bench_quality as Q

MIB = 1 << 20
GIB = 1 << 30
# gencache --now: the same seed gives the same tree, timestamps included.
FIXED_NOW = "1700000000"
SECTIONS = ("crawl", "delete", "events", "idle", "reaction", "quality")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Suite:
    def __init__(self, build_dir: str, smoke: bool):
        self.build = build_dir
        self.smoke = smoke
        self.rows: list[dict] = []
        self.raw: dict[str, dict] = {}
        self.errors: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self.scratch: L.Scratch | None = None
        self._tree_small: tuple[str, int] | None = None
        self.daemon_bin = os.path.join(build_dir, "pvc-evictor")

    # ------------------------------------------------------------ helpers --

    def exe(self, name: str) -> str:
        path = os.path.join(self.build, "tests", "bench", name)
        if not os.access(path, os.X_OK):
            raise L.BenchError(f"{path} is missing: build it first")
        return path

    def row(self, section, metric, value, unit, *, target="", met=None,
            load=None, note=""):
        status = "" if met is None else ("met" if met else "NOT met")
        if met is not None and self.smoke:
            status = "(smoke)"  # tiny sizes: says nothing about targets
        self.rows.append({"section": section, "metric": metric,
                          "value": value, "unit": unit, "target": target,
                          "status": status,
                          "load1": (load or L.loadavg())[0], "note": note})

    def log_path(self, name: str) -> str:
        assert self.scratch
        return self.scratch.path(name + ".log")

    def daemon(self, mount, cache_dir, args, name, metrics=False):
        L.log(f"starting pvc-evictor {' '.join(map(str, args))} ({name})")
        return L.Daemon(self.daemon_bin, mount, cache_dir, args,
                        self.log_path(name), metrics=metrics)

    def tree_small(self) -> tuple[str, int]:
        """The 200,000-file sparse tree the events and idle sections share
        (2,000 in smoke mode), on its own ext4 image."""
        if self._tree_small is None:
            assert self.scratch
            n = 2000 if self.smoke else 200_000
            mnt = self.scratch.ext4("tree200k", 256 * MIB if self.smoke
                                    else 3 * GIB,
                                    inodes=20_000 if self.smoke else 600_000)
            L.log(f"generating {n} sparse files for the events and idle "
                  "sections")
            L.gencache(os.path.join(mnt, "cache"), "--files", str(n),
                       "--sparse", "--seed", "2", "--now", FIXED_NOW)
            os.sync()
            self._tree_small = (mnt, n)
        return self._tree_small

    # -------------------------------------------------------------- crawl --

    def sec_crawl(self):
        smoke = self.smoke
        n = 5000 if smoke else 1_000_000
        threads = [1, 8] if smoke else [1, 2, 4, 8, 16]
        warm_reps = 1 if smoke else 2
        crawl_bench = self.exe("crawl_bench")
        assert self.scratch
        mnt = self.scratch.ext4("crawl", 256 * MIB if smoke else 8 * GIB,
                                inodes=40_000 if smoke else 2_500_000)
        root = os.path.join(mnt, "cache")
        L.log(f"generating {n} sparse files in the writer's layout")
        t0 = time.monotonic()
        L.gencache(root, "--files", str(n), "--sparse", "--seed", "1",
                   "--now", FIXED_NOW)
        os.sync()
        gen_s = time.monotonic() - t0
        find_cmd = ["find", root, "-type", "f", "-printf",
                    "%i %b %A@ %T@ %p\n"]
        runs = []

        def crawl(cache, crawlers, extra=()):
            load = L.loadavg()
            r = L.run_json([crawl_bench, "--root", root, "--crawlers",
                            str(crawlers), *extra])
            r.update(cache=cache, load=load)
            runs.append(r)
            L.log(f"crawl {cache} x{crawlers}: {r['files_per_s']:.0f} "
                  f"files/s, {r['cpu_us_per_file']:.2f} us/file CPU "
                  f"(load {load[0]})")
            return r

        def find(cache):
            load = L.loadavg()
            r = L.run_measured(find_cmd)
            r.update(bench="find", cache=cache, load=load, files=n,
                     files_per_s=n / r["seconds"],
                     cpu_us_per_file=r["cpu_s"] * 1e6 / n)
            runs.append(r)
            L.log(f"find {cache}: {r['files_per_s']:.0f} files/s, "
                  f"{r['cpu_us_per_file']:.2f} us/file CPU (load {load[0]})")
            return r

        # Warm: the tree was just written; one find makes sure every
        # dentry and inode is cached before the first measurement.
        L.run_measured(find_cmd)
        for rep in range(warm_reps):
            order = threads if rep % 2 == 0 else list(reversed(threads))
            for t in order:
                crawl("warm", t)
            find("warm")
        # Watch mode's crawl also records each directory's file handle.
        watch_run = crawl("warm", 8, ("--policy", "watch", "--handles"))
        watch_run["cache"] = "warm-watch"
        cold = L.is_root()
        if cold:
            # The 8-crawler run and find alternate (twice in full mode), so
            # that a burst of other I/O on the shared disk hits both; the
            # other thread counts run once.
            for _ in range(1 if smoke else 2):
                L.drop_caches()
                find("cold")
                L.drop_caches()
                crawl("cold", 8)
            for t in threads:
                if t != 8:
                    L.drop_caches()
                    crawl("cold", t)

        def summary(cache, crawlers=None):
            sel = [r for r in runs if r["cache"] == cache and (
                r.get("bench") == "find" if crawlers is None
                else r.get("crawlers") == crawlers and
                r.get("bench") == "crawl")]
            if not sel:
                return None
            best = max(sel, key=lambda r: r["files_per_s"])
            return {"files_per_s": best["files_per_s"],
                    "files_per_s_median": median([r["files_per_s"]
                                                  for r in sel]),
                    "cpu_us_per_file": median([r["cpu_us_per_file"]
                                               for r in sel]),
                    "load": best["load"], "runs": len(sel)}

        def rate_note(s):
            note = f"CPU {s['cpu_us_per_file']:.2f} us/file"
            if s["runs"] > 1:
                note += (f"; best of {s['runs']}, median "
                         f"{s['files_per_s_median']:.0f}")
            return note

        table = {}
        for cache in ("warm", "cold") if cold else ("warm",):
            for t in threads:
                s = summary(cache, t)
                table[f"{cache}_x{t}"] = s
                self.row("crawl", f"{cache} cache, {t} crawler(s)",
                         round(s["files_per_s"]), "files/s",
                         load=s["load"], note=rate_note(s))
            f = summary(cache)
            table[f"{cache}_find"] = f
            self.row("crawl", f"{cache} cache, find -printf (baseline)",
                     round(f["files_per_s"]), "files/s", load=f["load"],
                     note=rate_note(f))
            c8 = table[f"{cache}_x8"]
            self.row("crawl", f"{cache} cache, CPU per file, 8 crawlers",
                     round(c8["cpu_us_per_file"], 2), "us/file",
                     target=f"<= find ({f['cpu_us_per_file']:.2f})",
                     met=c8["cpu_us_per_file"] <= f["cpu_us_per_file"],
                     load=c8["load"])
            worst = max(table[f"{cache}_x{t}"]["cpu_us_per_file"]
                        for t in threads)
            self.row("crawl", f"{cache} cache, CPU per file, worst thread "
                     "count", round(worst, 2), "us/file",
                     target=f"<= find ({f['cpu_us_per_file']:.2f})",
                     met=worst <= f["cpu_us_per_file"], load=c8["load"])
        if cold:
            c8, cf = table["cold_x8"], table["cold_find"]
            ratio = c8["files_per_s"] / cf["files_per_s"]
            self.row("crawl", "cold cache, 8 crawlers vs find", round(ratio, 2),
                     "x find's rate", target=">= 3", met=ratio >= 3,
                     load=c8["load"],
                     note=f"best vs best; medians give "
                     f"{c8['files_per_s_median'] / cf['files_per_s_median']:.2f}")
        else:
            self.row("crawl", "cold cache runs", "skipped", "",
                     note="not root: cannot drop caches")

        # ---- memory: the index in-process, then the daemon's own RSS.
        first = next(r for r in runs if r["cache"] == "warm" and
                     r.get("crawlers") == 8 and r.get("bench") == "crawl")
        self.row("memory", f"index accounting at {n} files",
                 round(first["index_bytes_per_file"], 1), "bytes/file",
                 target="about 100", met=first["index_bytes_per_file"] <= 110,
                 load=first["load"],
                 note=f"{first['index_dirs']} directories indexed")
        self.row("memory", "crawl_bench RSS growth per file",
                 round(first["rss_bytes_per_file"], 1), "bytes/file",
                 target="about 100", met=first["rss_bytes_per_file"] <= 110,
                 load=first["load"])
        self.row("memory", "watch mode: + directory-handle map",
                 round(watch_run["rss_bytes_per_file"] -
                       first["rss_bytes_per_file"], 1), "bytes/file",
                 load=watch_run["load"],
                 note=f"crawl_bench RSS growth "
                 f"{watch_run['rss_bytes_per_file']:.1f} bytes/file with "
                 f"handles of {watch_run['dir_handles']} directories")
        daemons = {}
        os.makedirs(os.path.join(mnt, "empty"), exist_ok=True)
        for mode in ("crawl", "watch"):
            rss = {}
            for cache_dir in ("empty", "cache"):
                d = self.daemon(mnt, cache_dir, ["--mode", mode],
                                f"memory-{mode}-{cache_dir}")
                try:
                    d.wait_for(r"index ready", 900)
                    time.sleep(0.5)
                    rss[cache_dir] = d.rss()
                finally:
                    d.stop()
            per_file = (rss["cache"] - rss["empty"]) / n
            daemons[mode] = {"rss_empty": rss["empty"],
                             "rss_full": rss["cache"],
                             "bytes_per_file": per_file}
            self.row("memory", f"daemon RSS per file, {mode} mode",
                     round(per_file, 1), "bytes/file", target="about 100",
                     met=per_file <= 110,
                     note=f"RSS {rss['cache'] / MIB:.0f} MiB at {n} files, "
                     f"{rss['empty'] / MIB:.1f} MiB empty")
        self.raw["crawl"] = {"files": n, "generate_seconds": gen_s,
                             "threads": threads, "runs": runs,
                             "summary": table, "daemon_memory": daemons}
        self.scratch.release(mnt)

    # ------------------------------------------------------------- delete --

    def sec_delete(self):
        smoke = self.smoke
        n = 2000 if smoke else 100_000
        reps = 1 if smoke else 3
        delete_bench = self.exe("delete_bench")
        assert self.scratch
        mnt = self.scratch.ext4("delete", 256 * MIB if smoke else 3 * GIB,
                                inodes=40_000 if smoke else 800_000)
        runs = []
        for rep in range(reps):
            a = os.path.join(mnt, f"evictor{rep}")
            b = os.path.join(mnt, f"find{rep}")
            L.log(f"delete rep {rep + 1}/{reps}: two identical trees of {n}")
            for root in (a, b):
                L.gencache(root, "--files", str(n), "--sparse", "--seed",
                           str(10 + rep), "--now", FIXED_NOW)
            os.sync()
            order = ("evictor", "find") if rep % 2 == 0 else ("find",
                                                               "evictor")
            for who in order:
                load = L.loadavg()
                if who == "evictor":
                    r = L.run_json([delete_bench, "--root", a, "--count",
                                    str(n)])
                else:
                    r = L.run_measured(["find", b, "-type", "f", "-name",
                                        "*.bin", "-delete"])
                    left = sum(1 for _, _, fs in os.walk(b)
                               for f in fs if f.endswith(".bin"))
                    r.update(bench="find-delete", deleted=n - left,
                             unlinks_per_s=(n - left) / r["seconds"],
                             cpu_us_per_unlink=r["cpu_s"] * 1e6 / n)
                r.update(load=load, rep=rep)
                runs.append(r)
                L.log(f"{who}: {r['unlinks_per_s']:.0f} unlinks/s, "
                      f"{r['cpu_us_per_unlink']:.2f} us CPU each "
                      f"(load {load[0]})")
                os.sync()
            shutil.rmtree(a)
            shutil.rmtree(b)
            os.sync()
        ev = [r for r in runs if r["bench"] == "delete"]
        fd = [r for r in runs if r["bench"] == "find-delete"]
        ev_rate = median([r["unlinks_per_s"] for r in ev])
        fd_rate = median([r["unlinks_per_s"] for r in fd])
        ev_cpu = median([r["cpu_us_per_unlink"] for r in ev])
        fd_cpu = median([r["cpu_us_per_unlink"] for r in fd])
        self.row("delete", f"episode deleting {n} (re-checks + lease)",
                 round(ev_rate), "unlinks/s", load=ev[-1]["load"],
                 note=f"CPU {ev_cpu:.2f} us/unlink; leases "
                 f"{'on' if ev[-1]['leases'] else 'OFF'}")
        self.row("delete", "find -delete (baseline)", round(fd_rate),
                 "unlinks/s", load=fd[-1]["load"],
                 note=f"CPU {fd_cpu:.2f} us/unlink")
        ratio = ev_rate / fd_rate
        self.row("delete", "episode rate vs find -delete", round(ratio, 2),
                 "x", target=">= 0.8", met=ratio >= 0.8, load=ev[-1]["load"],
                 note=f"CPU-time ratio {fd_cpu / ev_cpu:.2f}")
        self.raw["delete"] = {"files": n, "runs": runs, "ratio": ratio,
                              "cpu_ratio": fd_cpu / ev_cpu}
        self.scratch.release(mnt)

    # ------------------------------------------------------------- events --

    def gbench(self, name: str, extra: list[str]) -> list[dict]:
        r = subprocess.run([self.exe(name), "--benchmark_format=json",
                            *extra], capture_output=True, text=True,
                           check=False, timeout=1200)
        if r.returncode != 0:
            raise L.BenchError(f"{name} exited {r.returncode}: "
                               f"{r.stderr[-2000:]}")
        out = json.loads(r.stdout)["benchmarks"]
        bad = [b["name"] for b in out if b.get("error_occurred")]
        if bad:
            raise L.BenchError(f"{name}: errors in {bad}")
        return out

    def sec_events(self):
        smoke = self.smoke
        extra = (["--benchmark_min_time=0.05",
                  "--benchmark_filter=/100000$|BM_Decode$"] if smoke else
                 ["--benchmark_min_time=1", "--benchmark_repetitions=3",
                  "--benchmark_report_aggregates_only=true"])
        load = L.loadavg()
        apply_out = self.gbench("apply_bench", extra)
        decode_out = self.gbench("decode_bench", extra[:1] + extra[2:])

        def pick(out):
            res = {}
            for b in out:
                if smoke or b.get("aggregate_name") == "median":
                    res[b.get("run_name", b["name"])] = b
            return res

        applied = pick(apply_out)
        decoded = pick(decode_out)
        for name, b in sorted(decoded.items()):
            self.row("events", f"{name} (decode only)",
                     round(b["items_per_second"] / 1e6, 2), "M events/s",
                     load=load, note="CPU time, one core")
        for name, b in sorted(applied.items()):
            rate = b["items_per_second"]
            target = met = None
            if name.startswith("BM_DecodeApply"):
                target, met = ">= 1 M/s", rate >= 1e6
            self.row("events", name, round(rate / 1e6, 2), "M events/s",
                     target=target or "", met=met, load=load,
                     note="CPU time, one core" +
                     (", median of 3" if not smoke else ""))
        self.raw["events"] = {"apply_bench": apply_out,
                              "decode_bench": decode_out}
        self.events_e2e()

    def events_e2e(self):
        mnt, n = self.tree_small()
        root = os.path.join(mnt, "cache")
        passes = 1 if self.smoke else 3
        reader = [self.exe("reader_bench"), "--root", root, "--count", str(n),
                  "--passes", str(passes)]
        L.run_json(reader[:-1] + ["1"])  # warm-up: dentries, relatime atime
        base1 = L.run_json(reader)
        d = self.daemon(mnt, "cache", ["--mode", "watch"], "events-watch",
                        metrics=True)
        try:
            d.wait_for(r"index ready", 600)
            d.wait_for(r"replayed \d+ of \d+ events", 30)
            d.wait_idle(0.5)
            m0 = d.metrics()
            cpu0 = d.cpu()
            t0 = time.monotonic()
            load = L.loadavg()
            with_d = L.run_json(reader)
            t_reader = time.monotonic()
            # The daemon has drained the queue when its CPU time stops
            # growing; /proc reads cost it nothing, /metrics would.
            t_drained = d.wait_idle(0.3)
            cpu1 = d.cpu()
            m1 = d.metrics()
            busy = max(t_drained, t_reader) - t0
            lag = max(0.0, t_drained - t_reader)
        finally:
            d.stop()
        base2 = L.run_json(reader)
        key = "pvc_evictor_events_received_total"
        events = m1[key] - m0[key]
        applied = (m1["pvc_evictor_events_applied_total"] -
                   m0["pvc_evictor_events_applied_total"])
        overflows = (m1["pvc_evictor_event_overflows_total"] -
                     m0["pvc_evictor_event_overflows_total"])
        dcpu = cpu1 - cpu0
        ops = n * passes
        base_ns = (base1["cpu_ns_per_op"] + base2["cpu_ns_per_op"]) / 2
        with_ns = with_d["cpu_ns_per_op"]
        self.row("events", "kernel to daemon, watch mode",
                 round(events / busy / 1e6, 3), "M events/s", load=load,
                 note=f"{events:.0f} events for {ops} open-read-close in "
                 f"{busy:.2f}s, drained {lag * 1000:.0f} ms after the "
                 f"reader; {overflows:.0f} overflows")
        self.row("events", "daemon CPU per event received",
                 round(dcpu / events * 1e9 if events else 0), "ns/event",
                 load=load, note=f"{events / dcpu / 1e6 if dcpu else 0:.2f} "
                 "M events per daemon CPU-second")
        self.row("events", "reader cost per open-read-close, no daemon",
                 round(base_ns), "ns CPU", load=load,
                 note=f"runs {base1['cpu_ns_per_op']:.0f} and "
                 f"{base2['cpu_ns_per_op']:.0f}")
        self.row("events", "reader cost per open-read-close, watch mode",
                 round(with_ns), "ns CPU", load=load,
                 note=f"+{(with_ns / base_ns - 1) * 100:.0f}% "
                 "(the kernel queues fanotify events in the reader's "
                 "context)")
        self.raw["events_e2e"] = {
            "files": n, "passes": passes, "events": events,
            "applied": applied, "overflows": overflows,
            "busy_seconds": busy, "drain_lag_s": lag, "daemon_cpu_s": dcpu,
            "reader_without": [base1, base2], "reader_with": with_d,
            "load": load}

    # --------------------------------------------------------------- idle --

    def sec_idle(self):
        mnt, n = self.tree_small()
        window = 3 if self.smoke else 60
        crawl_window = 5 if self.smoke else 30
        # Watch mode rescans every 12 x --rescan-interval (1 s at least).
        crawl_interval = {"crawl": 2 if self.smoke else 5, "watch": 1}
        default_interval = {"crawl": 300, "watch": 12 * 300}
        usage = L.df_percent(mnt)
        out = {}
        crawl_rx = r"crawl done: (\d+) files in \d+ directories in ([\d.]+)s"
        for mode in ("crawl", "watch"):
            d = self.daemon(mnt, "cache", ["--mode", mode], f"idle-{mode}")
            try:
                d.wait_for(r"index ready", 600)
                startup_cpu = d.cpu()
                time.sleep(1)
                load = L.loadavg()
                c0, f0, t0 = d.cpu(), d.cpu_fine(), time.monotonic()
                time.sleep(window)
                c1, f1, t1 = d.cpu(), d.cpu_fine(), time.monotonic()
                crawls_in_window = len(re.findall(crawl_rx, d.text())) - 1
                if crawls_in_window == 0:
                    c0, c1 = f0, f1  # no thread ended: ns resolution
                rss = d.rss()
            finally:
                d.stop()
            idle_rate = (c1 - c0) / (t1 - t0)  # CPU s per s
            # Per-crawl cost: the same daemon rescanning every few seconds
            # (in smoke mode only in crawl mode: watch mode's shortest
            # rescan interval is 12 s).
            crawls = 0
            k0 = k1 = s0 = s1 = 0.0
            if not (self.smoke and mode == "watch"):
                d = self.daemon(mnt, "cache", ["--mode", mode,
                                               "--rescan-interval",
                                               str(crawl_interval[mode])],
                                f"idle-{mode}-rescans")
                try:
                    d.wait_for(r"index ready", 600)
                    time.sleep(0.5)
                    before = len(re.findall(crawl_rx, d.text()))
                    k0, s0 = d.cpu(), time.monotonic()
                    time.sleep(crawl_window)
                    k1, s1 = d.cpu(), time.monotonic()
                    crawls = len(re.findall(crawl_rx, d.text())) - before
                finally:
                    d.stop()
            per_crawl = (max(0.0, (k1 - k0) - idle_rate * (s1 - s0)) /
                         crawls if crawls else None)
            amortized = idle_rate + (per_crawl or 0) / default_interval[mode]
            out[mode] = {"window_s": t1 - t0, "cpu_s": c1 - c0,
                         "idle_cpu_s_per_min": idle_rate * 60,
                         "crawls_in_window": crawls_in_window,
                         "startup_cpu_s": startup_cpu, "rss_bytes": rss,
                         "per_crawl_cpu_s": per_crawl,
                         "crawls_measured": crawls,
                         "rescan_interval_default_s": default_interval[mode],
                         "amortized_cpu_s_per_min": amortized * 60,
                         "load": load}
            target, limit = (("< 1% of a core", 1.0) if mode == "watch" else
                             ("a few % of a core", 3.0))
            self.row("idle", f"{mode} mode, {window}s window",
                     round(idle_rate * 60, 4), "CPU s/min", load=load,
                     note=f"{idle_rate * 100:.3f}% of a core; "
                     f"{crawls_in_window} rescans in the window")
            self.row("idle", f"{mode} mode, CPU per full crawl of {n}",
                     round(per_crawl, 3) if per_crawl is not None else "n/a",
                     "CPU s", load=load,
                     note=f"{crawls} crawls in {crawl_window}s at "
                     f"--rescan-interval {crawl_interval[mode]}")
            self.row("idle", f"{mode} mode, amortized with rescans every "
                     f"{default_interval[mode]}s", round(amortized * 100, 3),
                     "% of a core", target=target,
                     met=amortized * 100 < limit, load=load)
        out["usage_percent"] = usage
        out["files"] = n
        self.raw["idle"] = out

    # ----------------------------------------------------------- reaction --

    def sec_reaction(self):
        modes = ["crawl"] if self.smoke else ["crawl", "watch"]
        trials = 1 if self.smoke else 5
        assert self.scratch
        out = {}
        for mode in modes:
            mnt = self.scratch.ext4(f"react-{mode}", 256 * MIB)
            root = os.path.join(mnt, "kv")
            push_dir = os.path.join(mnt, "push")
            os.makedirs(push_dir)
            results = []
            for trial in range(trials):
                L.gencache(root, "--fill-percent", "80", "--size", "1M",
                           "--seed", str(100 + trial))
                os.sync()
                r = self.react_trial(mnt, root, push_dir, mode, trial)
                results.append(r)
                L.log(f"reaction {mode} #{trial + 1}: first unlink "
                      f"{r['reaction_s'] * 1000:.0f} ms after crossing; "
                      f"final {r['final_percent']:.2f}%")
            self.scratch.release(mnt)
            out[mode] = results
            reac = [r["reaction_s"] for r in results]
            fin = [r["final_percent"] for r in results]
            load = results[-1]["load"]
            self.row("reaction", f"{mode} mode, crossing 85% to first unlink",
                     round(median(reac) * 1000), "ms (median)", load=load,
                     note=f"max {max(reac) * 1000:.0f} ms over {trials}; "
                     "poll interval 500 ms")
            self.row("reaction", f"{mode} mode, final usage (target 70%)",
                     round(median(fin), 2), "% (median)", load=load,
                     note=f"range {min(fin):.2f}-{max(fin):.2f}%; one "
                     f"block is {results[-1]['block_points']:.2f} pt")
        self.raw["reaction"] = out

    def react_trial(self, mnt, root, push_dir, mode, trial):
        d = self.daemon(mnt, "kv", ["--mode", mode],
                        f"reaction-{mode}-{trial}")
        ino = L.Inotify()
        try:
            d.wait_for(r"index ready", 120)
            time.sleep(0.3)
            for leaf in L.leaf_dirs(root):
                ino.watch(leaf)
            load = L.loadavg()
            start = L.df_percent(mnt)
            chunk = b"\xa5" * MIB
            t_cross = None
            path = os.path.join(push_dir, f"fill-{trial}")
            with open(path, "wb") as f:
                while True:
                    f.write(chunk)
                    f.flush()
                    pct = L.df_percent(mnt)
                    if t_cross is None and pct >= 85.0:
                        t_cross = time.time()
                    if pct >= 90.0:
                        break
            peak = L.df_percent(mnt)
            t_first = ino.first_event(30)
            if t_first is None:
                raise L.BenchError(f"no unlink within 30 s ({mode} mode)")
            m = d.wait_for(r"DELETION_END:([\d.]+),([\d.]+)", 60)
            t_end = float(m.group(1))
            time.sleep(0.3)
            final = L.df_percent(mnt)
            text = d.text()
            starts = re.findall(r"DELETION_START:([\d.]+),([\d.]+)", text)
            ended = re.findall(r"episode ended: deleted (\d+) files", text)
        finally:
            ino.close()
            d.stop()
        os.unlink(os.path.join(push_dir, f"fill-{trial}"))
        os.sync()
        _, total = L.df_bytes(mnt)
        return {"start_percent": start, "peak_percent": peak,
                "block_points": 100.0 * MIB / total,
                "reaction_s": t_first - t_cross,
                "deletion_start_after_cross_s":
                    float(starts[-1][0]) - t_cross if starts else None,
                "episode_s": t_end - float(starts[-1][0]) if starts else None,
                "deleted_files": int(ended[-1]) if ended else None,
                "final_percent": final, "load": load}

    # ------------------------------------------------------------ quality --

    def sec_quality(self):
        smoke = self.smoke
        if smoke:
            p = dict(blocks=500, ops=1500, zipf=0.8, p_new=0.2, rate=250,
                     block_bytes=16 << 10, volume=16 * MIB, hot_s=0.5,
                     rescan_s=1)
            configs = [("watch", "relatime")]
        else:
            p = dict(blocks=4000, ops=24000, zipf=0.8, p_new=0.2, rate=300,
                     block_bytes=16 << 10, volume=40 * MIB, hot_s=3,
                     rescan_s=1)
            configs = [("watch", "relatime"), ("crawl", "strictatime"),
                       ("crawl", "relatime")]
        trace = Q.make_trace(1, p["ops"], p["blocks"], p["zipf"], p["p_new"])
        assert self.scratch
        out = {"params": p, "configs": {}}
        offline_done = None
        for mode, atime in configs:
            mnt = self.scratch.ext4(f"quality-{mode}-{atime}", p["volume"],
                                    options=atime, mkfs_args=("-b", "4096"))
            root = os.path.join(mnt, "kv")
            Q.Replayer.prepare(root)
            os.sync()
            c_hi, c_lo = Q.capacities(root, p["block_bytes"], 85, 70)
            if offline_done is None or offline_done[0] != (c_hi, c_lo):
                t0 = time.monotonic()
                offline = {
                    "lru": Q.simulate_lru(trace, c_hi),
                    "lru_hyst": Q.simulate_lru(trace, c_hi, c_lo),
                    "belady": Q.simulate_belady(trace, c_hi)}
                L.log(f"offline policies at C_hi={c_hi}, C_lo={c_lo} in "
                      f"{time.monotonic() - t0:.1f}s")
                offline_done = ((c_hi, c_lo), offline)
            offline = offline_done[1]
            args = ["--mode", mode, "--hot-minutes", f"{p['hot_s'] / 60:.6f}"]
            if mode == "crawl":
                args += ["--rescan-interval", str(p["rescan_s"])]
            d = self.daemon(mnt, "kv", args, f"quality-{mode}-{atime}")
            try:
                d.wait_for(r"index ready", 60)
                load = L.loadavg()
                L.log(f"replaying {p['ops']} operations at {p['rate']}/s "
                      f"({mode} mode, {atime})")
                rep = Q.Replayer(root, p["block_bytes"], p["rate"]).run(trace)
                text = d.text()
            finally:
                d.stop()
            self.scratch.release(mnt)
            rep["episodes"] = len(re.findall(r"DELETION_START", text))
            rep["emergency_lines"] = len(re.findall(r"emergency", text))
            rep["stuck_lines"] = len(re.findall(r"nothing .*deletable|stuck",
                                                text))
            rep["load"] = load
            key = f"{mode}/{atime}"
            out["configs"][key] = {"daemon": rep, "offline": offline,
                                   "c_hi": c_hi, "c_lo": c_lo}
            L.log(f"{key}: evicted-miss ratio {rep['evicted_miss_ratio']:.3f}"
                  f" (LRU {offline['lru']['evicted_miss_ratio']:.3f}, "
                  f"Belady {offline['belady']['evicted_miss_ratio']:.3f})")
            self.row("quality", f"{mode} mode on {atime}",
                     round(rep["evicted_miss_ratio"], 3),
                     "evicted-miss ratio", load=load,
                     note=f"{rep['evicted_misses']} of "
                     f"{rep['reads'] - rep['compulsory']} re-reads; "
                     f"{rep['episodes']} episodes; "
                     f"{rep['write_failures']} ENOSPC; lag max "
                     f"{rep['max_lag_s']:.2f}s")
        (c_hi, c_lo), offline = offline_done
        self.row("quality", f"exact LRU, {c_hi} blocks",
                 round(offline["lru"]["evicted_miss_ratio"], 3),
                 "evicted-miss ratio", note="offline, same trace")
        self.row("quality", f"exact LRU with hysteresis {c_hi}->{c_lo}",
                 round(offline["lru_hyst"]["evicted_miss_ratio"], 3),
                 "evicted-miss ratio", note="offline, same trace")
        self.row("quality", f"Belady MIN, {c_hi} blocks",
                 round(offline["belady"]["evicted_miss_ratio"], 3),
                 "evicted-miss ratio", note="offline, same trace")
        self.raw["quality"] = out

    # ---------------------------------------------------------------- run --

    def run(self, only: list[str]) -> None:
        self.scratch = L.Scratch()
        try:
            for name in only:
                L.log(f"=== {name} ===")
                t0 = time.monotonic()
                try:
                    getattr(self, f"sec_{name}")()
                except L.BenchError as e:
                    self.errors[name] = str(e)
                    L.log(f"{name} FAILED: {e}")
                except (OSError, subprocess.SubprocessError, KeyError,
                        ValueError, StopIteration) as e:
                    self.errors[name] = f"{type(e).__name__}: {e}"
                    L.log(f"{name} FAILED: {type(e).__name__}: {e}")
                self.durations[name] = round(time.monotonic() - t0, 1)
        finally:
            self.scratch.close()


def format_table(rows: list[dict]) -> str:
    head = ["section", "metric", "value", "unit", "target", "status",
            "load1", "note"]
    cells = [[str(r[h]) for h in head] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells])
              for i, h in enumerate(head[:-1])]
    lines = []
    for row in [head] + cells:
        lines.append("  ".join(c.ljust(w) for c, w in
                               zip(row[:-1], widths)) + "  " + row[-1])
        if row is head:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--out", required=True, help="results JSON file")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown sections {unknown}")

    def on_term(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    if not L.is_root():
        L.log("not root: loop filesystems cannot be mounted; sections that "
              "need them will report an error")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = L.loadavg()
    t0 = time.monotonic()
    suite = Suite(args.build_dir, args.smoke)
    suite.run(only)
    total = time.monotonic() - t0
    result = {
        "suite": "pvc-evictor benchmarks",
        "mode": "smoke" if args.smoke else "full",
        "started_utc": started.isoformat(timespec="seconds"),
        "duration_s": round(total, 1),
        "section_seconds": suite.durations,
        "machine": L.machine(),
        "load_start": load_start, "load_end": L.loadavg(),
        "table": suite.rows, "errors": suite.errors, "raw": suite.raw,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    print(format_table(suite.rows))
    print(f"\n{len(suite.rows)} figures in {total:.0f}s "
          f"({'smoke' if args.smoke else 'full'} mode); load average "
          f"{load_start} at start, {result['load_end']} at end; "
          f"written to {args.out}")
    for name, err in suite.errors.items():
        print(f"ERROR in {name}: {err.splitlines()[0]}", file=sys.stderr)
    return 1 if suite.errors else 0


if __name__ == "__main__":
    sys.exit(main())
