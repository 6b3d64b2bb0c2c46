#!/usr/bin/env python3
"""Deterministic synthetic vLLM KV-cache generator for pvc-evictor.

Lays files out the way the llm-d FS connector (the cache writer) does, so the
integration tests, the demo and the benchmarks can build realistic caches
without a GPU:

    R/<model>_<12 hex>/config.json
    R/<model>_<12 hex>_r<rank>/<3 hex>/<2 hex>_g<group>/<16 hex>.bin

or, with --layout deep, the layout of older deployments:

    R/<model>/<12 hex>/config.json
    R/<model>/<12 hex>/tp_<ranks>/rank_<rank>/auto/<3 hex>/<2 hex>/<16 hex>.bin

<model> is the model id with "/" replaced by "_", the 12 hex are a prefix of
the sha256 of the model config and the file name is the block hash. Every
block is first written to "<name>_<random decimal>.tmp" and renamed into
place, then backdated, exactly like the writer does.

The output is a pure function of the seed and the options (plus the clock,
which --now pins): names, sizes and ages repeat from run to run. Only the
number of blocks written by --fill-percent depends on the filesystem.

Use it as a module (generate(), block_relpath(), df_usage_percent()) or as a
command; run it with --help for the options.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import hashlib
import json
import os
import posixpath
import random
import re
import sys
import time

MIB = 1 << 20
LAYOUTS = ("current", "deep")
BUCKET_LENS = (2, 3, 4)
SECOND_BUCKET_LEN = 2

# A full filesystem and an exhausted quota both mean "no more room".
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Errors meaning "this filesystem cannot fallocate": fall back to writing.
_NO_FALLOCATE_ERRNOS = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL})
_ZEROS = bytes(MIB)
_HASH_RE = re.compile(r"[0-9a-f]{16}")
_SIZE_RE = re.compile(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class NoSpaceError(RuntimeError):
    """The filesystem filled up before the requested number of files.

    `records` holds the manifest of what was created before that happened.
    """

    def __init__(self, message: str, records: list[dict]):
        super().__init__(message)
        self.records = records


# ---------------------------------------------------------------- helpers --

def parse_size(text: str) -> int:
    """Parse '4096', '512K', '1M', '2G' or '1MiB' (powers of 1024)."""
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 4096, 512K, 1M, 2G)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def df_usage_percent(path: str | os.PathLike) -> float:
    """Usage of the filesystem holding `path`, in percent, computed like df.

    df ignores the blocks reserved for root: used / (used + available).
    """
    used, total, _ = _df_bytes(path)
    return 100.0 * used / total if total else 0.0


def _df_bytes(path) -> tuple[int, int, int]:
    """(used bytes, used + available bytes, fragment size) as df sees them."""
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    return used, used + avail, st.f_frsize


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def model_dir_name(model_id: str) -> str:
    """The writer's directory name for a model id: '/' becomes '_'."""
    return model_id.replace("/", "_")


def model_config(model_id: str, ranks: int) -> dict:
    """A plausible model config; only "model_name" matters to readers."""
    return {
        "model_name": model_id,
        "dtype": "bfloat16",
        "block_size": 256,
        "num_layers": 32,
        "tensor_parallel_size": ranks,
    }


def config_hash(config: dict) -> str:
    """The 12-hex directory suffix: a prefix of sha256 of the config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def config_relpath(model_id: str, cfg_hash: str, layout: str) -> str:
    """Where a model's config.json lives, relative to the cache root."""
    base = model_dir_name(model_id)
    if layout == "current":
        return f"{base}_{cfg_hash}/config.json"
    return f"{base}/{cfg_hash}/config.json"


def rank_dir(model_id: str, cfg_hash: str, rank: int, ranks: int,
             layout: str) -> str:
    """The directory holding one rank's buckets, relative to the root."""
    base = model_dir_name(model_id)
    if layout == "current":
        return f"{base}_{cfg_hash}_r{rank}"
    return f"{base}/{cfg_hash}/tp_{ranks}/rank_{rank}/auto"


