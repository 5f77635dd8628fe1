"""The cycle listing kernels (numba): triangles and capped diamonds of an undirected graph given as edge arrays."""
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from preprocess.core.seeds import rng_for

CHUNK_ROWS = 1 << 20
UNCAPPED = 0


MAX_APEXES_LIMIT = 1 << 20  # the fill count of a capped edge's heap shares a 64-bit word with its row


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)


_MIX2 = np.uint64(0x94D049BB133111EB)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)


_CAPPED = np.uint64(1 << 63)


_FILL_SHIFT = np.uint64(40)


_HEAP_ROW = np.uint64((1 << 40) - 1)


@njit(cache=True, inline="always")
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(cache=True, inline="always")
def _edge_priority(salt, e):
    return _mix(salt ^ np.uint64(e))


@njit(cache=True, inline="always")
def _apex_priority(salt, e, a):
    """Priority of apex a on edge e; 63 bits, so that all ones means "accept anything" (see _fill_triangles)."""
    return _mix(_mix(salt ^ np.uint64(e)) + _GOLDEN + np.uint64(a)) >> np.uint64(1)


def _salt(seed, purpose):
    return np.uint64(rng_for(seed, "cycles", purpose).integers(0, 2**63))


@dataclass
class Graph:
    """Undirected simple graph on integer ids; ``names[i]`` is entity i's id string (sorted, so i < j iff names)."""

    names: pa.Array
    edge_u: np.ndarray  # int32, edge_u < edge_v, edges sorted by (u, v)
    edge_v: np.ndarray
    triples: int
    self_loops: int

    @property
    def num_ids(self):
        return len(self.names)


def encode_entities(head, tail):
    """Two string columns -> (sorted distinct ids as an Arrow array, head ids, tail ids) with vectorised encoding."""
    if head.type != tail.type:
        head, tail = head.cast(pa.large_string()), tail.cast(pa.large_string())
    encoded = pc.dictionary_encode(pa.chunked_array(head.chunks + tail.chunks, type=head.type))
    if len({len(c.dictionary) for c in encoded.chunks}) > 1:  # Arrow shares one dictionary today; be sure
        encoded = encoded.unify_dictionaries()
    dictionary = encoded.chunk(0).dictionary if encoded.num_chunks else pa.array([], head.type)
    indices = np.concatenate([c.indices.to_numpy() for c in encoded.chunks] or [np.zeros(0, np.int32)])
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    ids = rank[indices]
    return dictionary.take(pa.array(order)), ids[: len(head)], ids[len(head):]


