"""Read a Wikidata JSON dump as blocks of whole lines, fast, and optionally only one shard's byte range of it.

Input: ``.json`` (or any uncompressed text), gzip (``.json.gz``) or bzip2 (``.json.bz2``); the format is told by
the file's first bytes, not its name. gzip is decompressed with python-isal (``isal.igzip``, ~2x Python's gzip);
bzip2 with ``lbzip2 -dc`` in a subprocess when it is on PATH (multi-threaded), Python's ``bz2`` module otherwise.

Output: ``Block``s, each holding whole lines (a block ends with ``\\n`` except the very last line of a file that
lacks one), the block's byte offset in the decompressed stream and the number of its first line (1-based), so a
parser can report where a bad line is. ``iter_block_refs`` gives, for an uncompressed file, ``BlockRef``s instead:
where the block lies, for the process that parses it to read it itself (``load``), so that the bytes of a dump do
not pass through the process that plans the blocks (one read instead of a read, a pickling, a pipe and an
unpickling); only the first block of a read knows its first line number, the others follow the previous one
(``FOLLOWS``: the consumer adds up the blocks' line counts).

Shards: ``shard_reads`` splits the *decompressed* stream (of all inputs, one after the other) into N byte ranges;
a shard owns the lines whose first byte lies in its range, so every line belongs to exactly one shard wherever
the boundaries fall.
  - uncompressed input: the ranges split the file size exactly and each shard seeks to its range (line numbers
    are then unknown for shards other than the first, and bad lines are reported by byte offset only);
  - compressed input: compressed streams cannot be entered in the middle, so each shard decompresses from the
    start and skips what precedes its range. The decompressed size is unknown until the end, so the ranges split
    ``--decompressed-size`` when given (e.g. the byte count a previous run logged, or ``zcat DUMP | wc -c``), or
    else an estimate: the compressed size times the compression ratio of the first 8 MiB. The estimate only
    affects how evenly the work is spread, never which lines are read: the last shard reads to the end of the
    stream, and every shard computes the same estimate from the same bytes.
A truncated or corrupt compressed file raises ``UserFacingError`` naming the file and how far reading got.
"""
import bz2
import os
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from isal import igzip, isal_zlib

from preprocess.core.errors import UserFacingError

GZIP, BZIP2, PLAIN = "gzip", "bzip2", "plain"
ESTIMATE_PREFIX_BYTES = 8 << 20
_DECOMPRESS_ERRORS = (EOFError, OSError, zlib.error, isal_zlib.error)


FOLLOWS = -1  # Block.first_line: the line after the last one of the previous block of the same read


@dataclass
class Block:
    path: str
    offset: int  # byte offset of data[0] in the decompressed stream
    first_line: int | None  # 1-based number of the first line, None when unknown (a shard that seeked), or FOLLOWS
    data: bytes

    def load(self):
        return self


@dataclass
class BlockRef:
    """A block of whole lines of an uncompressed file, by position: ``load()`` reads it."""
    path: str
    offset: int
    size: int
    first_line: int | None

    def load(self):
        with open(self.path, "rb") as f:
            data = os.pread(f.fileno(), self.size, self.offset)
        if len(data) != self.size:
            raise UserFacingError(f"{self.path} shrank while it was read: {self.size:,} bytes expected at byte "
                                  f"{self.offset:,}, {len(data):,} found")
        return Block(self.path, self.offset, self.first_line, data)


def detect_format(path):
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] == b"\x1f\x8b":
        return GZIP
    if magic[:3] == b"BZh":
        return BZIP2
    if magic == b"\x28\xb5\x2f\xfd":
        raise UserFacingError(f"{path} is zstd-compressed, which is not supported: decompress it or use gzip")
    return PLAIN


