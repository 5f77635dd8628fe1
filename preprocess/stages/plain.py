"""``kmlm-preprocess plain``: plain text files per language -> fairseq mmap datasets (the MLM stream).

Input: text files, one sample per line (uncompressed, gzip or bzip2), given as ``LANG=FILE`` or as ``FILE`` named
after its language code (``de.txt``, ``zh-hans.txt.gz``; not ``train.txt``); several files of one language are read
one after the other.
Output, under ``-o DATA`` (next to binarize's knowledge/ and reasoning/):
  ``DATA/plain/<lang>/{train,valid}[k].{bin,idx}``  each line's tokens + ``</s>`` (masked_lm prepends ``<s>``)
  ``DATA/plain/summary.json``; the tokenizer files ``DATA/sentencepiece.bpe.model`` (or, for an imported BERT's
  WordPiece, ``DATA/hf_tokenizer/``) and ``DATA/dict.txt`` (preprocess/core/tokenizers/).
Lines that are blank, not UTF-8, or tokenize to nothing are skipped and counted; a line is never cut (masked_lm's
``TokenBlockDataset`` splits long samples when training).

Backends, with byte-identical files (tests/preprocess/test_plain.py):
  ``--backend direct`` (default): tokenizer ids -> fairseq ids with one NumPy lookup -> the ``.bin`` written in
      one write per chunk and the ``.idx`` once per shard (preprocess/core/formats/indexed.py; docs/design.md §4).
  ``--backend fairseq``: the lines' pieces (fairseq symbols) go to a temporary text file per shard, which
      ``fairseq-preprocess --only-source --srcdict DATA/dict.txt`` binarizes (the reference, ~7.6k lines/s).

Valid split: a line is held out when hash(seed, file number, byte offset of the line) is below its language's
threshold, set by a first pass over the line offsets of all that language's files so that ``valid`` holds
``round(--valid-fraction x lines)`` lines, at least 1 and at most ``--valid-max`` (lines of ASCII whitespace do not
count; a held-out line that is skipped later, e.g. not UTF-8, leaves valid one line short).
It depends only on the seed and the files: not on ``--workers``, ``--spm-threads``, ``--chunk-mb``, ``--backend``
or ``--part``.

Scale: the files are read in blocks of whole lines (``--chunk-mb``), encoded by ``--workers`` processes (each
running the tokenizer on ``--spm-threads`` threads: parallel without shipping tokens between processes), written in
block order (identical files for any worker count) as shards of ``--shard-size`` lines. ``--part I/N`` binarizes the
lines starting in the I-th of N byte ranges of all files taken together (SLURM array task) into
``DATA/plain/parts/``; ``--gather`` numbers the parts' shards contiguously.
"""
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from preprocess.core import text_blocks
from preprocess.core.binarized_output import (
    DatasetWriters,
    HeldOutPlanner,
    add_output_arguments,
    check_scale_arguments,
    log_summary,
    output_root,
    start_output,
)
from preprocess.core.errors import UserFacingError
from preprocess.core.formats import indexed
from preprocess.core.formats.indexed import SUMMARY_FILE, TOKENS, TRAIN, VALID, shard_name
from preprocess.core.io import write_text
from preprocess.core.seeds import held_out_hash, held_out_salt
from preprocess.core.tokenizers.install import install_tokenizer
from preprocess.core.workers import map_ordered

logger = logging.getLogger("kmlm-preprocess plain")

PLAIN = "plain"
DIRECT, FAIRSEQ = "direct", "fairseq"
BLANK, BAD_UTF8, EMPTY = "skipped: blank line", "skipped: not UTF-8", "skipped: tokenizes to nothing"
FILE_BITS = 48  # a line's hash key: file number << 48 | byte offset


# --- Inputs ---------------------------------------------------------------------------------------------------
LANGUAGE_CODE = r"[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*"  # en, yue, zh-hans, pt_BR: what a file may be named after