def fold_edges(head_ids, tail_ids, num_ids):
    """Integer triples -> (edge_u, edge_v) with u < v, sorted and unique, plus the number of self-loops dropped."""
    loops = head_ids == tail_ids
    h, t = head_ids[~loops], tail_ids[~loops]
    keys = np.sort(np.minimum(h, t).astype(np.int64) * num_ids + np.maximum(h, t))
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
    return (keys // num_ids).astype(np.int32), (keys % num_ids).astype(np.int32), int(loops.sum())


def build_graph(head, tail):
    names, head_ids, tail_ids = encode_entities(head, tail)
    edge_u, edge_v, self_loops = fold_edges(head_ids, tail_ids, max(len(names), 1))
    return Graph(names, edge_u, edge_v, triples=len(head_ids), self_loops=self_loops)


def degree_ordered_csr(edge_u, edge_v, num_ids):
    """Each edge oriented from the endpoint of lower (degree, id) rank to the higher one, as a CSR on ranks.

    Returns (ptr, nbr, eid, node_of_rank): the out-neighbours of rank r are ``nbr[ptr[r]:ptr[r+1]]`` (ranks,
    ascending) and ``eid`` holds each entry's index in the (u, v)-sorted edge list.
    """
    degree = np.bincount(edge_u, minlength=num_ids) + np.bincount(edge_v, minlength=num_ids)
    node_of_rank = np.argsort(degree, kind="stable").astype(np.int32)
    rank = np.empty(num_ids, np.int32)
    rank[node_of_rank] = np.arange(num_ids, dtype=np.int32)
    ru, rv = rank[edge_u], rank[edge_v]
    lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
    eid = np.argsort(lo.astype(np.int64) * num_ids + hi).astype(np.int32)
    ptr = np.zeros(num_ids + 1, np.int64)
    np.cumsum(np.bincount(lo, minlength=num_ids), out=ptr[1:])
    return ptr, hi[eid], eid, node_of_rank


@njit(cache=True, inline="always")
def _home_and_third(x, y, z, e_xy, e_xz, e_yz):
    """The edge between the two smallest ids of triangle {x, y, z} and the largest id."""
    if z > x and z > y:
        return e_xy, z
    if y > x:
        return e_xz, y
    return e_yz, x


@njit(cache=True)
def _count_triangles(ptr, nbr, eid, node_of_rank, num_edges):
    """Per edge: triangles through it (= its common neighbours) and triangles whose two smallest nodes it joins."""
    through = np.zeros(num_edges, np.int32)
    home = np.zeros(num_edges, np.int32)
    for u in range(len(ptr) - 1):
        end_u = ptr[u + 1]
        for p in range(ptr[u], end_u):
            v = nbr[p]
            i, j, end_v = p + 1, ptr[v], ptr[v + 1]
            while i < end_u and j < end_v:
                if nbr[i] < nbr[j]:
                    i += 1
                elif nbr[i] > nbr[j]:
                    j += 1
                else:
                    through[eid[p]] += 1
                    through[eid[i]] += 1
                    through[eid[j]] += 1
                    x, y, z = node_of_rank[u], node_of_rank[v], node_of_rank[nbr[i]]
                    home[_home_and_third(x, y, z, eid[p], eid[i], eid[j])[0]] += 1
                    i += 1
                    j += 1
    return through, home


@njit(cache=True, inline="always")
def _before(p1, a1, p2, a2):
    """Whether apex a1 of priority p1 comes before apex a2 of priority p2 (ties, all but impossible, by id)."""
    return p1 < p2 or (p1 == p2 and a1 < a2)


@njit(cache=True)
def _fill_triangles(ptr, nbr, eid, node_of_rank, home_off, apex_off, capped, max_apexes, salt, third, apex):
    """Second listing pass: each triangle's largest id into its home edge's slot; apexes into the edges' lists.

    ``cursor[e, 0]`` is the next free slot of edge e's apex list, or ``_CAPPED | fill << 40 | r`` for the r-th
    capped edge, whose apexes go through max-heap r (rows of ``heap_prio`` / ``heap_apex``) holding ``fill`` of
    them; ``cursor[e, 1]`` is then the priority an apex must beat: all ones until the heap is full, its root's
    after. Most offers to a hub edge are rejected after reading that one row, so this pass stays close to the
    speed of the counting pass.
    """
    k = max_apexes
    home_pos = home_off[:-1].copy()
    cursor = np.empty((len(apex_off) - 1, 2), np.uint64)
    cursor[:, 0] = apex_off[:-1]
    cursor[:, 1] = _EMPTY
    capped_edges = np.flatnonzero(capped)
    heap_prio = np.empty((len(capped_edges), k), np.uint64)
    heap_apex = np.empty((len(capped_edges), k), np.int32)
    for r in range(len(capped_edges)):
        cursor[capped_edges[r], 0] = _CAPPED | np.uint64(r)
    for u in range(len(ptr) - 1):
        end_u = ptr[u + 1]
        x = node_of_rank[u]
        for p in range(ptr[u], end_u):
            v = nbr[p]
            y = node_of_rank[v]
            i, j, end_v = p + 1, ptr[v], ptr[v + 1]
            while i < end_u and j < end_v:
                if nbr[i] < nbr[j]:
                    i += 1
                elif nbr[i] > nbr[j]:
                    j += 1
                else:
                    z = node_of_rank[nbr[i]]
                    e_home, c = _home_and_third(x, y, z, eid[p], eid[i], eid[j])
                    third[home_pos[e_home]] = c
                    home_pos[e_home] += 1
                    for e, a in ((eid[p], z), (eid[i], y), (eid[j], x)):
                        pos = cursor[e, 0]
                        if pos < _CAPPED:
                            apex[pos] = a
                            cursor[e, 0] = pos + np.uint64(1)
                            continue
                        prio = _apex_priority(salt, e, a)
                        if prio <= cursor[e, 1]:  # ties (all but impossible) are settled by id in the heap
                            r, fill = np.int64(pos & _HEAP_ROW), np.int64((pos ^ _CAPPED) >> _FILL_SHIFT)
                            if fill < k:
                                _heap_push(heap_prio, heap_apex, r, fill, prio, a)
                                cursor[e, 0] = pos + (np.uint64(1) << _FILL_SHIFT)
                                if fill + 1 == k:
                                    cursor[e, 1] = heap_prio[r, 0]
                            else:
                                cursor[e, 1] = _heap_offer(heap_prio, heap_apex, r, k, prio, a)
                    i += 1
                    j += 1
    for r in range(len(capped_edges)):
        s = apex_off[capped_edges[r]]
        apex[s:s + k] = heap_apex[r]


@njit(cache=True)
def _heap_push(heap_prio, heap_apex, r, fill, prio, a):
    """Add apex a to max-heap r holding ``fill`` apexes (a sift-up: O(1) moves on average for random priorities)."""
    q = fill
    while q > 0:
        parent = (q - 1) // 2
        if not _before(heap_prio[r, parent], heap_apex[r, parent], prio, a):
            break
        heap_prio[r, q], heap_apex[r, q] = heap_prio[r, parent], heap_apex[r, parent]
        q = parent
    heap_prio[r, q], heap_apex[r, q] = prio, a


@njit(cache=True)
def _heap_offer(heap_prio, heap_apex, r, k, prio, a):
    """Offer apex a to full max-heap r (its k first apexes by (priority, id)); return the root's priority after."""
    if not _before(prio, a, heap_prio[r, 0], heap_apex[r, 0]):
        return heap_prio[r, 0]
    q = 0  # a replaces the root (the last kept) and sifts down
    while True:
        child = 2 * q + 1
        if child >= k:
            break
        if child + 1 < k and _before(heap_prio[r, child], heap_apex[r, child],
                                     heap_prio[r, child + 1], heap_apex[r, child + 1]):
            child += 1
        if not _before(prio, a, heap_prio[r, child], heap_apex[r, child]):
            break
        heap_prio[r, q], heap_apex[r, q] = heap_prio[r, child], heap_apex[r, child]
        q = child
    heap_prio[r, q], heap_apex[r, q] = prio, a
    return heap_prio[r, 0]


@njit(cache=True)
def _sort_segments(values, off):
    for e in range(len(off) - 1):
        if off[e + 1] - off[e] > 1:
            values[off[e]:off[e + 1]].sort()


@njit(cache=True)
def _edge_priorities(num_edges, salt):
    prio = np.empty(num_edges, np.uint64)
    for e in range(num_edges):
        prio[e] = _edge_priority(salt, e)
    return prio


@njit(cache=True)
def _apex_visit_order(salt, e, apexes, order, prio):
    """Positions of the apexes of edge e by priority (the sampling's order) -> ``order[:len(apexes)]``.

    ``order`` and ``prio`` are scratch buffers reused across edges (``prio`` as long as the longest list): most
    lists are short, and an allocation per edge would cost more than their insertion sort.
    """
    k = len(apexes)
    if k > len(order):  # a long list (hub edge, no apex cap): sort it
        for q in range(k):
            prio[q] = _apex_priority(salt, e, apexes[q])
        return np.argsort(prio[:k], kind="mergesort")
    for q in range(k):  # insertion sort (stable, so ties keep id order as in _before)
        p = _apex_priority(salt, e, apexes[q])
        r = q
        while r > 0 and prio[r - 1] > p:
            prio[r], order[r] = prio[r - 1], order[r - 1]
            r -= 1
        prio[r], order[r] = p, q
    return order[:k]


@njit(cache=True)
def _longest(off):
    return max(64, np.max(off[1:] - off[:-1])) if len(off) > 1 else 64


@njit(cache=True)
def _cap_triangles(edge_order, edge_u, edge_v, home_off, third, salt, limit, num_ids):
    used = np.zeros(num_ids, np.int32)
    keep = np.zeros(len(third), np.bool_)
    order, prio = np.empty(64, np.int64), np.empty(_longest(home_off), np.uint64)
    for e in edge_order:
        s, t = home_off[e], home_off[e + 1]
        a, b = edge_u[e], edge_v[e]
        if s == t or used[a] >= limit or used[b] >= limit:
            continue
        for q in _apex_visit_order(salt, e, third[s:t], order, prio):
            c = third[s + q]
            if used[c] < limit:
                keep[s + q] = True
                used[a] += 1
                used[b] += 1
                used[c] += 1
                if used[a] >= limit or used[b] >= limit:
                    break
    return keep


@njit(cache=True, inline="always")
def _pair_index(i, j, k):
    """Index of apex pair (i < j) among the k(k-1)/2 pairs of a k-list in lexicographic order."""
    return i * (2 * k - i - 1) // 2 + (j - i - 1)


@njit(cache=True)
def _cap_diamonds(edge_order, edge_u, edge_v, apex_off, apex, pair_off, salt, limit, num_ids):
    """Bit per candidate diamond (in output order) saying whether the greedy per-entity cap keeps it."""
    used = np.zeros(num_ids, np.int32)
    keep = np.zeros((pair_off[-1] + 7) // 8, np.uint8)
    kept = 0
    order_buf, prio_buf = np.empty(64, np.int64), np.empty(_longest(apex_off), np.uint64)
    for e in edge_order:
        s, k = apex_off[e], apex_off[e + 1] - apex_off[e]
        b, c = edge_u[e], edge_v[e]
        if k < 2 or used[b] >= limit or used[c] >= limit:
            continue
        order = _apex_visit_order(salt, e, apex[s:s + k], order_buf, prio_buf)
        edge_full = False
        for jj in range(1, k):
            y = order[jj]
            d = apex[s + y]
            for ii in range(jj):
                if used[d] >= limit:
                    break
                x = order[ii]
                a = apex[s + x]
                if used[a] >= limit:
                    continue
                idx = pair_off[e] + _pair_index(min(x, y), max(x, y), k)
                keep[idx >> 3] |= np.uint8(1 << (idx & 7))
                kept += 1
                used[a] += 1
                used[b] += 1
                used[c] += 1
                used[d] += 1
                if used[b] >= limit or used[c] >= limit:
                    edge_full = True
                    break
            if edge_full:
                break
    return keep, kept


@njit(cache=True)
def _emit_diamonds(edge_u, edge_v, apex_off, apex, pair_off, keep, filtered, state, out):
    """Fill ``out`` (rows x 4: A, B, D, C) from position ``state`` = (edge, i, j); return the rows written."""
    e, i, j = state[0], state[1], state[2]
    rows = 0
    while e < len(edge_u):
        s, k = apex_off[e], apex_off[e + 1] - apex_off[e]
        while i < k - 1:
            while j < k:
                if rows == out.shape[0]:
                    state[0], state[1], state[2] = e, i, j
                    return rows
                if filtered:
                    idx = pair_off[e] + _pair_index(i, j, k)
                    if not (keep[idx >> 3] >> (idx & 7)) & 1:
                        j += 1
                        continue
                out[rows, 0] = apex[s + i]
                out[rows, 1] = edge_u[e]
                out[rows, 2] = apex[s + j]
                out[rows, 3] = edge_v[e]
                rows += 1
                j += 1
            i += 1
            j = i + 1
        e += 1
        i, j = 0, 1
    state[0], state[1], state[2] = e, 0, 1
    return rows


@dataclass
class Cycles:
    """Triangles and (capped) diamonds of a graph, as per-edge lists; iterate them with ``triangle_chunks`` etc."""

    edge_u: np.ndarray
    edge_v: np.ndarray
    home_off: np.ndarray  # triangles whose two smallest ids are edge e: third[home_off[e]:home_off[e+1]]
    third: np.ndarray
    triangle_keep: np.ndarray  # bool per triangle, or None when uncapped
    apex_off: np.ndarray  # diamond apexes of diagonal e (after the apex cap): apex[apex_off[e]:apex_off[e+1]]
    apex: np.ndarray
    pair_off: np.ndarray  # first candidate-diamond index of each diagonal
    diamond_keep: np.ndarray  # bit per candidate diamond, or None when uncapped
    counts: dict

    @property
    def num_triangles(self):
        return self.counts["triangles"]

    @property
    def num_diamonds(self):
        return self.counts["diamonds"]

    def triangle_chunks(self, chunk_rows=CHUNK_ROWS):
        """Kept triangles in canonical order as int32 arrays of shape (rows, 3): A < B < C."""
        for start in range(0, len(self.third), chunk_rows):
            index = np.arange(start, min(start + chunk_rows, len(self.third)))
            if self.triangle_keep is not None:
                index = index[self.triangle_keep[index]]
            if len(index):
                edge = np.searchsorted(self.home_off, index, side="right") - 1
                yield np.stack([self.edge_u[edge], self.edge_v[edge], self.third[index]], axis=1)

    def diamond_chunks(self, chunk_rows=CHUNK_ROWS):
        """Kept diamonds in canonical order as int32 arrays of shape (rows, 4): A, B, D, C."""
        state = np.array([0, 0, 1], np.int64)
        keep = self.diamond_keep if self.diamond_keep is not None else np.zeros(0, np.uint8)
        buffer = np.empty((chunk_rows, 4), np.int32)
        while state[0] < len(self.edge_u):
            rows = _emit_diamonds(
                self.edge_u, self.edge_v, self.apex_off, self.apex, self.pair_off, keep,
                self.diamond_keep is not None, state, buffer,
            )
            if rows:
                yield buffer[:rows].copy()


def find_cycles(edge_u, edge_v, num_ids, max_apexes=UNCAPPED, max_cycles_per_entity=UNCAPPED, seed=0):
    """All triangles and the diamonds left by the caps of a simple graph given as (u < v)-sorted unique edges."""
    if not 0 <= max_apexes <= MAX_APEXES_LIMIT:
        raise ValueError(f"max_apexes must be in 0..{MAX_APEXES_LIMIT} (0: no cap), got {max_apexes}")
    num_edges = len(edge_u)
    edge_u, edge_v = edge_u.astype(np.int32), edge_v.astype(np.int32)
    ptr, nbr, eid, node_of_rank = degree_ordered_csr(edge_u, edge_v, num_ids)
    through, home = _count_triangles(ptr, nbr, eid, node_of_rank, num_edges)

    home_off = _offsets(home)
    apexes = through.astype(np.int64)
    capped = np.zeros(num_edges, np.bool_)
    if max_apexes:
        capped = apexes > max_apexes
        apexes[capped] = max_apexes
    apex_off = _offsets(apexes)
    third = np.empty(home_off[-1], np.int32)
    apex = np.empty(apex_off[-1], np.int32)
    apex_salt = _salt(seed, "apex-sample")
    _fill_triangles(ptr, nbr, eid, node_of_rank, home_off, apex_off, capped, max_apexes, apex_salt, third, apex)
    del ptr, nbr, eid, home
    _sort_segments(third, home_off)
    _sort_segments(apex, apex_off)
    pair_off = _offsets(apexes * (apexes - 1) // 2)

    through64 = through.astype(np.int64)
    counts = {
        "triangles_found": int(home_off[-1]),
        "diamonds_uncapped": int((through64 * (through64 - 1) // 2).sum()),
        "diagonals_over_apex_cap": int(capped.sum()),
        "apexes_dropped_by_apex_cap": int((through64 - apexes)[capped].sum()),
        "diamonds_after_apex_cap": int(pair_off[-1]),
    }
    counts["diamonds_dropped_by_apex_cap"] = counts["diamonds_uncapped"] - counts["diamonds_after_apex_cap"]

    triangle_keep = diamond_keep = None
    counts["triangles"], counts["diamonds"] = counts["triangles_found"], counts["diamonds_after_apex_cap"]
    if max_cycles_per_entity:
        order_salt = _salt(seed, "entity-cap-order")
        edge_order = np.argsort(_edge_priorities(num_edges, order_salt), kind="stable")
        triangle_keep = _cap_triangles(
            edge_order, edge_u, edge_v, home_off, third, apex_salt, max_cycles_per_entity, num_ids
        )
        diamond_keep, kept = _cap_diamonds(
            edge_order, edge_u, edge_v, apex_off, apex, pair_off, apex_salt, max_cycles_per_entity, num_ids
        )
        counts["triangles"], counts["diamonds"] = int(triangle_keep.sum()), int(kept)
    counts["triangles_dropped_by_entity_cap"] = counts["triangles_found"] - counts["triangles"]
    counts["diamonds_dropped_by_entity_cap"] = counts["diamonds_after_apex_cap"] - counts["diamonds"]
    return Cycles(edge_u, edge_v, home_off, third, triangle_keep, apex_off, apex, pair_off, diamond_keep, counts)


def _offsets(sizes):
    off = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=off[1:])
    return off

