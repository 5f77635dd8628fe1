"""The cycles stage against brute-force and networkx oracles, its caps, its file format and its determinism."""
import bz2
import collections
import functools
import itertools
import json

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.cycle_kernels import build_graph, find_cycles
from preprocess.core.cycle_triples import EdgeTriples
from preprocess.core.formats.cycles import CYCLES_FILE, CYCLES_SCHEMA, CYCLES_STATS_FILE, TOP_HUBS
from preprocess.core.formats.tables import TRIPLES_SCHEMA
from preprocess.stages import cycles as cycles_stage
from tests.conftest import TEST_DATA

# ---------------------------------------------------------------------------------------------------------------
# helpers


def write_triples(directory, triples, row_group_size=None):
    directory.mkdir(parents=True, exist_ok=True)
    columns = list(zip(*triples)) if triples else ([], [], [])
    table = pa.Table.from_arrays([pa.array(list(c), pa.string()) for c in columns], schema=TRIPLES_SCHEMA)
    pq.write_table(table, directory / "triples.parquet", row_group_size=row_group_size)
    return directory


def run_stage(tmp_path, triples, *options, name="out", row_group_size=None):
    source = write_triples(tmp_path / "in", triples, row_group_size)
    out = tmp_path / name
    assert cli.main(["cycles", "--input", str(source), "--output", str(out), *options]) == 0
    table = pq.read_table(out / CYCLES_FILE)
    stats = json.loads((out / CYCLES_STATS_FILE).read_text())
    return table, stats


def cycles_of(table):
    rows = table.to_pylist()
    triangles = [tuple(r["nodes"]) for r in rows if r["kind"] == "triangle"]
    diamonds = [tuple(r["nodes"]) for r in rows if r["kind"] == "diamond"]
    return triangles, diamonds


def uncapped(tmp_path, triples, name="out", row_group_size=None):
    options = ("--max-apexes", "0", "--max-cycles-per-entity", "none")
    return run_stage(tmp_path, triples, *options, name=name, row_group_size=row_group_size)


def graph_triples(graph, rng, names=lambda i: f"Q{i}"):
    """Triples for a networkx graph: random directions, extra relations per pair, duplicates and self-loops."""
    triples = []
    for u, v in graph.edges():
        for _ in range(1 + rng.integers(3)):
            h, t = (u, v) if rng.random() < 0.5 else (v, u)
            triples.append((names(h), f"P{rng.integers(5)}", names(t)))
    for u in rng.choice(graph.number_of_nodes(), size=3):
        triples.append((names(u), "P9", names(u)))
    rng.shuffle(triples)
    return triples


def oracle_by_common_neighbours(graph):
    """Triangles (A<B<C) and diamonds (A,B,D,C) straight from the definition, on a networkx graph of strings."""
    triangles, diamonds = set(), set()
    for b, c in graph.edges():
        b, c = sorted((b, c))
        common = sorted(set(graph[b]) & set(graph[c]))
        triangles.update((b, c, w) for w in common if w > c)
        diamonds.update((a, b, d, c) for a, d in itertools.combinations(common, 2))
    return triangles, diamonds


def oracle_brute_force(graph):
    """Every 3-set and 4-set of nodes checked edge by edge (independent of the common-neighbour reasoning)."""
    nodes = sorted(graph.nodes())
    triangles = {
        t for t in itertools.combinations(nodes, 3) if all(graph.has_edge(*p) for p in itertools.combinations(t, 2))
    }
    diamonds = set()
    for quad in itertools.combinations(nodes, 4):
        for b, c in itertools.combinations(quad, 2):
            a, d = sorted(set(quad) - {b, c})
            if all(graph.has_edge(*p) for p in ((b, c), (a, b), (a, c), (d, b), (d, c))):
                diamonds.add((a, b, d, c))
    return triangles, diamonds


def simple_graph(triples):
    graph = nx.Graph()
    graph.add_edges_from((h, t) for h, _, t in triples if h != t)
    return graph


