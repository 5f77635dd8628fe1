import json
import math
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core import io
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.sentences import ALIAS, CODESWITCH, VARIANTS
from preprocess.core.formats.tables import TRIPLES_SCHEMA, entities_schema
from preprocess.stages import sentences
from preprocess.stages.sentences import SentenceConfig, build_sentences

LANGS = ("en", "de", "fr")


def entity(entity_id, labels=None, aliases=None):
    """An entities.parquet row; ``labels``/``aliases`` map language -> value."""
    labels, aliases = labels or {}, aliases or {}
    row = {"id": entity_id, "kind": "property" if entity_id.startswith("P") else "item"}
    for lang in LANGS:
        row.update({f"label_{lang}": labels.get(lang), f"aliases_{lang}": aliases.get(lang, []),
                    f"description_{lang}": None})
    return row


def write_tables(directory, entities, triples):
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(entities, schema=entities_schema(LANGS)), directory / "entities.parquet")
    rows = [dict(zip(("head", "relation", "tail"), t)) for t in triples]
    pq.write_table(pa.Table.from_pylist(rows, schema=TRIPLES_SCHEMA), directory / "triples.parquet")
    return directory


def labelled(entity_id, langs=LANGS, aliases=None):
    """An entity with a label in each of ``langs`` and, unless ``aliases`` says otherwise, one alias there equal to
    its label (the default alias rule drops a sample with an item lacking an alias; equal texts keep them
    predictable)."""
    names = {lang: f"{entity_id}-{lang}" for lang in langs}
    return entity(entity_id, names, {lang: [name] for lang, name in names.items()} if aliases is None else aliases)


def run_sentences(tables, tmp_path, languages=LANGS, variants=1, alias_variants=1, first_half=True, seed=1,
                  chunk_size=1 << 16, name="out", alias_missing="drop", alias_draw="codeswitch",
                  missing_label="english", **sampling):
    path = tmp_path / name / "sentences.parquet"
    config = SentenceConfig(seed, variants, alias_variants, first_half, alias_missing, alias_draw, missing_label)
    counts = build_sentences(tables, path, languages, config, chunk_size=chunk_size, **sampling)
    return pq.read_table(path).to_pylist(), counts, path


def binomial_tolerance(n, p=0.5, sigmas=4):
    return sigmas * math.sqrt(p * (1 - p) / n)


@pytest.fixture
def many_triples(tmp_path):
    """600 triples over fully labelled entities: enough draws to measure rates."""
    entities = [labelled(f"Q{i}") for i in range(10)] + [labelled("P1"), labelled("P2")]
    triples = [(f"Q{i % 10}", f"P{1 + i % 2}", f"Q{(i + 3) % 10}") for i in range(600)]
    return write_tables(tmp_path / "tables", entities, triples)


def test_sentences_switch_each_item_with_probability_half(many_triples, tmp_path):
    rows, _, _ = run_sentences(many_triples, tmp_path, variants=2)
    for variant in (CODESWITCH, ALIAS):
        samples = [r for r in rows if r["variant"] == variant]
        n_items = 3 * len(samples)
        switched = sum(s["lang"] != "en" for r in samples for s in r["spans"])
        assert abs(switched / n_items - 0.5) < binomial_tolerance(n_items), variant
        # each item independently: all three stay English in 1/8 of the samples
        all_english = sum(all(s["lang"] == "en" for s in r["spans"]) for r in samples)
        assert abs(all_english / len(samples) - 1 / 8) < binomial_tolerance(len(samples), 1 / 8), variant
    for r in rows:
        lang = r["lang_pair"].split("-")[1]
        assert {s["lang"] for s in r["spans"]} <= {"en", lang}
        assert all(s["text"] == f"{s['id']}-{s['lang']}" for s in r["spans"])


def test_sentences_spans_keep_roles_ids_and_variant_order(tmp_path):
    tables = write_tables(tmp_path / "tables", [labelled("Q1"), labelled("Q2"), labelled("P1")],
                          [("Q1", "P1", "Q2"), ("Q2", "P1", "Q1")])
    rows, counts, _ = run_sentences(tables, tmp_path, variants=2, alias_variants=3)
    assert [(r["lang_pair"], r["triple_index"], r["variant"]) for r in rows] == [
        (pair, index, variant)
        for pair in ("en-de", "en-fr") for index in (0, 1) for variant in [CODESWITCH] * 2 + [ALIAS] * 3
    ]
    for r in rows:
        assert [(s["role"], s["sentence"]) for s in r["spans"]] == [("head", 0), ("relation", 0), ("tail", 0)]
        expected_ids = ["Q1", "P1", "Q2"] if r["triple_index"] == 0 else ["Q2", "P1", "Q1"]
        assert [s["id"] for s in r["spans"]] == expected_ids
    assert counts["en-de codeswitch"] == 4 and counts["en-fr alias"] == 6 and counts["samples written"] == 20