def block_relpath(model_dir: str, hash_hex: str, layout: str = "current",
                  bucket_len: int = 3, group: int = 0) -> str:
    """Path of a block file below `model_dir` (the rank directory).

    The first `bucket_len` hex digits of the hash name the first bucket, the
    next two the second; the current layout appends "_g<group>" to the
    second, the deep layout has no groups.
    """
    if not _HASH_RE.fullmatch(hash_hex):
        raise ValueError(f"block hash must be 16 lower-case hex: {hash_hex!r}")
    first = hash_hex[:bucket_len]
    second = hash_hex[bucket_len:bucket_len + SECOND_BUCKET_LEN]
    if layout == "current":
        second += f"_g{group}"
    return posixpath.join(model_dir, first, second, hash_hex + ".bin")


def _record(relpath: str, hash_hex: str | None, size: int, t_ns: int,
            kind: str) -> dict:
    return {"path": relpath, "hash": hash_hex, "size": size,
            "atime": t_ns / 1e9, "mtime": t_ns / 1e9, "kind": kind}


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_zeros(fd: int, size: int) -> None:
    """Allocate by writing zeros in 1 MiB chunks (no fallocate support)."""
    view = memoryview(_ZEROS)
    left = size
    while left:
        left -= os.write(fd, view[:min(left, MIB)])


# -------------------------------------------------------------- generator --

@dataclasses.dataclass
class _Plan:
    """Everything about one file decided before touching the disk."""
    relpath: str      # final name, relative to the root
    hash_hex: str
    size: int
    t_ns: int         # atime and mtime, nanoseconds since the epoch
    tmp_suffix: int   # the writer's random decimal in "<name>_<n>.tmp"


