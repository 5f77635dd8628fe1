"""`kmlm-preprocess binarize`: real knowledge/reasoning samples -> fairseq datasets + span tags, decoded back."""
import json
import math
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.tokenizers.dictionary import DICT_FILE
from preprocess.core.tokenizers.sentencepiece import SPM_FILE
from tests.conftest import build_real_binarized, run_stage

LANGUAGES = "en,de,ja"
SPAN = pa.struct([("text", pa.string()), ("role", pa.string()), ("id", pa.string()), ("sentence", pa.int32()),
                  ("lang", pa.string())])
SENTENCES_SCHEMA = pa.schema([("spans", pa.list_(SPAN)), ("triple_index", pa.int64()), ("variant", pa.string()),
                              ("lang_pair", pa.string())])
REASONING_SCHEMA = pa.schema([("spans", pa.list_(SPAN)), ("cycle_id", pa.int64()), ("kind", pa.string()),
                              ("lang", pa.string())])


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Samples made by the real stages from the bundled Wikidata dumps, a tokenizer trained on them, and one
    binarization with the defaults (except a larger valid fraction, so that every language has a valid split)."""
    root = tmp_path_factory.mktemp("real")
    build_real_binarized(root, LANGUAGES.split(","))
    return root


def binarize(real, data, *options):
    for name in (SPM_FILE, DICT_FILE):
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_bytes((real / "DATA" / name).read_bytes())
    run_stage("binarize", "--sentences", real / "sentences", "--reasoning", real / "reasoning", "-o", data,
              "--workers", 1, *options)
    return data


@pytest.fixture(scope="module")
def fairseq_side(real):
    """fairseq's own dictionary (+ <mask> as masked_lm adds it) and XLM-R encoder, independent of our tokenizer."""
    from fairseq.data import Dictionary
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    dictionary = Dictionary.load(str(real / "DATA" / DICT_FILE))
    mask = dictionary.add_symbol("<mask>")
    bpe = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(real / "DATA" / SPM_FILE)))
    return dictionary, mask, bpe


def load_split(directory, split, dictionary):
    """[(tokens, tags)] of all shards of a split, read with fairseq's loader."""
    from fairseq.data import data_utils

    samples, k = [], 0
    while (Path(directory) / f"{split}{k or ''}.idx").exists():
        prefix = str(Path(directory) / f"{split}{k or ''}")
        tokens = data_utils.load_indexed_dataset(prefix, dictionary)
        tags = data_utils.load_indexed_dataset(prefix + ".tags", None)
        assert len(tokens) == len(tags) and np.array_equal(tokens.sizes, tags.sizes)
        samples += [(tokens[i].tolist(), tags[i].tolist()) for i in range(len(tokens))]
        k += 1
    return samples


def expected_sample(spans, fairseq_side):
    """The stored sample of a row, built independently: fairseq's encoder per mention, span_tags.pack_tags."""
    from preprocess.core.span_tags import HEAD, LINK, PUNCT, RELATION, SPECIAL, TAIL, pack_tags

    dictionary, mask, bpe = fairseq_side

    def encode(text):
        return dictionary.encode_line(bpe.encode(text), append_eos=False, add_if_not_exist=False).tolist()

    roles = {"head": HEAD, "relation": RELATION, "tail": TAIL}
    entities, tokens, tags = {}, [], []
    for index, span in enumerate(spans):
        ids = encode(" " + span["text"])
        entity = entities.setdefault(span["id"], len(entities))
        tokens += ids
        tags += [int(pack_tags(roles[span["role"]], span["sentence"], index, entity))] * len(ids)
        suffix = encode(" .") if span["role"] == "tail" else [mask]
        tokens += suffix
        tags += [int(pack_tags(PUNCT if span["role"] == "tail" else LINK))] * len(suffix)
    return tokens + [dictionary.eos()], tags + [int(pack_tags(SPECIAL))]


def output_language(row):
    return row["lang_pair"].split("-")[1] if "lang_pair" in row else row["lang"]