def test_sentences_codeswitch_only_to_existing_labels(tmp_path):
    entities = [labelled("Q1"), labelled("Q2", langs=("en",)), labelled("P1", langs=("en", "fr"))]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2")] * 200)
    rows, _, _ = run_sentences(tables, tmp_path, alias_variants=0)
    de = [r for r in rows if r["lang_pair"] == "en-de"]
    assert len(de) == 200
    assert all(s["lang"] == "en" for r in de for s in r["spans"] if s["id"] in ("Q2", "P1"))
    assert 0 < sum(r["spans"][0]["lang"] == "de" for r in de) < 200
    fr = [r for r in rows if r["lang_pair"] == "en-fr"]
    assert {r["spans"][1]["text"] for r in fr} == {"P1-en", "P1-fr"}


def test_sentences_alias_first_half_rule(tmp_path):
    five, three = [f"Q1 alias {i}" for i in range(5)], [f"Q3 alias {i}" for i in range(3)]
    entities = [entity("Q1", {"en": "Q1-en"}, {"en": five}), entity("Q2", {"en": "Q2-en"}, {"en": ["a", "b"]}),
                entity("Q3", {"en": "Q3-en"}, {"en": three}),
                entity("P1", {"en": "P1-en", "de": "P1-de"}, {"en": ["P1-en"], "de": ["P1-de"]})]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2"), ("Q3", "P1", "Q2")] * 400)

    def drawn(first_half):
        rows, _, _ = run_sentences(tables, tmp_path, languages=("en", "de"), variants=0, first_half=first_half,
                                   name=str(first_half))
        return Counter(r["spans"][0]["text"] for r in rows), Counter(r["spans"][2]["text"] for r in rows)

    heads, tails = drawn(first_half=True)
    assert set(heads) == set(five[:3]) | set(three[:2])  # n > 2: only the first int(n/2)+1 (3 of 5, 2 of 3)
    assert set(tails) == {"a", "b"}  # n = 2: no restriction
    heads, _ = drawn(first_half=False)
    assert set(heads) == set(five) | set(three)


def test_sentences_alias_sample_needs_an_alias_for_every_item_and_counts_the_drops(tmp_path):
    """The official rule: an alias line only when each item has an alias in its drawn language (p = 0.5 each)."""
    entities = [entity("Q1", {"en": "Q1-en", "de": "Q1-de"}, {"en": ["Q1 en alias"]}),
                entity("P1", {"en": "P1-en", "de": "P1-de"}, {"en": ["P1 en alias"], "de": ["P1 de alias"]}),
                entity("Q2", {"en": "Q2-en", "de": "Q2-de"}, {"de": ["Q2 de alias"]})]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2")] * 800)
    rows, counts, _ = run_sentences(tables, tmp_path, languages=("en", "de"), variants=0)
    # kept only when Q1 stays English and Q2 switches to German: p = 1/4
    assert abs(len(rows) / 800 - 0.25) < binomial_tolerance(800, 0.25)
    assert counts["en-de alias"] == len(rows)
    assert counts["en-de alias: dropped, an item has no alias in its language"] == 800 - len(rows)
    assert {(s["text"], s["lang"]) for r in rows for s in (r["spans"][0], r["spans"][2])} == {
        ("Q1 en alias", "en"), ("Q2 de alias", "de")}
    relation = Counter(r["spans"][1]["lang"] for r in rows)
    assert abs(relation["de"] / len(rows) - 0.5) < binomial_tolerance(len(rows))
    assert not any(s["text"].endswith(("-en", "-de")) for r in rows for s in r["spans"])  # never a label


def span_languages(rows, variant):
    """{(lang_pair, triple_index, variant number): the languages of its head, relation, tail}."""
    out, number = {}, Counter()
    for r in rows:
        if r["variant"] == variant:
            key = (r["lang_pair"], r["triple_index"])
            out[(*key, number[key])] = tuple(s["lang"] for s in r["spans"])
            number[key] += 1
    return out


