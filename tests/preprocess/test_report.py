"""The dataset report: its numbers against counts made here from the stage outputs, which the stages themselves made
(the report reads the counts the stages wrote, so this is what catches a stage that writes a wrong one); optional
inputs, plots, errors (missing, malformed or stale summaries), determinism."""
import argparse
import json
import logging
import re
import shutil
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.stages import report

LANGS = ("en", "de", "fr")
CAP = 4  # --max-cycles-per-entity: K5 puts each of its nodes in 6 triangles, so some entities reach it
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGES = ("sentences", "cycles", "reasoning", "xlr")

# Q1..Q10 and P1..P8: a K5 on Q1..Q5 (triangles and diamonds over the cap), two triangles around Q8, one triple per
# edge with the relations in turn; a self-loop, a tail missing from the dump (Q99), a duplicate and a parallel
# triple. Q10 has no English label (sentences skip its triples); some de/fr labels are missing.
ITEMS = [f"Q{i}" for i in range(1, 11)]
PROPERTIES = [f"P{i}" for i in range(1, 9)]
NO_LABEL = {("Q10", "en"), ("Q10", "de"), ("Q4", "de"), ("P7", "de"), ("P8", "de"), ("P2", "fr")} | {
    (q, "fr") for q in ("Q6", "Q8", "Q9", "Q10")}
ALIASES = {("Q1", "en"): ["uno", "eins"], ("Q1", "de"): ["1"], ("Q5", "de"): ["V", "5", "v"],
           ("P1", "en"): ["fond of"], ("Q2", "fr"): ["deux!"]}
# an alias sample is written only when every item has an alias in its drawn language: give most items some
ALIASES.update({(e, lang): [f"{lang} alias of {e}"] for e in ITEMS[1:9] + PROPERTIES[1:] for lang in ("en", "de")
                if (e, lang) not in ALIASES})
DESCRIBED = {("Q1", "en"), ("P1", "en"), ("Q2", "de")}
EDGES = [(f"Q{a}", f"Q{b}") for a in range(1, 6) for b in range(a + 1, 6)]
EDGES += [("Q6", "Q7"), ("Q7", "Q8"), ("Q8", "Q6"), ("Q8", "Q9"), ("Q9", "Q10"), ("Q10", "Q8")]
TRIPLES = [(u, PROPERTIES[i % 8], v) if i % 3 else (v, PROPERTIES[i % 8], u) for i, (u, v) in enumerate(EDGES)]
TRIPLES += [("Q5", "P3", "Q5"), ("Q1", "P1", "Q99"), ("Q1", "P1", "Q2"), ("Q2", "P5", "Q1")]


def term(value, lang):
    return {"language": lang, "value": value}


def dump_entity(entity_id):
    """A Wikidata JSON entity: labels "<lang>:<id>", the aliases and descriptions above, its triples as claims."""
    kind = "property" if entity_id.startswith("P") else "item"
    entity = {"type": kind, "id": entity_id, "labels": {}, "aliases": {}, "descriptions": {}, "claims": {}}
    for lang in LANGS:
        if (entity_id, lang) not in NO_LABEL:
            entity["labels"][lang] = term(f"{lang}:{entity_id}", lang)
        if (entity_id, lang) in ALIASES:
            entity["aliases"][lang] = [term(a, lang) for a in ALIASES[entity_id, lang]]
        if (entity_id, lang) in DESCRIBED:
            entity["descriptions"][lang] = term(f"{lang} description of {entity_id}", lang)
    for head, relation, tail in TRIPLES:
        if head == entity_id:
            value = {"value": {"entity-type": "item", "id": tail}, "type": "wikibase-entityid"}
            entity["claims"].setdefault(relation, []).append(
                {"mainsnak": {"snaktype": "value", "property": relation, "datavalue": value}, "rank": "normal"})
    return entity


def run(*argv):
    assert cli.main([str(a) for a in argv]) == 0, argv


def make_world(root, triples_of=None, sentences=(), xlr=True):
    """The stages run on a dump of ITEMS + PROPERTIES; returns {"tables": dir, stage: dir}."""
    root.mkdir(parents=True)
    dump = root / "dump.json"
    dump.write_text("[\n" + ",\n".join(json.dumps(dump_entity(e)) for e in ITEMS + PROPERTIES) + "\n]\n")
    dirs = {name: root / name for name in ("tables",) + STAGES}
    run("ingest", "-i", dump, "-o", dirs["tables"], "--languages", ",".join(LANGS), "--workers", 1)
    run("sentences", "--input", dirs["tables"], "--output", dirs["sentences"], *sentences)
    run("cycles", "--input", triples_of or dirs["tables"], "--output", dirs["cycles"], "--max-cycles-per-entity", CAP)
    exclude = ()
    if xlr:
        run("xlr", "--input", dirs["tables"], "--cycles", dirs["cycles"], "--output", dirs["xlr"], "--languages",
            "de,fr", "--train-size", 3, "--dev-size", 2, "--test-size", 2)
        exclude = ("--exclude", dirs["xlr"] / "heldout_cycles.parquet")
    run("reasoning", "--input", dirs["tables"], "--cycles", dirs["cycles"], "--output", dirs["reasoning"], *exclude)
    return dirs


