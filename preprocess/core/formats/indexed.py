"""fairseq's mmap indexed datasets written straight from NumPy arrays, in shards, and the gathering of SLURM parts.

Format (``fairseq.data.indexed_dataset.MMapIndexedDataset``; the bytes are identical to what fairseq-preprocess
writes for the same samples and dtype):
  ``PREFIX.bin``  every sample's tokens, concatenated, in the dataset's dtype (little-endian, no header)
  ``PREFIX.idx``  ``b"MMIDIDX\\x00\\x00"``, version ``<Q`` 1, dtype code ``<B``, sample count ``<Q``,
                  sizes ``int32[count]``, pointers ``int64[count]`` (byte offset of each sample in ``.bin``)
Token datasets use fairseq's ``best_fitting_int_dtype(vocabulary size)`` (uint16 below 65,500 symbols, else
uint32), as fairseq-preprocess does; span-tag datasets (``PREFIX.tags``) are int32.

Shards: a split (``train``) is written as ``train``, ``train1``, ``train2``, ... of at most ``shard_size`` samples
each: fairseq's ``split + str(k)`` names, which ``load_indexed_dataset(..., combine=True)`` concatenates in order.
Each shard is written to hidden temporary files that are renamed when the shard is complete, so a killed run
never leaves a shard that looks whole.

Parts: a SLURM array task writes its share under ``KIND_DIR/parts/IIIII-of-NNNNN/<lang>/`` with its own shard
numbering and a ``summary.json``; ``gather_parts`` then renames every part's shards, in part order, to one
contiguous numbering in ``KIND_DIR/<lang>/`` (data is never copied).
"""
import argparse
import json
import os
import re
import shutil
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.core.json_input import read_json

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
# fairseq.data.indexed_dataset._code_to_dtype, restricted to the dtypes we write
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int16): 3, np.dtype(np.int32): 4, np.dtype(np.int64): 5,
               np.dtype(np.uint16): 8, np.dtype(np.uint32): 9}
TRAIN, VALID = "train", "valid"
TOKENS, TAGS = "", ".tags"  # stream suffixes: PREFIX.bin and PREFIX.tags.bin
PARTS_DIR = "parts"
SUMMARY_FILE = "summary.json"


def best_fitting_int_dtype(vocab_size):
    """fairseq.data.indexed_dataset.best_fitting_int_dtype (the dtype fairseq-preprocess picks)."""
    if vocab_size < 65500:
        return np.dtype(np.uint16)
    if vocab_size < 4294967295:
        return np.dtype(np.uint32)
    return np.dtype(np.int64)


def shard_name(split, k):
    return split + (str(k) if k > 0 else "")


def index_bytes(sizes, dtype):
    """The ``.idx`` file's content for samples of ``sizes`` tokens of ``dtype``."""
    sizes = np.asarray(sizes, dtype=np.int32)
    pointers = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= np.dtype(dtype).itemsize
    header = MAGIC + struct.pack("<Q", VERSION) + struct.pack("<B", DTYPE_CODES[np.dtype(dtype)])
    return header + struct.pack("<Q", len(sizes)) + sizes.tobytes() + pointers.tobytes()


def write_indexed_dataset(prefix, tokens, sizes, dtype):
    """Write one whole dataset ``prefix.bin/.idx`` in one write each (not atomic; see ``ShardedSplitWriter``)."""
    with open(f"{prefix}.bin", "wb") as f:
        f.write(np.ascontiguousarray(tokens, dtype=dtype).tobytes())
    with open(f"{prefix}.idx", "wb") as f:
        f.write(index_bytes(sizes, dtype))


# Every dtype code fairseq reads (fairseq.data.indexed_dataset._code_to_dtype); a dataset of tokens or tags must
# hold integers.
READABLE_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double,
                   8: np.uint16, 9: np.uint32, 10: np.uint64}
HEADER_BYTES = len(MAGIC) + 8 + 1 + 8  # magic, version, dtype code, sample count