def match_rows(rows, directory, fairseq_side, max_length=128, expected=None):
    """Walk the rows of one output language in order: each is the next train sample, the next valid sample, or
    over-long; returns the split of each row (None: dropped) after checking that every sample was matched.
    ``expected``: the rows' expected_sample, when already computed."""
    train, valid = (load_split(directory, split, fairseq_side[0]) for split in ("train", "valid"))
    at, splits = {"train": 0, "valid": 0}, []
    for index, row in enumerate(rows):
        sample = expected[index] if expected else expected_sample(row["spans"], fairseq_side)
        if len(sample[0]) + 1 > max_length:
            splits.append(None)
            continue
        for split, samples in (("train", train), ("valid", valid)):
            if at[split] < len(samples) and samples[at[split]] == sample:
                at[split] += 1
                splits.append(split)
                break
        else:
            raise AssertionError(f"row {row} is neither the next train nor the next valid sample of {directory}")
    assert (at["train"], at["valid"]) == (len(train), len(valid))
    return splits


def rows_by_language(path):
    grouped = defaultdict(list)
    for row in pq.read_table(path).to_pylist():
        grouped[output_language(row)].append(row)
    return grouped


def normalized(text):
    return " ".join(unicodedata.normalize("NFKC", text).split())


def decode_spans(tokens, tags, fairseq_side):
    """(role name, sentence, text) per mention, read back from the tags alone."""
    from preprocess.core.span_tags import MENTION_ROLES, ROLE_NAMES, tag_role, tag_sentence, tag_span

    dictionary, _, bpe = fairseq_side
    tags = np.array(tags)
    spans = []
    for span in np.unique(tag_span(tags)[np.isin(tag_role(tags), MENTION_ROLES)]):
        where = np.isin(tag_role(tags), MENTION_ROLES) & (tag_span(tags) == span)
        assert np.all(np.diff(np.flatnonzero(where)) == 1), "a mention's tokens must be contiguous"
        text = bpe.decode(dictionary.string(np.array(tokens)[where]))
        spans.append((ROLE_NAMES[tag_role(tags)[where][0]], int(tag_sentence(tags)[where][0]), text))
    return spans


# --- Round trips on real data ----------------------------------------------------------------------------------
def test_binarize_knowledge_round_trip_real_data(real, fairseq_side):
    rows = rows_by_language(real / "sentences" / "sentences.parquet")
    assert sorted(rows) == ["de", "ja"]
    for lang, lang_rows in rows.items():
        splits = match_rows(lang_rows, real / "DATA" / "knowledge" / lang, fairseq_side)
        assert splits.count("train") > 0 and splits.count("valid") > 0
    # decode one sample back to its text and spans with the tags alone
    tokens, tags = load_split(real / "DATA" / "knowledge" / "de", "train", fairseq_side[0])[0]
    first = rows["de"][0]["spans"]
    assert decode_spans(tokens, tags, fairseq_side) == [(s["role"], 0, normalized(s["text"])) for s in first]
    assert fairseq_side[0].string(tokens).count("<mask>") == 2


def test_binarize_reasoning_round_trip_real_data(real, fairseq_side):
    from preprocess.core.span_tags import HEAD, TAIL, tag_entity, tag_role, tag_sentence, tag_span

    rows = rows_by_language(real / "reasoning" / "reasoning.parquet")
    assert sorted(rows) == ["de", "en", "ja"]
    for lang, lang_rows in rows.items():
        splits = match_rows(lang_rows, real / "DATA" / "reasoning" / lang, fairseq_side)
        kept = [row for row, split in zip(lang_rows, splits) if split is not None]
        assert {row["kind"] for row in kept} == {"triangle", "diamond"}
    samples = load_split(real / "DATA" / "reasoning" / "en", "train", fairseq_side[0])
    for tokens, tags in samples[:50]:
        tags = np.array(tags)
        n_sentences = int(tag_sentence(tags).max()) + 1
        assert n_sentences in (3, 5)
        decoded = decode_spans(tokens, tags, fairseq_side)
        assert [role for role, _, _ in decoded] == ["head", "relation", "tail"] * n_sentences
        # a cycle: each entity is mentioned twice, a diamond's diagonal ends three times, under one entity index
        mentions = defaultdict(set)
        for role, span, entity in zip(tag_role(tags), tag_span(tags), tag_entity(tags)):
            if role in (HEAD, TAIL):
                mentions[entity].add(span)
        assert sorted(map(len, mentions.values())) == ([2, 2, 2] if n_sentences == 3 else [2, 2, 3, 3])
    by_text = {normalized(s["text"]) for row in rows["en"] for s in row["spans"]}
    assert all(text in by_text for tokens, tags in samples[:20] for _, _, text in decode_spans(tokens, tags,
                                                                                                fairseq_side))