class DumpStream:
    """``read(n)`` over the decompressed bytes of a dump; ``compressed_position()`` for progress."""

    def __init__(self, path):
        self.path = Path(path)
        self.format = detect_format(self.path)
        self.size = self.path.stat().st_size
        self._raw = open(self.path, "rb")
        self._proc = None
        if self.format == GZIP:
            self._stream = igzip.IGzipFile(fileobj=self._raw, mode="rb")
        elif self.format == BZIP2 and shutil.which("lbzip2"):
            # lbzip2 reads our file descriptor directly; its offset (shared with ours) tells the progress.
            self._proc = subprocess.Popen(
                ["lbzip2", "-dc"], stdin=self._raw, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            self._stream = self._proc.stdout
        elif self.format == BZIP2:
            self._stream = bz2.BZ2File(self._raw, "rb")
        else:
            self._stream = self._raw
        self.decoder_name = "lbzip2" if self._proc else {GZIP: "isal.igzip", BZIP2: "bz2", PLAIN: "none"}[self.format]

    @property
    def seekable(self):
        return self.format == PLAIN

    def seek(self, offset):
        assert self.seekable
        self._raw.seek(offset)

    def read(self, n):
        """Up to n decompressed bytes; b"" at the end; ``OSError`` (with the decoder's message) if corrupt."""
        try:
            data = self._stream.read(n)
        except _DECOMPRESS_ERRORS as err:
            raise OSError(f"{type(err).__name__}: {err}") from err
        if not data and self._proc is not None and self._proc.wait() != 0:
            message = self._proc.stderr.read().decode("utf-8", "replace").strip()
            raise OSError(f"lbzip2 exited with status {self._proc.returncode}: {message}")
        return data

    def compressed_position(self):
        return os.lseek(self._raw.fileno(), 0, os.SEEK_CUR)

    def close(self):
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()  # we stopped early (end of a shard): the rest of the stream is not needed
            self._proc.wait()
            self._proc.stdout.close()
            self._proc.stderr.close()
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def estimate_decompressed_size(path):
    """Compressed size x the compression ratio of the first ``ESTIMATE_PREFIX_BYTES`` (exact for small files)."""
    fmt, size = detect_format(path), Path(path).stat().st_size
    if fmt == PLAIN:
        return size
    with open(path, "rb") as f:
        prefix = f.read(ESTIMATE_PREFIX_BYTES)
    out, rest = 0, prefix
    try:
        while rest:  # a file may hold several gzip members / bzip2 streams
            decomp = isal_zlib.decompressobj(wbits=31) if fmt == GZIP else bz2.BZ2Decompressor()
            out += len(decomp.decompress(rest))
            rest = decomp.unused_data if decomp.eof else b""
    except _DECOMPRESS_ERRORS as err:
        raise UserFacingError(f"{path}: corrupt {fmt} data in its first {len(prefix):,} bytes ({err})") from err
    return out if len(prefix) == size else int(out * size / max(len(prefix), 1))


def split_size(path, decompressed_size=None):
    """The byte count of one input that the shard ranges split: the file size of an uncompressed input, else the
    given decompressed size, else the estimate."""
    if detect_format(path) == PLAIN:
        return Path(path).stat().st_size
    return decompressed_size or estimate_decompressed_size(path)


@dataclass
class Read:
    path: Path
    start: int = 0  # read the lines whose first byte lies in [start, end) of this input's decompressed stream
    end: int | None = None  # None: to the end of the stream


def shard_reads(paths, sizes, index, count):
    """What shard ``index`` of ``count`` reads of the inputs, taken as one stream: ``sizes`` (``split_size``)
    place input k at [sum(sizes[:k]), sum(sizes[:k+1])); the N ranges split the total evenly, shard i owning the
    lines that start in [bounds[i], bounds[i+1]) (the last shard: to the end). A compressed input longer than
    its estimate belongs past its nominal end to the shard that owns its last nominal byte."""
    total = sum(sizes)
    start, end = total * index // count, (total * (index + 1) // count if index + 1 < count else None)
    reads, base = [], 0
    for path, size in zip(paths, sizes):
        lo, hi = start - base, (None if end is None or end - base >= size else end - base)
        if lo < size and (hi is None or hi > max(lo, 0)):
            reads.append(Read(Path(path), max(lo, 0), hi))
        base += size
    return reads


def _line_start_at_or_after(data, pos):
    """Index of the first line start >= pos in data (data starts at a line start); len(data) if none within."""
    if pos <= 0:
        return 0
    newline = data.find(b"\n", pos - 1)
    return len(data) if newline < 0 else newline + 1


def iter_block_refs(path, block_size=8 << 20, start=0, end=None, progress=None):
    """``iter_blocks``, except that an uncompressed file's blocks are ``BlockRef``s (compressed ones: ``Block``s).

    Only line ends near the block boundaries are looked for here; ``progress`` is told each block's size.
    """
    if detect_format(path) != PLAIN:
        yield from iter_blocks(path, block_size, start, end, progress)
        return
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        first = _next_line_start(f, start, size)
        last = size if end is None else _next_line_start(f, end, size)
        first_line = 1 if first == 0 else None
        while first < last:
            cut = min(last, _next_line_start(f, first + block_size, size))
            if progress is not None:
                progress(cut - first)
            yield BlockRef(str(path), first, cut - first, first_line)
            first, first_line = cut, FOLLOWS


def _next_line_start(f, pos, size, step=1 << 16):
    """The first line start >= pos in an open file of ``size`` bytes (``size`` if there is none)."""
    if pos <= 0:
        return 0
    at = min(pos, size) - 1  # the byte before pos tells whether pos starts a line
    while at < size:
        newline = os.pread(f.fileno(), step, at).find(b"\n")
        if newline >= 0:
            return at + newline + 1
        at += step
    return size


def iter_blocks(path, block_size=8 << 20, start=0, end=None, progress=None):
    """Blocks of the whole lines of a dump whose first byte lies in [start, end) (end None: to the end).

    ``progress(n_bytes)`` is called with the decompressed bytes consumed (skipped ones included).
    """
    with DumpStream(path) as stream:
        yield from _iter_blocks(stream, block_size, start, end, progress)


def _iter_blocks(stream, block_size, start, end, progress):
    offset, line = 0, 1  # decompressed offset and line number of pending[0], always a line start...
    if start > 0 and stream.seekable:
        stream.seek(start - 1)  # ...except here: the byte before the range tells whether start is a line start
        offset, line = start - 1, None
    pending = b""
    while True:
        try:
            data = stream.read(block_size)
        except OSError as err:
            lines_read = f"{line - 1:,} lines" if line is not None else "an unknown number of lines"
            truncated = isinstance(err.__cause__, EOFError)  # gzip/bz2: "ended before the end-of-stream marker"
            raise UserFacingError(
                f"{stream.path}: the {stream.format} stream is truncated or corrupt: reading stopped after "
                f"{offset + len(pending):,} decompressed bytes ({lines_read} complete before the block being "
                f"read, {stream.compressed_position():,} of {stream.size:,} compressed bytes): {err}"
                + ("; the file ends inside the compressed stream: an incomplete download or copy?"
                   if truncated else "")
            ) from err
        if progress is not None:
            progress(len(data))
        at_eof = not data
        if at_eof and not pending:
            return
        last_newline = data.rfind(b"\n")
        if last_newline < 0 and not at_eof:
            pending += data  # a line longer than one read: keep reading
            continue
        cut = len(data) if at_eof else last_newline + 1
        whole = b"".join((pending, memoryview(data)[:cut])) if pending else data[:cut]  # one copy at most
        pending = data[cut:]
        first = _line_start_at_or_after(whole, start - offset)
        last = len(whole) if end is None else _line_start_at_or_after(whole, end - offset)
        if first < last:
            first_line = None if line is None else line + whole.count(b"\n", 0, first)
            yield Block(str(stream.path), offset + first, first_line, whole[first:last])
        if line is not None:
            line += whole.count(b"\n")
        offset += len(whole)
        if at_eof or last < len(whole):
            return