def check_indexed_dataset(prefix, dtype=None):
    """(sizes int32, dtype) of the fairseq mmap dataset ``prefix.bin/.idx``, once its index is checked whole and
    true to the data file: the magic and version, an integer dtype (``dtype``, if given), as many sizes and
    pointers as the count says, no negative size, the samples stored one after the other from byte 0, and the
    ``.bin`` exactly as long as they are. Only the index is read (fast at any dataset size); a failed check is an
    error naming the file, so damaged data stops a run before the first update instead of hours into it."""
    idx, data = Path(f"{prefix}.idx"), Path(f"{prefix}.bin")
    for path in (idx, data):
        if not path.is_file():
            raise UserFacingError(f"{path} does not exist (a dataset is the pair {prefix}.bin/.idx)")
    index = np.memmap(idx, dtype=np.uint8, mode="r") if idx.stat().st_size else np.zeros(0, np.uint8)
    if len(index) < HEADER_BYTES or bytes(index[:len(MAGIC)]) != MAGIC:
        raise UserFacingError(f"{idx} is not a fairseq mmap index (no MMIDIDX header): {DAMAGED}")
    (version,) = struct.unpack_from("<Q", index, len(MAGIC))
    code, (count,) = int(index[len(MAGIC) + 8]), struct.unpack_from("<Q", index, len(MAGIC) + 9)
    if version != VERSION:
        raise UserFacingError(f"{idx}: index version {version}, expected {VERSION}: {DAMAGED}")
    found = READABLE_DTYPES.get(code)
    if found is None or not np.issubdtype(found, np.integer):
        raise UserFacingError(f"{idx}: dtype code {code} is not an integer type: {DAMAGED}")
    if dtype is not None and np.dtype(found) != np.dtype(dtype):
        raise UserFacingError(f"{idx}: samples of {np.dtype(found)}, expected {np.dtype(dtype)}: {DAMAGED}")
    if len(index) < HEADER_BYTES + 12 * count:
        raise UserFacingError(f"{idx} is truncated: {len(index):,} bytes, but {count:,} samples need "
                              f"{HEADER_BYTES + 12 * count:,}: {DAMAGED}")
    sizes = np.frombuffer(index, dtype=np.int32, count=count, offset=HEADER_BYTES)
    pointers = np.frombuffer(index, dtype=np.int64, count=count, offset=HEADER_BYTES + 4 * count)
    itemsize = np.dtype(found).itemsize
    ends = np.cumsum(sizes, dtype=np.int64) * itemsize
    starts = ends - sizes.astype(np.int64) * itemsize
    bad = np.flatnonzero((sizes < 0) | (pointers != starts))
    if len(bad):
        i = int(bad[0])
        raise UserFacingError(f"{idx}: sample {i:,} has size {sizes[i]} at byte {pointers[i]:,}, but the samples "
                              f"before it end at byte {starts[i]:,}: {DAMAGED}")
    length, needed = data.stat().st_size, int(ends[-1]) if count else 0
    if length != needed:
        what = "truncated" if length < needed else "extra bytes"
        raise UserFacingError(f"{data} holds {length:,} bytes but its index {idx.name} describes {needed:,} "
                              f"({count:,} samples of {np.dtype(found)}): {what}; {DAMAGED}")
    return sizes, np.dtype(found)


DAMAGED = "the file is damaged or incomplete; binarize the data again"


def read_indexed_dataset(prefix):
    """(sizes int32, flat tokens) of ``prefix.bin/.idx``, checked, without fairseq (for gathering and checks)."""
    sizes, dtype = check_indexed_dataset(prefix)
    return sizes, np.fromfile(f"{prefix}.bin", dtype=dtype)