@pytest.fixture
def aliased_triples(tmp_path):
    """300 triples over entities with a label and an alias (not equal to it) in every language."""
    entities = [entity(e, {lang: f"{e}-{lang}" for lang in LANGS}, {lang: [f"{e} alias {lang}"] for lang in LANGS})
                for e in [f"Q{i}" for i in range(7)] + ["P1", "P2"]]
    triples = [(f"Q{i % 7}", f"P{1 + i % 2}", f"Q{(i + 2) % 7}") for i in range(300)]
    return write_tables(tmp_path / "tables", entities, triples)


def test_sentences_alias_sample_reuses_the_codeswitch_language_draw(aliased_triples, tmp_path):
    """--alias-draw codeswitch (the official dump_by_id.py: both lines from one ``np.random.choice``): the alias
    sample number k has the languages of the code-switched sample number k, even when that one is not written."""
    rows, _, _ = run_sentences(aliased_triples, tmp_path, variants=2, alias_variants=2, name="same")
    codeswitch, alias = span_languages(rows, CODESWITCH), span_languages(rows, ALIAS)
    assert len(alias) == len(codeswitch) == 2 * 2 * 300 and alias == codeswitch
    assert Counter(lang for langs in alias.values() for lang in langs)["en"] not in (0, 3 * len(alias))
    # without code-switched samples, alias sample k still takes code-switched sample k's draw
    alone, _, _ = run_sentences(aliased_triples, tmp_path, variants=0, alias_variants=2, name="alone")
    assert span_languages(alone, ALIAS) == codeswitch
    # --alias-draw independent: a new draw per item, so the two samples agree on an item half the time
    rows, _, _ = run_sentences(aliased_triples, tmp_path, variants=2, alias_variants=2, alias_draw="independent",
                               name="independent")
    codeswitch, alias = span_languages(rows, CODESWITCH), span_languages(rows, ALIAS)
    same = [a == c for key in alias for a, c in zip(alias[key], codeswitch[key])]
    assert abs(sum(same) / len(same) - 0.5) < binomial_tolerance(len(same))
    assert span_languages(rows, CODESWITCH) == span_languages(alone, ALIAS)  # code-switched draws unchanged


def test_sentences_missing_label_in_the_drawn_language(tmp_path):
    """Q2 has no German label (it has a German alias). --missing-label english (default): Q2 keeps its English
    label. --missing-label drop (the official code): a code-switched sample where Q2 drew German is dropped, p = 1/2,
    and with the shared draw its alias sample goes with it; counted per language pair (French loses nothing)."""
    names = {lang: f"Q2-{lang}" for lang in ("en", "fr")}
    entities = [labelled("Q1"), labelled("P1"),
                entity("Q2", names, {"en": ["Q2 alias en"], "de": ["Q2 alias de"], "fr": ["Q2 alias fr"]})]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2")] * 600)

    rows, counts, _ = run_sentences(tables, tmp_path, name="english")
    de = [r for r in rows if r["lang_pair"] == "en-de" and r["variant"] == CODESWITCH]
    assert len(de) == 600 and {r["spans"][2]["text"] for r in de} == {"Q2-en"}
    assert not any("label" in key for key in counts)
    kept_alias_de = {r["triple_index"] for r in rows if r["lang_pair"] == "en-de" and r["variant"] == ALIAS}

    rows, counts, _ = run_sentences(tables, tmp_path, missing_label="drop", name="drop")
    de = [r for r in rows if r["lang_pair"] == "en-de"]
    codeswitch = {r["triple_index"] for r in de if r["variant"] == CODESWITCH}
    alias = {r["triple_index"] for r in de if r["variant"] == ALIAS}
    assert abs(len(codeswitch) / 600 - 0.5) < binomial_tolerance(600)
    assert counts["en-de codeswitch: dropped, an item has no label in its drawn language"] == 600 - len(codeswitch)
    assert all(r["spans"][2]["lang"] == "en" for r in de)
    assert alias == kept_alias_de & codeswitch  # the same draws as the default run, less the dropped triples
    assert counts["en-de alias: dropped with its code-switched sample, an item has no label in its drawn language"] \
        == 600 - len(codeswitch)
    assert counts["en-fr codeswitch"] == 600 and not any(key.startswith("en-fr") and "dropped" in key for key in counts)

    # with an independent alias draw only the code-switched samples are dropped
    rows, counts, _ = run_sentences(tables, tmp_path, missing_label="drop", alias_draw="independent", name="indep")
    assert counts["en-de alias"] == 600 and not any("with its code-switched" in key for key in counts)
    assert counts["en-de codeswitch: dropped, an item has no label in its drawn language"] > 0


