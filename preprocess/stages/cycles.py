"""``kmlm-preprocess cycles``: triples -> triangles and diamonds of the undirected entity graph.

Input:  ``--input DIR`` holding ``triples.parquet`` (preprocess/core/formats/tables.py; only ``head`` and ``tail``
        are read).
Output: ``--output DIR`` receives
  ``cycles.parquet``: ``cycle_id`` int64 (the row number), ``kind`` string ("triangle" | "diamond"),
      ``nodes`` list<string> (entity ids, layout below), and
  ``cycles_stats.json``: counts of what was read, folded, found, capped and written.

The graph. Every triple is an undirected edge between its head and tail. Self-loops (head == tail) are dropped;
all triples between one pair of entities, in either direction and with any relation, fold into one edge (the
relations are alternatives that ``cycle_triples.EdgeTriples`` chooses between later).

Canonical order. Entity ids are compared as strings (code-point order, Python's ``<``, so "Q10" < "Q9").
Internally each entity's integer id is its rank in that order, so integer and string comparisons agree.

Cycles (the layout ``cycle_triples.cycle_edges`` reads):
  triangle ``[A, B, C]``: edges A-B, B-C, C-A; A < B < C. Every triangle of the graph exactly once.
  diamond ``[A, B, D, C]``: edges A-B, B-D, D-C, C-A and the diagonal B-C. Definition: a diamond is an edge B-C
      (the diagonal) plus an unordered pair {A, D} of distinct common neighbours ("apexes") of B and C; B < C and
      A < D. A and D may be adjacent too (the plain definition does not exclude it), so a 4-clique holds 6 diamonds,
      one per (diagonal, opposite pair). Every diamond exactly once, before the caps.
Row order: triangles sorted by (A, B, C), then diamonds sorted by (B, C, A, D) (diagonal first).

Hub control, both deterministic under ``--seed`` (0 or "none" switches a cap off):
  ``--max-apexes K``: a diagonal B-C with more than K common neighbours forms diamonds only among K of them: the K
      with the smallest priority hash(seed, edge, apex) -- a uniform random K-subset that depends only on the seed
      and the edge. So at most K(K-1)/2 diamonds per diagonal. Triangles are never dropped by this cap.
  ``--max-cycles-per-entity M``: each entity is in at most M kept triangles and at most M kept diamonds (separate
      budgets, so the far more numerous diamonds cannot crowd out the triangles). Rule, applied after the apex cap:
      greedy in a seeded random order. Edges are visited in the order of hash(seed, edge); at each edge its
      candidates -- the triangles whose two smallest nodes are this edge, and the diamonds with this edge as
      diagonal -- are visited in the order of their apexes' priorities (for diamonds, pair (i, j) of the
      priority-sorted apexes, j-major); a candidate is kept iff each of its entities is still in fewer than M kept
      cycles of its kind. Every dropped candidate therefore has an entity that is at the cap.
Hashes (splitmix64) are salted with ``rng_for(seed, ...)`` and take an edge's position in the sorted edge list and
an apex's integer id, so every choice is a pure function of the seed and the input, never of the order in which
the listing happens to meet the triangles.

Method (docs/design.md §4; the kernels are in preprocess/core/cycle_kernels.py): strings -> integer ids by
dictionary encoding; the edge list is deduplicated with one sort of 64-bit pair keys; triangles are listed by the
degree-ordered merge (each edge oriented from the endpoint of lower (degree, id) rank to the higher, so out-lists
stay short even at hubs) compiled with numba, twice: once to count the triangles of every edge, once to fill exactly
sized per-edge lists. An edge's triangles are its common neighbours, i.e. its diamond apexes, so diamonds are never
listed: they are enumerated from those (capped) lists, chunk by chunk, while the file is written. Memory: a few
int32 per edge, one per triangle and one per kept apex (with ``--max-apexes none`` that is three per triangle), and
with an entity cap one bit per candidate diamond.

Stats keys: triples, self_loops_dropped, parallel_triples_folded (triples beyond the first of a pair), edges,
nodes, the caps and seed, triangles_found, diamonds_uncapped, diagonals_over_apex_cap, apexes_dropped_by_apex_cap,
diamonds_after_apex_cap, diamonds_dropped_by_apex_cap, triangles / diamonds (written),
triangles_dropped_by_entity_cap, diamonds_dropped_by_entity_cap, cycles (rows written); then two objects that the
report draws from (distributions ``{value: entities}``, preprocess/core/formats/cycles.py):
  ``graph``: entities (distinct ids of heads and tails), degree_entities (degree = distinct neighbours, over the
      ``nodes``), triples_entities (triples an entity is head or tail of, a self-loop once), top_hubs_by_degree (the
      ``TOP_HUBS`` largest degrees: id, degree, triples; ties by triples, then id);
  ``membership`` (of the written cycles): entities_in_cycles, cycles_entities per kind and "all" (over the
      entities in at least one), top_hubs_by_cycles (id, triangle, diamond, cycles, degree; ties by id) and, with
      an entity cap, entities_at_cap per kind (entities in M cycles of that kind).
"""
import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from preprocess.core.cycle_kernels import CHUNK_ROWS, MAX_APEXES_LIMIT, UNCAPPED, build_graph, find_cycles
from preprocess.core.cycle_triples import DIAMOND, TRIANGLE
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.cycles import CYCLES_FILE, CYCLES_SCHEMA, CYCLES_STATS_FILE, TOP_HUBS, encode_distribution
from preprocess.core.formats.tables import TRIPLES_FILE, open_triples
from preprocess.core.io import atomic_path, write_text