class _Shard:
    """One shard being written: one ``.bin`` per stream, appended chunk by chunk; the ``.idx`` files at the end."""

    def __init__(self, prefix, streams):
        self.prefix, self.streams, self.sizes = prefix, streams, []
        self.paths = {s: Path(f"{prefix}{s}.bin") for s in streams}
        self.tmp = {s: p.with_name(f".{p.name}.tmp-{os.getpid()}") for s, p in self.paths.items()}
        self.files = {s: open(self.tmp[s], "wb") for s in streams}
        self.count = 0

    def write(self, sizes, arrays):
        for suffix, dtype in self.streams.items():
            self.files[suffix].write(np.ascontiguousarray(arrays[suffix], dtype=dtype).tobytes())
        self.sizes.append(np.asarray(sizes, dtype=np.int32))
        self.count += len(sizes)

    def finish(self):
        sizes = np.concatenate(self.sizes) if self.sizes else np.zeros(0, np.int32)
        for suffix, dtype in self.streams.items():
            self.files[suffix].close()
            idx = Path(f"{self.prefix}{suffix}.idx")
            idx_tmp = idx.with_name(f".{idx.name}.tmp-{os.getpid()}")
            idx_tmp.write_bytes(index_bytes(sizes, dtype))
            os.replace(self.tmp[suffix], self.paths[suffix])
            os.replace(idx_tmp, idx)
        return sizes

    def abort(self):
        for suffix in self.streams:
            self.files[suffix].close()
            self.tmp[suffix].unlink(missing_ok=True)


class ShardedSplitWriter:
    """Writes one split of one dataset (``DIR/train``, ``DIR/train1``, ...) of at most ``shard_size`` samples each.

    ``streams`` maps a suffix to a dtype, e.g. ``{TOKENS: uint16, TAGS: int32}``: datasets written side by side
    with the same sample sizes. ``add(sizes, {suffix: flat array})`` appends samples in order; ``close()`` finishes
    the last shard, deletes stale shards of an earlier run numbered past the new ones, and returns
    ``(samples, tokens, shards)``. An empty split writes nothing (fairseq cannot mmap an empty ``.bin``).
    """

    def __init__(self, directory, split, streams, shard_size):
        if shard_size < 1:
            raise UserFacingError(f"--shard-size must be at least 1, got {shard_size}")
        self.directory, self.split, self.streams, self.shard_size = Path(directory), split, streams, shard_size
        self.shard, self.shards, self.samples, self.tokens = None, 0, 0, 0

    def add(self, sizes, arrays):
        sizes = np.asarray(sizes, dtype=np.int64)
        starts = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=starts[1:])
        done = 0
        while done < len(sizes):
            if self.shard is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self.shard = _Shard(str(self.directory / shard_name(self.split, self.shards)), self.streams)
            take = min(len(sizes) - done, self.shard_size - self.shard.count)
            lo, hi = starts[done], starts[done + take]
            self.shard.write(sizes[done:done + take], {s: arrays[s][lo:hi] for s in self.streams})
            done += take
            if self.shard.count == self.shard_size:
                self._finish_shard()
        self.samples += len(sizes)
        self.tokens += int(starts[-1])

    def _finish_shard(self):
        self.shard.finish()
        self.shard, self.shards = None, self.shards + 1

    def close(self):
        if self.shard is not None:
            self._finish_shard()
        remove_shards(self.directory, self.split, keep=self.shards)
        return self.samples, self.tokens, self.shards

    def abort(self):
        if self.shard is not None:
            self.shard.abort()
            self.shard = None


def _shard_files(directory, split):
    """{shard number: [paths]} of the shard files of ``split`` in ``directory`` (any stream)."""
    pattern = re.compile(rf"^{re.escape(split)}(\d*)(\.tags)?\.(bin|idx)$")
    found = {}
    if Path(directory).is_dir():
        for path in Path(directory).iterdir():
            match = pattern.match(path.name)
            if match and not match.group(1).startswith("0"):  # "train0"/"train01" are not fairseq shard names
                found.setdefault(int(match.group(1) or 0), []).append(path)
    return found