def parse_inputs(specs):
    """``["de=a.txt", "fr.txt.gz"]`` -> ``[("de", Path("a.txt")), ("fr", Path("fr.txt.gz"))]``, grouped by language
    in order of first appearance."""
    pairs = []
    for spec in specs:
        if "=" in spec and not Path(spec).exists():
            lang, path = spec.split("=", 1)
            language_pattern = r"[A-Za-z][\w-]*"
        else:
            path = spec
            lang = re.sub(r"(\.(txt|text|raw))?(\.(gz|bz2))?$", "", Path(spec).name)
            language_pattern = LANGUAGE_CODE  # so that train.txt or wiki.txt is not taken for a language
        if not re.fullmatch(language_pattern, lang):
            raise UserFacingError(f"{spec}: cannot tell its language; pass it as LANG=FILE")
        if not Path(path).is_file():
            raise UserFacingError(f"{path}: no such file")
        pairs.append((lang, Path(path)))
    order = list(dict.fromkeys(lang for lang, _ in pairs))
    return sorted(pairs, key=lambda pair: order.index(pair[0]))


@dataclass
class Range:
    file_number: int  # position in the inputs: part of each line's hash key
    lang: str
    path: Path
    start: int
    end: int | None  # None: to the end


def part_ranges(inputs, part):
    """The byte ranges of the inputs (as one stream) that ``part`` (index, count) owns; all of them for None."""
    if part is None:
        return [Range(k, lang, path, 0, None) for k, (lang, path) in enumerate(inputs)]
    sizes = [text_blocks.split_size(path) for _, path in inputs]
    total = sum(sizes)
    start = total * part[0] // part[1]
    end = total * (part[0] + 1) // part[1] if part[0] + 1 < part[1] else None
    ranges, base = [], 0
    for k, ((lang, path), size) in enumerate(zip(inputs, sizes)):
        lo, hi = start - base, (None if end is None or end - base >= size else end - base)
        if lo < size and (hi is None or hi > max(lo, 0)):
            ranges.append(Range(k, lang, path, max(lo, 0), hi))
        base += size
    return ranges


def line_starts(data):
    """Byte offsets of the lines of a block of whole lines."""
    raw = np.frombuffer(data, dtype=np.uint8)
    starts = np.concatenate([[0], np.flatnonzero(raw == 10) + 1])
    return starts[:-1] if not len(raw) or raw[-1] == 10 else starts


def blank_lines(data, starts):
    """Which lines hold nothing but ASCII whitespace (a line's range includes its own "\\n", never visible)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if not len(starts):
        return np.zeros(0, dtype=bool)
    visible = (raw > 32) | (raw < 9) | ((raw > 13) & (raw < 32))  # not \t \n \v \f \r or space
    return ~np.logical_or.reduceat(visible, starts)


def line_keys(file_number, offsets):
    return (np.int64(file_number) << np.int64(FILE_BITS)) | np.asarray(offsets, dtype=np.int64)


def plan_held_out(inputs, seed, fraction, valid_max, chunk_bytes):
    """First pass over the line offsets of every file: {language: valid threshold}."""
    planner, salt = HeldOutPlanner(fraction, valid_max), held_out_salt(seed, PLAIN)
    for k, (lang, path) in enumerate(inputs):
        planner.add(lang, np.zeros(0, np.uint64))
        if fraction == 0 or valid_max == 0:
            continue
        for block in text_blocks.iter_blocks(path, chunk_bytes):
            starts = line_starts(block.data)
            blank = blank_lines(block.data, starts)
            planner.add(lang, held_out_hash(line_keys(k, block.offset + starts[~blank]), salt))
    return planner.thresholds()


def iter_items(ranges, chunk_bytes):
    for r in ranges:
        for block in text_blocks.iter_blocks(r.path, chunk_bytes, r.start, r.end):
            yield r.lang, r.file_number, block.offset, block.first_line, block.data


# --- Encoding (in the workers) ---------------------------------------------------------------------------------
@dataclass
class BlockResult:
    n_bytes: int
    counts: Counter
    datasets: dict  # (lang, split) -> (sizes, tokens) [direct] or (token counts, piece lines) [fairseq]
    bad_lines: list


def split_lines(data):
    """The block's lines as UTF-8 bytes (sentencepiece reads them without a copy; str would be re-encoded), and the
    indices of those that are not UTF-8 (returned as b"")."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    if is_utf8(data):
        return lines, []
    bad = []
    for i, line in enumerate(lines):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            lines[i] = b""
            bad.append(i)
    return lines, bad