logger = logging.getLogger(__name__)

DEFAULT_MAX_APEXES = 8
DEFAULT_MAX_CYCLES_PER_ENTITY = 1000


# ---------------------------------------------------------------------------------------------------------------
# Seeded hashing (the numba-side equivalent of rng_for: a pure function of the salt and the keys)


# ---------------------------------------------------------------------------------------------------------------
# The graph: strings -> integer ids -> deduplicated undirected edges -> degree-ordered CSR


# ---------------------------------------------------------------------------------------------------------------
# Triangle listing (degree-ordered merge) and per-edge apex lists


# ---------------------------------------------------------------------------------------------------------------
# The per-entity cap (greedy in a seeded order; see the module docstring)


# ---------------------------------------------------------------------------------------------------------------
# Diamond enumeration, resumable so that output is produced in bounded chunks


# ---------------------------------------------------------------------------------------------------------------
# Putting it together


# ---------------------------------------------------------------------------------------------------------------
# Files


def _cycles_table(names, nodes, kind, first_id):
    rows, width = nodes.shape
    values = names.take(pa.array(nodes.ravel())).cast(pa.string())
    offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(first_id, first_id + rows, dtype=np.int64)),
            pa.array([kind]).take(pa.array(np.zeros(rows, np.int32))),
            pa.ListArray.from_arrays(offsets, values),
        ],
        schema=CYCLES_SCHEMA,
    )


def write_cycles(cycles, names, path, chunk_rows=CHUNK_ROWS, on_chunk=None):
    """Triangles then diamonds, in canonical order, into ``path`` (atomically), chunk by chunk; ``on_chunk(kind,
    nodes)`` sees each chunk of integer ids as it is written."""
    total = cycles.num_triangles + cycles.num_diamonds
    written = 0
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, CYCLES_SCHEMA) as writer, tqdm(
        total=total, unit="cycle", unit_scale=True, desc="writing cycles", disable=total < chunk_rows
    ) as progress:
        for kind, chunks in ((TRIANGLE, cycles.triangle_chunks), (DIAMOND, cycles.diamond_chunks)):
            for nodes in chunks(chunk_rows):
                writer.write_table(_cycles_table(names, nodes, kind, written), row_group_size=chunk_rows)
                if on_chunk is not None:
                    on_chunk(kind, nodes)
                written += len(nodes)
                progress.update(len(nodes))
        if written == 0:
            writer.write_table(CYCLES_SCHEMA.empty_table())
    if written != total:
        raise AssertionError(f"wrote {written} cycles but counted {total}")
    return written


