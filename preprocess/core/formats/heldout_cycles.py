"""heldout_cycles.parquet: the XLR dev/test cycles that must stay out of pretraining, and the test of sharing one."""
from collections import defaultdict

import numpy as np
import pyarrow as pa

from preprocess.core.cycle_triples import cycle_edges, edge_key
from preprocess.core.formats.cycles import check_cycle_rows
from preprocess.core.parquet_input import ParquetInput

HELDOUT_FILE = "heldout_cycles.parquet"


HELDOUT_SCHEMA = pa.schema([
    pa.field("kind", pa.string()),
    pa.field("nodes", pa.list_(pa.string())),
    pa.field("cycle_id", pa.int64()),
    pa.field("split", pa.string()),
])


# --- Held-out cycles (also used by the XLR leakage check) ---------------------------------------------------------
def cycle_edge_set(kind, nodes):
    """The undirected edges of a cycle, as a frozenset of ``edge_key`` pairs."""
    return frozenset(edge_key(u, v) for u, v in cycle_edges(kind, nodes))


def covers_cycle(kind, nodes, other_kind, other_nodes):
    """Whether the cycle (kind, nodes) has every undirected edge of (other_kind, other_nodes): the same cycle, or a
    diamond containing that triangle."""
    return cycle_edge_set(other_kind, other_nodes) <= cycle_edge_set(kind, nodes)


def shares_cycle(edges, held_edges):
    """The leakage rule: two cycles (as edge sets) share a cycle when one contains every edge of the other.

    A diamond around a held-out triangle trains the triangle's inference; a triangle inside a held-out diamond trains
    the inference of one of its questions from two of its context triples.
    """
    return held_edges <= edges or edges <= held_edges


class HeldOutCycles:
    """The held-out cycles (XLR dev/test), one row each; which of them a cycle or a sample's edges share.

    Each held-out cycle is indexed under every edge: a cycle sharing it has at least one of those edges, so looking
    up a candidate's own 3 or 5 edges finds every held-out cycle it may share. ``reasoning --exclude`` asks
    ``shared_by`` per cycle; ``check-leakage`` first finds suspect samples with the integer ``edge_codes``
    (vectorised), then asks ``shared_with``.
    """

    def __init__(self, cycles=(), splits=None, path=None):
        self.path = path
        self.kinds, self.nodes = [], []
        self.edge_sets, self.by_edge = [], defaultdict(list)
        for row, (kind, nodes) in enumerate(cycles):
            edges = cycle_edge_set(kind, nodes)
            self.kinds.append(kind)
            self.nodes.append(tuple(nodes))
            self.edge_sets.append(edges)
            for edge in edges:
                self.by_edge[edge].append(row)
        self.splits = list(splits) if splits is not None else [None] * len(self.kinds)
        self.entities = pa.array(sorted({n for nodes in self.nodes for n in nodes}), pa.string())
        self.index = {e: i for i, e in enumerate(self.entities.to_pylist())}
        self.edge_codes = np.array(sorted(self.code(*edge) for edge in self.by_edge), dtype=np.int64)

    @classmethod
    def from_parquet(cls, path):
        """The cycles of a Parquet file with the columns ``kind`` and ``nodes`` (and optionally ``split``), e.g.
        ``heldout_cycles.parquet`` or the directory holding it; checked."""
        heldout = ParquetInput.find(path, HELDOUT_FILE, "xlr").require(HELDOUT_SCHEMA, ("kind", "nodes"),
                                                                      not_null=("kind", "nodes"))
        if heldout.has("split"):
            heldout.require(HELDOUT_SCHEMA, ("split",))
        table = heldout.read()
        check_cycle_rows(table, heldout.path)
        splits = table.column("split").to_pylist() if "split" in table.column_names else None
        return cls(zip(table.column("kind").to_pylist(), table.column("nodes").to_pylist()), splits, heldout.path)

    def __len__(self):
        return len(self.kinds)

    def code(self, u, v):
        """One integer per undirected pair of held-out entities."""
        a, b = sorted((self.index[u], self.index[v]))
        return a * len(self.index) + b

    def shared_with(self, edges):
        """Rows of the held-out cycles that share a cycle (``shares_cycle``) with these edges."""
        edges = frozenset(edges)
        rows = sorted({row for edge in edges for row in self.by_edge.get(edge, ())})
        return [row for row in rows if shares_cycle(edges, self.edge_sets[row])]

    def shared_by(self, kind, nodes):
        return bool(self.shared_with(cycle_edge_set(kind, nodes)))

    def describe(self, row):
        split = f" ({self.splits[row]})" if self.splits[row] else ""
        return f"held-out {self.kinds[row]} {list(self.nodes[row])}{split}"