def is_utf8(data):
    """Whether bytes are valid UTF-8 (the rules of Python's strict decoder: no surrogates, no overlong forms),
    checked by Arrow without building a str: ~6x faster than ``bytes.decode`` on multilingual text."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    try:
        pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)]).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def space_only_lines(data, starts):
    """Which lines hold only bytes that may be whitespace to ``str.strip``: ASCII whitespace, the separators
    \\x1c-\\x1f, or bytes of non-ASCII characters (U+3000, U+00A0, ...). Only these can strip to nothing."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if not len(starts):
        return np.zeros(0, dtype=bool)
    maybe_space = (raw >= 128) | ((raw >= 28) & (raw <= 32)) | ((raw >= 9) & (raw <= 13))
    return np.logical_and.reduceat(maybe_space, starts)


class PlainEncoder:
    def __init__(self, tokenizer, thresholds, seed, backend, spm_threads=1):
        self.tokenizer, self.thresholds, self.backend, self.spm_threads = tokenizer, thresholds, backend, spm_threads
        self.salt = held_out_salt(seed, PLAIN)
        self.dtype = indexed.best_fitting_int_dtype(len(tokenizer))

    def __call__(self, item):
        lang, file_number, offset, first_line, data = item
        starts = line_starts(data)
        lines, bad = split_lines(data)
        counts = Counter({"lines read": len(lines), BAD_UTF8: len(bad)})
        bad_lines = [f"line {first_line + i:,}" if first_line is not None else f"byte {offset + int(starts[i]):,}"
                     for i in bad[:3]]
        keep = np.ones(len(lines), dtype=bool)
        keep[bad] = False
        for i in np.flatnonzero(space_only_lines(data, starts)):
            keep[i] = bool(lines[i].decode("utf-8").strip())  # b"" for a line that is not UTF-8
        counts[BLANK] += int((~keep).sum()) - len(bad)
        valid = held_out_hash(line_keys(file_number, offset + starts), self.salt) < np.uint64(self.thresholds[lang])
        # Every line is encoded, blank ones too (they cost nothing): no filtered copy of the block's lines.
        if self.backend == DIRECT:
            tokens, sizes = self.tokenizer.encode_lines(lines, self.dtype, self.spm_threads)
            nonempty = sizes > 1
        else:
            pieces = self.tokenizer.encode_pieces(lines, self.spm_threads)
            sizes = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces)) + 1
            nonempty = sizes > 1
        counts[EMPTY] += int((keep & ~nonempty).sum())
        keep &= nonempty
        datasets = {}
        for split, in_split in ((TRAIN, keep & ~valid), (VALID, keep & valid)):
            n = int(in_split.sum())
            if not n:
                continue
            counts[f"written {split}"] += n
            if self.backend == DIRECT:
                chosen = tokens if n == len(lines) else tokens[np.repeat(in_split, sizes)]
                datasets[(lang, split)] = (sizes[in_split], chosen)
            else:
                datasets[(lang, split)] = (sizes[in_split], [" ".join(pieces[i]) for i in np.flatnonzero(in_split)])
        return BlockResult(len(data), counts, datasets, bad_lines)