class CacheGenerator:
    """One generation run; generate() is the usual entry point.

    After run(), `records` is the manifest and `hit_full` tells whether a
    --fill-percent run stopped on ENOSPC rather than on the target.
    """

    def __init__(self, root, *, seed=1, models=1, ranks=1, files=None,
                 fill_percent=None, size=MIB, size_min=None, size_max=None,
                 layout="current", bucket_len=3, groups=1,
                 age_min_minutes=120, age_max_minutes=240, sparse=False,
                 orphan_temps=0, now=None):
        _validate(files, fill_percent, size, size_min, size_max, layout,
                  bucket_len, models, ranks, groups, age_min_minutes,
                  age_max_minutes, sparse, orphan_temps)
        self.root = os.fspath(root)
        self.files = files
        self.fill_percent = fill_percent
        self.size = size
        self.size_range = None if size_min is None else (size_min, size_max)
        self.layout = layout
        self.bucket_len = bucket_len
        self.groups = groups
        self.sparse = sparse
        self.orphan_temps = orphan_temps
        now_ns = time.time_ns() if now is None else round(now * 1e9)
        self.now_ns = now_ns
        self.age_range_ns = (round(age_min_minutes * 60e9),
                             round(age_max_minutes * 60e9))
        # One stream per kind and property: adding orphan temps or a size
        # spread then leaves the names, ages and places of blocks unchanged.
        self._rng = {(kind, what): random.Random(f"gencache:{seed}:{kind}:"
                                                 f"{what}")
                     for kind in ("block", "temp")
                     for what in ("hash", "suffix", "size", "age", "place")}
        self._seen_hashes: set[str] = set()
        self._models = [f"org/model-{i}" for i in range(models)]
        self._ranks = ranks
        self._rank_dirs: list[str] = []
        self._fallocate_ok = True
        self.records: list[dict] = []
        self.hit_full = False

    # ---- the run

    def run(self) -> list[dict]:
        os.makedirs(self.root, exist_ok=True)
        try:
            self._write_configs()
            for index in range(self.orphan_temps):
                self._write_orphan(index)
            self._write_blocks()
        except OSError as exc:
            if exc.errno not in _FULL_ERRNOS:
                raise
            if self.fill_percent is None:
                raise NoSpaceError(
                    f"filesystem full (ENOSPC) after {len(self.records)} of "
                    f"the requested files under {self.root}",
                    self.records) from exc
            self.hit_full = True  # a fill run just stops here
        return self.records

    def _write_blocks(self) -> None:
        index = 0
        last_cost = 0
        while self.files is None or index < self.files:
            plan = self._plan(index, "block")
            if self.fill_percent is not None:
                used, total, frsize = _df_bytes(self.root)
                # Metadata (new bucket dirs) costs extra; the last block's
                # real cost is the best estimate of the next one's.
                cost = max(_round_up(plan.size, frsize), last_cost)
                if (used + cost) * 100 > self.fill_percent * total:
                    return
            self._write_file(plan, rename=True)
            self.records.append(_record(plan.relpath, plan.hash_hex,
                                        plan.size, plan.t_ns, "block"))
            if self.fill_percent is not None:
                last_cost = _df_bytes(self.root)[0] - used
            index += 1

    def _write_orphan(self, index: int) -> None:
        """A temp file the writer never renamed (e.g. it crashed)."""
        plan = self._plan(index, "temp")
        self._write_file(plan, rename=False)
        tmp = f"{plan.relpath}_{plan.tmp_suffix}.tmp"
        self.records.append(
            _record(tmp, plan.hash_hex, plan.size, plan.t_ns, "temp"))

    def _write_configs(self) -> None:
        # Configs get the oldest allowed age: the coldest files on the
        # volume are then ones the evictor must never touch.
        t_ns = self.now_ns - self.age_range_ns[1]
        for model_id in self._models:
            config = model_config(model_id, self._ranks)
            cfg_hash = config_hash(config)
            relpath = config_relpath(model_id, cfg_hash, self.layout)
            data = (json.dumps(config, indent=2) + "\n").encode()
            path = os.path.join(self.root, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(data)
            os.utime(path, ns=(t_ns, t_ns))
            self.records.append(_record(relpath, None, len(data), t_ns,
                                        "config"))
            self._rank_dirs += [
                rank_dir(model_id, cfg_hash, rank, self._ranks, self.layout)
                for rank in range(self._ranks)]

    # ---- one file

    def _plan(self, index: int, kind: str) -> _Plan:
        """Draw name, size and age; spread files evenly over model ranks."""
        rng = {what: self._rng[kind, what]
               for what in ("hash", "suffix", "size", "age", "place")}
        hash_hex = self._new_hash(rng["hash"])
        group = rng["place"].randrange(self.groups)
        relpath = block_relpath(self._rank_dirs[index % len(self._rank_dirs)],
                                hash_hex, self.layout, self.bucket_len, group)
        size = self.size
        if self.size_range:
            size = rng["size"].randint(*self.size_range)
        age_ns = rng["age"].randint(*self.age_range_ns)
        return _Plan(relpath, hash_hex, size, self.now_ns - age_ns,
                     rng["suffix"].randrange(100_000))

    def _new_hash(self, rng: random.Random) -> str:
        while True:
            hash_hex = f"{rng.getrandbits(64):016x}"
            if hash_hex not in self._seen_hashes:
                self._seen_hashes.add(hash_hex)
                return hash_hex

    def _write_file(self, plan: _Plan, rename: bool) -> None:
        """Write like the cache writer: temp file, allocate, rename, age."""
        final = os.path.join(self.root, plan.relpath)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = f"{final}_{plan.tmp_suffix}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC,
                     0o644)
        try:
            try:
                self._allocate(fd, plan.size)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_quietly(tmp)  # never leave a partial temp file behind
            raise
        path = tmp
        if rename:
            os.rename(tmp, final)
            path = final
        os.utime(path, ns=(plan.t_ns, plan.t_ns))

    def _allocate(self, fd: int, size: int) -> None:
        if size == 0:
            return
        if self.sparse:
            os.ftruncate(fd, size)
            return
        if self._fallocate_ok:
            try:
                os.posix_fallocate(fd, 0, size)
                return
            except OSError as exc:
                if exc.errno not in _NO_FALLOCATE_ERRNOS:
                    raise
                self._fallocate_ok = False  # do not ask again for each file
        _write_zeros(fd, size)


