"""ingest + merge on the bundled real Wikidata samples, checked against a plain-`json` reading done here."""
import argparse
import bz2
import functools
import gc
import gzip
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core import text_blocks
from preprocess.core.errors import UserFacingError
from preprocess.core.formats import tables
from preprocess.core.formats.tables import ENTITIES_FILE, TRIPLES_FILE
from preprocess.stages import ingest, merge
from tests.conftest import REPO_ROOT

DATA = Path(__file__).resolve().parents[1] / "data"
CURRENT = DATA / "opentapioca_sample_items.json.bz2"  # claims carry "id"
OLD_2014 = DATA / "wikibrain_2014_testdump.json.bz2"  # claims carry only "numeric-id"
LANGS = ("en", "de", "ja", "zh")
ZH_ORDER = ("zh", "zh-hans", "zh-cn", "zh-sg", "zh-my", "zh-hant", "zh-tw", "zh-hk", "zh-mo")  # as documented


# --- An independent reading of a dump with the json module --------------------------------------------------------
@functools.lru_cache(maxsize=None)
def sample_entities(path):
    with bz2.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line.strip().rstrip(",")) for line in f if line.strip() not in ("", "[", "]")]


def first_variant(terms, lang):
    for code in ZH_ORDER if lang == "zh" else (lang,):
        if terms.get(code):
            return terms[code]
    return None


def expected_tables(entities, languages=LANGS, entity_ids=None, relation_ids=None):
    rows, triples = [], []
    for e in entities:
        listed = entity_ids is None or e["id"] in entity_ids
        if e["type"] == "property":
            listed = (relation_ids is None or e["id"] in relation_ids
                      or (entity_ids is not None and e["id"] in entity_ids))
        if not listed:
            continue
        row = {"id": e["id"], "kind": e["type"]}
        for lang in languages:
            label = first_variant(e.get("labels") or {}, lang)
            aliases = first_variant(e.get("aliases") or {}, lang)
            description = first_variant(e.get("descriptions") or {}, lang)
            row[f"label_{lang}"] = label and label["value"]
            row[f"aliases_{lang}"] = [a["value"] for a in aliases or []]
            row[f"description_{lang}"] = description and description["value"]
        rows.append(row)
        if e["type"] != "item":
            continue
        for relation, statements in (e.get("claims") or {}).items():
            for st in statements:
                value = st["mainsnak"].get("datavalue", {}).get("value")
                if st.get("rank") == "deprecated" or not isinstance(value, dict) or value.get("entity-type") != "item":
                    continue
                tail = f"Q{value['numeric-id']}"
                if (relation_ids is None or relation in relation_ids) and (entity_ids is None or tail in entity_ids):
                    triples.append((e["id"], relation, tail))
    return rows, triples


def write_dump(path, entities, layout="dump", newline="\n"):
    """Entities as a dump file; the compression follows the file name."""
    lines = [json.dumps(e, ensure_ascii=False) for e in entities]
    if layout == "dump":  # the real layout, last entity line without a comma
        text = "[\n" + ",\n".join(lines) + "\n]\n"
    elif layout == "dump-trailing-comma":
        text = "[\n" + "".join(line + ",\n" for line in lines) + "]\n"
    elif layout == "truncated-head":  # no closing bracket, no final newline
        text = "[\n" + ",\n".join(lines)
    elif layout == "jsonl":
        text = "".join(line + "\n" for line in lines)
    elif layout == "blank-lines":
        text = "\n[\n\n" + "\n\n".join(line + "," for line in lines) + "\n\n]\n\n"
    data = text.replace("\n", newline).encode("utf-8")
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "wb") as f:
        f.write(data)
    return path


def read_rows(out):
    entities = pq.read_table(out / ENTITIES_FILE).to_pylist()
    triples = [tuple(t.values()) for t in pq.read_table(out / TRIPLES_FILE).to_pylist()]
    return entities, triples


def tables_bytes(out):
    return (out / ENTITIES_FILE).read_bytes(), (out / TRIPLES_FILE).read_bytes()


def run_ingest(inputs, out, **kwargs):
    kwargs.setdefault("languages", LANGS)
    return ingest.ingest(inputs, out, **kwargs)