def test_sentences_alias_falls_back_to_label(tmp_path):
    """--alias-missing label (the rule before issue 14): an item without an alias takes its label."""
    entities = [entity("Q1", {"en": "Q1-en", "de": "Q1-de"}), entity("Q2", {"en": "Q2-en"}, {"de": ["Q2 alias"]}),
                entity("P1", {"en": "P1-en"}, {"en": ["P1 alias"]})]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2")] * 200)
    rows, counts, _ = run_sentences(tables, tmp_path, languages=("en", "de"), variants=0, alias_missing="label")
    assert len(rows) == 200 and not any("dropped" in key for key in counts)
    texts = [Counter((s["text"], s["lang"]) for r in rows for s in [r["spans"][i]]) for i in range(3)]
    assert set(texts[0]) == {("Q1-en", "en"), ("Q1-de", "de")}  # no aliases at all: labels
    assert set(texts[1]) == {("P1 alias", "en")}  # nothing in German: never switches
    assert set(texts[2]) == {("Q2-en", "en"), ("Q2 alias", "de")}  # German alias without a German label


def test_sentences_skip_triples_without_english_label_and_count(tmp_path):
    entities = [labelled("Q1"), labelled("Q2"), labelled("P1"), entity("Q3", {"de": "nur deutsch"}),
                entity("P2", {"fr": "seulement"})]
    triples = [("Q1", "P1", "Q2"), ("Q3", "P1", "Q2"), ("Q1", "P2", "Q2"), ("Q1", "P1", "Q9"), ("Q3", "P1", "Q9")]
    tables = write_tables(tmp_path / "tables", entities, triples)
    rows, counts, _ = run_sentences(tables, tmp_path)
    assert {r["triple_index"] for r in rows} == {0}
    assert counts["triples read"] == 5 and counts["triples used"] == 1
    assert counts["triples skipped: head has no English label"] == 2  # the head fails first in triple 4
    assert counts["triples skipped: relation has no English label"] == 1
    assert counts["triples skipped: tail not in entities.parquet"] == 1


def test_sentences_count_mentions_per_variant_and_span_language(tmp_path):
    entities = [labelled("Q1"), labelled("Q2", ("en", "de")), labelled("Q3", ("en",), {"fr": ["trois"]}),
                labelled("P1"), labelled("P2", ("en", "fr"))]
    triples = [("Q1", "P1", "Q2"), ("Q2", "P2", "Q3"), ("Q3", "P1", "Q1"), ("Q1", "P2", "Q3")] * 5
    rows, counts, _ = run_sentences(write_tables(tmp_path / "tables", entities, triples), tmp_path, variants=2)
    spans = Counter(f"{r['lang_pair']} {r['variant']} mentions in {s['lang']}"
                    for r in rows for s in r["spans"])
    assert {name: n for name, n in counts.items() if " mentions in " in name and n} == spans
    assert all(spans[f"en-{lang} {variant} mentions in {lang}"] for lang in ("de", "fr") for variant in VARIANTS)


def test_sentences_skip_pairs_with_nothing_in_the_language(tmp_path):
    entities = [labelled("Q1", ("en", "de")), labelled("Q2", ("en", "de")), labelled("P1", ("en", "de"))]
    tables = write_tables(tmp_path / "tables", entities, [("Q1", "P1", "Q2")] * 3)
    rows, counts, _ = run_sentences(tables, tmp_path)
    assert {r["lang_pair"] for r in rows} == {"en-de"}
    assert counts["en-fr codeswitch: skipped, no item has anything in fr"] == 3
    assert counts["en-fr alias: skipped, no item has anything in fr"] == 3


def test_sentences_same_seed_byte_identical_for_any_chunking(many_triples, tmp_path, monkeypatch):
    monkeypatch.setattr(io, "ROWS_PER_GROUP", 128)
    _, _, reference = run_sentences(many_triples, tmp_path, variants=2, name="a")
    for chunk_size in (1, 7, 1000):
        _, _, again = run_sentences(many_triples, tmp_path, variants=2, chunk_size=chunk_size, name=f"c{chunk_size}")
        assert again.read_bytes() == reference.read_bytes(), chunk_size
    assert pq.ParquetFile(reference).metadata.row_group(0).num_rows == 128
    _, _, other_seed = run_sentences(many_triples, tmp_path, variants=2, seed=2, name="seed2")
    assert pq.read_table(other_seed) != pq.read_table(reference)