@pytest.fixture(scope="module")
def sample_triples():
    """Item-valued main-snak claims of the bundled 100 real items (deprecated rank skipped), with plain json."""
    triples = []
    with bz2.open(TEST_DATA / "opentapioca_sample_items.json.bz2", "rt", encoding="utf-8") as lines:
        for line in lines:
            line = line.strip().rstrip(",")
            if line in ("[", "]", ""):
                continue
            entity = json.loads(line)
            for prop, claims in entity.get("claims", {}).items():
                for claim in claims:
                    snak = claim["mainsnak"]
                    value = snak.get("datavalue", {}).get("value")
                    is_item = isinstance(value, dict) and value.get("entity-type") == "item"
                    if claim.get("rank") != "deprecated" and is_item:
                        triples.append((entity["id"], prop, value.get("id") or f"Q{value['numeric-id']}"))
    return triples


# ---------------------------------------------------------------------------------------------------------------
# correctness against oracles (uncapped)


@pytest.mark.parametrize("seed", range(4))
def test_cycles_match_brute_force_on_dense_small_graphs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    graph = nx.gnp_random_graph(14, [0.3, 0.5, 0.7, 0.9][seed], seed=seed)
    triples = graph_triples(graph, rng)
    triangles, diamonds = cycles_of(uncapped(tmp_path, triples)[0])
    want_triangles, want_diamonds = oracle_brute_force(simple_graph(triples))
    assert len(triangles) == len(set(triangles)) and set(triangles) == want_triangles
    assert len(diamonds) == len(set(diamonds)) and set(diamonds) == want_diamonds