@pytest.fixture(scope="module")
def current_entities():
    return sample_entities(CURRENT)


@pytest.fixture(scope="module")
def old_entities():
    return sample_entities(OLD_2014)


def item(qid, claims=None, **terms):
    return {"type": "item", "id": qid, "labels": terms.get("labels", {}), "descriptions": terms.get("descriptions", {}),
            "aliases": terms.get("aliases", {}), "claims": claims or {}}


def item_claim(relation, tail, rank="normal", fmt="current"):
    value = {"entity-type": "item", "numeric-id": int(tail[1:])}
    if fmt == "current":
        value["id"] = tail
    return {"mainsnak": {"snaktype": "value", "property": relation, "datatype": "wikibase-item",
                         "datavalue": {"value": value, "type": "wikibase-entityid"}},
            "type": "statement", "rank": rank}


# --- Real samples ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample, has_ids", [(CURRENT, True), (OLD_2014, False)], ids=["current", "2014"])
def test_ingest_real_sample_matches_plain_json(tmp_path, sample, has_ids):
    entities = sample_entities(sample)
    values = [st["mainsnak"]["datavalue"]["value"] for e in entities for sts in (e.get("claims") or {}).values()
              for st in sts if st["mainsnak"].get("datavalue", {}).get("type") == "wikibase-entityid"]
    assert values and all(("id" in v) == has_ids for v in values)  # the sample is in the claim format we think

    summary = run_ingest(sample, tmp_path)

    rows, triples = read_rows(tmp_path)
    expected_rows, expected_triples = expected_tables(entities)
    assert rows == expected_rows
    assert triples == expected_triples
    counts = summary["counts"]
    assert counts["items"] == sum(e["type"] == "item" for e in entities)
    assert counts["properties"] == sum(e["type"] == "property" for e in entities)
    assert counts["triples"] == len(expected_triples) > 5000
    item_statements = [st for e in entities if e["type"] == "item" for sts in e["claims"].values() for st in sts
                       if isinstance(st["mainsnak"].get("datavalue", {}).get("value"), dict)
                       and st["mainsnak"]["datavalue"]["value"].get("entity-type") == "item"]
    deprecated = sum(st.get("rank") == "deprecated" for st in item_statements)
    assert counts["deprecated statements skipped"] == deprecated > 0
    assert json.loads((tmp_path / ingest.SUMMARY_FILE).read_text())["counts"] == counts


def test_ingest_real_sample_zh_fallback_used(tmp_path, current_entities):
    run_ingest(CURRENT, tmp_path)
    rows = {r["id"]: r for r in read_rows(tmp_path)[0]}
    without_zh = [e for e in current_entities if "zh" not in e["labels"] and set(e["labels"]) & set(ZH_ORDER)]
    assert without_zh  # the sample has items labelled only in zh variants
    for e in without_zh:
        assert rows[e["id"]]["label_zh"] == first_variant(e["labels"], "zh")["value"] is not None


# --- Synthetic entities for single behaviours ------------------------------------------------------------------
def test_ingest_zh_fallback_order_per_field(tmp_path):
    t = lambda code, value: {"language": code, "value": value}  # noqa: E731
    entities = [
        item("Q1", labels={"zh-hant": t("zh-hant", "繁"), "zh-cn": t("zh-cn", "简")},
             descriptions={"zh-hk": t("zh-hk", "港")},
             aliases={"zh": [], "zh-tw": [t("zh-tw", "臺1"), t("zh-tw", "臺2")], "zh-mo": [t("zh-mo", "澳")]}),
        item("Q2", labels={"zh": t("zh", "中"), "zh-hans": t("zh-hans", "汉")}),
        item("Q3", labels={"en": t("en", "only English")}),
    ]
    run_ingest(write_dump(tmp_path / "d.json", entities), tmp_path / "out", languages=("en", "zh"))
    rows = read_rows(tmp_path / "out")[0]
    assert [(r["label_zh"], r["aliases_zh"], r["description_zh"]) for r in rows] == [
        ("简", ["臺1", "臺2"], "港"), ("中", [], None), (None, [], None)]


