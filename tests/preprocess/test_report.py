"""The dataset report: its numbers against independent counts, optional inputs, plots, errors, determinism."""
import argparse
import json
import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.stages import report
from preprocess.core.formats.tables import TRIPLES_SCHEMA, entities_schema

LANGS = ("en", "de")
SPAN = pa.struct([("text", pa.string()), ("role", pa.string()), ("id", pa.string()), ("sentence", pa.int32()),
                  ("lang", pa.string())])
SENTENCES_SCHEMA = pa.schema([("spans", pa.list_(SPAN)), ("triple_index", pa.int64()), ("variant", pa.string()),
                              ("lang_pair", pa.string())])
REASONING_SCHEMA = pa.schema([("spans", pa.list_(SPAN)), ("cycle_id", pa.int64()), ("kind", pa.string()),
                              ("lang", pa.string())])
CYCLES_SCHEMA = pa.schema([("cycle_id", pa.int64()), ("kind", pa.string()), ("nodes", pa.list_(pa.string()))])
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Q1..Q6 items and P1..P3 properties; de lacks some labels; Q99 appears in triples only.
ENTITIES = {
    "Q1": {"en": ("one", ["uno", "eins"]), "de": ("eins", ["1"])},
    "Q2": {"en": ("two", []), "de": ("zwei", [])},
    "Q3": {"en": ("three", ["drei"]), "de": (None, [])},
    "Q4": {"en": ("four", []), "de": ("vier", ["IV", "4", "iv"])},
    "Q5": {"en": ("five", []), "de": ("", [])},
    "Q6": {"en": (None, []), "de": (None, [])},
    "P1": {"en": ("likes", ["fond of"]), "de": ("mag", [])},
    "P2": {"en": ("knows", []), "de": (None, [])},
    "P3": {"en": ("part of", []), "de": ("Teil von", [])},
}
TRIPLES = [
    ("Q1", "P1", "Q2"), ("Q2", "P2", "Q3"), ("Q3", "P1", "Q1"), ("Q1", "P2", "Q3"),  # triangle, folded pair
    ("Q2", "P1", "Q4"), ("Q4", "P3", "Q3"),                                          # diamond with diagonal 2-3
    ("Q5", "P3", "Q5"),                                                              # self-loop
    ("Q1", "P1", "Q99"), ("Q1", "P1", "Q2"),                                         # unknown entity, duplicate
    ("Q6", "P3", "Q1"),
]
CYCLES = [("triangle", ["Q1", "Q2", "Q3"]), ("triangle", ["Q2", "Q3", "Q4"]), ("diamond", ["Q1", "Q2", "Q4", "Q3"])]
CYCLES_STATS = {"triangles": 2, "triangles_found": 3, "diamonds": 1, "diamonds_dropped_by_apex_cap": 4,
                "max_cycles_per_entity": 2, "max_apexes": None, "some_future_key": "kept as is"}


def span(text, role, entity_id, sentence=0, lang="en"):
    return {"text": text, "role": role, "id": entity_id, "sentence": sentence, "lang": lang}


def triple_spans(triple, sentence=0, langs=("en", "en", "en")):
    return [span(f"{lang}:{x}", role, x, sentence, lang)
            for x, role, lang in zip(triple, ("head", "relation", "tail"), langs)]


SENTENCES = [  # (triple_index, variant, lang_pair, span languages)
    (0, "codeswitch", "en-de", ("en", "de", "de")), (1, "codeswitch", "en-de", ("en", "en", "en")),
    (4, "alias", "en-de", ("de", "en", "de")), (5, "codeswitch", "en-fr", ("fr", "fr", "en")),
    (2, "alias", "en-fr", ("en", "en", "en")), (99, "alias", "en-de", ("en", "en", "en")),  # out of range
]
REASONING = [  # (cycle_id, kind, lang, triples in sentence order)
    (0, "triangle", "en", [TRIPLES[0], TRIPLES[1], TRIPLES[2]]),
    (0, "triangle", "de", [TRIPLES[0], TRIPLES[1], TRIPLES[2]]),
    (0, "triangle", "de", [TRIPLES[0], TRIPLES[1], TRIPLES[3]]),
    (1, "triangle", "en", [TRIPLES[1], TRIPLES[5], TRIPLES[4]]),
    (2, "diamond", "en", [TRIPLES[0], TRIPLES[4], TRIPLES[5], TRIPLES[2], TRIPLES[1]]),
]