def _validate(files, fill_percent, size, size_min, size_max, layout,
              bucket_len, models, ranks, groups, age_min, age_max, sparse,
              orphan_temps) -> None:
    """Reject option combinations that cannot produce a sensible cache."""
    if (files is None) == (fill_percent is None):
        raise ValueError("give exactly one of files and fill_percent")
    if files is not None and files < 0:
        raise ValueError("files must be >= 0")
    if fill_percent is not None:
        if not 0 < fill_percent <= 100:
            raise ValueError("fill_percent must be in (0, 100]")
        if sparse:
            raise ValueError("sparse files never fill a filesystem")
    if (size_min is None) != (size_max is None):
        raise ValueError("give both size_min and size_max, or neither")
    if size_min is not None and not 0 <= size_min <= size_max:
        raise ValueError("need 0 <= size_min <= size_max")
    if size < 0:
        raise ValueError("size must be >= 0")
    largest = size if size_max is None else size_max
    if fill_percent is not None and largest == 0:
        raise ValueError("empty files never fill a filesystem")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if bucket_len not in BUCKET_LENS:
        raise ValueError(f"bucket_len must be one of {BUCKET_LENS}")
    if min(models, ranks, groups) < 1:
        raise ValueError("models, ranks and groups must be >= 1")
    if not 0 <= age_min <= age_max:
        raise ValueError("need 0 <= age_min_minutes <= age_max_minutes")
    if orphan_temps < 0:
        raise ValueError("orphan_temps must be >= 0")


def generate(root, *, seed=1, models=1, ranks=1, files=None,
             fill_percent=None, size=MIB, size_min=None, size_max=None,
             layout="current", bucket_len=3, groups=1, age_min_minutes=120,
             age_max_minutes=240, sparse=False, orphan_temps=0,
             now=None) -> list[dict]:
    """Create a synthetic cache under `root`; return its manifest records.

    Each record is {"path", "hash", "size", "atime", "mtime", "kind"} with
    "path" relative to `root`. `now` (seconds since the epoch) pins the
    clock that ages are counted back from. Raises NoSpaceError if the
    filesystem fills up before `files` files exist; a `fill_percent` run
    simply stops there.
    """
    return CacheGenerator(
        root, seed=seed, models=models, ranks=ranks, files=files,
        fill_percent=fill_percent, size=size, size_min=size_min,
        size_max=size_max, layout=layout, bucket_len=bucket_len,
        groups=groups, age_min_minutes=age_min_minutes,
        age_max_minutes=age_max_minutes, sparse=sparse,
        orphan_temps=orphan_temps, now=now).run()


# -------------------------------------------------------------------- CLI --

