"""cycles.parquet: the triangles and diamonds of the cycles stage; cycles_stats.json: its counts and distributions.

cycles_stats.json is one JSON object: flat counts and settings (the keys listed in ``preprocess.stages.cycles``),
plus ``graph`` and ``membership``, objects holding the graph's degree and cycle-membership distributions and top hubs
(``GRAPH_KEYS``, ``MEMBERSHIP_KEYS``). A distribution is ``{value: entities}`` with the values as decimal strings in
ascending order (``encode_distribution``), compact where per-entity arrays would not be.
"""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE
from preprocess.core.errors import UserFacingError
from preprocess.core.json_input import read_json
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


TOP_HUBS = 100  # hubs listed in cycles_stats.json (the report shows its --top of them)


GRAPH_KEYS = ("entities", "degree_entities", "triples_entities", "top_hubs_by_degree")


MEMBERSHIP_KEYS = ("entities_in_cycles", "cycles_entities", "top_hubs_by_cycles")


def encode_distribution(values):
    """``{"value": how many times it occurs}`` of non-negative integers, values ascending (one sort, no bincount:
    cycle-membership counts can be far larger than the number of values)."""
    values = np.sort(np.asarray(values, dtype=np.int64))
    if values.size == 0:
        return {}
    starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
    counts = np.diff(np.concatenate([starts, [values.size]]))
    return {str(int(v)): int(n) for v, n in zip(values[starts], counts)}


def decode_distribution(distribution, where):
    """(values, counts) int64 arrays, values ascending, of an encoded distribution; ``where`` names it in errors."""
    try:
        pairs = sorted((int(v), int(n)) for v, n in distribution.items())
    except (AttributeError, TypeError, ValueError):
        raise UserFacingError(f"{where}: expected {{value: entities}} with integer values, got "
                              f"{str(distribution)[:80]}; re-run `kmlm-preprocess cycles`") from None
    if any(v < 0 or n < 0 for v, n in pairs):
        raise UserFacingError(f"{where}: negative value or count; re-run `kmlm-preprocess cycles`")
    return np.array([v for v, _ in pairs], np.int64), np.array([n for _, n in pairs], np.int64)


def read_cycles_stats(directory):
    """cycles_stats.json of a cycles output directory, checked; a clear error naming the file and the stage to run."""
    path = Path(directory) / CYCLES_STATS_FILE
    rerun = "re-run `kmlm-preprocess cycles`"
    stats = read_json(path, f"{path} does not exist: run `kmlm-preprocess cycles` (it writes it)",
                      lambda err: f"{path}: not valid JSON ({err}); {rerun}")
    if not isinstance(stats, dict):
        raise UserFacingError(f"{path} should hold a JSON object, found {type(stats).__name__}; {rerun}")
    expected = {"": ("cycles", "triangles", "diamonds", "edges", "nodes", "self_loops_dropped"),
                "graph": GRAPH_KEYS, "membership": MEMBERSHIP_KEYS}
    for section, keys in expected.items():
        holder = stats.get(section) if section else stats
        missing = [k for k in keys if not isinstance(holder, dict) or k not in holder]
        if missing:
            where = f"{section}." if section else ""
            raise UserFacingError(f"{path} lacks {', '.join(where + k for k in missing)} (written by an older "
                                  f"cycles stage?); {rerun}")
    counts = {**{k: stats[k] for k in expected[""]},
              "membership.entities_in_cycles": stats["membership"]["entities_in_cycles"]}
    not_counts = [k for k, v in counts.items() if not is_count(v)]
    if not_counts:
        raise UserFacingError(f"{path}: {', '.join(not_counts)} should be non-negative integers; {rerun}")
    shapes = {("graph", "degree_entities"): dict, ("graph", "triples_entities"): dict,
              ("graph", "top_hubs_by_degree"): list, ("membership", "cycles_entities"): dict,
              ("membership", "top_hubs_by_cycles"): list}
    wrong = [f"{section}.{key}" for (section, key), kind in shapes.items() if not isinstance(stats[section][key], kind)]
    if wrong:
        raise UserFacingError(f"{path}: {', '.join(wrong)} has the wrong type; {rerun}")
    return stats


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
