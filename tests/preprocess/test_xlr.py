"""The XLR builder (sizes, choices, balance, label swapping, determinism) and the check-leakage guard."""
import json
import logging
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.cycle_triples import EdgeTriples, cycle_edges, edge_key
from preprocess.core.formats.heldout_cycles import HELDOUT_FILE
from preprocess.core.formats.stage_summary import read_stage_summary
from preprocess.core.formats.tables import TRIPLES_SCHEMA, entities_schema
from preprocess.stages.check_leakage import check_leakage
from preprocess.stages.xlr import NUM_CHOICES, QUESTION_TEMPLATES, Candidate, build_xlr, select_balanced

LANGS = ("en", "de", "ja")
SIZES = {"train": 20, "dev": 8, "test": 8}
CYCLES_SCHEMA = pa.schema([("cycle_id", pa.int64()), ("kind", pa.string()), ("nodes", pa.list_(pa.string()))])
SPAN = pa.struct([("text", pa.string()), ("role", pa.string()), ("id", pa.string()), ("sentence", pa.int32()),
                  ("lang", pa.string())])
REASONING_SCHEMA = pa.schema([("spans", pa.list_(SPAN)), ("cycle_id", pa.int64()), ("kind", pa.string()),
                              ("lang", pa.string())])


def entity_rows(ids, langs, missing=()):
    """Rows for entities.parquet; ``missing`` holds (id, lang) pairs without a label."""
    rows = []
    for entity_id in ids:
        row = {"id": entity_id, "kind": "property" if entity_id.startswith("P") else "item"}
        for lang in langs:
            label = None if (entity_id, lang) in missing else f"{lang}:{entity_id}"
            row.update({f"label_{lang}": label, f"aliases_{lang}": [], f"description_{lang}": None})
        rows.append(row)
    return rows