def cap_value(text):
    """``--max-...`` value: a positive int, or 0 / "none" for no cap."""
    if str(text).strip().lower() in ("0", "none"):
        return UNCAPPED
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, 0 or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, 0 or 'none', got {text!r}")
    return value


def add_arguments(parser):
    parser.add_argument("--input", required=True, help=f"directory holding {TRIPLES_FILE} (from ingest)")
    parser.add_argument("--output", required=True, help=f"directory to write {CYCLES_FILE} and {CYCLES_STATS_FILE}")
    parser.add_argument(
        "--max-apexes", type=cap_value, default=DEFAULT_MAX_APEXES, metavar="K",
        help="diamonds of a diagonal edge use at most K of its common neighbours, sampled under --seed "
        "(<= K(K-1)/2 diamonds per edge); 0 or 'none': all (default: %(default)s)",
    )
    parser.add_argument(
        "--max-cycles-per-entity", type=cap_value, default=DEFAULT_MAX_CYCLES_PER_ENTITY, metavar="M",
        help="each entity is in at most M triangles and at most M diamonds, chosen greedily in a seeded order; "
        "0 or 'none': no cap (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the caps' sampling (default: %(default)s)")


def run(args):
    if args.max_apexes == 1:
        raise UserFacingError("--max-apexes 1 leaves no pair of apexes, so no diamond: use >= 2, or 0 for no cap")
    if args.seed < 0:
        raise UserFacingError(f"--seed must be >= 0, got {args.seed}")
    if args.max_apexes > MAX_APEXES_LIMIT:
        raise UserFacingError(f"--max-apexes above {MAX_APEXES_LIMIT} is not supported: use 0 (or none) for no cap")
    started = time.perf_counter()
    triples = open_triples(args.input, ("head", "tail")).read()
    head, tail = triples.column("head"), triples.column("tail")
    del triples
    graph = build_graph(head, tail)
    graph_summary = graph_stats(graph, entity_triple_counts(head, tail, graph.names))
    del head, tail
    logger.debug("graph: %d edges, %d ids (%.1f s)", len(graph.edge_u), graph.num_ids, time.perf_counter() - started)
    cycles = find_cycles(
        graph.edge_u, graph.edge_v, graph.num_ids, args.max_apexes, args.max_cycles_per_entity, args.seed
    )
    logger.debug("cycles: %s (%.1f s)", cycles.counts, time.perf_counter() - started)
    output = Path(args.output)
    membership = CycleMembership(graph.num_ids)
    write_cycles(cycles, graph.names, output / CYCLES_FILE, on_chunk=membership.add)
    stats = _stats(graph, cycles, args)
    stats["graph"] = graph_summary
    stats["membership"] = membership.stats(graph, args.max_cycles_per_entity)
    write_text(json.dumps(stats, indent=2) + "\n", output / CYCLES_STATS_FILE)
    logger.info(
        "wrote %s: %d triangles (of %d; %d dropped by the entity cap) and %d diamonds (of %d; %d dropped by the "
        "apex cap K=%s, %d by the entity cap M=%s) from %d edges on %d entities (%d triples, %d self-loops dropped, "
        "%d parallel triples folded) in %.1f s",
        output / CYCLES_FILE, stats["triangles"], stats["triangles_found"], stats["triangles_dropped_by_entity_cap"],
        stats["diamonds"], stats["diamonds_uncapped"], stats["diamonds_dropped_by_apex_cap"],
        args.max_apexes or "none", stats["diamonds_dropped_by_entity_cap"], args.max_cycles_per_entity or "none",
        stats["edges"], stats["nodes"], stats["triples"], stats["self_loops_dropped"],
        stats["parallel_triples_folded"], time.perf_counter() - started,
    )
    return 0