def copy_world(dirs, root):
    shutil.copytree(dirs["tables"].parent, root)
    return {name: root / path.name for name, path in dirs.items()}


def run_report(dirs, output, *extra, stages=STAGES):
    argv = ["report", "--tables", str(dirs["tables"]), "--output", str(output), *extra]
    for stage in stages:
        argv += [f"--{stage}", str(dirs[stage])]
    return cli.main(argv)


def build(dirs, seed=1, top=20, stages=STAGES):
    """The report dict without plots or files (faster than the CLI where only numbers matter)."""
    args = argparse.Namespace(tables=dirs["tables"], seed=seed, top=top,
                              **{s: (dirs[s] if s in stages else None) for s in STAGES})
    return json.loads(json.dumps(report.build_report(args)[0]))


def rows(path):
    return pq.read_table(path).to_pylist()


def xlr_files(dirs):
    return {p.name[: -len(".jsonl")]: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(dirs["xlr"].glob("*.jsonl"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "w")


@pytest.fixture(scope="module")
def full(world, tmp_path_factory):
    output = tmp_path_factory.mktemp("report")
    assert run_report(world, output) == 0
    return output, json.loads((output / "report.json").read_text())


@pytest.fixture(scope="module")
def tables(world):
    return rows(world["tables"] / "entities.parquet"), [tuple(t.values()) for t in rows(world["tables"] /
                                                                                         "triples.parquet")]


def test_the_world_exercises_every_count(world, tables):
    entities, triples = tables
    assert len(triples) == len(TRIPLES) and {e["id"] for e in entities} == set(ITEMS + PROPERTIES)
    cycles = rows(world["cycles"] / "cycles.parquet")
    assert {c["kind"] for c in cycles} == {"triangle", "diamond"}
    reasoning = rows(world["reasoning"] / "reasoning.parquet")
    assert {(r["kind"], r["lang"]) for r in reasoning} >= {("triangle", "en"), ("triangle", "de"), ("diamond", "en")}
    assert {"train.en", "dev.en", "test.en", "dev.fr"} <= set(xlr_files(world))


def test_report_entity_and_triple_counts_match_the_tables(full, tables):
    _, rep = full
    entities, triples = tables
    items = {e["id"] for e in entities if e["kind"] == "item"}
    e = rep["entities"]
    assert (e["entities"], e["items"], e["properties"]) == (len(entities), len(items), len(entities) - len(items))
    for lang in LANGS:
        labelled = {x["id"] for x in entities if x[f"label_{lang}"]}
        cov = e["coverage"][lang]
        assert cov["items_labelled"] == len(labelled & items)
        assert cov["properties_labelled"] == len(labelled - items)
        assert cov["aliases"] == sum(len(x[f"aliases_{lang}"]) for x in entities)
        assert cov["items_with_aliases"] == sum(bool(x[f"aliases_{lang}"]) for x in entities if x["id"] in items)
        assert cov["entities_with_aliases"] == sum(bool(x[f"aliases_{lang}"]) for x in entities)
        assert cov["entities_described"] == sum(bool(x[f"description_{lang}"]) for x in entities)
        assert cov["triples_fully_labelled"] == sum(all(x in labelled for x in t) for t in triples)
    t = rep["triples"]
    relation_counts = Counter(r for _, r, _ in triples)
    entity_ids = {x for h, _, tail in triples for x in (h, tail)}
    assert (t["triples"], t["relations"], t["entities"]) == (len(triples), len(relation_counts), len(entity_ids))
    assert t["heads"] == len({h for h, _, _ in triples}) and t["tails"] == len({x for _, _, x in triples})
    assert t["entities_not_in_entities_table"] == len(entity_ids - {x["id"] for x in entities}) == 1
    assert t["relations_not_in_entities_table"] == 0
    english = {x["id"]: x["label_en"] for x in entities}
    assert [(r["id"], r["label"], r["triples"]) for r in t["top_relations"]] == [
        (r, english[r], n) for r, n in sorted(relation_counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def test_report_graph_matches_the_triples(full, tables):
    _, rep = full
    entities, triples = tables
    edges = {frozenset((h, x)) for h, _, x in triples if h != x}
    degree = Counter(v for edge in edges for v in edge)
    on_triples = Counter(x for h, _, tail in triples for x in {h, tail})
    g = rep["graph"]
    assert (g["nodes"], g["edges"], g["self_loops"]) == (len(degree), len(edges), sum(h == x for h, _, x in triples))
    values = np.array(sorted(degree.values()))
    assert g["degree"] == {"mean": round(float(values.mean()), 3), "median": float(np.median(values)),
                           "max": int(values.max())}
    buckets = Counter("1" if d == 1 else "2-3" if d < 4 else "4-7" if d < 8 else "8-15" for d in values)
    assert g["degree_histogram"] == dict(sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0])))
    english = {x["id"]: x["label_en"] for x in entities}
    hubs = sorted(degree, key=lambda x: (-degree[x], -on_triples[x], x))[: rep["top"]]
    assert g["top_hubs_by_degree"] == [{"id": x, "label": english.get(x), "degree": degree[x],
                                        "triples": on_triples[x]} for x in hubs]


def test_report_sentence_counts_match_the_sentences_file(full, world, tables):
    _, rep = full
    samples = rows(world["sentences"] / "sentences.parquet")
    s = rep["sentences"]
    assert s["sentences"] == len(samples)
    assert s["by_variant"] == dict(Counter(r["variant"] for r in samples))
    assert s["by_lang_pair"] == dict(Counter(r["lang_pair"] for r in samples))
    assert s["by_variant_and_lang_pair"] == {
        v: dict(Counter(r["lang_pair"] for r in samples if r["variant"] == v)) for v in ("alias", "codeswitch")}
    mentions = Counter((r["variant"], r["lang_pair"], span["lang"]) for r in samples for span in r["spans"])
    assert {(v, p, lang): n for v, per_pair in s["mentions_by_language"].items() for p, per_lang in per_pair.items()
            for lang, n in per_lang.items()} == mentions
    assert s["triple_index_out_of_range"] == sum(not 0 <= r["triple_index"] < len(tables[1]) for r in samples) == 0


def test_report_cycle_counts_and_hubs_match_the_cycles_file(full, world, tables):
    _, rep = full
    cycles = rows(world["cycles"] / "cycles.parquet")
    c = rep["cycles"]
    assert c["cycles"] == len(cycles) and c["by_kind"] == dict(Counter(r["kind"] for r in cycles))
    stats = json.loads((world["cycles"] / "cycles_stats.json").read_text())
    assert c["stats"] == {k: v for k, v in stats.items() if not isinstance(v, dict)}
    per_kind = {kind: Counter(v for r in cycles if r["kind"] == kind for v in r["nodes"])
                for kind in ("triangle", "diamond")}
    membership = per_kind["triangle"] + per_kind["diamond"]
    assert c["entities_in_cycles"] == len(membership)
    degree = Counter(v for edge in {frozenset((h, x)) for h, _, x in tables[1] if h != x} for v in edge)
    english = {x["id"]: x["label_en"] for x in tables[0]}
    top = sorted(membership, key=lambda x: (-membership[x], x))
    assert c["top_hubs_by_cycles"] == [
        {"id": x, "triangle": per_kind["triangle"][x], "diamond": per_kind["diamond"][x], "cycles": membership[x],
         "label": english.get(x), "degree": degree[x]} for x in top]
    assert c["entities_at_cap"] == {kind: sum(n >= CAP for n in counts.values()) for kind, counts in per_kind.items()}
    assert c["entities_at_cap"]["triangle"] > 0


def test_report_plot_distributions_match_the_outputs(world, tables):
    args = argparse.Namespace(tables=world["tables"], cycles=world["cycles"], sentences=None, reasoning=None,
                              xlr=None, seed=1, top=20)
    _, data = report.build_report(args)

    def distribution(counter):
        pairs = sorted(Counter(counter.values()).items())
        return [v for v, _ in pairs], [n for _, n in pairs]

    triples = tables[1]
    degree = Counter(v for edge in {frozenset((h, x)) for h, _, x in triples if h != x} for v in edge)
    assert [a.tolist() for a in data["degree"]] == list(distribution(degree))
    on_triples = Counter(x for h, _, tail in triples for x in {h, tail})
    assert [a.tolist() for a in data["triples_per_entity"]] == list(distribution(on_triples))
    cycles = rows(world["cycles"] / "cycles.parquet")
    per_kind = {kind: Counter(v for r in cycles if r["kind"] == kind for v in r["nodes"])
                for kind in ("triangle", "diamond")}
    per_kind["all"] = per_kind["triangle"] + per_kind["diamond"]
    assert {k: [a.tolist() for a in d] for k, d in data["membership"].items()} == {
        k: list(distribution(c)) for k, c in per_kind.items()}
    assert data["relation_counts"].tolist() == sorted(Counter(r for _, r, _ in triples).values(), reverse=True)


def test_report_reasoning_counts_and_relation_combinations(full, world, tables):
    _, rep = full
    samples = rows(world["reasoning"] / "reasoning.parquet")
    r = rep["reasoning"]
    assert r["samples"] == len(samples)
    by_lang = {}
    for sample in samples:
        by_lang.setdefault(sample["lang"], Counter())[sample["kind"]] += 1
    assert r["by_lang_and_kind"] == {lang: dict(n) for lang, n in by_lang.items()}
    assert r["by_kind"] == dict(Counter(s["kind"] for s in samples))
    assert r["cycles_rendered"] == {k: len({s["cycle_id"] for s in samples if s["kind"] == k}) for k in r["by_kind"]}
    combination = [tuple(sorted(x["id"] for x in s["spans"] if x["role"] == "relation")) for s in samples]
    sample_counts = Counter((s["kind"], combo) for s, combo in zip(samples, combination))
    cycle_counts = Counter((k, combo) for _, k, combo in {(s["cycle_id"], s["kind"], combo)
                                                          for s, combo in zip(samples, combination)})
    english = {x["id"]: x["label_en"] for x in tables[0]}
    for kind in r["by_kind"]:
        stats = r["relation_combinations"][kind]
        expected = sorted(((combo, cycle_counts[k, combo], n) for (k, combo), n in sample_counts.items() if k == kind),
                          key=lambda row: (-row[1], -row[2], row[0]))
        assert stats["unique"] == len(expected) and stats["paper_unique"] == report.PAPER_UNIQUE_COMBINATIONS[kind]
        assert [(tuple(t["relations"]), t["cycles"], t["samples"]) for t in stats["top"]] == expected
        assert all(t["labels"] == [english[x] for x in t["relations"]] for t in stats["top"])


def test_report_xlr_sizes_and_answer_positions_match_the_files(full, world):
    _, rep = full
    files = xlr_files(world)
    x = rep["xlr"]
    sizes = {}
    for name, samples in files.items():
        split, lang = name.split(".")
        sizes.setdefault(split, {})[lang] = len(samples)
    assert x["samples"] == {split: dict(sorted(sizes.get(split, {}).items())) for split in ("train", "dev", "test")}
    for name, samples in files.items():
        counts = Counter(s["label"] for s in samples)
        assert x["answer_positions"][name] == [counts[i] for i in range(6)]
    assert x["answer_mismatches"] == 0
    for split in ("train", "dev", "test"):
        in_split = [s for name, samples in files.items() if name.startswith(split + ".") for s in samples]
        assert x["distinct_cycles"][split] == len({s["cycle_id"] for s in in_split})
        assert x["distinct_answer_relations"][split] == len({s["relation"] for s in in_split})


def test_report_examples_are_rendered_spans(full, world):
    _, rep = full
    sentences = rows(world["sentences"] / "sentences.parquet")
    examples = rep["examples"]
    for e in examples["knowledge sentences"]:
        assert e["text"] == report.render_spans(sentences[e["row"]]["spans"])
        assert (e["variant"], e["lang_pair"]) == (sentences[e["row"]]["variant"], sentences[e["row"]]["lang_pair"])
    assert {e["variant"] for e in examples["knowledge sentences"]} == {"codeswitch", "alias"}
    assert {e["kind"] for e in examples["reasoning samples"]} == {"triangle", "diamond"}
    diamond = next(e for e in examples["reasoning samples"] if e["kind"] == "diamond")
    assert diamond["text"].count(" .") == 5 and diamond["text"].count("<mask>") == 10
    assert {e["file"] for e in examples["XLR"]} >= {"train.en.jsonl", "dev.fr.jsonl"}


def span(text, role, entity_id, sentence=0, lang="en"):
    return {"text": text, "role": role, "id": entity_id, "sentence": sentence, "lang": lang}


def triple_spans(triple, sentence=0, langs=("en", "en", "en")):
    return [span(f"{lang}:{x}", role, x, sentence, lang)
            for x, role, lang in zip(triple, ("head", "relation", "tail"), langs)]


def test_render_spans_orders_sentences_and_joins_with_link_masks():
    spans = triple_spans(("Q2", "P1", "Q3"), 1) + triple_spans(("Q1", "P2", "Q2"), 0, ("de", "en", "de"))
    assert report.render_spans(spans) == "de:Q1 <mask> en:P2 <mask> de:Q2 . en:Q2 <mask> en:P1 <mask> en:Q3 ."


def test_render_spans_shows_malformed_samples_as_they_are():
    spans = triple_spans(("Q2", "P1", "Q3"), None) + triple_spans(("Q1", "P2", "Q2"), 0)
    spans[4]["text"] = None
    assert report.render_spans(spans) == "en:Q1 <mask> <null> <mask> en:Q2 . en:Q2 <mask> en:P1 <mask> en:Q3 ."
    assert report.render_spans(None) == report.render_spans([]) == ""


def test_report_on_samples_with_null_spans_shows_them_empty(world, full, tmp_path):
    dirs = copy_world(world, tmp_path / "w")
    for stage in ("sentences", "reasoning"):
        path = dirs[stage] / f"{stage}.parquet"  # sentences/ also holds heldout_triples.parquet
        pq.write_table(retyped("spans", lambda c: pa.nulls(len(c), c.type))(pq.read_table(path)), path)
    rep = build(dirs)
    assert rep["sentences"] == full[1]["sentences"]  # the counts come from the summary
    examples = rep["examples"]["knowledge sentences"] + rep["examples"]["reasoning samples"]
    assert examples and all(e["text"] == "" for e in examples)
    assert [(c["relations"], c["samples"]) for c in rep["reasoning"]["relation_combinations"]["triangle"]["top"]] == \
        [([], full[1]["reasoning"]["by_kind"]["triangle"])]


def test_report_markdown_links_every_png_and_the_pngs_are_valid(full):
    output, rep = full
    markdown = (output / "report.md").read_text()
    pngs = sorted(p.name for p in output.glob("*.png"))
    assert sorted(rep["plots"]) == pngs and len(pngs) == 7
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(linked) == pngs
    for name in pngs:
        assert (output / name).read_bytes()[:8] == PNG_MAGIC
    for phrase in ("29,819", "239,966", "diamonds_dropped_by_entity_cap", "en:P1", "h <mask> r <mask> t .",
                   f"Entities at the per-entity cap (M = {CAP})", "Top 10 hubs by cycle membership"):
        assert phrase in markdown
    assert not list(output.glob(".*tmp*"))


def test_report_with_tables_only_reports_what_is_given(world, tmp_path):
    (tmp_path / "cycles.png").write_bytes(PNG_MAGIC)  # left by an earlier report with --cycles
    assert run_report(world, tmp_path, stages=()) == 0
    assert not (tmp_path / "cycles.png").exists()
    rep = json.loads((tmp_path / "report.json").read_text())
    assert not {"graph", "sentences", "cycles", "reasoning", "xlr"} & set(rep)
    assert rep["examples"] == {}
    assert sorted(rep["plots"]) == ["coverage.png", "relation_frequency.png"]
    markdown = (tmp_path / "report.md").read_text()
    assert all(name in markdown for name in rep["plots"]) and "## Cycles" not in markdown
    assert "give `--cycles`" in markdown


def test_report_cycles_without_reasoning_still_reports_cycles_and_the_graph(world, full, tmp_path):
    assert run_report(world, tmp_path, stages=("cycles",)) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["cycles"] == full[1]["cycles"] and rep["graph"] == full[1]["graph"] and "reasoning" not in rep
    assert {"cycles.png", "degree_distribution.png"} <= set(rep["plots"])
    assert "relation_combinations.png" not in rep["plots"]


def test_report_is_deterministic_byte_identical(world, full, tmp_path):
    first, _ = full
    assert run_report(world, tmp_path) == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_report_seed_changes_the_examples_only(world, full):
    _, rep = full
    other = [build(world, seed=s) for s in range(2, 5)]
    assert any(o["examples"] != rep["examples"] for o in other)
    strip = ("examples", "seed", "plots")
    assert all({k: v for k, v in o.items() if k not in strip} == {k: v for k, v in rep.items() if k not in strip}
               for o in other)


def test_report_counts_do_not_depend_on_the_batch_size(world, full, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BATCH_ROWS", 1)
    dirs = copy_world(world, tmp_path / "w")
    for stage in ("sentences", "reasoning"):  # many row groups, so batches and examples cross them
        path = dirs[stage] / f"{stage}.parquet"  # sentences/ also holds heldout_triples.parquet
        pq.write_table(pq.read_table(path), path, row_group_size=1)
    _, rep = full
    again = build(dirs)
    strip = ("inputs", "plots")
    assert {k: v for k, v in again.items() if k not in strip} == {k: v for k, v in rep.items() if k not in strip}


def test_report_top_limits_every_list(world, full):
    rep = build(world, top=2)
    assert len(rep["triples"]["top_relations"]) == 2 and len(rep["graph"]["top_hubs_by_degree"]) == 2
    assert rep["cycles"]["top_hubs_by_cycles"] == full[1]["cycles"]["top_hubs_by_cycles"][:2]
    assert rep["graph"]["top_hubs_by_degree"] == full[1]["graph"]["top_hubs_by_degree"][:2]
    assert all(len(v["top"]) <= 2 for v in rep["reasoning"]["relation_combinations"].values())


@pytest.mark.parametrize("stage, remove, message", [
    ("tables", "entities.parquet", "entities.parquet does not exist: run `kmlm-preprocess ingest`"),
    ("tables", "triples.parquet", "triples.parquet does not exist: run `kmlm-preprocess ingest`"),
    ("tables", "ingest_summary.json", "ingest_summary.json does not exist: run `kmlm-preprocess ingest`"),
    ("sentences", "sentences.parquet", "sentences.parquet does not exist: run `kmlm-preprocess sentences`"),
    ("sentences", "sentences_summary.json", "sentences_summary.json does not exist: run `kmlm-preprocess sentences`"),
    ("cycles", "cycles_stats.json", "cycles_stats.json does not exist: run `kmlm-preprocess cycles`"),
    ("cycles", "cycles.parquet", "cycles.parquet does not exist: run `kmlm-preprocess cycles`"),
    ("reasoning", "reasoning.parquet", "reasoning.parquet does not exist: run `kmlm-preprocess reasoning`"),
    ("reasoning", "reasoning_summary.json", "reasoning_summary.json does not exist: run `kmlm-preprocess reasoning`"),
    ("xlr", "xlr_summary.json", "xlr_summary.json does not exist: run `kmlm-preprocess xlr`"),
    ("xlr", "train.en.jsonl", "missing train.en.jsonl, which xlr_summary.json counts"),
    ("xlr", "test.fr.jsonl", "missing test.fr.jsonl, which xlr_summary.json counts"),
])
def test_report_missing_inputs_are_clear_errors(world, tmp_path, caplog, stage, remove, message):
    dirs = copy_world(world, tmp_path / "w")
    (dirs[stage] / remove).unlink()
    assert run_report(dirs, tmp_path / "out") == 2
    assert message in caplog.text
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.parametrize("stage, file, text, message", [
    ("sentences", "sentences_summary.json", "{not json", "sentences_summary.json: not a JSON summary"),
    ("reasoning", "reasoning_summary.json", '{"stage": "reasoning"}', "reasoning_summary.json: no 'counts' object"),
    ("xlr", "xlr_summary.json", '{"counts": {"train en": "3"}}', "count(s) 'train en' should be non-negative"),
    ("cycles", "cycles_stats.json", "[1, 2]", "cycles_stats.json should hold a JSON object"),
])
def test_report_malformed_summaries_are_clear_errors(world, tmp_path, caplog, stage, file, text, message):
    dirs = copy_world(world, tmp_path / "w")
    (dirs[stage] / file).write_text(text)
    assert run_report(dirs, tmp_path / "out", stages=(stage,)) == 2
    assert message in caplog.text and f"kmlm-preprocess {stage}`" in caplog.text


def edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_report_refuses_malformed_cycles_stats_values(world, tmp_path, caplog):
    dirs = copy_world(world, tmp_path / "w")
    stats = dirs["cycles"] / "cycles_stats.json"
    edit_json(stats, lambda s: s.update(cycles="12"))
    assert run_report(dirs, tmp_path / "out", stages=("cycles",)) == 2
    assert "cycles_stats.json: cycles should be non-negative integers" in caplog.text
    edit_json(stats, lambda s: (s.update(cycles=len(rows(dirs["cycles"] / "cycles.parquet"))),
                                s["graph"].update(degree_entities={"two": 3})))
    assert run_report(dirs, tmp_path / "out", stages=("cycles",)) == 2
    assert "graph.degree_entities: expected {value: entities} with integer values" in caplog.text
    edit_json(stats, lambda s: (s["graph"].update(degree_entities={"2": 3}), s["graph"]["top_hubs_by_degree"][0].pop(
        "triples")))
    assert run_report(dirs, tmp_path / "out", stages=("cycles",)) == 2
    assert "a hub lacks one of id, degree, triples" in caplog.text
    edit_json(stats, lambda s: s["membership"].update(top_hubs_by_cycles={"Q1": 3}))
    assert run_report(dirs, tmp_path / "out", stages=("cycles",)) == 2
    assert "membership.top_hubs_by_cycles has the wrong type" in caplog.text


def test_report_refuses_summaries_written_by_an_older_stage(world, tmp_path, caplog):
    dirs = copy_world(world, tmp_path / "w")
    edit_json(dirs["cycles"] / "cycles_stats.json", lambda stats: stats.pop("membership"))
    assert run_report(dirs, tmp_path / "out", stages=("cycles",)) == 2
    assert "cycles_stats.json lacks membership.entities_in_cycles" in caplog.text
    edit_json(dirs["sentences"] / "sentences_summary.json",
              lambda s: [s["counts"].pop(k) for k in list(s["counts"]) if " mentions in " in k])
    assert run_report(dirs, tmp_path / "out", stages=("sentences",)) == 2
    assert re.search(r"sentences_summary.json counts 0 mentions per span language .* re-run `kmlm-preprocess "
                     r"sentences`", caplog.text)


def test_report_refuses_a_summary_that_disagrees_with_its_output(world, tmp_path, caplog):
    dirs = copy_world(world, tmp_path / "w")
    path = dirs["reasoning"] / "reasoning.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(1), path)
    assert run_report(dirs, tmp_path / "out", stages=("reasoning",)) == 2
    assert (f"reasoning_summary.json counts {table.num_rows:,} samples written to reasoning.parquet but "
            f"{table.num_rows - 1:,} are there") in caplog.text
    dev = dirs["xlr"] / "dev.en.jsonl"
    dev.write_text("".join(dev.read_text().splitlines(keepends=True)[1:]))
    assert run_report(dirs, tmp_path / "out", stages=("xlr",)) == 2
    assert "xlr_summary.json counts 2 samples in dev.en.jsonl but 1 are there" in caplog.text
    edit_json(dirs["tables"] / "ingest_summary.json", lambda s: s["counts"].update(triples=1))
    assert run_report(dirs, tmp_path / "out", stages=()) == 2
    assert "re-run `kmlm-preprocess ingest`" in caplog.text


def test_report_rejects_bad_xlr_lines_and_missing_columns(world, tmp_path, caplog):
    dirs = copy_world(world, tmp_path / "w")
    with open(dirs["xlr"] / "dev.fr.jsonl", "a") as f:
        f.write('{"lang": "fr", "label": 0}\n')
    assert run_report(dirs, tmp_path / "out", stages=("xlr",)) == 2
    assert "dev.fr.jsonl:3: missing key(s) choice_ids, relation, cycle_id" in caplog.text
    (dirs["xlr"] / "dev.fr.jsonl").write_text("{not json\n")
    assert run_report(dirs, tmp_path / "out", stages=("xlr",)) == 2
    assert "dev.fr.jsonl:1: not valid JSON" in caplog.text
    pq.write_table(pa.table({"kind": ["triangle"]}), dirs["reasoning"] / "reasoning.parquet")
    assert run_report(dirs, tmp_path / "out", stages=("reasoning",)) == 2
    assert "reasoning.parquet has no columns 'spans', 'cycle_id', 'lang' (its columns: kind)" in caplog.text


def retyped(column, change):
    """A table change: ``column`` replaced by ``change(column)``."""
    return lambda table: table.set_column(table.column_names.index(column), column, change(table.column(column)))


def as_text(column):
    return pa.array([str(v) for v in column.to_pylist()])


def null_at(row):
    return lambda column: pa.array([None if i == row else v for i, v in enumerate(column.to_pylist())], column.type)


SPAN_WITHOUT_LANG = pa.list_(pa.struct([(f, pa.int32() if f == "sentence" else pa.string())
                                         for f in ("text", "role", "id", "sentence")]))


@pytest.mark.parametrize("stage, file, change, message", [
    ("tables", "triples.parquet", retyped("head", lambda c: pa.array(range(len(c)))),
     "triples.parquet: column 'head' is int64, expected string"),
    ("tables", "triples.parquet", retyped("tail", null_at(0)),
     "triples.parquet: 1 null value(s) in column 'tail', first at row 0"),
    ("tables", "entities.parquet", retyped("kind", lambda c: pa.array(range(len(c)))),
     "entities.parquet: column 'kind' is int64, expected string"),
    ("tables", "entities.parquet", retyped("aliases_fr", lambda c: as_text(c)),
     "entities.parquet: column 'aliases_fr' is string, expected list<item: string>"),
    ("tables", "entities.parquet", retyped("description_de", lambda c: pa.array([[]] * len(c), pa.list_(pa.string()))),
     "entities.parquet: column 'description_de' is list<element: string>, expected string"),
    ("sentences", "sentences.parquet", retyped("triple_index", as_text),
     "sentences.parquet: column 'triple_index' is string, expected int64"),
    ("cycles", "cycles.parquet", retyped("nodes", as_text),
     "cycles.parquet: column 'nodes' is string, expected list<item: string>"),
    ("reasoning", "reasoning.parquet", retyped("spans", lambda c: pa.array(
        [[{k: v for k, v in span.items() if k != "lang"} for span in spans] for spans in c.to_pylist()],
        SPAN_WITHOUT_LANG)),
     "reasoning.parquet: column 'spans' is list<element: struct<text: string, role: string, id: string, sentence: "
     "int32>>, expected list<item: struct<text: string, role: string, id: string, sentence: int32, lang: string>>"),
    ("reasoning", "reasoning.parquet", retyped("kind", lambda c: pa.array(range(len(c)))),
     "reasoning.parquet: column 'kind' is int64, expected string"),
    ("reasoning", "reasoning.parquet", retyped("cycle_id", null_at(3)),
     "reasoning.parquet: 1 null value(s) in column 'cycle_id', first at row 3"),
    ("reasoning", "reasoning.parquet", retyped("kind", null_at(0)),
     "reasoning.parquet: 1 null value(s) in column 'kind', first at row 0"),
    ("sentences", "sentences.parquet", retyped("triple_index", null_at(5)),
     "sentences.parquet: 1 null value(s) in column 'triple_index', first at row 5"),
], ids=["triples head int", "triples null tail", "entities kind int", "aliases as text", "description as list",
        "triple_index as text", "nodes as text", "span without lang", "reasoning kind int", "null cycle_id",
        "null kind", "null triple_index"])
def test_report_wrong_column_types_are_one_line_errors(world, tmp_path, caplog, stage, file, change, message):
    dirs = copy_world(world, tmp_path / "w")
    path = dirs[stage] / file
    pq.write_table(change(pq.read_table(path)), path)
    assert run_report(dirs, tmp_path / "out", stages=() if stage == "tables" else (stage,)) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0] and str(path) in errors[0] and message in errors[0], errors
    assert not (tmp_path / "out" / "report.json").exists()


def test_report_reads_span_fields_of_any_list_naming_and_tables_without_optional_columns(world, full, tmp_path):
    dirs = copy_world(world, tmp_path / "w")
    path = dirs["reasoning"] / "reasoning.parquet"
    span_list = retyped("spans", lambda c: c.cast(pa.list_(pa.field("span", c.type.value_type))))
    pq.write_table(span_list(pq.read_table(path)), path, use_compliant_nested_type=False)
    assert "spans.list.span.role" in [c.path for c in pq.ParquetFile(path).schema]  # not spans.list.element.role
    assert build(dirs)["reasoning"] == full[1]["reasoning"]
    entities = dirs["tables"] / "entities.parquet"
    pq.write_table(pq.read_table(entities).drop_columns(["aliases_fr", "description_fr"]), entities)
    coverage = build(dirs, stages=())["entities"]["coverage"]
    assert coverage["de"] == full[1]["entities"]["coverage"]["de"]
    assert coverage["fr"] == {k: v for k, v in full[1]["entities"]["coverage"]["fr"].items()
                              if k in ("items_labelled", "properties_labelled", "triples_fully_labelled")}


def test_report_handles_empty_stage_outputs(tmp_path):
    # cycles of an acyclic graph (the first two triples), no sentence sampled, hence no reasoning sample
    acyclic = tmp_path / "acyclic"
    acyclic.mkdir()
    pq.write_table(pa.Table.from_pylist([dict(zip(("head", "relation", "tail"), t)) for t in TRIPLES[:2]]),
                   acyclic / "triples.parquet")
    dirs = make_world(tmp_path / "w", triples_of=acyclic, sentences=("--max-triples", "0"), xlr=False)
    assert run_report(dirs, tmp_path / "out", stages=("sentences", "cycles", "reasoning")) == 0
    rep = json.loads((tmp_path / "out/report.json").read_text())
    assert (rep["sentences"]["sentences"], rep["cycles"]["cycles"], rep["reasoning"]["samples"]) == (0, 0, 0)
    assert rep["reasoning"]["relation_combinations"] == {} and rep["cycles"]["top_hubs_by_cycles"] == []
    assert rep["graph"]["edges"] == 2 and rep["cycles"]["entities_in_cycles"] == 0


@pytest.mark.parametrize("seed", range(5))
def test_distribution_summary_and_histogram_equal_those_of_the_expanded_values(seed):
    rng = np.random.default_rng(seed)
    values = np.unique(rng.integers(0 if seed else 1, 3000, size=1 + seed * 7))
    counts = rng.integers(1, 20, size=len(values))
    expanded = np.repeat(values, counts)
    assert report.distribution_summary(values, counts) == {
        "mean": round(float(expanded.mean()), 3), "median": float(np.median(expanded)), "max": int(expanded.max())}
    histogram = Counter("0" if v == 0 else f"{1 << int(np.log2(v))}-{(2 << int(np.log2(v))) - 1}" for v in expanded)
    assert report.power_of_two_histogram(values, counts) == {k.replace("1-1", "1"): n for k, n in sorted(
        histogram.items(), key=lambda kv: int(kv[0].split("-")[0]))}


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
    span_type = pa.struct([("text", pa.string()), ("role", pa.string()), ("id", pa.string()),
                           ("sentence", pa.int32()), ("lang", pa.string())])
    spans = pa.array([triple_spans(("Q1", "P9", "Q2")) + triple_spans(("Q2", "P10", "Q3"), 1)
                      + triple_spans(("Q3", "P9", "Q1"), 2), [], triple_spans(("Q1", "P2", "Q2"))],
                     pa.list_(span_type))
    assert report.relation_combinations(spans).to_pylist() == ["P10 P9 P9", "", "P2"]


def test_report_rejects_a_non_positive_top(world, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_report(world, tmp_path, "--top", "0", stages=())
    assert exit_info.value.code == 2