def test_binarize_valid_split_holds_out_whole_groups_in_every_language(real, fairseq_side, tmp_path):
    """A group (a triple with all its variants; a cycle) is never valid in one language and train in another,
    though the languages hold different samples per group (alias samples dropped per language, cycles without
    labels in some language); no split exceeds its target, and the language that binds reaches it but for the part
    of a group. Several fractions and seeds: per-language thresholds mix the splits in some of them, not all."""
    sentences_counts = json.loads((real / "sentences" / "sentences_summary.json").read_text())["counts"]
    assert all(sentences_counts[f"en-{lang} alias: dropped, an item has no alias in its language"] > 0
               for lang in ("de", "ja"))
    kinds = {"knowledge": ("sentences/sentences.parquet", "triple_index"),
             "reasoning": ("reasoning/reasoning.parquet", "cycle_id")}
    rows = {kind: rows_by_language(real / path) for kind, (path, _) in kinds.items()}
    expected = {kind: {lang: [expected_sample(row["spans"], fairseq_side) for row in lang_rows]
                       for lang, lang_rows in rows[kind].items()} for kind in kinds}
    runs = [(real / "DATA", 0.05)] + [
        (binarize(real, tmp_path / f"seed{seed}", "--valid-fraction", fraction, "--seed", seed), fraction)
        for fraction, seed in ((0.1, 1), (0.2, 2), (0.3, 3))]
    for data, fraction in runs:
        for kind, (_, key) in kinds.items():
            summary = json.loads((data / kind / "summary.json").read_text())
            split_of_group, samples_of_group, shortfalls = defaultdict(set), defaultdict(Counter), []
            for lang, lang_rows in rows[kind].items():
                splits = match_rows(lang_rows, data / kind / lang, fairseq_side, expected=expected[kind][lang])
                for row, split in zip(lang_rows, splits):
                    split_of_group[row[key]].add(split)
                    samples_of_group[row[key]][lang] += 1
                n_valid, target = splits.count("valid"), round(fraction * len(lang_rows))
                assert n_valid == summary["datasets"][f"{lang}/valid"]["samples"]
                assert 0 < n_valid <= target, (data, kind, lang)
                shortfalls.append(target - n_valid)
            assert all(len(splits - {None}) == 1 for splits in split_of_group.values()), (data, kind)
            assert min(shortfalls) < max(max(n.values()) for n in samples_of_group.values()), (data, kind)
            held_out = [g for g, splits in split_of_group.items() if splits == {"valid"}]
            assert len(held_out) > 5, (data, kind)
            if kind == "knowledge":  # the languages differ in held-out triples: not in all, or fewer samples
                assert any(len(samples_of_group[g]) < len(rows[kind]) or len(set(samples_of_group[g].values())) > 1
                           for g in held_out)