@pytest.mark.parametrize("seed", range(3))
def test_cycles_match_networkx_on_random_graphs(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    graph = nx.union(
        nx.barabasi_albert_graph(250, 4, seed=seed),  # hubs
        nx.relabel_nodes(nx.gnp_random_graph(150, 0.06, seed=seed), lambda i: 1000 + i),
    )
    triples = graph_triples(graph, rng)
    # small row groups: the columns arrive in many chunks, each entity in several of them
    triangles, diamonds = cycles_of(uncapped(tmp_path, triples, row_group_size=97)[0])
    simple = simple_graph(triples)
    want_triangles, want_diamonds = oracle_by_common_neighbours(simple)
    assert set(triangles) == want_triangles and len(triangles) == len(want_triangles)
    assert {tuple(sorted(c)) for c in nx.enumerate_all_cliques(simple) if len(c) == 3} == want_triangles
    assert set(diamonds) == want_diamonds and len(diamonds) == len(want_diamonds)


def test_cycles_match_networkx_on_real_sample(tmp_path, sample_triples):
    triples = sample_triples
    table, stats = uncapped(tmp_path, triples)
    triangles, diamonds = cycles_of(table)
    simple = simple_graph(triples)
    want_triangles, want_diamonds = oracle_by_common_neighbours(simple)
    assert sum(nx.triangles(simple).values()) // 3 == len(triangles)
    assert set(triangles) == want_triangles and set(diamonds) == want_diamonds
    assert stats["edges"] == simple.number_of_edges() and stats["nodes"] == simple.number_of_nodes()

    items = {h for h, _, _ in triples}
    among_items = [t for t in triples if t[0] in items and t[2] in items]
    items_triangles, _ = cycles_of(uncapped(tmp_path, among_items, name="items")[0])
    assert len(items_triangles) == 42  # docs/design.md §5


def test_cycles_after_ingest_on_real_sample(tmp_path, sample_triples):
    """The real pipeline: ingest's triples.parquet of the sample -> cycles, against networkx on the same triples."""
    tables, out = tmp_path / "tables", tmp_path / "cycles"
    ingest = ["ingest", "-i", str(TEST_DATA / "opentapioca_sample_items.json.bz2"), "-o", str(tables),
              "--workers", "1"]
    assert cli.main(ingest) == 0
    cycles = ["cycles", "--input", str(tables), "--output", str(out), "--max-apexes", "0",
              "--max-cycles-per-entity", "0"]
    assert cli.main(cycles) == 0
    triples = [tuple(row.values()) for row in pq.read_table(tables / "triples.parquet").to_pylist()]
    assert sorted(triples) == sorted(sample_triples)
    triangles, diamonds = cycles_of(pq.read_table(out / CYCLES_FILE))
    assert (set(triangles), set(diamonds)) == oracle_by_common_neighbours(simple_graph(triples))
    assert len(triangles) == 2097


def test_cycles_every_edge_resolves_to_triples(tmp_path, sample_triples):
    """What the reasoning and XLR stages do with a row: one real triple per cycle edge."""
    table, _ = run_stage(tmp_path, sample_triples, "--max-apexes", "3", "--max-cycles-per-entity", "50")
    edges = EdgeTriples(*zip(*sample_triples))
    rng = np.random.default_rng(0)
    triples = set(sample_triples)
    for row in table.to_pylist():
        assert all(triple in triples for triple in edges.choose(row["kind"], row["nodes"], rng))


# ---------------------------------------------------------------------------------------------------------------
# format, order, stats


def test_cycles_schema_order_and_four_clique(tmp_path):
    # a 4-clique on Q9 < Q10 < Q11 < Q12 as strings: "Q10" < "Q11" < "Q12" < "Q9"
    names = ["Q9", "Q10", "Q11", "Q12"]
    triples = [(a, "P1", b) for a, b in itertools.combinations(names, 2)]
    table, stats = uncapped(tmp_path, triples)
    assert table.schema.equals(CYCLES_SCHEMA)
    assert table.column("cycle_id").to_pylist() == list(range(10))
    assert table.column("kind").to_pylist() == ["triangle"] * 4 + ["diamond"] * 6
    triangles, diamonds = cycles_of(table)
    assert triangles == [("Q10", "Q11", "Q12"), ("Q10", "Q11", "Q9"), ("Q10", "Q12", "Q9"), ("Q11", "Q12", "Q9")]
    # one diamond per (diagonal, opposite pair), sorted by (B, C, A, D), with B < C and A < D
    assert diamonds == [
        ("Q12", "Q10", "Q9", "Q11"), ("Q11", "Q10", "Q9", "Q12"), ("Q11", "Q10", "Q12", "Q9"),
        ("Q10", "Q11", "Q9", "Q12"), ("Q10", "Q11", "Q12", "Q9"), ("Q10", "Q12", "Q11", "Q9"),
    ]
    assert stats["triangles"] == 4 and stats["diamonds"] == 6 and stats["cycles"] == 10


def test_cycles_stats_count_folds_and_self_loops(tmp_path):
    triples = [
        ("Q1", "P1", "Q2"), ("Q2", "P2", "Q1"), ("Q1", "P1", "Q2"),  # one edge from three triples
        ("Q2", "P1", "Q3"), ("Q3", "P1", "Q1"), ("Q3", "P5", "Q3"), ("Q4", "P5", "Q4"),  # two self-loops
    ]
    _, stats = uncapped(tmp_path, triples)
    assert stats["triples"] == 7 and stats["self_loops_dropped"] == 2 and stats["parallel_triples_folded"] == 2
    assert stats["edges"] == 3 and stats["nodes"] == 3
    assert stats["triangles"] == 1 and stats["diamonds"] == 0 and stats["max_apexes"] is None


def distribution(values):
    """{"value": how often}, values ascending as integers (the cycles_stats.json layout)."""
    return {str(v): n for v, n in sorted(collections.Counter(values).items())}


def test_cycles_stats_graph_and_membership_match_the_triples_and_the_written_cycles(tmp_path, monkeypatch):
    # more nodes than TOP_HUBS, so the hub lists are a true top; output chunks of 7 rows, so membership adds up chunks
    monkeypatch.setattr(cycles_stage, "write_cycles", functools.partial(cycles_stage.write_cycles, chunk_rows=7))
    triples = graph_triples(nx.gnp_random_graph(TOP_HUBS + 50, 0.06, seed=3), np.random.default_rng(3))
    cap = 6
    table, stats = run_stage(tmp_path, triples, "--max-apexes", "4", "--max-cycles-per-entity", str(cap))
    graph = simple_graph(triples)
    degree = dict(graph.degree())
    on_triples = collections.Counter(x for h, _, t in triples for x in {h, t})
    g = stats["graph"]
    assert g["entities"] == len(on_triples)
    assert g["degree_entities"] == distribution(degree.values())
    assert g["triples_entities"] == distribution(on_triples.values())
    by_degree = sorted(degree, key=lambda x: (-degree[x], -on_triples[x], x))[:TOP_HUBS]
    assert g["top_hubs_by_degree"] == [{"id": x, "degree": degree[x], "triples": on_triples[x]} for x in by_degree]
    per_kind = {kind: collections.Counter(x for r in table.to_pylist() if r["kind"] == kind for x in r["nodes"])
                for kind in ("triangle", "diamond")}
    assert all(per_kind.values())
    every = per_kind["triangle"] + per_kind["diamond"]
    m = stats["membership"]
    assert m["entities_in_cycles"] == len(every)
    for kind, counts in (*per_kind.items(), ("all", every)):
        assert m["cycles_entities"][kind] == distribution(counts.values())
    by_cycles = sorted(every, key=lambda x: (-every[x], x))[:TOP_HUBS]
    assert m["top_hubs_by_cycles"] == [{"id": x, "triangle": per_kind["triangle"][x], "diamond": per_kind["diamond"][x],
                                        "cycles": every[x], "degree": degree[x]} for x in by_cycles]
    assert m["entities_at_cap"] == {kind: sum(n >= cap for n in counts.values()) for kind, counts in per_kind.items()}
    assert m["entities_at_cap"]["diamond"] > 0


def test_cycles_empty_and_acyclic_inputs_write_empty_tables(tmp_path):
    for name, triples in (("empty", []), ("path", [("Q1", "P1", "Q2"), ("Q2", "P1", "Q3")])):
        table, stats = uncapped(tmp_path, triples, name=name)
        assert table.num_rows == 0 and table.schema.equals(CYCLES_SCHEMA)
        assert stats["cycles"] == 0


def test_cycles_bad_input_is_a_clear_error(tmp_path, caplog):
    out = str(tmp_path / "out")
    assert cli.main(["cycles", "--input", str(tmp_path / "nowhere"), "--output", out]) == 2
    assert "triples.parquet does not exist" in caplog.text
    (tmp_path / "nulls").mkdir()
    nulls = pa.table({"head": ["Q1", None], "relation": ["P1", "P1"], "tail": ["Q2", "Q3"]})
    pq.write_table(nulls, tmp_path / "nulls" / "triples.parquet")
    assert cli.main(["cycles", "--input", str(tmp_path / "nulls"), "--output", out]) == 2
    assert "null value(s) in column 'head', first at row 1" in caplog.text
    (tmp_path / "cols").mkdir()
    pq.write_table(pa.table({"subject": ["Q1"], "tail": ["Q2"]}), tmp_path / "cols" / "triples.parquet")
    assert cli.main(["cycles", "--input", str(tmp_path / "cols"), "--output", out]) == 2
    assert "has no column 'head'" in caplog.text
    assert not (tmp_path / "out" / CYCLES_FILE).exists()


# ---------------------------------------------------------------------------------------------------------------
# caps


def dense_triples(seed=0):
    return graph_triples(nx.gnp_random_graph(40, 0.5, seed=seed), np.random.default_rng(seed))


def test_cycles_max_apexes_keeps_exactly_k_common_neighbours_per_diagonal(tmp_path):
    triples = dense_triples()
    simple = simple_graph(triples)
    all_triangles, _ = cycles_of(uncapped(tmp_path, triples, name="all")[0])
    for k in (2, 3, 6):
        table, stats = run_stage(
            tmp_path, triples, "--max-apexes", str(k), "--max-cycles-per-entity", "0", name=f"k{k}"
        )
        triangles, diamonds = cycles_of(table)
        assert triangles == all_triangles  # the apex cap never drops triangles
        apexes, per_diagonal = collections.defaultdict(set), collections.Counter()
        for a, b, d, c in diamonds:
            apexes[b, c] |= {a, d}
            per_diagonal[b, c] += 1
        for b, c in simple.edges():
            b, c = sorted((b, c))
            common = set(simple[b]) & set(simple[c])
            kept = apexes.get((b, c), set())
            assert kept <= common and len(kept) == (min(k, len(common)) if len(common) >= 2 else 0)
            assert per_diagonal[b, c] == len(kept) * (len(kept) - 1) // 2
        assert stats["diamonds"] == len(diamonds) == stats["diamonds_uncapped"] - stats["diamonds_dropped_by_apex_cap"]
        assert stats["diagonals_over_apex_cap"] == sum(
            len(set(simple[b]) & set(simple[c])) > k for b, c in simple.edges()
        )


def test_cycles_max_apexes_samples_apexes_uniformly_across_seeds():
    # one diagonal (0, 1) with 10 common neighbours 2..11: each should be kept by ~K/10 of the seeds
    edges = np.array([(0, 1)] + [(0, a) for a in range(2, 12)] + [(1, a) for a in range(2, 12)], np.int32)
    chosen = collections.Counter()
    for seed in range(400):
        cycles = find_cycles(edges[:, 0], edges[:, 1], 12, max_apexes=3, seed=seed)
        chosen.update(cycles.apex[cycles.apex_off[0]:cycles.apex_off[1]].tolist())
    assert set(chosen) == set(range(2, 12))
    assert all(80 <= n <= 160 for n in chosen.values()), chosen  # expected 120 each


@pytest.mark.parametrize("max_apexes", [4, 0])
def test_cycles_max_cycles_per_entity_is_a_bound_and_greedy_maximal(tmp_path, max_apexes):
    # a dense graph plus a "book": 90 pages on the spine Q0-Q1, so some lists are longer than the scratch buffers
    book = [("Q0", "P1", "Q1")] + [(spine, "P2", f"Q{page}") for page in range(100, 190) for spine in ("Q0", "Q1")]
    triples = dense_triples(1) + book
    K = str(max_apexes)
    candidates_table, _ = run_stage(tmp_path, triples, "--max-apexes", K, "--max-cycles-per-entity", "0", name="cand")
    candidate_triangles, candidate_diamonds = map(set, cycles_of(candidates_table))
    for limit in (1, 7, 60, 200):
        table, stats = run_stage(
            tmp_path, triples, "--max-apexes", K, "--max-cycles-per-entity", str(limit), name=f"m{limit}"
        )
        kinds = ("triangles", "diamonds")
        for kept, candidates, kind in zip(cycles_of(table), (candidate_triangles, candidate_diamonds), kinds):
            uses = collections.Counter(x for cycle in kept for x in cycle)
            assert max(uses.values()) <= limit
            assert set(kept) <= candidates
            # greedy: every dropped candidate has an entity that reached the cap
            assert all(any(uses[x] >= limit for x in cycle) for cycle in candidates - set(kept))
            assert stats[kind] == len(kept)
            assert stats[f"{kind}_dropped_by_entity_cap"] == len(candidates) - len(kept)
        assert table.column("cycle_id").to_pylist() == list(range(table.num_rows))


def test_cycles_same_seed_gives_byte_identical_files(tmp_path):
    triples = dense_triples(2)
    caps = ["--max-apexes", "3", "--max-cycles-per-entity", "20"]
    run_stage(tmp_path, triples, *caps, "--seed", "5", name="a")
    run_stage(tmp_path, triples, *caps, "--seed", "5", name="b")
    run_stage(tmp_path, triples, *caps, "--seed", "6", name="c")
    a, b, c = ((tmp_path / n / CYCLES_FILE).read_bytes() for n in "abc")
    assert a == b
    assert a != c
    assert (tmp_path / "a" / CYCLES_STATS_FILE).read_bytes() == (tmp_path / "b" / CYCLES_STATS_FILE).read_bytes()


def test_cycles_result_does_not_depend_on_triple_order(tmp_path):
    triples = dense_triples(3)
    caps = ["--max-apexes", "3", "--max-cycles-per-entity", "15", "--seed", "2"]
    run_stage(tmp_path, triples, *caps, name="a")
    run_stage(tmp_path, triples[::-1], *caps, name="b")
    assert (tmp_path / "a" / CYCLES_FILE).read_bytes() == (tmp_path / "b" / CYCLES_FILE).read_bytes()


def test_cycles_small_output_chunks_match_one_chunk():
    triples = dense_triples(4)
    graph = build_graph(*(pa.chunked_array([pa.array(c)]) for c in list(zip(*triples))[::2]))
    cycles = find_cycles(graph.edge_u, graph.edge_v, graph.num_ids, max_apexes=5, max_cycles_per_entity=30, seed=1)
    for chunks in (cycles.triangle_chunks, cycles.diamond_chunks):
        whole = np.concatenate(list(chunks(1 << 20)))
        assert np.array_equal(np.concatenate(list(chunks(7))), whole) and len(whole)


@pytest.mark.parametrize("option, value, message", [
    ("--max-apexes", "1", "leaves no pair of apexes"),
    ("--max-apexes", str(1 << 21), "is not supported"),
    ("--seed", "-3", "--seed must be >= 0"),
])
def test_cycles_rejects_unusable_settings(tmp_path, caplog, option, value, message):
    source = write_triples(tmp_path / "in", [("Q1", "P1", "Q2")])
    assert cli.main(["cycles", "--input", str(source), "--output", str(tmp_path / "o"), option, value]) == 2
    assert message in caplog.text
