"""cycles.parquet: the triangles and diamonds of the cycles stage."""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.tables import existing_table

CYCLES_FILE = "cycles.parquet"


CYCLE_SIZES = {TRIANGLE: 3, DIAMOND: 4}


def check_cycle_columns(table, path, columns):
    """A clear error for a cycles table with missing columns, an unknown kind or a wrong number of nodes."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UserFacingError(f"{path} has no column(s) {', '.join(missing)} (it has {', '.join(table.column_names)})")
    kinds = table.column("kind")
    lengths = pc.list_value_length(table.column("nodes"))
    ok = pc.fill_null(pc.or_(
        pc.and_(pc.equal(kinds, TRIANGLE), pc.equal(lengths, CYCLE_SIZES[TRIANGLE])),
        pc.and_(pc.equal(kinds, DIAMOND), pc.equal(lengths, CYCLE_SIZES[DIAMOND])),
    ), False)
    bad = np.flatnonzero(~np.asarray(ok.to_numpy(zero_copy_only=False), bool))
    if len(bad):
        row = int(bad[0])
        raise UserFacingError(
            f"{path} row {row}: kind {kinds[row].as_py()!r} with nodes {table.column('nodes')[row].as_py()!r}; "
            f"expected {TRIANGLE!r} with 3 nodes or {DIAMOND!r} with 4"
        )


# --- Loading only what the cycles need ----------------------------------------------------------------------------
def read_cycles(cycles_dir):
    path = existing_table(cycles_dir, CYCLES_FILE)
    table = pq.read_table(path, columns=None)
    check_cycle_columns(table, path, ("cycle_id", "kind", "nodes"))
    return table.select(["cycle_id", "kind", "nodes"]).combine_chunks()


CYCLES_STATS_FILE = "cycles_stats.json"


CYCLES_SCHEMA = pa.schema(
    [pa.field("cycle_id", pa.int64()), pa.field("kind", pa.string()), pa.field("nodes", pa.list_(pa.string()))]
)