def test_ingest_keeps_only_non_deprecated_item_values(tmp_path):
    lexeme = {"mainsnak": {"snaktype": "value", "property": "P5", "datavalue": {
        "value": {"entity-type": "lexeme", "numeric-id": 7, "id": "L7"}, "type": "wikibase-entityid"}},
        "rank": "normal"}
    prop = {"mainsnak": {"snaktype": "value", "property": "P6", "datavalue": {
        "value": {"entity-type": "property", "numeric-id": 31, "id": "P31"}, "type": "wikibase-entityid"}}}
    string = {"mainsnak": {"snaktype": "value", "property": "P7", "datavalue": {"value": "x", "type": "string"}}}
    novalue = {"mainsnak": {"snaktype": "novalue", "property": "P8"}, "rank": "normal"}
    claims = {
        "P1": [item_claim("P1", "Q10"), item_claim("P1", "Q11", rank="deprecated"),
               item_claim("P1", "Q12", "preferred")],
        "P2": [item_claim("P2", "Q13", fmt="2014"), item_claim("P2", "Q14", rank="deprecated", fmt="2014")],
        "P5": [lexeme], "P6": [prop], "P7": [string], "P8": [novalue],
    }
    prop_entity = {"type": "property", "id": "P1", "datatype": "wikibase-item",
                   "claims": {"P1": [item_claim("P1", "Q9")]}}  # statements of properties are not triples
    summary = run_ingest(write_dump(tmp_path / "d.json", [item("Q1", claims), prop_entity]), tmp_path / "out")
    assert read_rows(tmp_path / "out")[1] == [("Q1", "P1", "Q10"), ("Q1", "P1", "Q12"), ("Q1", "P2", "Q13")]
    assert summary["counts"]["deprecated statements skipped"] == 2


def test_ingest_empty_term_maps_and_null_terms_read_as_absent(tmp_path):
    """Old dumps write an empty map as [], and a null term or alias list counts as none: each takes the slower
    path of the column building, mixed with entities that take the fast one."""
    t = lambda code, value: {"language": code, "value": value}  # noqa: E731
    entities = [
        item("Q1", labels={"en": t("en", "one"), "zh-tw": t("zh-tw", "一")}, aliases={"en": [t("en", "1")]}),
        {"type": "item", "id": "Q2", "labels": [], "descriptions": [], "aliases": [], "claims": []},
        item("Q3", labels={"en": None, "zh": None, "zh-hk": t("zh-hk", "三")}, descriptions={"en": None},
             aliases={"en": None, "zh": None, "zh-cn": [t("zh-cn", "叁")]}),
    ]
    summary = run_ingest(write_dump(tmp_path / "d.json", entities), tmp_path / "out", languages=("en", "zh"))
    rows = read_rows(tmp_path / "out")[0]
    assert [(r["label_en"], r["aliases_en"], r["description_en"], r["label_zh"], r["aliases_zh"]) for r in rows] == [
        ("one", ["1"], None, "一", []), (None, [], None, None, []), (None, [], None, "三", ["叁"])]
    assert summary["counts"]["items"] == 3


@pytest.mark.parametrize("layout, suffix", [
    ("dump-trailing-comma", ".json"), ("truncated-head", ".json"), ("jsonl", ".json"), ("blank-lines", ".json"),
    ("dump-trailing-comma", ".json.gz"), ("truncated-head", ".json.bz2"),
])
def test_ingest_layout_variants_give_identical_tables(tmp_path, current_entities, layout, suffix):
    entities = current_entities[:8]
    run_ingest(write_dump(tmp_path / "base.json", entities, "dump"), tmp_path / "base")
    newline = "\r\n" if layout == "blank-lines" else "\n"
    run_ingest(write_dump(tmp_path / f"variant{suffix}", entities, layout, newline), tmp_path / "variant")
    assert len(read_rows(tmp_path / "base")[0]) == 8
    assert tables_bytes(tmp_path / "variant") == tables_bytes(tmp_path / "base")