def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gencache.py",
        description="Build a synthetic vLLM KV-cache under ROOT, laid out "
        "like the llm-d FS\nconnector's. Same seed and options, same names, "
        "sizes and ages.",
        epilog="examples:\n"
        "  gencache.py /mnt/cache --files 1000 --size 4M\n"
        "  gencache.py /mnt/cache --fill-percent 80 --models 2 --ranks 2\n"
        "  gencache.py /tmp/c --files 100000 --sparse --quiet "
        "--manifest m.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", metavar="ROOT", help="cache root directory "
                        "(created if missing)")
    amount = parser.add_mutually_exclusive_group(required=True)
    amount.add_argument("--files", type=int, metavar="N",
                        help="write N blocks; running out of space is an "
                        "error (exit code 1)")
    amount.add_argument("--fill-percent", type=float, metavar="P",
                        help="write blocks until the filesystem holding ROOT "
                        "is P%% used as df computes it, stopping before "
                        "going over; a full filesystem just ends the run")
    parser.add_argument("--seed", type=int, default=1,
                        help="random seed for names, sizes and ages "
                        "(default: %(default)s)")
    parser.add_argument("--models", type=int, default=1, metavar="N",
                        help="number of models, named org/model-<i> "
                        "(default: %(default)s)")
    parser.add_argument("--ranks", type=int, default=1, metavar="N",
                        help="tensor-parallel ranks per model "
                        "(default: %(default)s)")
    parser.add_argument("--size", type=_size_arg, default=MIB,
                        metavar="BYTES", help="size of every block; suffixes "
                        "K, M, G are powers of 1024 (default: 1M)")
    parser.add_argument("--size-min", type=_size_arg, metavar="BYTES",
                        help="with --size-max: draw each size uniformly "
                        "from [size-min, size-max]")
    parser.add_argument("--size-max", type=_size_arg, metavar="BYTES")
    parser.add_argument("--layout", choices=LAYOUTS, default="current",
                        help="current: <model>_<hash>_r<rank>/...; deep: "
                        "<model>/<hash>/tp_N/rank_M/auto/... "
                        "(default: %(default)s)")
    parser.add_argument("--bucket-len", type=int, choices=BUCKET_LENS,
                        default=3, help="hex digits of the first-level "
                        "bucket directory (default: %(default)s)")
    parser.add_argument("--groups", type=int, default=1, metavar="N",
                        help="number of _g<group> bucket groups "
                        "(current layout; default: %(default)s)")
    parser.add_argument("--age-min-minutes", type=float, default=120,
                        metavar="M", help="youngest block age "
                        "(default: %(default)s)")
    parser.add_argument("--age-max-minutes", type=float, default=240,
                        metavar="M", help="oldest block age "
                        "(default: %(default)s)")
    parser.add_argument("--now", type=float, metavar="EPOCH",
                        help="count ages back from this time (seconds since "
                        "the epoch) instead of the clock, for identical "
                        "timestamps between runs")
    parser.add_argument("--sparse", action="store_true",
                        help="only ftruncate files (no data blocks): for "
                        "benchmarks with many files")
    parser.add_argument("--orphan-temps", type=int, default=0, metavar="N",
                        help="also leave N never-renamed writer temp files "
                        "<hash>.bin_<n>.tmp, aged like blocks")
    parser.add_argument("--manifest", metavar="FILE",
                        help="write one JSON line per created file")
    parser.add_argument("--quiet", action="store_true",
                        help="print no summary")
    return parser


def _write_manifest(path: str, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")


def _summary(gen: CacheGenerator, seconds: float) -> str:
    kinds = [r["kind"] for r in gen.records]
    text = (f"gencache: {kinds.count('block')} blocks, "
            f"{kinds.count('temp')} orphan temps, "
            f"{kinds.count('config')} configs, "
            f"{sum(r['size'] for r in gen.records)} bytes in "
            f"{seconds:.2f} s; df usage {df_usage_percent(gen.root):.1f}%")
    if gen.hit_full:
        text += "; stopped early: filesystem full (ENOSPC)"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items()
               if k not in ("root", "manifest", "quiet")}
    started = time.monotonic()
    try:
        gen = CacheGenerator(args.root, **options)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        gen.run()
    except NoSpaceError as exc:
        if args.manifest:
            _write_manifest(args.manifest, exc.records)
        print(f"gencache: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gencache: error: {exc}", file=sys.stderr)
        return 1
    if args.manifest:
        _write_manifest(args.manifest, gen.records)
    if not args.quiet:
        print(_summary(gen, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
