"""Benchmark of the cycles stage against a per-root neighbour walk in the style of the reference code.

    python bench/cycles.py                      # >= 10M edges: ~4 min, peak ~1.5 GB (~2.5 GB with --end-to-end)
    python bench/cycles.py --edges 1000000      # smaller

Graph: Chung-Lu power law (expected degree of node i ~ (i + 1)^(-1/(gamma-1))), vectorised numpy, with self-loops
and repeated pairs as a KG has them; ``--edges`` distinct undirected edges, ``--avg-degree`` sets the node count.

Ours: the stage's graph core on integer ids (fold the raw pairs into unique edges, degree-ordered CSR, numba
triangle listing, capped apex lists, the per-entity cap) and the enumeration of every kept triangle and diamond
into int32 chunks, i.e. everything but string decoding and Parquet writing (``--end-to-end`` times those too).

Baseline: the reference's per-root walk (ntunlp/kmlm gen_cycles3/gen_cycles4, re-written here without MongoDB):
for every root, walk its neighbours' neighbour sets looking for triangles through the root, then for diamonds
(two neighbours i, k of the root, adjacent, with a second common neighbour j), deduplicating across roots with a
set. Its neighbour sets are prebuilt outside the timing (favourable to it). It cannot run over all roots in
reasonable time, so it runs on uniformly sampled roots for ``--walk-seconds`` and the total is extrapolated
(mean time per root x number of roots; hubs make per-root times very uneven, so the standard error is printed).
"""
import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from preprocess.core.cycle_kernels import find_cycles, fold_edges


def chung_lu_pairs(num_nodes, num_pairs, gamma, rng, batch=1 << 22):
    """``num_pairs`` endpoint pairs drawn independently with probability proportional to power-law weights."""
    weights = (np.arange(num_nodes, dtype=np.float64) + 1.0) ** (-1.0 / (gamma - 1.0))
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    heads, tails = [], []
    for start in range(0, num_pairs, batch):
        size = min(batch, num_pairs - start)
        heads.append(np.searchsorted(cdf, rng.random(size)).astype(np.int32))
        tails.append(np.searchsorted(cdf, rng.random(size)).astype(np.int32))
    # shuffle the node ids so that id order is not degree order
    relabel = rng.permutation(num_nodes).astype(np.int32)
    return relabel[np.concatenate(heads)], relabel[np.concatenate(tails)]


def power_law_graph(num_edges, avg_degree, gamma, seed):
    """Raw (head, tail) int pairs whose folded graph has at least ``num_edges`` distinct edges."""
    rng = np.random.default_rng(seed)
    num_nodes = max(int(2 * num_edges / avg_degree), 10)
    pairs = int(num_edges * 1.1)
    while True:
        head, tail = chung_lu_pairs(num_nodes, pairs, gamma, rng)
        edge_u, _, _ = fold_edges(head, tail, num_nodes)
        if len(edge_u) >= num_edges:
            return head, tail, num_nodes
        pairs = int(pairs * num_edges / max(len(edge_u), 1) * 1.05)


def time_ours(head, tail, num_nodes, max_apexes, max_per_entity, seed):
    cpu_started = time.process_time()
    started = time.perf_counter()
    edge_u, edge_v, _ = fold_edges(head, tail, num_nodes)
    folded = time.perf_counter()
    cycles = find_cycles(edge_u, edge_v, num_nodes, max_apexes, max_per_entity, seed)
    found = time.perf_counter()
    triangles = sum(len(c) for c in cycles.triangle_chunks())
    diamonds = sum(len(c) for c in cycles.diamond_chunks())
    done = time.perf_counter()
    assert (triangles, diamonds) == (cycles.num_triangles, cycles.num_diamonds)
    return edge_u, edge_v, cycles.counts, {
        "fold": folded - started, "find": found - folded, "enumerate": done - found, "total": done - started,
        "cpu": time.process_time() - cpu_started,
    }