# --- Bad input -------------------------------------------------------------------------------------------------
def test_ingest_counts_and_reports_bad_lines(tmp_path, current_entities, caplog):
    good = [json.dumps(e) for e in current_entities[:6]]
    bad = ['{"type": "item", "id": "Q1", "labels": ', "not json at all", '{"foo": 1}', "[1, 2]",
           '{"type": "lexeme", "id": "L1", "lemmas": {}}', '{"type": "item", "id": "X1"}']
    lines = ["["] + [g for pair in zip(good, bad) for g in pair] + ["]"]
    dump = tmp_path / "bad.json"
    dump.write_text(",\n".join(lines[1:-1]).join(["[\n", "\n]\n"]), encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="kmlm-preprocess ingest"):
        summary = run_ingest(dump, tmp_path / "out")

    assert [r["id"] for r in read_rows(tmp_path / "out")[0]] == [e["id"] for e in current_entities[:6]]
    counts = summary["counts"]
    assert (counts["invalid JSON"], counts["not an entity"], counts["not an item or property"]) == (2, 3, 1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert "line 3 " in warnings[0] and "invalid JSON" in warnings[0]  # line 1 is "[", line 2 the first entity
    assert "line 13 " in warnings[-1] and "'X1'" in warnings[-1]


@pytest.mark.parametrize("workers", [1, 2])
def test_ingest_bad_line_numbers_across_blocks(tmp_path, current_entities, caplog, workers):
    """Blocks read by the parsers themselves carry no line numbers but the first; the reading process adds them."""
    good = [json.dumps(e) for e in current_entities[:12]]
    lines = [good[i] if i % 4 else f'{{"type": "item", "id": "X{i}"}}' for i in range(len(good))]
    dump = tmp_path / "bad.json"
    dump.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kmlm-preprocess ingest"):
        run_ingest(dump, tmp_path / "out", workers=workers, chunk_bytes=50_000)  # a block every few entities
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [int(re.search(r"line ([0-9,]+) ", w)[1]) for w in warnings] == [2, 6, 10]  # line 1 is "["
    assert all(f"'X{n - 2}'" in w for n, w in zip([2, 6, 10], warnings))


def test_parser_restores_the_garbage_collector(current_entities):
    parser = ingest.BlockParser(ingest.ParseConfig(LANGS))
    block = text_blocks.Block("x", 0, 1, (json.dumps(current_entities[0]) + "\n").encode())
    assert gc.isenabled()
    assert parser(block).entities.num_rows == 1
    assert gc.isenabled()
    gc.disable()
    try:
        parser(block)
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_ingest_damaged_gzip_is_a_clear_error_and_leaves_no_tables(tmp_path, current_entities, caplog, damage):
    full = write_dump(tmp_path / "full.json.gz", current_entities[:30])
    data = bytearray(full.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2:]
    else:
        data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64
    damaged = tmp_path / f"{damage}.json.gz"
    damaged.write_bytes(bytes(data))
    out = tmp_path / "out"
    run_ingest(full, out)  # a previous complete run must not survive a failed one either

    status = cli.main(["ingest", "-i", str(damaged), "-o", str(out), "--workers", "1", "--languages", "en"])

    assert status == 2
    message = caplog.records[-1].getMessage()
    assert str(damaged) in message and "truncated or corrupt" in message
    assert re.search(r"after [0-9,]+ decompressed bytes \([0-9,]+ lines", message)
    assert ("the file ends inside the compressed stream" in message) == (damage == "truncated")  # not a CRC error
    assert list(out.iterdir()) == []


def test_ingest_bz2_module_reads_like_lbzip2(tmp_path, monkeypatch):
    if not shutil.which("lbzip2"):
        pytest.skip("lbzip2 is not on PATH")
    run_ingest(CURRENT, tmp_path / "lbzip2")
    monkeypatch.setattr(text_blocks.shutil, "which", lambda name: None)
    with text_blocks.DumpStream(CURRENT) as stream:
        assert stream.decoder_name == "bz2"
    run_ingest(CURRENT, tmp_path / "bz2")
    assert tables_bytes(tmp_path / "bz2") == tables_bytes(tmp_path / "lbzip2")


@pytest.mark.parametrize("decoder", ["lbzip2", "bz2"])
def test_ingest_truncated_bz2_is_a_clear_error(tmp_path, monkeypatch, decoder):
    if decoder == "lbzip2" and not shutil.which("lbzip2"):
        pytest.skip("lbzip2 is not on PATH")
    if decoder == "bz2":
        monkeypatch.setattr(text_blocks.shutil, "which", lambda name: None)
    truncated = tmp_path / "truncated.json.bz2"
    truncated.write_bytes(CURRENT.read_bytes()[:600_000])
    with pytest.raises(UserFacingError, match="truncated or corrupt: reading stopped after [0-9,]+ decompressed bytes"
                       ) as error:
        run_ingest(truncated, tmp_path / "out")
    if decoder == "bz2":  # lbzip2 only says "bad block header magic", which a corrupt block gives too
        assert "the file ends inside the compressed stream" in str(error.value)
    assert not (tmp_path / "out" / ENTITIES_FILE).exists() and not (tmp_path / "out" / TRIPLES_FILE).exists()
    assert not list((tmp_path / "out").glob(".*tmp*"))


# --- Filters ---------------------------------------------------------------------------------------------------
def test_ingest_filters_apply_to_heads_tails_and_relations(tmp_path, old_entities):
    items = [e["id"] for e in old_entities if e["type"] == "item"]
    everything = expected_tables(old_entities)[1]
    listed = set(items[::2]) | {t for h, r, t in everything[:400:3]}
    relations = {"P31", "P279", "P17", "P131", "P150"}
    listed_props = ["P31", "P17"]
    entity_file = tmp_path / "entities.txt"
    entity_file.write_text("# Wikidata5M-style: id, then aliases\n\n" + "".join(
        f"{qid}\tsome alias\tanother\n" if i % 3 else f"  http://www.wikidata.org/entity/{qid}  # uri\n"
        for i, qid in enumerate(sorted(listed))) + "\n".join(listed_props) + "\n")
    relation_file = tmp_path / "relations.txt"
    relation_file.write_text("".join(f"{pid}\tname\n" for pid in sorted(relations)))

    run_ingest(OLD_2014, tmp_path / "out", entity_list=entity_file, relation_list=relation_file)

    rows, triples = read_rows(tmp_path / "out")
    expected_rows, expected_triples = expected_tables(old_entities, entity_ids=listed | set(listed_props),
                                                      relation_ids=relations)
    assert triples == expected_triples and len(triples) > 50
    assert all(h in listed and t in listed and r in relations for h, r, t in triples)
    assert any(h in listed and t not in listed and r in relations for h, r, t in everything)  # tails did filter
    assert rows == expected_rows
    assert {r["id"] for r in rows if r["kind"] == "property"} == relations | set(listed_props)


@pytest.mark.parametrize("text, what, error", [
    ("Q1\nfoo\n", "entity", "entities.txt:2: 'foo' is not a Wikidata entity id"),
    ("P31\nQ5\n", "relation", "entities.txt:2: 'Q5' is not a Wikidata relation id"),
    ("# only a comment\n\n", "entity", "holds no ids"),
])
def test_read_id_list_rejects_bad_lists(tmp_path, text, what, error):
    path = tmp_path / "entities.txt"
    path.write_text(text)
    with pytest.raises(UserFacingError, match=error):
        ingest.read_id_list(path, what)


# --- Same bytes however the work is split ----------------------------------------------------------------------
@pytest.fixture
def small_row_groups(monkeypatch):
    """Several row groups even on the samples, so the batching of rows into groups is exercised."""
    monkeypatch.setattr(tables, "ENTITY_ROWS_PER_GROUP", 150)
    monkeypatch.setattr(tables, "TRIPLE_ROWS_PER_GROUP", 1000)


@pytest.fixture(scope="module")
def overlapping_dumps(tmp_path_factory, current_entities, old_entities):
    """Two small uncompressed dumps sharing some entities, for the tests that run many times."""
    directory = tmp_path_factory.mktemp("overlapping")
    first = write_dump(directory / "a.json", current_entities[:25])
    second = write_dump(directory / "b.json", old_entities[:200] + current_entities[20:30] + old_entities[-400:])
    return [first, second]


def test_ingest_same_bytes_for_one_and_two_workers(tmp_path, small_row_groups, overlapping_dumps):
    run_ingest(overlapping_dumps, tmp_path / "one", workers=1)
    run_ingest(overlapping_dumps, tmp_path / "two", workers=2, chunk_bytes=100_000)
    assert tables_bytes(tmp_path / "two") == tables_bytes(tmp_path / "one")
    assert pq.ParquetFile(tmp_path / "one" / ENTITIES_FILE).num_row_groups >= 3


def test_tables_close_side_by_side_and_a_failed_close_is_not_lost(tmp_path, monkeypatch):
    closed, original_close = [], tables.FixedGroupWriter.close

    def close(writer):
        table = "triples" if writer.schema.equals(tables.TRIPLES_SCHEMA) else "entities"
        closed.append(table)
        if table == "entities":
            raise OSError("disk full")
        original_close(writer)

    monkeypatch.setattr(tables.FixedGroupWriter, "close", close)
    with pytest.raises(OSError, match="disk full"), tables.table_writers(tmp_path, ["en"]) as (_, triples):
        triples.write(pa.record_batch([pa.array(["Q1"]), pa.array(["P31"]), pa.array(["Q5"])],
                                      schema=tables.TRIPLES_SCHEMA))
    assert sorted(closed) == ["entities", "triples"]  # the other table was closed too
    assert list(tmp_path.iterdir()) == []  # and, as the run failed, neither table was put in place


@pytest.mark.parametrize("compressed, sizes", [(False, None), (True, None), (True, [1_000_000, 20_000_000])],
                         ids=["plain-seek", "bz2-estimate", "bz2-wrong-sizes"])
def test_shards_then_merge_equal_a_single_run(tmp_path, monkeypatch, small_row_groups, overlapping_dumps,
                                              compressed, sizes):
    monkeypatch.setattr(text_blocks, "ESTIMATE_PREFIX_BYTES", 100_000)  # estimate from a prefix, as for big dumps
    inputs = overlapping_dumps  # uncompressed: the shards seek instead of skipping
    if compressed:
        inputs = [tmp_path / f"{p.name}.bz2" for p in inputs]
        for plain, packed in zip(overlapping_dumps, inputs):
            packed.write_bytes(bz2.compress(plain.read_bytes(), 1))
    single = run_ingest(inputs, tmp_path / "single", chunk_bytes=1 << 20)
    for index in range(3):
        run_ingest(inputs, tmp_path / "sharded", shard=(index, 3), decompressed_sizes=sizes, chunk_bytes=200_000)
    merged = merge.merge(tmp_path / "sharded")

    assert tables_bytes(tmp_path / "sharded") == tables_bytes(tmp_path / "single")
    assert merged["counts"] == single["counts"]
    ids = [r["id"] for r in read_rows(tmp_path / "single")[0]]
    assert len(ids) == len(set(ids)) and single["counts"]["duplicate entities skipped"] > 0  # the samples overlap
    shard_rows = [pq.read_metadata(d / ENTITIES_FILE).num_rows for d in sorted((tmp_path / "sharded/shards").iterdir())]
    assert sum(n > 0 for n in shard_rows) >= 2


def test_merge_refuses_missing_or_mismatched_shards(tmp_path):
    dump = write_dump(tmp_path / "d.json", sample_entities(CURRENT)[:20])
    for index in (0, 2):
        run_ingest(dump, tmp_path / "out", shard=(index, 3))
    with pytest.raises(UserFacingError, match="1 of 3 shards are missing or unfinished .*00001-of-00003"):
        merge.merge(tmp_path / "out")
    run_ingest(dump, tmp_path / "out", shard=(1, 3), languages=("en",))
    with pytest.raises(UserFacingError, match="languages"):
        merge.merge(tmp_path / "out")
    summary = tmp_path / "out" / ingest.SHARDS_DIR / "00001-of-00003" / ingest.SUMMARY_FILE
    summary.write_text(summary.read_text()[:40])  # a shard's summary cut short (a full disk, a copy interrupted)
    with pytest.raises(UserFacingError, match=f"{re.escape(str(summary))}: not a JSON summary .*re-run this shard"):
        merge.merge(tmp_path / "out")
    assert not (tmp_path / "out" / ENTITIES_FILE).exists()


@pytest.mark.parametrize("count", [1, 2, 5, 40])
def test_shard_reads_cover_every_line_once(tmp_path, count):
    lines = [f'{{"n": {i}, "pad": "{"x" * (i * 37 % 200)}"}}\n' for i in range(300)]
    plain = tmp_path / "lines.json"
    plain.write_text("".join(lines))
    packed = tmp_path / "lines.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path, sizes in [(plain, [plain.stat().st_size]), (packed, [1000])]:  # 1000: a far too small estimate
        for iterate in (text_blocks.iter_blocks, text_blocks.iter_block_refs):
            got = []
            for index in range(count):
                for read in text_blocks.shard_reads([path], sizes, index, count):
                    got += [b.load().data for b in iterate(read.path, 997, read.start, read.end)]
            assert b"".join(got).decode() == "".join(lines)
            assert all(block.endswith(b"\n") for block in got)


def test_ingest_help_documents_zh_fallback_and_filters():
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert ", ".join(ZH_ORDER) in text
    assert "head AND tail" in text and "# comments" in text and "--shard I/N" in text


def test_ingest_bench_runs_and_accounts_for_the_parallel_run():
    """bench/ingest.py on a small dump (3 blocks): it checks the tables of 1 and 2 workers itself, and --profile's
    timed run (bench/ingest_timeline.py, whose parser the worker processes import by name) accounts for the wall
    time of both workers."""
    done = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "ingest.py"), "--size-mb", "20", "--rounds", "1",
                           "--workers", "2", "--profile"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tables byte-identical: True" in done.stdout
    cpu = re.search(r"CPU time of all processes: 1 worker ([\d.]+) s, 2 workers ([\d.]+) s", done.stdout)
    assert cpu and float(cpu[2]) > 0.7 * float(cpu[1]), done.stdout  # the workers' CPU is counted, not only ours
    timeline = dict(re.findall(r"^  (until the first block starts|after the last result[^\n]*?)\s+([\d.]+) s$",
                               done.stdout, re.MULTILINE))
    assert len(timeline) == 2 and all(float(seconds) >= 0 for seconds in timeline.values())
    per_worker = re.search(r"parsing, wall of each worker[^\n]*?((?: +[\d.]+)+) s$", done.stdout, re.MULTILINE)
    assert per_worker and len(per_worker[1].split()) == 2, done.stdout