def test_sentences_subsample_triples(many_triples, tmp_path):
    rows, counts, _ = run_sentences(many_triples, tmp_path, name="max", max_triples=25)
    assert len({r["triple_index"] for r in rows}) == 25 and counts["triples not sampled"] == 575
    # the same triples whatever the chunking
    rows_chunked, _, _ = run_sentences(many_triples, tmp_path, name="max7", max_triples=25, chunk_size=7)
    assert rows_chunked == rows
    rows, _, _ = run_sentences(many_triples, tmp_path, name="fraction", sample_fraction=0.3)
    kept = len({r["triple_index"] for r in rows})
    assert abs(kept / 600 - 0.3) < binomial_tolerance(600, 0.3)


def test_sentences_require_english_and_another_language(many_triples, tmp_path):
    with pytest.raises(UserFacingError, match="must include 'en'"):
        run_sentences(many_triples, tmp_path, languages=("de", "fr"))
    with pytest.raises(UserFacingError, match="no language besides English"):
        run_sentences(many_triples, tmp_path, languages=("en",))
    with pytest.raises(UserFacingError, match="no columns for language"):
        run_sentences(many_triples, tmp_path, languages=("en", "ja"))


def test_sentences_cli_on_ingested_sample(test_data, tmp_path):
    tables, out = tmp_path / "tables", tmp_path / "sentences"
    assert cli.main(["ingest", "--input", str(test_data / "opentapioca_sample_items.json.bz2"),
                     str(test_data / "wikibrain_2014_testdump.json.bz2"), "--output", str(tables)]) == 0
    assert cli.main(["sentences", "--input", str(tables), "--output", str(out), "--languages", "en,de,fr",
                     "--max-triples", "100", "--seed", "3"]) == 0
    table = pq.read_table(out / "sentences.parquet")
    assert table.schema == sentences.SENTENCES_SCHEMA
    triples = pq.read_table(tables / "triples.parquet").to_pylist()
    rows = table.to_pylist()
    assert len({r["triple_index"] for r in rows}) == 100
    assert {r["lang_pair"] for r in rows} == {"en-de", "en-fr"}
    for r in rows:
        triple = triples[r["triple_index"]]
        assert [s["id"] for s in r["spans"]] == [triple["head"], triple["relation"], triple["tail"]]
        assert all(s["text"] for s in r["spans"])
    # the official rules on real items (Korean lacks many labels): the code-switched samples kept are the default
    # run's, less the counted drops; an independent alias draw changes the alias samples only
    def run(name, *options):
        assert cli.main(["sentences", "--input", str(tables), "--output", str(tmp_path / name), "--languages",
                         "en,de,ko", *options]) == 0
        counts = json.loads((tmp_path / name / "sentences_summary.json").read_text())["counts"]
        return pq.read_table(tmp_path / name / "sentences.parquet").to_pylist(), counts

    def samples(rows, pair, variant):
        return [r for r in rows if r["lang_pair"] == pair and r["variant"] == variant]

    default, _ = run("default")
    dropped, counts = run("drop", "--missing-label", "drop")
    for pair in ("en-de", "en-ko"):
        kept = samples(dropped, pair, CODESWITCH)
        lost = counts.get(f"{pair} codeswitch: dropped, an item has no label in its drawn language", 0)
        assert all(r in samples(default, pair, CODESWITCH) for r in kept)
        assert len(kept) + lost == len(samples(default, pair, CODESWITCH)), pair
    assert counts["en-ko codeswitch: dropped, an item has no label in its drawn language"] > 0
    assert not any(key.startswith("en-de") and "no label" in key for key in counts)
    independent, _ = run("independent", "--alias-draw", "independent")
    assert samples(independent, "en-ko", CODESWITCH) == samples(default, "en-ko", CODESWITCH)
    assert samples(independent, "en-ko", ALIAS) != samples(default, "en-ko", ALIAS)
    assert cli.main(["sentences", "--input", str(tables), "--output", str(out), "--sample-triples", "1.5"]) == 2