def _stats(graph, cycles, args):
    nodes = np.union1d(graph.edge_u, graph.edge_v)
    return {
        "triples": graph.triples,
        "self_loops_dropped": graph.self_loops,
        "parallel_triples_folded": graph.triples - graph.self_loops - len(graph.edge_u),
        "edges": len(graph.edge_u),
        "nodes": len(nodes),
        "max_apexes": args.max_apexes or None,
        "max_cycles_per_entity": args.max_cycles_per_entity or None,
        "seed": args.seed,
        **cycles.counts,
        "cycles": cycles.num_triangles + cycles.num_diamonds,
    }


# ---------------------------------------------------------------------------------------------------------------
# Distributions and hubs for the report (cycles_stats.json "graph" and "membership")


def entity_triple_counts(head, tail, names):
    """Triples per entity of ``names`` (the graph's sorted ids) that it is head or tail of, a self-loop once."""
    if head.type != names.type or tail.type != names.type:
        head, tail = head.cast(names.type), tail.cast(names.type)
    counts = np.zeros(len(names), np.int64)
    for column in (head, tail.filter(pc.not_equal(head, tail))):
        values = pc.value_counts(column)
        rows = pc.index_in(values.field("values"), value_set=names).to_numpy(zero_copy_only=False)
        counts[rows] += values.field("counts").to_numpy()
    return counts


def top_entities(keys, candidates, top=TOP_HUBS):
    """Up to ``top`` ids among ``candidates`` (bool per id) by ``keys`` (arrays, first decides) descending, then id
    ascending (ids are ranks of the sorted names, so that is id-string order), without sorting every id."""
    ids = np.flatnonzero(candidates)
    if len(ids) > top:
        primary = keys[0][ids]
        ids = ids[primary >= np.partition(primary, len(ids) - top)[len(ids) - top]]
    order = np.lexsort([ids] + [-k[ids] for k in reversed(keys)])
    return ids[order[:top]]


def node_degrees(graph):
    """Distinct neighbours per id (computed where needed rather than kept: one int64 per id)."""
    return np.bincount(graph.edge_u, minlength=graph.num_ids) + np.bincount(graph.edge_v, minlength=graph.num_ids)


def graph_stats(graph, triples_per_entity):
    """The "graph" object: degree and triples distributions and the top hubs by degree."""
    degree = node_degrees(graph)
    hubs = top_entities([degree, triples_per_entity], degree > 0)
    names = graph.names.take(pa.array(hubs, pa.int64())).to_pylist()
    return {
        "entities": graph.num_ids,
        "degree_entities": encode_distribution(degree[degree > 0]),
        "triples_entities": encode_distribution(triples_per_entity),
        "top_hubs_by_degree": [{"id": name, "degree": int(degree[i]), "triples": int(triples_per_entity[i])}
                               for name, i in zip(names, hubs)],
    }


class CycleMembership:
    """Written cycles per entity and kind, counted chunk by chunk (``write_cycles(on_chunk=...)``)."""

    def __init__(self, num_ids):
        self.per_kind = {TRIANGLE: np.zeros(num_ids, np.int64), DIAMOND: np.zeros(num_ids, np.int64)}

    def add(self, kind, nodes):
        counts = self.per_kind[kind]
        counts += np.bincount(nodes.ravel(), minlength=len(counts))

    def stats(self, graph, cap):
        """The "membership" object: distributions, top hubs by cycles and, with a cap, the entities at it."""
        total = sum(self.per_kind.values())
        hubs = top_entities([total], total > 0)
        hub_names = graph.names.take(pa.array(hubs, pa.int64())).to_pylist()
        degree = node_degrees(graph)
        stats = {
            "entities_in_cycles": int(np.count_nonzero(total)),
            "cycles_entities": {**{kind: encode_distribution(n[n > 0]) for kind, n in self.per_kind.items()},
                                "all": encode_distribution(total[total > 0])},
            "top_hubs_by_cycles": [{"id": name, **{kind: int(n[i]) for kind, n in self.per_kind.items()},
                                    "cycles": int(total[i]), "degree": int(degree[i])}
                                   for name, i in zip(hub_names, hubs)],
        }
        if cap:
            stats["entities_at_cap"] = {kind: int(np.count_nonzero(n >= cap)) for kind, n in self.per_kind.items()}
        return stats