def xlr_sample(i, lang, label, relation="P1", cycle_id=0):
    choices = ["P2", "P3", "P4", "P5", "P6"]
    choices.insert(label, relation)
    return {"id": f"s-{i}", "lang": lang, "cycle_id": cycle_id, "kind": "triangle", "question": f"{lang} q{i}?",
            "context": ["a b c."], "choices": [f"{lang}:{c}" for c in choices], "choice_ids": choices,
            "label": label, "head": "Q1", "tail": "Q2", "relation": relation}


XLR = {
    "train.en": [xlr_sample(i, "en", i % 6, cycle_id=i) for i in range(7)],
    "dev.en": [xlr_sample(i, "en", (2 * i) % 6, relation="P2", cycle_id=10 + i) for i in range(4)],
    "dev.de": [xlr_sample(i, "de", (2 * i) % 6, relation="P2", cycle_id=10 + i) for i in range(3)],
    "test.en": [xlr_sample(i, "en", 5, cycle_id=20) for i in range(2)],
    "test.de": [xlr_sample(i, "de", 5, cycle_id=20) for i in range(2)],
}


def write_world(root):
    tables, sentences, cycles, reasoning, xlr = (root / n for n in ("tables", "sentences", "cycles", "reasoning",
                                                                     "xlr"))
    for d in (tables, sentences, cycles, reasoning, xlr):
        d.mkdir(parents=True)
    rows = []
    for entity_id, per_lang in ENTITIES.items():
        row = {"id": entity_id, "kind": "property" if entity_id.startswith("P") else "item"}
        for lang, (label, aliases) in per_lang.items():
            row.update({f"label_{lang}": label, f"aliases_{lang}": aliases,
                        f"description_{lang}": "d" if entity_id in ("Q1", "P1") else None})
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=entities_schema(LANGS)), tables / "entities.parquet")
    pq.write_table(pa.Table.from_pylist([dict(zip(("head", "relation", "tail"), t)) for t in TRIPLES],
                                        schema=TRIPLES_SCHEMA), tables / "triples.parquet")
    pq.write_table(pa.Table.from_pylist(
        [{"spans": triple_spans(TRIPLES[i] if i < len(TRIPLES) else TRIPLES[0], 0, langs), "triple_index": i,
          "variant": v, "lang_pair": p} for i, v, p, langs in SENTENCES], schema=SENTENCES_SCHEMA),
        sentences / "sentences.parquet")
    pq.write_table(pa.Table.from_pylist([{"cycle_id": i, "kind": k, "nodes": n} for i, (k, n) in enumerate(CYCLES)],
                                        schema=CYCLES_SCHEMA), cycles / "cycles.parquet")
    (cycles / "cycles_stats.json").write_text(json.dumps(CYCLES_STATS))
    pq.write_table(pa.Table.from_pylist(
        [{"spans": [s for j, t in enumerate(ts) for s in triple_spans(t, j, (lang,) * 3)], "cycle_id": c, "kind": k,
          "lang": lang} for c, k, lang, ts in REASONING], schema=REASONING_SCHEMA), reasoning / "reasoning.parquet")
    for name, samples in XLR.items():
        (xlr / f"{name}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return {"tables": tables, "sentences": sentences, "cycles": cycles, "reasoning": reasoning, "xlr": xlr}


def run_report(dirs, output, *extra, stages=("sentences", "cycles", "reasoning", "xlr")):
    argv = ["report", "--tables", str(dirs["tables"]), "--output", str(output), *extra]
    for stage in stages:
        argv += [f"--{stage}", str(dirs[stage])]
    return cli.main(argv)


def build(dirs, seed=1, top=20, stages=("sentences", "cycles", "reasoning", "xlr")):
    """The report dict without plots or files (faster than the CLI where only numbers matter)."""
    args = argparse.Namespace(tables=dirs["tables"], seed=seed, top=top,
                              **{s: (dirs[s] if s in stages else None) for s in ("sentences", "cycles", "reasoning",
                                                                                 "xlr")})
    return json.loads(json.dumps(report.build_report(args)[0]))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def full(world, tmp_path_factory):
    output = tmp_path_factory.mktemp("report")
    assert run_report(world, output) == 0
    return output, json.loads((output / "report.json").read_text())


def test_report_entity_and_triple_counts_match_independent_counts(full):
    _, rep = full
    items = [e for e in ENTITIES if e.startswith("Q")]
    assert (rep["entities"]["items"], rep["entities"]["properties"]) == (len(items), len(ENTITIES) - len(items))
    for lang in LANGS:
        labelled = {e for e, per in ENTITIES.items() if per[lang][0]}
        cov = rep["entities"]["coverage"][lang]
        assert cov["items_labelled"] == len(labelled & set(items))
        assert cov["properties_labelled"] == len(labelled - set(items))
        assert cov["aliases"] == sum(len(per[lang][1]) for per in ENTITIES.values())
        assert cov["items_with_aliases"] == sum(bool(ENTITIES[e][lang][1]) for e in items)
        assert cov["entities_described"] == 2
        assert cov["triples_fully_labelled"] == sum(all(x in labelled for x in t) for t in TRIPLES)
    t = rep["triples"]
    relation_counts = Counter(r for _, r, _ in TRIPLES)
    assert (t["triples"], t["relations"], t["self_loops"]) == (len(TRIPLES), len(relation_counts), 1)
    assert t["heads"] == len({h for h, _, _ in TRIPLES}) and t["tails"] == len({x for _, _, x in TRIPLES})
    assert t["entities_not_in_entities_table"] == 1
    assert [(r["id"], r["label"], r["triples"]) for r in t["top_relations"]] == [
        (r, ENTITIES[r]["en"][0], n) for r, n in sorted(relation_counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def test_report_graph_degrees_match_independent_counts(full):
    _, rep = full
    edges = {frozenset((h, x)) for h, _, x in TRIPLES if h != x}
    degree = Counter(v for e in edges for v in e)
    g = rep["graph"]
    assert (g["nodes"], g["edges"], g["degree"]["max"]) == (len(degree), len(edges), max(degree.values()))
    assert sum(g["degree_histogram"].values()) == len(degree)
    assert g["degree_histogram"] == dict(Counter(
        "1" if d == 1 else "2-3" if d < 4 else "4-7" for d in sorted(degree.values())))
    hubs = sorted(degree.items(), key=lambda kv: (-kv[1], -sum(kv[0] in (h, x) for h, _, x in TRIPLES), kv[0]))
    assert [(h["id"], h["degree"]) for h in g["top_hubs_by_degree"]] == hubs[: rep["top"]]
    assert g["top_hubs_by_degree"][0]["triples"] == sum("Q1" in (h, x) for h, _, x in TRIPLES)


def test_report_sentence_counts_match_independent_counts(full):
    _, rep = full
    s = rep["sentences"]
    assert s["sentences"] == len(SENTENCES)
    assert s["by_variant"] == dict(Counter(v for _, v, _, _ in SENTENCES))
    assert s["by_lang_pair"] == dict(Counter(p for _, _, p, _ in SENTENCES))
    assert s["by_variant_and_lang_pair"]["alias"] == dict(Counter(p for _, v, p, _ in SENTENCES if v == "alias"))
    assert s["mentions_by_language"]["codeswitch"]["en-de"] == dict(
        Counter(lang for _, v, p, langs in SENTENCES if (v, p) == ("codeswitch", "en-de") for lang in langs))
    assert s["triple_index_out_of_range"] == 1


def test_report_cycle_counts_and_hubs_match_independent_counts(full):
    _, rep = full
    c = rep["cycles"]
    assert c["by_kind"] == dict(Counter(k for k, _ in CYCLES))
    assert c["stats"] == CYCLES_STATS
    membership = Counter(v for _, nodes in CYCLES for v in nodes)
    assert c["entities_in_cycles"] == len(membership)
    top = sorted(membership.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(h["id"], h["cycles"]) for h in c["top_hubs_by_cycles"]] == top
    q2 = next(h for h in c["top_hubs_by_cycles"] if h["id"] == "Q2")
    assert (q2["triangle"], q2["diamond"], q2["label"]) == (2, 1, "two")
    cap = CYCLES_STATS["max_cycles_per_entity"]
    assert c["entities_at_cap"]["triangle"] == sum(
        sum(v in n for k, n in CYCLES if k == "triangle") >= cap for v in membership)


def test_report_reasoning_counts_and_relation_combinations(full):
    _, rep = full
    r = rep["reasoning"]
    assert r["samples"] == len(REASONING)
    assert r["by_lang_and_kind"] == {"de": {"triangle": 2}, "en": {"triangle": 2, "diamond": 1}}
    assert list(r["cycles_rendered"].items()) == [("triangle", 2), ("diamond", 1)]
    combination = {i: tuple(sorted(rel for _, rel, _ in ts)) for i, (_, _, _, ts) in enumerate(REASONING)}
    samples = Counter((k, combination[i]) for i, (_, k, _, _) in enumerate(REASONING))
    cycles = Counter((k, combo) for _, k, combo in {(c, k, combination[i]) for i, (c, k, _, _) in enumerate(REASONING)})
    for kind in ("triangle", "diamond"):
        stats = r["relation_combinations"][kind]
        expected = sorted(((c, cycles[k, c], n) for (k, c), n in samples.items() if k == kind),
                          key=lambda row: (-row[1], -row[2], row[0]))
        assert stats["unique"] == len(expected)
        assert [(tuple(t["relations"]), t["cycles"], t["samples"]) for t in stats["top"]] == expected
        assert stats["paper_unique"] == report.PAPER_UNIQUE_COMBINATIONS[kind]
    assert r["relation_combinations"]["triangle"]["top"][0]["labels"] == ["likes", "likes", "knows"]


def test_report_xlr_sizes_and_answer_positions(full):
    _, rep = full
    x = rep["xlr"]
    assert x["samples"] == {"train": {"en": 7}, "dev": {"de": 3, "en": 4}, "test": {"de": 2, "en": 2}}
    for name, samples in XLR.items():
        counts = Counter(s["label"] for s in samples)
        assert x["answer_positions"][name] == [counts[i] for i in range(6)]
    assert x["answer_mismatches"] == 0
    assert x["distinct_cycles"] == {"train": 7, "dev": 4, "test": 1}
    assert x["distinct_answer_relations"] == {"train": 1, "dev": 1, "test": 1}


def test_report_examples_are_rendered_spans(full):
    _, rep = full
    sentence_texts = {" <mask> ".join(s["text"] for s in triple_spans(TRIPLES[i] if i < len(TRIPLES) else TRIPLES[0],
                                                                     0, langs)) + " ."
                      for i, _, _, langs in SENTENCES}
    examples = rep["examples"]
    assert examples["knowledge sentences"] and all(e["text"] in sentence_texts for e in examples["knowledge sentences"])
    assert {e["kind"] for e in examples["reasoning samples"]} == {"triangle", "diamond"}
    diamond = next(e for e in examples["reasoning samples"] if e["kind"] == "diamond")
    assert diamond["text"].count(" .") == 5 and diamond["text"].count("<mask>") == 10
    assert any(e["file"] == "dev.de.jsonl" for e in examples["XLR"])


def test_render_spans_orders_sentences_and_joins_with_link_masks():
    spans = triple_spans(("Q2", "P1", "Q3"), 1) + triple_spans(("Q1", "P2", "Q2"), 0, ("de", "en", "de"))
    assert report.render_spans(spans) == "de:Q1 <mask> en:P2 <mask> de:Q2 . en:Q2 <mask> en:P1 <mask> en:Q3 ."


def test_report_markdown_links_every_png_and_the_pngs_are_valid(full):
    output, rep = full
    markdown = (output / "report.md").read_text()
    pngs = sorted(p.name for p in output.glob("*.png"))
    assert sorted(rep["plots"]) == pngs and len(pngs) == 7
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(linked) == pngs
    for name in pngs:
        assert (output / name).read_bytes()[:8] == PNG_MAGIC
    for phrase in ("29,819", "239,966", "some_future_key", "likes", "h <mask> r <mask> t ."):
        assert phrase in markdown
    assert not list(output.glob(".*tmp*"))


def test_report_with_tables_only_reports_what_is_given(world, tmp_path):
    (tmp_path / "cycles.png").write_bytes(PNG_MAGIC)  # left by an earlier report with --cycles
    assert run_report(world, tmp_path, stages=()) == 0
    assert not (tmp_path / "cycles.png").exists()
    rep = json.loads((tmp_path / "report.json").read_text())
    assert not {"sentences", "cycles", "reasoning", "xlr"} & set(rep)
    assert rep["examples"] == {}
    assert sorted(rep["plots"]) == ["coverage.png", "degree_distribution.png", "relation_frequency.png"]
    markdown = (tmp_path / "report.md").read_text()
    assert all(name in markdown for name in rep["plots"]) and "## Cycles" not in markdown


def test_report_cycles_without_reasoning_still_reports_cycles(world, tmp_path):
    assert run_report(world, tmp_path, stages=("cycles",)) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["cycles"]["cycles"] == len(CYCLES) and "reasoning" not in rep
    assert "cycles.png" in rep["plots"] and "relation_combinations.png" not in rep["plots"]


def test_report_is_deterministic_byte_identical(world, full, tmp_path):
    first, _ = full
    assert run_report(world, tmp_path) == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_report_seed_changes_the_examples_only(world, full):
    _, rep = full
    other = [build(world, seed=s) for s in range(2, 6)]
    assert any(o["examples"] != rep["examples"] for o in other)
    strip = ("examples", "seed", "plots")
    assert all({k: v for k, v in o.items() if k not in strip} == {k: v for k, v in rep.items() if k not in strip}
               for o in other)


def test_report_counts_do_not_depend_on_the_batch_size(world, full, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BATCH_ROWS", 1)
    for stage in ("sentences", "reasoning", "cycles"):  # many row groups, so batches and examples cross them
        table = pq.read_table(next(world[stage].glob("*.parquet")))
        pq.write_table(table, tmp_path / f"{stage}.parquet", row_group_size=1)
    if (world["cycles"] / "cycles_stats.json").exists():
        (tmp_path / "cycles_stats.json").write_text((world["cycles"] / "cycles_stats.json").read_text())
    dirs = dict(world, sentences=tmp_path, reasoning=tmp_path, cycles=tmp_path)
    _, rep = full
    again = build(dirs)
    strip = ("inputs", "plots")
    assert {k: v for k, v in again.items() if k not in strip} == {k: v for k, v in rep.items() if k not in strip}


def test_report_top_limits_every_list(world):
    rep = build(world, top=2)
    assert len(rep["triples"]["top_relations"]) == 2 and len(rep["graph"]["top_hubs_by_degree"]) == 2
    assert len(rep["cycles"]["top_hubs_by_cycles"]) == 2
    assert [h["id"] for h in rep["graph"]["top_hubs_by_degree"]] == ["Q1", "Q2"]
    assert all(len(v["top"]) <= 2 for v in rep["reasoning"]["relation_combinations"].values())


@pytest.mark.parametrize("stage, remove, message", [
    ("sentences", "sentences.parquet", "sentences.parquet does not exist"),
    ("cycles", "cycles_stats.json", "cycles_stats.json does not exist"),
    ("cycles", "cycles.parquet", "cycles.parquet does not exist"),
    ("reasoning", "reasoning.parquet", "reasoning.parquet does not exist"),
    ("xlr", "test.de.jsonl", None),
    ("xlr", "train.en.jsonl", "missing train.en.jsonl"),
    ("tables", "triples.parquet", "triples.parquet does not exist"),
])
def test_report_missing_input_files_are_clear_errors(tmp_path, caplog, stage, remove, message):
    dirs = write_world(tmp_path / "w")
    (dirs[stage] / remove).unlink()
    status = run_report(dirs, tmp_path / "out")
    if message is None:  # test.en.jsonl is still there: the report covers the files it finds
        assert status == 0
        return
    assert status == 2 and message in caplog.text
    assert not (tmp_path / "out" / "report.json").exists()


def test_report_rejects_bad_xlr_lines_and_missing_columns(tmp_path, caplog):
    dirs = write_world(tmp_path / "w")
    with open(dirs["xlr"] / "dev.de.jsonl", "a") as f:
        f.write('{"lang": "de", "label": 0}\n')
    assert run_report(dirs, tmp_path / "out", stages=("xlr",)) == 2
    assert "dev.de.jsonl:4: missing key(s) choice_ids, relation, cycle_id" in caplog.text
    (dirs["xlr"] / "dev.de.jsonl").write_text("{not json\n")
    assert run_report(dirs, tmp_path / "out", stages=("xlr",)) == 2
    assert "dev.de.jsonl:1: not valid JSON" in caplog.text
    pq.write_table(pa.table({"kind": ["triangle"]}), dirs["reasoning"] / "reasoning.parquet")
    assert run_report(dirs, tmp_path / "out", stages=("reasoning",)) == 2
    assert "lacks column(s) cycle_id, lang, spans" in caplog.text


def test_report_handles_empty_stage_outputs(tmp_path):
    dirs = write_world(tmp_path / "w")
    pq.write_table(SENTENCES_SCHEMA.empty_table(), dirs["sentences"] / "sentences.parquet")
    pq.write_table(CYCLES_SCHEMA.empty_table(), dirs["cycles"] / "cycles.parquet")
    pq.write_table(REASONING_SCHEMA.empty_table(), dirs["reasoning"] / "reasoning.parquet")
    assert run_report(dirs, tmp_path / "out") == 0
    rep = json.loads((tmp_path / "out/report.json").read_text())
    assert (rep["sentences"]["sentences"], rep["cycles"]["cycles"], rep["reasoning"]["samples"]) == (0, 0, 0)
    assert rep["reasoning"]["relation_combinations"] == {} and rep["cycles"]["top_hubs_by_cycles"] == []


def test_group_counter_merges_batches_exactly(monkeypatch):
    monkeypatch.setattr(report, "BATCH_ROWS", 2)
    rng = np.random.default_rng(0)
    keys = [(f"k{a}", f"v{b}") for a, b in rng.integers(0, 30, size=(500, 2))]
    counter = report.GroupCounter("a", "b")
    for start in range(0, len(keys), 37):
        chunk = keys[start:start + 37]
        counter.add(pa.table({"a": [a for a, _ in chunk], "b": [b for _, b in chunk]}))
    table = counter.table()
    assert {(a, b): n for a, b, n in zip(*(table.column(c).to_pylist() for c in ("a", "b", "n")))} == Counter(keys)
    counts = table.column("n").to_pylist()
    assert counts == sorted(counts, reverse=True)


def test_combination_counter_counts_each_cycle_once_across_batches():
    counter = report.CombinationCounter()
    counter.add(pa.array(["triangle", "triangle", "diamond"]), pa.array([7, 3, 7]), pa.array(["P1 P1 P2"] * 2 + ["P1"]))
    counter.add(pa.array(["triangle", "triangle"]), pa.array([7, 9]), pa.array(["P1 P1 P2", "P3 P3 P3"]))
    table, cycles = counter.result()
    assert table.to_pylist() == [
        {"kind": "triangle", "combination": "P1 P1 P2", "cycles": 2, "samples": 3},
        {"kind": "diamond", "combination": "P1", "cycles": 1, "samples": 1},
        {"kind": "triangle", "combination": "P3 P3 P3", "cycles": 1, "samples": 1},
    ]
    assert cycles == {"triangle": 3, "diamond": 1}


def test_relation_combinations_are_sorted_multisets_per_row():
    spans = pa.array([triple_spans(("Q1", "P9", "Q2")) + triple_spans(("Q2", "P10", "Q3"), 1)
                      + triple_spans(("Q3", "P9", "Q1"), 2), [], triple_spans(("Q1", "P2", "Q2"))],
                     pa.list_(SPAN))
    assert report.relation_combinations(spans).to_pylist() == ["P10 P9 P9", "", "P2"]


def test_report_rejects_a_non_positive_top(world, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_report(world, tmp_path, "--top", "0", stages=())
    assert exit_info.value.code == 2
