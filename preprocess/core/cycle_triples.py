"""Which triples a mined cycle stands for: one triple per edge, in sentence order, in its real direction.

A cycle (``cycles.parquet``) is a list of entity ids:
    triangle ``[A, B, C]``    -> edges A-B, B-C, C-A
    diamond  ``[A, B, D, C]`` -> edges A-B, B-D, D-C, C-A, then the diagonal B-C (last, as in the paper)
Between two entities there may be several relations (either direction); they are alternatives and one is chosen
per edge with the caller's generator, so the choice is reproducible under the seed.
"""
from collections import defaultdict

TRIANGLE, DIAMOND = "triangle", "diamond"


def cycle_edges(kind, nodes):
    """The undirected edges of a cycle in sentence order (diamond: diagonal last)."""
    if kind == TRIANGLE:
        a, b, c = nodes
        return [(a, b), (b, c), (c, a)]
    if kind == DIAMOND:
        a, b, d, c = nodes
        return [(a, b), (b, d), (d, c), (c, a), (b, c)]
    raise ValueError(f"unknown cycle kind {kind!r} (expected {TRIANGLE!r} or {DIAMOND!r})")


def edge_key(u, v):
    return (u, v) if u <= v else (v, u)


class EdgeTriples:
    """All triples between each unordered pair of entities, from the columns of ``triples.parquet``."""

    def __init__(self, heads, relations, tails):
        self._by_pair = defaultdict(list)
        for h, r, t in zip(heads, relations, tails):
            if h != t:
                self._by_pair[edge_key(h, t)].append((h, r, t))
        for alternatives in self._by_pair.values():
            alternatives.sort()

    @classmethod
    def from_table(cls, table):
        return cls(*(table.column(c).to_pylist() for c in ("head", "relation", "tail")))

    def between(self, u, v):
        """Triples linking u and v in either direction, sorted; empty if none."""
        return self._by_pair.get(edge_key(u, v), [])

    def choose(self, kind, nodes, rng):
        """One (head, relation, tail) per edge of the cycle, in sentence order; KeyError if an edge has none."""
        chosen = []
        for u, v in cycle_edges(kind, nodes):
            alternatives = self.between(u, v)
            if not alternatives:
                raise KeyError(f"no triple links {u} and {v} in {kind} {nodes}")
            chosen.append(alternatives[rng.integers(len(alternatives))])
        return chosen