def write_world(directory, triples, cycles, langs=LANGS, missing=(), extra_relations=()):
    """entities.parquet + triples.parquet + cycles.parquet in ``directory``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    ids = sorted({x for h, _, t in triples for x in (h, t)}) + sorted({r for _, r, _ in triples} | set(extra_relations))
    pq.write_table(pa.Table.from_pylist(entity_rows(ids, langs, missing), schema=entities_schema(langs)),
                   directory / "entities.parquet")
    pq.write_table(pa.Table.from_pylist([dict(zip(("head", "relation", "tail"), t)) for t in triples],
                                        schema=TRIPLES_SCHEMA), directory / "triples.parquet")
    pq.write_table(pa.Table.from_pylist([{"cycle_id": i, "kind": k, "nodes": list(n)} for i, (k, n) in
                                         enumerate(cycles)], schema=CYCLES_SCHEMA), directory / "cycles.parquet")
    return directory


def random_world(directory, n_triangles=40, n_diamonds=12, n_entities=60, n_relations=14, seed=0, ja_missing=(),
                 en_missing=()):
    """Random cycles over a small entity set, one or two triples per cycle edge, plus unrelated triples."""
    rng = np.random.default_rng(seed)
    entities = [f"Q{i}" for i in range(1, n_entities + 1)]
    relations = [f"P{i}" for i in range(1, n_relations + 1)]
    triples, cycles = set(), []
    for kind, size, count in (("triangle", 3, n_triangles), ("diamond", 4, n_diamonds)):
        for _ in range(count):
            nodes = tuple(rng.choice(entities, size=size, replace=False).tolist())
            cycles.append((kind, nodes))
            for u, v in cycle_edges(kind, nodes):
                for _ in range(1 + (rng.random() < 0.2)):  # some pairs linked twice: a second right answer
                    h, t = (u, v) if rng.random() < 0.5 else (v, u)
                    triples.add((h, str(rng.choice(relations)), t))
    for _ in range(80):
        h, t = rng.choice(entities, size=2, replace=False).tolist()
        triples.add((h, str(rng.choice(relations)), t))
    missing = {(e, "ja") for e in ja_missing} | {(e, "en") for e in en_missing}
    return write_world(directory, sorted(triples), cycles, missing=missing)


def build(world, out, seed=1, sizes=SIZES, langs=LANGS):
    return build_xlr(world, world / "cycles.parquet", out, languages=langs, sizes=sizes, seed=seed)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return random_world(tmp_path_factory.mktemp("world"), ja_missing=[f"Q{i}" for i in range(1, 61, 5)])


@pytest.fixture(scope="module")
def built(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("xlr")
    return out, build(world, out)


def test_xlr_writes_requested_sizes_disjoint_by_cycle(built):
    out, summary = built
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["train.en.jsonl", HELDOUT_FILE, "xlr_summary.json"] + [f"{s}.{lang}.jsonl" for s in ("dev", "test")
                                                               for lang in LANGS])
    counts = read_stage_summary(out, "xlr")["counts"]
    assert [counts[f"{split} en"] for split in SIZES] == list(SIZES.values())
    cycles = {}
    for split, size in SIZES.items():
        samples = read_jsonl(out / f"{split}.en.jsonl")
        assert len(samples) == size
        cycles[split] = {s["cycle_id"] for s in samples}
        assert len(cycles[split]) == size
    assert not (cycles["train"] & cycles["dev"] or cycles["train"] & cycles["test"] or cycles["dev"] & cycles["test"])
    heldout = pq.read_table(out / HELDOUT_FILE).to_pylist()
    assert {r["cycle_id"] for r in heldout} == cycles["dev"] | cycles["test"]
    assert {r["split"] for r in heldout} == {"dev", "test"}
    assert summary["sizes"] == SIZES


def test_xlr_choices_are_six_distinct_and_include_only_one_right_answer(built, world):
    out, _ = built
    table = pq.read_table(world / "triples.parquet")
    graph = EdgeTriples.from_table(table)
    cycles = pq.read_table(world / "cycles.parquet").to_pylist()
    for path in out.glob("*.jsonl"):
        for sample in read_jsonl(path):
            choices, ids = sample["choices"], sample["choice_ids"]
            assert len(choices) == len(set(choices)) == len(ids) == len(set(ids)) == NUM_CHOICES
            assert ids[sample["label"]] == sample["relation"]
            assert choices[sample["label"]] == f"{sample['lang']}:{sample['relation']}"
            question = (sample["head"], sample["relation"], sample["tail"])
            linking = {r for _, r, _ in graph.between(sample["head"], sample["tail"])}
            assert question in graph.between(sample["head"], sample["tail"])
            assert linking & set(ids) == {sample["relation"]}
            cycle = cycles[sample["cycle_id"]]
            triples = [tuple(t) for t in sample["context_triples"]] + [question]
            assert sorted(edge_key(h, t) for h, _, t in triples) == sorted(
                edge_key(u, v) for u, v in cycle_edges(cycle["kind"], cycle["nodes"]))
            assert sample["context"] == [" ".join(f"{sample['lang']}:{x}" for x in t) + "." for t in
                                         sample["context_triples"]]
            assert sample["question"] == QUESTION_TEMPLATES[sample["lang"]].format(
                head=f"{sample['lang']}:{sample['head']}", tail=f"{sample['lang']}:{sample['tail']}")


def test_xlr_answer_positions_are_uniform(built):
    out, _ = built
    for split in ("train", "dev", "test"):
        positions = Counter(s["label"] for s in read_jsonl(out / f"{split}.en.jsonl"))
        counts = [positions[i] for i in range(NUM_CHOICES)]
        assert max(counts) - min(counts) <= 1, (split, counts)


def test_xlr_label_swapped_sets_align_with_english(built):
    out, summary = built
    for split in ("dev", "test"):
        english = {s["id"]: s for s in read_jsonl(out / f"{split}.en.jsonl")}
        for lang in ("de", "ja"):
            swapped = read_jsonl(out / f"{split}.{lang}.jsonl")
            assert len(swapped) == summary["written"][split][lang][0]
            for sample in swapped:
                reference = english[sample["id"]]
                for key in ("cycle_id", "label", "choice_ids", "head", "tail", "relation", "context_triples"):
                    assert sample[key] == reference[key]
                assert sample["lang"] == lang and all(c.startswith(f"{lang}:") for c in sample["choices"])
        assert summary["written"][split]["de"] == (SIZES[split], 0)  # every de label exists
    # test is selected first, among at least 3 x 8 cycles with the fewest missing ja labels (here: none)
    assert summary["written"]["test"]["ja"] == (SIZES["test"], 0)


def test_xlr_leaves_out_and_counts_samples_without_labels(tmp_path):
    world = random_world(tmp_path / "world", ja_missing=[f"Q{i}" for i in range(1, 61, 2)])
    summary = build(world, tmp_path / "out", sizes={"train": 4, "dev": 10, "test": 30})
    written, left_out = summary["written"]["test"]["ja"]
    assert 0 < written < 30 and written + left_out == 30
    assert len(read_jsonl(tmp_path / "out" / "test.ja.jsonl")) == written
    assert len(read_jsonl(tmp_path / "out" / "test.en.jsonl")) == 30


def test_xlr_is_deterministic_byte_identical(world, tmp_path):
    build(world, tmp_path / "a", seed=5)
    build(world, tmp_path / "b", seed=5)
    build(world, tmp_path / "c", seed=6)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in names)


def candidate(cycle_id, nodes, answer, relations=None):
    relations = relations or (answer,)
    triples = tuple((nodes[i], r, nodes[(i + 1) % 3]) for i, r in enumerate((relations * 3)[:3]))
    triples = ((nodes[0], answer, nodes[1]),) + triples[1:]
    return Candidate(cycle_id, "triangle", nodes, triples, 0, (answer,), ("en",), 0, tiebreak=cycle_id / 100)


def test_select_balanced_spreads_answers():
    # 20 cycles can only ask for P1, 10 cycles for ten other relations: a random pick of 10 takes ~7 P1 questions
    candidates = [candidate(i, (f"Q{3 * i}", f"Q{3 * i + 1}", f"Q{3 * i + 2}"), "P1" if i < 20 else f"P{i}")
                  for i in range(30)]
    selected = select_balanced(candidates, 10, set())
    assert Counter(c.answer for c in selected)["P1"] == 1
    assert len({c.cycle_id for c in selected}) == 10


def test_select_balanced_spreads_entities_and_skips_taken_cycles():
    hub = [candidate(i, ("Q0", f"Q{2 * i + 1}", f"Q{2 * i + 2}"), f"P{i}") for i in range(20)]
    spread = [candidate(100 + i, (f"Q{1000 + 3 * i}", f"Q{1001 + 3 * i}", f"Q{1002 + 3 * i}"), f"P{50 + i}")
              for i in range(8)]
    taken = {100, 101}
    selected = select_balanced(hub + spread, 8, taken)
    entities = Counter(e for c in selected for e in c.nodes)
    assert entities["Q0"] == 2 and not {100, 101} & {c.cycle_id for c in selected}
    assert taken >= {c.cycle_id for c in selected}


def test_select_balanced_prefers_samples_in_every_language():
    partial = [candidate(i, (f"Q{3 * i}", f"Q{3 * i + 1}", f"Q{3 * i + 2}"), f"P{i}") for i in range(10)]
    # six cycles render in de: enough (3 x 2) to pick 2 of them even though they repeat an answer and an entity
    full = [candidate(50 + i, (f"Q{900 + i}", "Q0", "Q1"), "P1") for i in range(6)]
    full = [Candidate(c.cycle_id, c.kind, c.nodes, c.triples, 0, c.choice_ids, ("en", "de"), 0, c.tiebreak)
            for c in full]
    assert {c.cycle_id for c in select_balanced(partial + full, 2, set(), ("de",))} <= set(range(50, 56))
    # asked for more, balance wins over coverage: one de cycle, then fresh answers and entities
    selected = select_balanced(partial + full, 4, set(), ("de",))
    assert [c.cycle_id >= 50 for c in selected] == [True, False, False, False]


def test_xlr_grows_its_seeded_pool_until_enough_cycles_are_usable(tmp_path, caplog):
    world = random_world(tmp_path / "world", n_triangles=150, n_diamonds=0, en_missing=[f"Q{i}" for i in range(1, 21)])
    sizes = {"train": 4, "dev": 2, "test": 2}
    with caplog.at_level(logging.INFO):
        summary = build_xlr(world, world, tmp_path / "a", languages=LANGS, sizes=sizes, pool_factor=2)
    assert "doubling it" in caplog.text  # about 1 in 3 cycles has all English labels
    assert summary["usable"] >= 16 and summary["pool"] < summary["cycles"] == 150
    assert summary["sizes"] == sizes and summary["skipped"]
    again = build_xlr(world, world, tmp_path / "b", languages=LANGS, sizes=sizes, pool_factor=2)
    assert again == summary and (tmp_path / "a" / "test.en.jsonl").read_bytes() == (
        tmp_path / "b" / "test.en.jsonl").read_bytes()


def test_xlr_shrinks_sizes_with_a_warning_when_cycles_are_few(world, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = build(world, tmp_path / "out", sizes={"train": 3000, "dev": 1000, "test": 1050})
    assert "split sizes shrunk" in caplog.text
    sizes = summary["sizes"]
    assert 0 < sum(sizes.values()) <= summary["usable"] and sizes["test"] >= sizes["dev"]
    for split, size in sizes.items():
        assert len(read_jsonl(tmp_path / "out" / f"{split}.en.jsonl")) == size


def test_xlr_fills_choices_from_the_global_distribution_and_counts_it(tmp_path, caplog):
    # the triangle's entities carry 3 relations; 6 choices need 3 more from elsewhere in the graph
    triples = [("Q1", "P1", "Q2"), ("Q2", "P2", "Q3"), ("Q3", "P3", "Q1")]
    triples += [(f"Q{10 + i}", f"P{4 + i % 5}", f"Q{11 + i}") for i in range(10)]
    world = write_world(tmp_path / "world", triples, [("triangle", ("Q1", "Q2", "Q3"))], langs=("en",))
    with caplog.at_level(logging.INFO):
        summary = build_xlr(world, world, tmp_path / "out", languages=("en",),
                            sizes={"train": 1, "dev": 0, "test": 0})
    (sample,) = read_jsonl(tmp_path / "out" / "train.en.jsonl")
    assert set(sample["choice_ids"]) >= {"P1", "P2", "P3"} and len(set(sample["choice_ids"])) == NUM_CHOICES
    assert "1 with choices from the global relation distribution" in caplog.text
    assert summary["written"]["train"]["en"] == (1, 0)


def test_xlr_skips_and_counts_cycles_without_enough_relations(tmp_path):
    triples = [("Q1", "P1", "Q2"), ("Q2", "P2", "Q3"), ("Q3", "P1", "Q1")]
    cycles = [("triangle", ("Q1", "Q2", "Q3")), ("triangle", ("Q1", "Q2", "Q4"))]  # Q4 is linked to nothing
    world = write_world(tmp_path / "world", triples, cycles, langs=("en",))
    summary = build_xlr(world, world, tmp_path / "out", languages=("en",), sizes={"train": 1, "dev": 0, "test": 0})
    assert summary["skipped"] == {"fewer than 6 distinct relations for the choices": 1,
                                  "an edge has no triple in triples.parquet": 1}
    assert summary["sizes"]["train"] == 0 and read_jsonl(tmp_path / "out" / "train.en.jsonl") == []


def test_xlr_falls_back_to_the_english_template_with_a_warning(tmp_path, caplog):
    world = random_world(tmp_path / "world", n_triangles=12, n_diamonds=0)
    entities = pq.read_table(world / "entities.parquet")
    rows = [{**r, "label_sw": r["label_en"].replace("en:", "sw:"), "aliases_sw": [], "description_sw": None}
            for r in entities.to_pylist()]
    pq.write_table(pa.Table.from_pylist(rows, schema=entities_schema(LANGS + ("sw",))), world / "entities.parquet")
    with caplog.at_level(logging.WARNING):
        build(world, tmp_path / "out", sizes={"train": 2, "dev": 2, "test": 2}, langs=("en", "sw"))
    assert "no question template for language 'sw'" in caplog.text
    for sample in read_jsonl(tmp_path / "out" / "test.sw.jsonl"):
        assert sample["question"].startswith("What is the relation between sw:")


def test_xlr_rejects_malformed_cycles(tmp_path):
    world = write_world(tmp_path / "world", [("Q1", "P1", "Q2")], [("triangle", ("Q1", "Q2"))], langs=("en",))
    assert cli.main(["xlr", "--input", str(world), "--cycles", str(world), "--output", str(tmp_path / "out"),
                     "--languages", "en"]) == 2


# ---------------------------------------------------------------------------------------------------------------
# check-leakage


def reasoning_sample(graph, kind, nodes, cycle_id):
    spans = []
    for i, (h, r, t) in enumerate(graph.choose(kind, nodes, np.random.default_rng(cycle_id))):
        spans += [{"text": x, "role": role, "id": x, "sentence": i, "lang": "en"}
                  for x, role in ((h, "head"), (r, "relation"), (t, "tail"))]
    return {"spans": spans, "cycle_id": cycle_id, "kind": kind, "lang": "en"}


def write_reasoning(directory, samples):
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(samples, schema=REASONING_SCHEMA), directory / "reasoning.parquet")
    return directory


def shares(cycle, other):
    """One cycle's edges include all of the other's (independent of preprocess.stages.reasoning.shares_cycle)."""
    a, b = ({edge_key(u, v) for u, v in cycle_edges(kind, nodes)} for kind, nodes in (cycle, other))
    return a <= b or b <= a


def clean_reasoning(world, xlr_dir):
    graph = EdgeTriples.from_table(pq.read_table(world / "triples.parquet"))
    heldout = [(r["kind"], r["nodes"]) for r in pq.read_table(xlr_dir / HELDOUT_FILE).to_pylist()]
    cycles = pq.read_table(world / "cycles.parquet").to_pylist()
    kept = [c for c in cycles if not any(shares((c["kind"], c["nodes"]), h) for h in heldout)]
    return graph, heldout, [reasoning_sample(graph, c["kind"], c["nodes"], c["cycle_id"]) for c in kept]


def check(xlr_dir, reasoning_dir, *extra):
    return cli.main(["check-leakage", "--xlr", str(xlr_dir), "--reasoning", str(reasoning_dir), *extra])


def test_check_leakage_passes_on_clean_data(built, world, tmp_path, caplog):
    out, summary = built
    _, heldout, samples = clean_reasoning(world, out)
    assert len(samples) >= 52 - len(heldout)
    reasoning = write_reasoning(tmp_path / "reasoning", samples)
    with caplog.at_level(logging.INFO):
        assert check(out, reasoning, "--batch-size", "7") == 0
    assert f"checked {len(samples)} reasoning samples" in caplog.text
    assert f"against {summary['heldout']} held-out cycles" in caplog.text


def test_check_leakage_fails_on_an_injected_heldout_cycle(built, world, tmp_path, caplog):
    out, _ = built
    graph, heldout, samples = clean_reasoning(world, out)
    kind, nodes = next(h for h in heldout if h[0] == "triangle")
    a, b, c = nodes
    # a diamond A-B-X-C-A with the diagonal B-C contains every edge of the held-out triangle A, B, C
    extra = {("Q999", "P1", b), ("Q999", "P2", c)}
    triples = [(t["head"], t["relation"], t["tail"]) for t in pq.read_table(world / "triples.parquet").to_pylist()]
    graph = EdgeTriples(*zip(*(triples + sorted(extra))))
    injected = reasoning_sample(graph, "diamond", (a, b, "Q999", c), 10_000)
    partial = reasoning_sample(graph, "triangle", (b, "Q999", c), 10_001)  # shares one edge only: not a leak
    samples = samples[:9] + [partial, injected] + samples[9:]
    reasoning = write_reasoning(tmp_path / "reasoning", samples)
    assert check(out, reasoning, "--batch-size", "4") == 1
    assert "check-leakage FAILED: 1 of" in caplog.text
    assert f"row 10 (cycle_id 10000) shares held-out triangle {list(nodes)}" in caplog.text


def test_check_leakage_fails_on_a_triangle_inside_a_heldout_diamond(world, tmp_path, caplog):
    graph = EdgeTriples.from_table(pq.read_table(world / "triples.parquet"))
    cycles = pq.read_table(world / "cycles.parquet").to_pylist()
    a, b, d, c = next(r["nodes"] for r in cycles if r["kind"] == "diamond")
    xlr_dir = tmp_path / "xlr"
    xlr_dir.mkdir()
    pq.write_table(pa.Table.from_pylist([{"kind": "diamond", "nodes": [a, b, d, c]}]), xlr_dir / HELDOUT_FILE)
    inside = reasoning_sample(graph, "triangle", (a, b, c), 20_000)  # edges A-B, B-C (the diagonal), C-A
    beside = reasoning_sample(graph, "triangle", (b, d, c), 20_001)  # the diamond's other half: also inside
    reasoning = write_reasoning(tmp_path / "reasoning", [inside, beside])
    assert check(xlr_dir, reasoning) == 1
    assert f"row 0 (cycle_id 20000) shares held-out diamond {[a, b, d, c]}" in caplog.text
    assert "2 of 2" in caplog.text


def test_check_leakage_rejects_a_sentence_without_tail(built, world, tmp_path, caplog):
    out, _ = built
    _, _, samples = clean_reasoning(world, out)
    samples[2]["spans"] = [s for s in samples[2]["spans"] if not (s["role"] == "tail" and s["sentence"] == 1)]
    reasoning = write_reasoning(tmp_path / "reasoning", samples)
    assert check(out, reasoning) == 2
    assert "sample row 2: a sentence lacks its head or tail span" in caplog.text


def test_check_leakage_agrees_with_the_reasoning_exclude_filter(built, world, tmp_path):
    out, _ = built
    common = ["reasoning", "--input", str(world), "--cycles", str(world), "--languages", "en,de"]
    assert cli.main(common + ["--output", str(tmp_path / "kept"), "--exclude", str(out / HELDOUT_FILE)]) == 0
    assert cli.main(common + ["--output", str(tmp_path / "all")]) == 0
    assert check(out, tmp_path / "kept") == 0
    assert check(out, tmp_path / "all") == 1
    # every leak is found: exactly the rows whose cycle covers a held-out cycle
    cycles = pq.read_table(world / "cycles.parquet").to_pylist()
    heldout = [(r["kind"], r["nodes"]) for r in pq.read_table(out / HELDOUT_FILE).to_pylist()]
    rows = pq.read_table(tmp_path / "all" / "reasoning.parquet", columns=["cycle_id"]).column(0).to_pylist()
    expected = [row for row, cycle_id in enumerate(rows)
                if any(shares((cycles[cycle_id]["kind"], cycles[cycle_id]["nodes"]), h) for h in heldout)]
    total, _, _, leaks = check_leakage(out, tmp_path / "all", batch_size=5)
    assert total == len(rows) and [row for row, _, _ in leaks] == expected and len(expected) >= len(heldout)


def test_xlr_writes_no_file_for_a_language_without_any_sample(tmp_path, caplog):
    world = random_world(tmp_path / "world", n_triangles=12, n_diamonds=0)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "test.ja.jsonl").write_text("stale\n")
    entities = pq.read_table(world / "entities.parquet").to_pylist()
    rows = [{**r, "label_ja": None if r["id"].startswith("P") else r["label_ja"]} for r in entities]
    pq.write_table(pa.Table.from_pylist(rows, schema=entities_schema(LANGS)), world / "entities.parquet")
    summary = build(world, tmp_path / "out", sizes={"train": 2, "dev": 2, "test": 2})
    assert summary["written"]["test"]["ja"] == (0, 2) and summary["written"]["test"]["de"] == (2, 0)
    assert not (tmp_path / "out" / "test.ja.jsonl").exists() and (tmp_path / "out" / "test.de.jsonl").exists()
    assert "test.ja.jsonl not written" in caplog.text