def test_held_out_threshold_is_one_for_all_languages_and_fits_every_target():
    """Hand-computed: the held-out groups are those of hash below one threshold, the largest that keeps every
    language within round(fraction x samples) (at most valid_max, samples - 1), at least one group."""
    from preprocess.core.binarized_output import HeldOutPlanner

    def shared(fraction, valid_max, **hashes):
        planner = HeldOutPlanner(fraction, valid_max)
        for name, values in hashes.items():
            planner.add(name, np.array(values, dtype=np.uint64))
        return planner.shared_threshold()

    # de: target min(3, round(3), 5) = 3 -> below 40; ja: target 2, group 10 has 2 samples -> below 20
    assert shared(0.5, 3, de=[60, 10, 50, 20, 40, 30], ja=[30, 10, 20, 10]) == 20
    # a language of one sample sets no bound (it cannot have both splits)
    assert shared(0.5, 3, de=[60, 10, 50, 20, 40, 30], ja=[30, 10, 20, 10], xx=[5]) == 20
    # ja's first group (3 samples) crosses its target of 2: it is held out whole, as the only group
    assert shared(0.5, 3, de=[60, 10, 50, 20, 40, 30], ja=[7, 7, 7, 90]) == 8
    assert shared(0, 3, de=[60, 10, 50]) == 0 and shared(0.5, 0, de=[60, 10, 50]) == 0


def test_binarize_valid_size_is_capped_and_follows_the_seed(real, tmp_path):
    def valid_sizes(data):
        summary = json.loads((data / "knowledge" / "summary.json").read_text())
        return {k: v["samples"] for k, v in summary["datasets"].items() if k.endswith("valid")}

    a = binarize(real, tmp_path / "a", "--valid-fraction", "0.5", "--valid-max", "7", "--seed", "1")
    b = binarize(real, tmp_path / "b", "--valid-fraction", "0.5", "--valid-max", "7", "--seed", "2")
    assert all(5 <= n <= 7 for n in valid_sizes(a).values()) and valid_sizes(a).keys() == {"de/valid", "ja/valid"}
    assert (a / "knowledge/de/valid.bin").read_bytes() != (b / "knowledge/de/valid.bin").read_bytes()
    none = binarize(real, tmp_path / "none", "--valid-fraction", "0")
    assert not list((none / "knowledge" / "de").glob("valid*"))


# --- Determinism, workers, shards, parts ------------------------------------------------------------------------
def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != "summary.json"}


def test_binarize_is_byte_identical_across_runs_workers_and_chunks(real, tmp_path):
    one = binarize(real, tmp_path / "one", "--chunk-size", "700")
    two = binarize(real, tmp_path / "two", "--chunk-size", "333", "--workers", "2")
    again = binarize(real, tmp_path / "again", "--chunk-size", "700")
    assert tree_bytes(one) == tree_bytes(two) == tree_bytes(again)
    assert len([name for name in tree_bytes(one) if name.endswith(".bin")]) == 2 * (2 * 2 + 3 * 2)


def test_binarize_language_subset_with_chunks_holding_none_of_it(real, tmp_path, fairseq_side, caplog):
    """sentences.parquet is grouped by language pair, so at scale whole chunks hold no selected language."""
    full = binarize(real, tmp_path / "full")
    small_chunks = binarize(real, tmp_path / "small", "--languages", "ja", "--chunk-size", "50")
    assert tree_bytes(small_chunks) == tree_bytes(binarize(real, tmp_path / "large", "--languages", "ja"))
    for kind in ("knowledge", "reasoning"):
        assert sorted(p.name for p in (small_chunks / kind).iterdir() if p.is_dir()) == ["ja"]
        assert load_split(small_chunks / kind / "ja", "train", fairseq_side[0]) == \
            load_split(full / kind / "ja", "train", fairseq_side[0])
    # languages binarized in separate runs are split as in one run (the held-out groups are chosen over all)
    de_alone = binarize(real, tmp_path / "de", "--languages", "de")
    for split in ("train", "valid"):
        assert load_split(de_alone / "knowledge" / "de", split, fairseq_side[0]) == \
            load_split(full / "knowledge" / "de", split, fairseq_side[0])
    caplog.clear()
    binarize(real, tmp_path / "en", "--languages", "en")  # knowledge sentences never have English as output
    assert [r.levelname for r in caplog.records if "knowledge: read" in r.getMessage()] == ["WARNING"]
    assert "wrote nothing" in caplog.text