def time_end_to_end(head, tail, max_apexes, max_per_entity, seed):
    """The whole stage through the CLI: Q-id strings in triples.parquet -> cycles.parquet."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from preprocess import cli

    def qids(ids):
        return pc.binary_join_element_wise("Q", pc.cast(pa.array(ids), pa.string()), "")

    with tempfile.TemporaryDirectory() as tmp:
        table = pa.table({"head": qids(head), "relation": pa.array(np.full(len(head), "P1")), "tail": qids(tail)})
        pq.write_table(table, Path(tmp) / "triples.parquet")
        del table
        started = time.perf_counter()
        argv = ["cycles", "--input", tmp, "--output", tmp, "--max-apexes", str(max_apexes),
                "--max-cycles-per-entity", str(max_per_entity), "--seed", str(seed)]
        assert cli.main(argv) == 0
        elapsed = time.perf_counter() - started
        size = os.path.getsize(Path(tmp) / "cycles.parquet")
    return elapsed, size


# ---------------------------------------------------------------------------------------------------------------
# the baseline


def neighbour_sets(edge_u, edge_v, roots):
    """{node: set of neighbours} for the roots and their neighbours (all the walk reads)."""
    ends = np.concatenate([edge_u, edge_v])
    others = np.concatenate([edge_v, edge_u])
    order = np.argsort(ends, kind="stable")
    ends, others = ends[order], others[order]
    num_nodes = int(max(edge_u.max(), edge_v.max())) + 1
    ptr = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(np.bincount(ends, minlength=num_nodes), out=ptr[1:])

    def nbrs(x):
        return others[ptr[x]:ptr[x + 1]]

    needed = set(roots.tolist())
    for root in roots:
        needed.update(nbrs(root).tolist())
    return {x: set(nbrs(x).tolist()) for x in needed}, ptr


def walk_triangles(adj, root, seen):
    """Triangles through ``root`` (reference gen_cycles3: neighbours' neighbours that are neighbours)."""
    immediate = adj[root]
    for i in immediate:
        for j in adj[i]:
            if j in immediate:
                key = tuple(sorted((root, i, j)))
                if key not in seen:
                    seen.add(key)


def walk_diamonds(adj, root, seen):
    """Diamonds with ``root`` as an apex (reference gen_cycles4: root-i-j-k-root with the diagonal i-k)."""
    immediate = adj[root]
    leaf_parent = {}
    for i in immediate:
        adj_i = adj[i]
        for j in adj_i:
            if j == root:
                continue
            parents = leaf_parent.get(j)
            if parents is None:
                leaf_parent[j] = [i]
                continue
            for k in parents:
                if k in adj_i:
                    key = (min(i, k), max(i, k), min(root, j), max(root, j))
                    if key not in seen:
                        seen.add(key)
            parents.append(i)


def time_walk(adj, roots, walkers, budget):
    """Wall and CPU seconds per root for the sampled roots, until the time budget runs out."""
    seen = set()
    times, cpu_times = [], []
    deadline = time.perf_counter() + budget
    for root in roots.tolist():
        started, cpu_started = time.perf_counter(), time.process_time()
        for walk in walkers:
            walk(adj, root, seen)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        if started > deadline:
            break
    return np.array(times), np.array(cpu_times)


def extrapolate(times, num_roots):
    mean = times.mean()
    se = times.std(ddof=1) / np.sqrt(len(times)) if len(times) > 1 else float("nan")
    return mean * num_roots, se * num_roots


# ---------------------------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=10_000_000, help="distinct undirected edges (default 10M)")
    parser.add_argument("--avg-degree", type=float, default=8.0, help="average degree; sets the node count")
    parser.add_argument("--gamma", type=float, default=2.2, help="power-law exponent of the degree distribution")
    parser.add_argument("--max-apexes", type=int, default=8, help="K of the stage (default 8)")
    parser.add_argument("--max-cycles-per-entity", type=int, default=1000, help="M of the stage (default 1000)")
    parser.add_argument("--walk-seconds", type=float, default=60.0, help="time budget of each baseline walk")
    parser.add_argument("--walk-roots", type=int, default=5000, help="roots sampled for the baseline walk")
    parser.add_argument("--end-to-end", action="store_true", help="also time the stage on strings + Parquet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    head, tail, num_nodes = power_law_graph(args.edges, args.avg_degree, args.gamma, args.seed)
    print(f"graph: Chung-Lu gamma={args.gamma}, {num_nodes:,} node ids, {len(head):,} raw pairs "
          f"(made in {time.perf_counter() - started:.1f} s)")

    find_cycles(*fold_edges(np.array([0, 0, 1]), np.array([1, 2, 2]), 3)[:2], 3, 2, 1)  # compile / load numba cache
    K, M = args.max_apexes, args.max_cycles_per_entity
    edge_u, edge_v, counts, ours = time_ours(head, tail, num_nodes, K, M, args.seed)
    degree = np.bincount(edge_u, minlength=num_nodes) + np.bincount(edge_v, minlength=num_nodes)
    roots_all = np.flatnonzero(degree)
    print(f"folded: {len(edge_u):,} edges on {len(roots_all):,} nodes, max degree {degree.max():,}")
    print(f"triangles: {counts['triangles_found']:,} found, {counts['triangles']:,} kept (M={M or 'none'})")
    print(f"diamonds: {counts['diamonds_uncapped']:,} uncapped, {counts['diamonds_after_apex_cap']:,} after the apex "
          f"cap K={K or 'none'}, {counts['diamonds']:,} kept after the entity cap M={M or 'none'}")
    print(f"ours (triangles + diamonds with K={K or 'none'}, M={M or 'none'}): {ours['total']:.2f} s "
          f"= fold {ours['fold']:.2f} + list/cap {ours['find']:.2f} + enumerate {ours['enumerate']:.2f} "
          f"(CPU time {ours['cpu']:.2f} s); "
          f"peak RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    del head, tail

    rng = np.random.default_rng(args.seed + 1)
    roots = rng.choice(roots_all, size=min(args.walk_roots, len(roots_all)), replace=False)
    started = time.perf_counter()
    adj, _ = neighbour_sets(edge_u, edge_v, roots)
    print(f"baseline: neighbour sets of {len(roots):,} sampled roots and their neighbours built in "
          f"{time.perf_counter() - started:.1f} s (not timed below)")
    results = {}
    for name, walkers in (("triangles", (walk_triangles,)), ("triangles + diamonds", (walk_triangles, walk_diamonds))):
        times, cpu_times = time_walk(adj, roots, walkers, args.walk_seconds)
        total, se = extrapolate(times, len(roots_all))
        results[name] = total, extrapolate(cpu_times, len(roots_all))[0]
        print(f"baseline walk, {name} (uncapped, as the reference): {len(times):,} of {len(roots_all):,} roots in "
              f"{times.sum():.1f} s, {times.mean() * 1e3:.2f} ms/root -> extrapolated {total:,.0f} s "
              f"(+/- {se:,.0f} s, 1 s.e.) = {total / 3600:.1f} h; CPU time extrapolated {results[name][1]:,.0f} s")
    del adj
    for name, note in (("triangles", "triangles only"), ("triangles + diamonds", "not like for like: no cap")):
        wall, cpu = results[name]
        print(f"ratio, baseline walk ({name}) / ours (triangles + diamonds with K={K or 'none'}, M={M or 'none'}): "
              f"{wall / ours['total']:,.0f}x wall, {cpu / ours['cpu']:,.0f}x CPU ({note})")

    if args.end_to_end:
        head, tail, _ = power_law_graph(args.edges, args.avg_degree, args.gamma, args.seed)
        elapsed, size = time_end_to_end(head, tail, K, M, args.seed)
        print(f"end to end (triples.parquet of Q-id strings -> cycles.parquet, {size / 2**20:,.0f} MiB): "
              f"{elapsed:.1f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