def test_default_workers_take_every_cpu_for_an_uncompressed_dump_and_leave_one_to_decompress(tmp_path, monkeypatch,
                                                                                             caplog):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)  # the test may itself run inside a SLURM task
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(4)))
    plain = write_dump(tmp_path / "d.json", sample_entities(CURRENT)[:3])
    packed = tmp_path / "d.json.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert ingest.default_ingest_workers([plain]) == 4
    assert ingest.default_ingest_workers([packed]) == ingest.default_ingest_workers([plain, packed]) == 3
    assert ingest.default_ingest_workers([tmp_path / "missing.json"]) == 3  # ingest itself then says it is missing
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert ingest.default_ingest_workers([packed]) == 1
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    args = parser.parse_args(["-i", str(plain), "-o", str(tmp_path / "out")])
    assert args.workers is None  # resolved by run() from the inputs:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    with caplog.at_level(logging.INFO):
        assert cli.main(["ingest", "-i", str(plain), "-o", str(tmp_path / "out")]) == 0
    assert "--workers 2 (default): every usable CPU, as the input is uncompressed" in caplog.text


def test_usable_cpus_are_capped_by_the_slurm_task(monkeypatch):
    from preprocess.core import workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))  # a node that does not bind the task
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert workers.usable_cpus() == 32 and workers.default_workers() == 31
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    assert workers.usable_cpus() == 4 and workers.default_workers() == 3
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "64")  # more than this process may use: the affinity wins
    assert workers.usable_cpus() == 32
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")
    assert workers.usable_cpus() == 32