def test_binarize_shards_and_slurm_parts_gather_to_the_single_run(real, tmp_path, fairseq_side):
    single = binarize(real, tmp_path / "single")
    sharded = binarize(real, tmp_path / "sharded", "--shard-size", "150")
    de_train = json.loads((single / "knowledge" / "summary.json").read_text())["datasets"]["de/train"]["samples"]
    last = math.ceil(de_train / 150) - 1
    assert last >= 2 and (sharded / "knowledge" / "de" / f"train{last}.tags.bin").exists()
    assert not (sharded / "knowledge" / "de" / f"train{last + 1}.bin").exists()
    parts = tmp_path / "parts"
    for index in range(3):
        binarize(real, parts, "--part", f"{index}/3", "--chunk-size", "500")
    run_stage("binarize", "--gather", "-o", parts)
    assert not (parts / "knowledge" / "parts").exists()
    for kind, langs in (("knowledge", ("de", "ja")), ("reasoning", ("de", "en", "ja"))):
        for lang in langs:
            for split in ("train", "valid"):
                reference = load_split(single / kind / lang, split, fairseq_side[0])
                assert reference
                assert load_split(sharded / kind / lang, split, fairseq_side[0]) == reference
                assert load_split(parts / kind / lang, split, fairseq_side[0]) == reference
    gathered = json.loads((parts / "reasoning" / "summary.json").read_text())
    alone = json.loads((single / "reasoning" / "summary.json").read_text())
    assert gathered["counts"] == alone["counts"]
    for kind in ("knowledge", "reasoning"):  # what fact recall reads back to tell the valid split's triples
        gathered, alone = (json.loads((data / kind / "summary.json").read_text()) for data in (parts, single))
        assert (gathered["kind"], gathered["valid_threshold"]) == (kind, alone["valid_threshold"])
        assert gathered["settings"]["seed"] == alone["settings"]["seed"]


def test_binarize_rerun_removes_stale_shards(real, tmp_path):
    data = binarize(real, tmp_path / "data", "--shard-size", "100")
    assert (data / "knowledge" / "de" / "train3.bin").exists()
    binarize(real, data)
    assert sorted(p.name for p in (data / "knowledge" / "de").iterdir()) == [
        f"{split}{suffix}.{ext}" for split in ("train", "valid") for suffix in ("", ".tags") for ext in ("bin", "idx")]


# --- Length cutting and drops, on hand-made samples --------------------------------------------------------------
def spans(*sentences, lang="en"):
    return [{"text": text, "role": role, "id": entity, "sentence": s, "lang": lang}
            for s, sentence in enumerate(sentences)
            for (text, entity), role in zip(sentence, ("head", "relation", "tail"))]


BELGIUM, GERMANY, FRANCE = ("Belgium", "Q31"), ("Germany", "Q183"), ("France", "Q142")
BORDER = ("shares border with", "P47")
TRIANGLE = ((BELGIUM, BORDER, GERMANY), (GERMANY, BORDER, FRANCE), (FRANCE, BORDER, BELGIUM))
DIAMOND = TRIANGLE[:2] + (((FRANCE, BORDER, ("Luxembourg", "Q32"))), (("Luxembourg", "Q32"), BORDER, BELGIUM),
                          (GERMANY, BORDER, ("Luxembourg", "Q32")))


def write_samples(tmp_path, knowledge, reasoning):
    sentences = tmp_path / "hand" / "sentences.parquet"
    sentences.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(knowledge, SENTENCES_SCHEMA), sentences)
    cycles = tmp_path / "hand" / "reasoning.parquet"
    pq.write_table(pa.Table.from_pylist(reasoning, REASONING_SCHEMA), cycles)
    return sentences, cycles