def remove_shards(directory, split, keep=0):
    """Delete the shard files of ``split`` numbered ``keep`` or higher (left by an earlier, larger run)."""
    for k, paths in _shard_files(directory, split).items():
        if k >= keep:
            for path in paths:
                path.unlink()


# --- SLURM parts ----------------------------------------------------------------------------------------------
def parse_part(text):
    """``"3/16"`` -> (3, 16); the task index is 0-based, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-15``."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 3/16), got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= I < N")
    return index, count


def part_dir(kind_dir, part):
    index, count = part
    return Path(kind_dir) / PARTS_DIR / f"{index:05d}-of-{count:05d}"


def gather_parts(kind_dir):
    """Move the shards of every part under ``kind_dir/parts/`` into ``kind_dir/<lang>/``, numbered contiguously
    in part order, and merge the parts' summaries into ``kind_dir/summary.json``; returns the merged summary.

    All N parts must have finished (written their summary); otherwise nothing is moved."""
    parts_root = Path(kind_dir) / PARTS_DIR
    parts = sorted(p for p in parts_root.iterdir() if p.is_dir()) if parts_root.is_dir() else []
    if not parts:
        raise UserFacingError(f"{parts_root}: no parts to gather (run the tasks with --part I/N first)")
    counts = {p.name.split("-of-")[-1] for p in parts}
    if len(counts) != 1:
        raise UserFacingError(f"{parts_root} mixes parts of different task counts: {sorted(counts)}")
    count = counts.pop()
    expected = [f"{i:05d}-of-{count}" for i in range(int(count))]
    missing = [name for name in expected if not (parts_root / name / SUMMARY_FILE).exists()]
    if missing:
        raise UserFacingError(f"{parts_root}: parts not finished (no {SUMMARY_FILE}): {', '.join(missing)}")
    summaries = [read_json(parts_root / name / SUMMARY_FILE, f"{parts_root / name / SUMMARY_FILE} disappeared",
                           lambda err, name=name: f"{parts_root / name / SUMMARY_FILE}: not a JSON summary ({err}); "
                                                  f"re-run part {name}") for name in expected]
    languages = sorted({lang.name for name in expected for lang in (parts_root / name).iterdir() if lang.is_dir()})
    datasets = {}
    for lang in languages:
        target = Path(kind_dir) / lang
        target.mkdir(parents=True, exist_ok=True)
        for split in (TRAIN, VALID):
            k = 0
            for name in expected:
                source = parts_root / name / lang
                for j, paths in sorted(_shard_files(source, split).items()):
                    for path in paths:
                        os.replace(path, target / path.name.replace(shard_name(split, j), shard_name(split, k), 1))
                    k += 1
            remove_shards(target, split, keep=k)
            datasets[f"{lang}/{split}"] = k
    merged = merge_summaries(summaries)
    merged["parts"] = len(expected)
    merged["shards"] = datasets
    write_text(json.dumps(merged, indent=2) + "\n", Path(kind_dir) / SUMMARY_FILE)
    shutil.rmtree(parts_root)
    return merged


SHARED_SUMMARY_KEYS = ("kind", "inputs", "settings", "valid_threshold")  # the same in every part of one run


def merge_summaries(summaries):
    """Sum the ``counts`` and per-dataset ``datasets`` numbers of several parts' summaries; keep the keys every part
    holds alike (``SHARED_SUMMARY_KEYS``: what the run was, and its valid split, which fact recall reads back)."""
    shared = {key: summaries[0][key] for key in SHARED_SUMMARY_KEYS
              if key in summaries[0] and all(summary.get(key) == summaries[0][key] for summary in summaries)}
    counts, datasets = Counter(), {}
    for summary in summaries:
        counts.update(summary.get("counts", {}))
        for name, numbers in summary.get("datasets", {}).items():
            total = datasets.setdefault(name, Counter())
            total.update({k: v for k, v in numbers.items() if k != "shards"})
    return {**shared, "counts": dict(sorted(counts.items())),
            "datasets": {k: dict(v) for k, v in sorted(datasets.items())}}