# --- The fairseq-preprocess backend ---------------------------------------------------------------------------
def fairseq_preprocess(text_path, dict_path, prefix, workers):
    """Binarize a file of space-separated pieces with fairseq-preprocess into ``prefix.bin/.idx``."""
    with tempfile.TemporaryDirectory(dir=Path(prefix).parent, prefix=".fairseq-preprocess-") as dest:
        command = [sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", str(dict_path),
                   "--trainpref", str(text_path), "--destdir", dest, "--workers", str(workers),
                   "--dataset-impl", "mmap"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserFacingError(f"fairseq-preprocess failed on {text_path} (status {done.returncode}):\n"
                                  + "\n".join((done.stdout + done.stderr).splitlines()[-15:]))
        for ext in ("bin", "idx"):
            os.replace(Path(dest) / f"train.{ext}", f"{prefix}.{ext}")


class FairseqPreprocessWriters:
    """Same role as ``DatasetWriters``, through fairseq-preprocess: one temporary text file per open shard."""

    def __init__(self, root, dict_path, shard_size, workers):
        self.root, self.dict_path, self.shard_size, self.workers = Path(root), dict_path, shard_size, workers
        self.state = {}  # (lang, split) -> dict(file, path, count, shards, samples, tokens)

    def add(self, lang, split, sizes, lines):
        state = self.state.setdefault((lang, split), {"file": None, "count": 0, "shards": 0, "samples": 0,
                                                      "tokens": 0})
        done = 0
        while done < len(lines):
            if state["file"] is None:
                (self.root / lang).mkdir(parents=True, exist_ok=True)
                state["path"] = self.root / lang / f".{shard_name(split, state['shards'])}.pieces-{os.getpid()}.txt"
                state["file"] = open(state["path"], "w", encoding="utf-8")
            take = min(len(lines) - done, self.shard_size - state["count"])
            state["file"].write("".join(line + "\n" for line in lines[done:done + take]))
            state["count"] += take
            state["samples"] += take
            state["tokens"] += int(np.sum(sizes[done:done + take]))
            done += take
            if state["count"] == self.shard_size:
                self._flush(lang, split, state)

    def _flush(self, lang, split, state):
        state["file"].close()
        fairseq_preprocess(state["path"], self.dict_path, self.root / lang / shard_name(split, state["shards"]),
                           self.workers)
        state["path"].unlink()
        state.update(file=None, count=0, shards=state["shards"] + 1)

    def close(self):
        datasets = {}
        for (lang, split), state in sorted(self.state.items()):
            if state["file"] is not None:
                self._flush(lang, split, state)
            indexed.remove_shards(self.root / lang, split, keep=state["shards"])
            datasets[f"{lang}/{split}"] = {k: state[k] for k in ("samples", "tokens", "shards")}
        for lang in {lang for lang, _ in self.state}:
            for split in (TRAIN, VALID):
                if (lang, split) not in self.state:
                    indexed.remove_shards(self.root / lang, split)
        return datasets

    def abort(self):
        for state in self.state.values():
            if state["file"] is not None:
                state["file"].close()
                state["path"].unlink(missing_ok=True)


# --- The stage ------------------------------------------------------------------------------------------------
def binarize_plain(inputs, data_dir, tokenizer, backend=DIRECT, seed=1, valid_fraction=0.01, valid_max=1000,
                   workers=1, chunk_bytes=8 << 20, shard_size=10_000_000, part=None, spm_threads=1):
    """Binarize ``inputs`` ([(lang, path)]) into ``data_dir/plain`` (or its part); returns the summary it writes."""
    started = time.perf_counter()
    root = output_root(data_dir, PLAIN, part)
    start_output(root)
    thresholds = plan_held_out(inputs, seed, valid_fraction, valid_max, chunk_bytes)
    ranges = part_ranges(inputs, part)
    if backend == DIRECT:
        writers = DatasetWriters(root, {TOKENS: indexed.best_fitting_int_dtype(len(tokenizer))}, shard_size)
    else:
        writers = FairseqPreprocessWriters(root, tokenizer.dict_path, shard_size, workers)
    counts, bad_logged = Counter(), 0
    total = None if any(text_blocks.detect_format(r.path) != text_blocks.PLAIN for r in ranges) else sum(
        (r.end if r.end is not None else r.path.stat().st_size) - r.start for r in ranges)
    try:
        with tqdm(total=total, unit="B", unit_scale=True, desc="binarize plain", mininterval=1) as bar:
            items = iter_items(ranges, chunk_bytes)
            init_args = (tokenizer, thresholds, seed, backend, spm_threads)
            for result in map_ordered(PlainEncoder, init_args, items, workers):
                for where in result.bad_lines[:max(0, 10 - bad_logged)]:
                    logger.warning("skipped a line that is not UTF-8: %s", where)
                bad_logged += len(result.bad_lines)
                counts.update(result.counts)
                for (lang, split), (sizes, data) in sorted(result.datasets.items()):
                    writers.add(lang, split, sizes, {TOKENS: data} if backend == DIRECT else data)
                bar.update(result.n_bytes)
    except BaseException:
        writers.abort()
        raise
    counts["samples read"] = counts["lines read"]
    summary = {
        "kind": PLAIN,
        "inputs": [{"lang": lang, "path": str(Path(path).resolve())} for lang, path in inputs],
        "part": None if part is None else {"index": part[0], "count": part[1],
                                           "ranges": [[str(r.path), r.start, r.end] for r in ranges]},
        "settings": {"backend": backend, "seed": seed, "valid_fraction": valid_fraction, "valid_max": valid_max,
                     "shard_size": shard_size, "tokenizer": [tokenizer.model_path, tokenizer.dict_path]},
        "seconds": round(time.perf_counter() - started, 3),
        "counts": dict(sorted(counts.items())),
        "datasets": writers.close(),
    }
    write_text(json.dumps(summary, indent=2) + "\n", root / SUMMARY_FILE)
    log_summary(PLAIN, summary, root, logger)
    return summary


def add_arguments(parser):
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    parser.epilog = "Details: the module docstring of preprocess/stages/plain.py."
    parser.add_argument("inputs", nargs="*", metavar="[LANG=]FILE",
                        help="text files, one sample per line; LANG= may be left out for files named <lang>.txt[.gz]")
    parser.add_argument("--backend", choices=(DIRECT, FAIRSEQ), default=DIRECT,
                        help="direct: our NumPy writer; fairseq: tokenizer pieces -> fairseq-preprocess "
                             "(byte-identical) (default: %(default)s)")
    parser.add_argument("--chunk-mb", type=float, default=8.0,
                        help="MB of whole lines per work item (default: %(default)s)")
    parser.add_argument("--spm-threads", type=int, default=1, metavar="N",
                        help="tokenizer threads per worker (sentencepiece, or WordPiece's pool when N > 1; same "
                             "output for any N) (default: %(default)s)")
    add_output_arguments(parser, "byte")


def run(args):
    if args.gather:
        summary = indexed.gather_parts(args.output / PLAIN)
        logger.info("gathered %d parts of plain: %s", summary["parts"], summary["shards"])
        return 0
    check_scale_arguments(args)
    if args.spm_threads < 1:
        raise UserFacingError(f"--spm-threads must be at least 1, got {args.spm_threads}")
    if not args.inputs:
        raise UserFacingError("no input files: pass LANG=FILE ... (or --gather)")
    inputs = parse_inputs(args.inputs)
    tokenizer = install_tokenizer(args, args.output)
    binarize_plain(inputs, args.output, tokenizer, args.backend, args.seed, args.valid_fraction, args.valid_max,
                   args.workers, max(1, int(args.chunk_mb * (1 << 20))), args.shard_size, args.part, args.spm_threads)
    return 0