def test_binarize_drops_over_long_samples_whole_and_counts_them(real, tmp_path, fairseq_side):
    long_name = ("Belgium " * 100).strip(), "Q31"
    knowledge = [
        {"spans": spans(TRIANGLE[0], lang="de"), "triple_index": 0, "variant": "codeswitch", "lang_pair": "en-de"},
        {"spans": spans((long_name, BORDER, GERMANY)), "triple_index": 1, "variant": "codeswitch",
         "lang_pair": "en-de"},
    ]
    long_diamond = DIAMOND[:4] + ((GERMANY, BORDER, long_name),)
    reasoning = [
        {"spans": spans(*TRIANGLE), "cycle_id": 0, "kind": "triangle", "lang": "en"},
        {"spans": spans(*DIAMOND), "cycle_id": 1, "kind": "diamond", "lang": "en"},
        {"spans": spans(*long_diamond), "cycle_id": 2, "kind": "diamond", "lang": "en"},
        {"spans": spans(TRIANGLE[0], TRIANGLE[1], (FRANCE, BORDER, long_name)), "cycle_id": 3, "kind": "triangle",
         "lang": "en"},
    ]
    sentences, cycles = write_samples(tmp_path, knowledge, reasoning)
    # the limit is exactly the kept diamond's length: it stays, the longer ones go (<s> and </s> count)
    max_length = len(expected_sample(reasoning[1]["spans"], fairseq_side)[0]) + 1
    assert max_length < len(expected_sample(reasoning[2]["spans"], fairseq_side)[0]) + 1
    data = tmp_path / "DATA"
    run_stage("binarize", "--sentences", sentences, "--reasoning", cycles, "-o", data, "--spm-model",
              real / "DATA" / SPM_FILE, "--dict", real / "DATA" / DICT_FILE, "--workers", 1, "--max-length",
              max_length, "--valid-fraction", 0)
    counts = json.loads((data / "reasoning" / "summary.json").read_text())["counts"]
    assert counts["dropped: too long (diamond)"] == 1 and counts["dropped: too long (triangle)"] == 1
    assert counts["written train"] == 2
    kept = load_split(data / "reasoning" / "en", "train", fairseq_side[0])
    assert kept == [expected_sample(r["spans"], fairseq_side) for r in reasoning[:2]]
    knowledge_counts = json.loads((data / "knowledge" / "summary.json").read_text())["counts"]
    assert knowledge_counts["dropped: too long (knowledge sentence)"] == 1
    assert load_split(data / "knowledge" / "de", "train", fairseq_side[0]) == [
        expected_sample(knowledge[0]["spans"], fairseq_side)]


def test_binarize_counts_malformed_samples_and_bad_languages(real, tmp_path, fairseq_side, caplog):
    good = spans(TRIANGLE[0])
    swapped = [dict(s) for s in good]
    swapped[0]["role"], swapped[1]["role"] = "relation", "head"
    wrong_sentence = [dict(s, sentence=1) for s in good]
    null_text = [dict(s) for s in good]
    null_text[2]["text"] = None
    empty_text = [dict(s) for s in good]
    empty_text[1]["text"] = "  "

    def row(sample_spans, pair="en-de", index=0):
        return {"spans": sample_spans, "triple_index": index, "variant": "alias", "lang_pair": pair}

    knowledge = [row(good), row(swapped), row(wrong_sentence), row(null_text), row(empty_text), row(good, "de-fr"),
                 row(good, "en-en"), row(None), row(good, "en-ja", 1)]
    reasoning = [{"spans": spans(*TRIANGLE), "cycle_id": 0, "kind": "diamond", "lang": "en"},
                 {"spans": spans(*TRIANGLE), "cycle_id": 1, "kind": "triangle", "lang": None},
                 {"spans": spans(*TRIANGLE), "cycle_id": 2, "kind": "triangle", "lang": "en"}]
    sentences, cycles = write_samples(tmp_path, knowledge, reasoning)
    data = tmp_path / "DATA"
    run_stage("binarize", "--sentences", sentences, "--reasoning", cycles, "-o", data, "--tokenizer", real / "DATA",
              "--workers", 1, "--valid-fraction", 0, "--languages", "de,en")
    counts = json.loads((data / "knowledge" / "summary.json").read_text())["counts"]
    assert counts == {
        "samples read": 9, "written train": 1, "dropped: malformed spans": 4,
        "dropped: a mention tokenizes to nothing": 1, "dropped: no output language": 2,
        "skipped: language not in --languages": 1,
    }
    assert "row 1: (role, sentence) of its spans: [('relation', 0), ('head', 0), ('tail', 0)]" in caplog.text
    assert load_split(data / "knowledge" / "de", "train", fairseq_side[0]) == [expected_sample(good, fairseq_side)]
    assert not (data / "knowledge" / "ja").exists()
    counts = json.loads((data / "reasoning" / "summary.json").read_text())["counts"]
    assert counts["dropped: malformed spans"] == 1 and counts["written train"] == 1
    assert counts["dropped: no output language"] == 1


