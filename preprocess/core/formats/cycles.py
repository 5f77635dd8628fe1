"""cycles.parquet: the triangles and diamonds of the cycles stage."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE
from preprocess.core.errors import UserFacingError
from preprocess.core.parquet_input import ParquetInput

CYCLES_FILE = "cycles.parquet"
CYCLES_STATS_FILE = "cycles_stats.json"
MADE_BY = "cycles"


CYCLE_SIZES = {TRIANGLE: 3, DIAMOND: 4}


CYCLES_SCHEMA = pa.schema(
    [pa.field("cycle_id", pa.int64()), pa.field("kind", pa.string()), pa.field("nodes", pa.list_(pa.string()))]
)


def check_cycle_rows(table, path, first_row=0):
    """A clear error for a cycle of an unknown kind, with a wrong number of nodes or a null node (``table``: rows
    ``first_row``... of ``path``, with the columns ``kind`` and ``nodes``)."""
    kinds, nodes = table.column("kind"), table.column("nodes")
    lengths = pc.list_value_length(nodes)
    ok = pc.fill_null(pc.or_(
        pc.and_(pc.equal(kinds, TRIANGLE), pc.equal(lengths, CYCLE_SIZES[TRIANGLE])),
        pc.and_(pc.equal(kinds, DIAMOND), pc.equal(lengths, CYCLE_SIZES[DIAMOND])),
    ), False)
    bad = ~np.asarray(ok.to_numpy(zero_copy_only=False), bool)
    null_nodes = pc.list_parent_indices(nodes).to_numpy()[pc.is_null(pc.list_flatten(nodes)).to_numpy(
        zero_copy_only=False)]
    bad[null_nodes] = True
    if bad.any():
        row = int(np.argmax(bad))
        raise UserFacingError(
            f"{path} row {first_row + row}: kind {kinds[row].as_py()!r} with nodes {nodes[row].as_py()!r}; "
            f"expected {TRIANGLE!r} with 3 nodes or {DIAMOND!r} with 4, none of them null"
        )


def open_cycles(path, columns=tuple(CYCLES_SCHEMA.names)):
    """cycles.parquet (``path`` or ``path/cycles.parquet``) checked: ``columns`` present and typed, no nulls."""
    return ParquetInput.find(path, CYCLES_FILE, MADE_BY).require(CYCLES_SCHEMA, columns, not_null=columns)


def read_cycles(path):
    """Every cycle of cycles.parquet (``cycle_id``, ``kind``, ``nodes``), checked row by row."""
    cycles = open_cycles(path)
    table = cycles.read().combine_chunks()
    check_cycle_rows(table, cycles.path)
    return table
