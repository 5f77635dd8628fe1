"""Atomic outputs: every file is written to a temporary name and renamed when complete."""
import contextlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block finishes.

    A killed or failing stage therefore never leaves a file at ``path`` that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(table, path, **kwargs):
    """Write a pyarrow table to ``path`` atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


PARQUET_COMPRESSION = "zstd"


class FixedGroupWriter:
    """A ParquetWriter that writes row groups of exactly ``rows_per_group`` rows (the last one shorter), whatever
    the sizes of the tables or record batches it is given, so the file's bytes depend only on its rows (what makes
    the tables of any number of workers, and a merge of shards, byte-identical to a single run's)."""

    def __init__(self, path, schema, rows_per_group=None):
        self.schema, self.rows_per_group = schema, rows_per_group or ROWS_PER_GROUP
        self.writer = pq.ParquetWriter(path, schema, compression=PARQUET_COMPRESSION)
        self.pending, self.pending_rows, self.rows = [], 0, 0

    def write(self, data):
        """Append a pyarrow Table or RecordBatch whose columns follow the schema."""
        if data.num_rows == 0:
            return
        self.pending.append(pa.Table.from_arrays(data.columns, schema=self.schema))
        self.pending_rows += data.num_rows
        while self.pending_rows >= self.rows_per_group:
            self._flush(self.rows_per_group)

    def close(self):
        if self.pending_rows:
            self._flush(self.pending_rows)
        self.writer.close()

    def _flush(self, n):
        buffered = pa.concat_tables(self.pending)
        self.writer.write_table(buffered.slice(0, n).combine_chunks(), row_group_size=n)
        self.rows += n
        rest = buffered.slice(n)
        self.pending, self.pending_rows = ([rest] if rest.num_rows else []), rest.num_rows


ROWS_PER_GROUP = 500_000
