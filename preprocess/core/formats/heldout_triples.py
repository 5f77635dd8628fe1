"""heldout_triples.parquet: triples kept out of pretraining (``sentences --holdout-triples``), so that fact recall
can tell what a model memorised from what it inferred; the draw that picks them and the test of touching one.

One row per held-out triple: ``head``, ``relation``, ``tail`` (Wikidata ids) and ``triple_index`` (its row in
triples.parquet), in triple order. The unit held out is the unordered ENTITY PAIR: every usable triple between the
two entities is held out with it (a parallel or reversed triple would otherwise state the same link), and
``reasoning --exclude-triples`` drops every cycle with that pair as an edge, so no pretraining sample puts the
two entities in one triple.
"""
from pathlib import Path

import numpy as np
import pyarrow as pa

from preprocess.core.cycle_triples import edge_key
from preprocess.core.io import write_parquet
from preprocess.core.parquet_input import ParquetInput
from preprocess.core.seeds import held_out_hash, held_out_salt

HELDOUT_TRIPLES_FILE = "heldout_triples.parquet"
MADE_BY = "sentences"


HELDOUT_TRIPLES_SCHEMA = pa.schema([pa.field("head", pa.string()), pa.field("relation", pa.string()),
                                    pa.field("tail", pa.string()), pa.field("triple_index", pa.int64())])


def held_out_pairs(head_rows, tail_rows, fraction, seed):
    """Per triple, whether its unordered entity pair is held out: hash(seed, pair) < fraction of the hash range, so
    the draw depends only on the seed and the two entities' rows in entities.parquet."""
    if fraction <= 0 or fraction >= 1:
        return np.full(len(head_rows), fraction >= 1, dtype=bool)
    low, high = np.minimum(head_rows, tail_rows).astype(np.int64), np.maximum(head_rows, tail_rows).astype(np.int64)
    hashes = held_out_hash((low << 31) | high, held_out_salt(seed, "heldout triples"))
    return hashes < np.uint64(int(fraction * 2.0 ** 64))


def write_heldout_triples(table, directory):
    write_parquet(table.select(HELDOUT_TRIPLES_SCHEMA.names).cast(HELDOUT_TRIPLES_SCHEMA),
                  Path(directory) / HELDOUT_TRIPLES_FILE)


def open_heldout_triples(path, columns=tuple(HELDOUT_TRIPLES_SCHEMA.names)):
    """heldout_triples.parquet (``path`` or ``path/heldout_triples.parquet``) checked: ``columns`` present and typed,
    no nulls."""
    return ParquetInput.find(path, HELDOUT_TRIPLES_FILE, MADE_BY).require(HELDOUT_TRIPLES_SCHEMA, columns,
                                                                         not_null=columns)


def read_heldout_triples(path):
    """The whole table (``path``: the file or its directory), checked (``open_heldout_triples``)."""
    return open_heldout_triples(path).read()


class HeldOutPairs:
    """The entity pairs of held-out triples; whether a cycle has one as an edge."""

    def __init__(self, table):
        self.pairs = {edge_key(h, t) for h, t in zip(table.column("head").to_pylist(),
                                                     table.column("tail").to_pylist())}

    def __len__(self):
        return len(self.pairs)

    def touched_by(self, edges):
        return any(edge_key(u, v) in self.pairs for u, v in edges)