def test_binarize_without_inputs_or_tokenizer_is_a_clear_error(tmp_path, caplog):
    assert cli.main(["binarize", "-o", str(tmp_path)]) == 2
    assert "nothing to binarize" in caplog.text
    sentences, _ = write_samples(tmp_path, [], [])
    assert cli.main(["binarize", "--sentences", str(sentences), "-o", str(tmp_path / "DATA")]) == 2
    assert "no tokenizer" in caplog.text


def test_slurm_script_array_tasks_then_gather_equal_a_single_run(real, tmp_path, subprocess_env, repo_root):
    import subprocess

    text = tmp_path / "de.txt"
    text.write_text("\n".join(s["text"] for row in pq.read_table(real / "reasoning" / "reasoning.parquet").to_pylist()
                              for s in row["spans"]) + "\n", encoding="utf-8")
    script = repo_root / "run" / "slurm" / "binarize.sbatch"
    env = dict(subprocess_env, KMLM_ROOT=str(repo_root), SENTENCES=str(real / "sentences"), PLAIN=f"de={text}",
               REASONING=str(real / "reasoning" / "reasoning.parquet"), TOKENIZER=str(real / "DATA"),
               EXTRA_ARGS="--valid-fraction 0.05", SLURM_CPUS_PER_TASK="1")

    def submit(data, **task):
        subprocess.run(["bash", str(script)], env=dict(env, DATA=str(data), **task), check=True, timeout=300,
                       capture_output=True)

    submit(tmp_path / "single")
    for index in range(2):
        submit(tmp_path / "array", SLURM_ARRAY_TASK_ID=str(index), SLURM_ARRAY_TASK_COUNT="2")
    assert (tmp_path / "array" / "plain" / "parts" / "00001-of-00002" / "summary.json").exists()
    submit(tmp_path / "array", STEP="gather")

    single, array = tmp_path / "single", tmp_path / "array"
    assert not list(array.rglob("parts"))
    for kind, lang in (("knowledge", "de"), ("knowledge", "ja"), ("reasoning", "en"), ("plain", "de")):
        for split in ("train", "valid"):
            for suffix in ("", ".tags") if kind != "plain" else ("",):
                reference = all_shards(single / kind / lang, split, suffix)
                assert reference[0] and all_shards(array / kind / lang, split, suffix) == reference
    assert (single / "knowledge" / "de" / "train.bin").read_bytes() == (
        real / "DATA" / "knowledge" / "de" / "train.bin").read_bytes()


def all_shards(directory, split, suffix):
    """(sizes, tokens) of a split's shards concatenated, read without fairseq."""
    from preprocess.core.formats.indexed import read_indexed_dataset

    sizes, tokens, k = [], [], 0
    while (directory / f"{split}{k or ''}{suffix}.idx").exists():
        shard_sizes, shard_tokens = read_indexed_dataset(directory / f"{split}{k or ''}{suffix}")
        sizes += shard_sizes.tolist()
        tokens += shard_tokens.tolist()
        k += 1
    return sizes, tokens
