"""import-triples: Wikidata5M-style and X-FACTR triple lists + name files -> the ingest tables."""
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.formats.stage_summary import read_stage_summary
from preprocess.core.formats.tables import LabelTable, entities_schema
from preprocess.stages.import_triples import closest_to_english
from tests.conftest import REPO_ROOT, TEST_DATA, run_stage

XFACTR = Path(os.environ.get("KMLM_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "xfactr"
needs_xfactr = pytest.mark.skipif(not (XFACTR / "mTRExf").is_dir(),
                                  reason=f"X-FACTR data not found at {XFACTR} (set KMLM_SHARED_DATA)")


@pytest.fixture(scope="module")
def bundled_tables(tmp_path_factory):
    """The bundled Wikidata samples through ingest: the properties' labels in ten languages."""
    out = tmp_path_factory.mktemp("bundled") / "tables"
    run_stage("ingest", "-i", TEST_DATA / "wikibrain_2014_testdump.json.bz2",
              TEST_DATA / "opentapioca_sample_items.json.bz2", "-o", out, "--workers", 1)
    return out


def rows_by_id(tables):
    return {row["id"]: row for row in pq.read_table(tables / "entities.parquet").to_pylist()}


@needs_xfactr
def test_xfactr_facts_and_sorted_alias_lists(tmp_path, bundled_tables):
    out = tmp_path / "tables"
    run_stage("import-triples", "--triples", XFACTR / "mTRExf/sub/P36.jsonl", XFACTR / "mTRExf/sub/P1376.jsonl",
              "--names", *(f"{lang}={XFACTR}/alias/mTRExf/{lang}.txt" for lang in ("en", "fr", "es", "ja")),
              "--relation-labels", bundled_tables, "--label-rule", "closest-to-english", "-o", out)
    facts = [json.loads(line) for name in ("P36", "P1376") for line in open(XFACTR / f"mTRExf/sub/{name}.jsonl")]
    triples = pq.read_table(out / "triples.parquet").to_pylist()
    assert [(t["head"], t["relation"], t["tail"]) for t in triples] == \
        [(f["sub_uri"], f["predicate_id"], f["obj_uri"]) for f in facts]
    rows = rows_by_id(out)
    assert [r["kind"] for r in rows.values()].count("property") == 2
    paris = rows["Q90"]  # the alias lists are sorted: en starts "City of Light", fr "7.5"
    assert paris["label_en"] == "Paris"  # the facts' English label
    assert paris["aliases_en"] == ["City of Light", "Paris, France"]
    assert (paris["label_fr"], paris["label_es"], paris["label_ja"]) == ("Paris", "París", "パリ")
    assert "7.5" in paris["aliases_fr"] and "Paris" not in paris["aliases_fr"]
    assert rows["P36"]["label_fr"] == "capitale" and rows["P1376"]["label_en"] == "capital of"  # bundled tables
    counts = read_stage_summary(out, "import-triples")["counts"]
    assert counts["triples read"] == counts["triples"] == len(facts) == 2000
    assert counts["items"] == len({f[k] for f in facts for k in ("sub_uri", "obj_uri")}) and counts["properties"] == 2
    assert counts["names en: ids in no triple (not kept)"] > 0
    labels = LabelTable(out, ("en", "fr"), with_aliases=True)  # what the later stages read
    assert labels.label("Q142", "en") == "France"


@needs_xfactr
def test_closest_to_english_finds_more_real_labels_than_the_first_name(bundled_tables):
    """The docstring's measurement: X-FACTR's sorted lists against the bundled samples' Wikidata labels."""
    english = {}
    for path in sorted((XFACTR / "mTRExf/sub").glob("*.jsonl")):
        for line in open(path, encoding="utf-8"):
            fact = json.loads(line)
            english.setdefault(fact["sub_uri"], fact["sub_label"])  # the first label seen, as the importer
            english.setdefault(fact["obj_uri"], fact["obj_label"])
    truth = rows_by_id(bundled_tables)
    first = closest = total = 0
    for lang in ("es", "fr", "ja", "ko", "nl", "vi", "zh"):
        for line in open(XFACTR / f"alias/mTRExf/{lang}.txt", encoding="utf-8"):
            entity, *names = dict.fromkeys(name.strip() for name in line.split("\t") if name.strip())
            label = truth.get(entity, {}).get(f"label_{lang}")
            if label and entity.startswith("Q"):
                total += 1
                first += names[0] == label
                closest += closest_to_english(names, english.get(entity)) == label
    assert (closest, first, total) == (1225, 1054, 1473)


def test_wikidata5m_layout_round_trip_and_counts(tmp_path):
    triples = tmp_path / "wikidata5m_train.txt"
    triples.write_bytes(b"Q1\tP17\tQ2\r\n\nQ3\tP17\tQ2\nQ1\tP17\tQ2\nQ3\tP31\tQ4\n")
    entities = tmp_path / "wikidata5m_entity.txt"
    entities.write_text("Q1\tParis\tCity of Light\nQ2\tFrance\tLa France\tFrance\nQ3\tLyon\nQ9\tunused\n"
                        "Q1\tlisted again\n", encoding="utf-8")
    relations = tmp_path / "wikidata5m_relation.txt"
    relations.write_text("P17\tcountry\tsovereign state\nP31\tinstance of\n", encoding="utf-8")
    german = tmp_path / "de.txt"
    german.write_text("Q2\tFrankreich\nQ1\tParis\nP17\tStaat\n", encoding="utf-8")
    out = tmp_path / "tables"
    run_stage("import-triples", "--triples", triples, "--names", f"en={entities}", f"en={relations}",
              f"de={german}", "-o", out)
    assert pq.read_table(out / "triples.parquet").to_pylist() == [
        {"head": "Q1", "relation": "P17", "tail": "Q2"}, {"head": "Q3", "relation": "P17", "tail": "Q2"},
        {"head": "Q3", "relation": "P31", "tail": "Q4"}]
    assert pq.read_schema(out / "entities.parquet") == entities_schema(("en", "de"))
    rows = rows_by_id(out)
    assert list(rows) == ["Q1", "Q2", "Q3", "Q4", "P17", "P31"]
    assert (rows["Q1"]["label_en"], rows["Q1"]["aliases_en"]) == ("Paris", ["City of Light"])  # rule "first"
    assert (rows["Q2"]["label_en"], rows["Q2"]["aliases_en"]) == ("France", ["La France"])  # repeat dropped
    assert rows["Q4"]["label_en"] is None and rows["Q4"]["aliases_en"] == []
    assert (rows["P17"]["label_de"], rows["P31"]["label_de"]) == ("Staat", None)
    assert rows["Q1"]["description_en"] is None
    counts = read_stage_summary(out, "import-triples")["counts"]
    assert counts["triples read"] == 4 and counts["triples skipped: listed again"] == 1
    assert counts["names en: ids in no triple (not kept)"] == 1
    assert counts["names en: id listed again (first line kept)"] == 1
    assert counts["entities without a name in any language"] == 1  # Q4
    run_stage("sentences", "--input", out, "--output", tmp_path / "sentences")  # what the next stage reads
    assert read_stage_summary(tmp_path / "sentences", "sentences")["counts"]["triples used"] == 2


@pytest.mark.parametrize("name, content, error", [
    ("t.txt", b"Q1\tP17\tQ2\n\nQ1\tP17\n", "t.txt:3: expected HEAD<TAB>RELATION<TAB>TAIL"),
    ("t.txt", b"Q1\tP17\tQ2\nQ1\tQ17\tQ2\n", "t.txt:2: relation 'Q17' is not a Wikidata property id"),
    ("t.txt", b"Q1\tP17\tQ2\nQ1\tP17\tParis\n", "t.txt:2: tail 'Paris' is not a Wikidata item id"),
    ("t.txt", b"Q1\tP17\tQ2\nQ1\tP17\tQ\xe92\n", "t.txt:2: "),
    ("f.jsonl", b'{"sub_uri": "Q1", "predicate_id": "P17", "obj_uri": "Q2"}\n{"sub_uri": "Q1",\n',
     "f.jsonl:2: not valid JSON"),
    ("f.jsonl", b'{"sub_uri": "Q1", "predicate_id": "P17", "obj_uri": 2}\n', "f.jsonl:1: obj_uri 2 is not"),
    ("f.jsonl", b'["Q1", "P17", "Q2"]\n', "f.jsonl:1: expected a JSON object"),
])
def test_malformed_triple_lines_are_errors_with_file_and_line(tmp_path, caplog, name, content, error):
    (tmp_path / name).write_bytes(content)
    names = tmp_path / "en.txt"
    names.write_text("Q1\tParis\n")
    assert cli.main(["import-triples", "--triples", str(tmp_path / name), "--names", f"en={names}",
                     "-o", str(tmp_path / "out")]) == 2
    assert error in caplog.text
    assert not (tmp_path / "out" / "entities.parquet").exists()


@pytest.mark.parametrize("content, error", [
    ("Q1\tParis\nQ2\n", "en.txt:2: expected 'ID<TAB>NAME"),
    ("Q1\tParis\nParis\tQ1\n", "en.txt:2: expected 'ID<TAB>NAME"),
])
def test_malformed_name_lines_are_errors_with_file_and_line(tmp_path, caplog, content, error):
    (tmp_path / "t.txt").write_text("Q1\tP17\tQ2\n")
    (tmp_path / "en.txt").write_text(content)
    assert cli.main(["import-triples", "--triples", str(tmp_path / "t.txt"), "--names",
                     f"en={tmp_path / 'en.txt'}", "-o", str(tmp_path / "out")]) == 2
    assert error in caplog.text


def test_bad_options_are_clear_errors(tmp_path, caplog):
    (tmp_path / "t.txt").write_text("Q1\tP17\tQ2\n")
    (tmp_path / "de.txt").write_text("Q1\tParis\n")
    base = ["import-triples", "--triples", str(tmp_path / "t.txt"), "-o", str(tmp_path / "out")]
    assert cli.main(base + ["--names", "de.txt"]) == 2 and "expected LANG=FILE" in caplog.text
    assert cli.main(base + ["--names", f"de={tmp_path / 'de.txt'}", "--languages", "en"]) == 2
    assert "de is not in --languages en" in caplog.text
    assert cli.main(base + ["--names", f"de={tmp_path / 'nope.txt'}"]) == 2 and "nope.txt: no such file" in caplog.text
    assert cli.main(["import-triples", "--triples", str(tmp_path / "none"), "-o", str(tmp_path / "out")]) == 2
    assert "no such file or directory" in caplog.text


def test_report_checks_imported_tables_against_the_import_triples_summary(tmp_path, caplog):
    """The report reads the counts of the stage that made the tables: import_triples_summary.json here, also when
    an older ingest run left its summary in the directory; a table changed since names import-triples."""
    triples = tmp_path / "t.txt"
    triples.write_text("Q1\tP17\tQ2\nQ3\tP17\tQ2\n", encoding="utf-8")
    names = tmp_path / "en.txt"
    names.write_text("Q1\tParis\nQ2\tFrance\nQ3\tLyon\nP17\tcountry\n", encoding="utf-8")
    out = tmp_path / "tables"
    out.mkdir()
    (out / "ingest_summary.json").write_text(json.dumps({"stage": "ingest", "counts": {
        "items": 100, "properties": 100, "triples": 100}}))  # an earlier ingest's, now stale
    run_stage("import-triples", "--triples", triples, "--names", f"en={names}", "-o", out)
    assert cli.main(["report", "--tables", str(out), "--output", str(tmp_path / "report")]) == 0
    pq.write_table(pq.read_table(out / "triples.parquet").slice(0, 1), out / "triples.parquet")
    assert cli.main(["report", "--tables", str(out), "--output", str(tmp_path / "report")]) == 2
    assert "import_triples_summary.json counts 2 triples in triples.parquet but 1 are there" in caplog.text
    assert "re-run `kmlm-preprocess import-triples`" in caplog.text
