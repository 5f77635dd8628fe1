"""kmlm-eval fact-recall: used vs held-out triples of a data build, the valid split left out, xfactr's decoding."""
import csv
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from kmlm_eval import cli, fact_recall
from preprocess.core.binarized_output import valid_split_members
from preprocess.core.formats.heldout_triples import read_heldout_triples
from preprocess.core.tokenizers.dictionary import DICT_FILE
from preprocess.core.tokenizers.sentencepiece import SPM_FILE
from tests.conftest import run_stage
from tests.preprocess.test_binarize import match_rows, rows_by_language
from tests.preprocess.test_sentences import entity, write_tables

CITIES = {"Q1": ("Paris", "Paris"), "Q2": ("Berlin", "Berlin"), "Q3": ("Rome", "Rom"), "Q4": ("Madrid", "Madrid"),
          "Q5": ("Tokyo", "Tokio"), "Q6": ("Seoul", "Seoul"), "Q7": ("Beijing", "Peking"), "Q8": ("Warsaw", "Warschau")}
COUNTRIES = {"Q11": ("France", "Frankreich"), "Q12": ("Germany", "Deutschland"), "Q13": ("Italy", "Italien"),
             "Q14": ("Spain", "Spanien"), "Q15": ("Japan", "Japan"), "Q16": ("Korea", None), "Q17": ("China", "China"),
             "Q18": ("Poland", "Polen")}
RELATIONS = {"P1": ("capital of", "Hauptstadt von", "capitale de"), "P2": ("country", "Staat", "pays")}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """tables -> sentences in de and fr (30% of the pairs held out) -> spm -> binarize (a large valid split). Every
    item has an alias in en and fr, the countries none in de: a German alias sample is written only where the tail
    drew English, so the languages hold different samples of a triple."""
    root = tmp_path_factory.mktemp("build")
    entities = [entity(q, {"en": en, "de": de, "fr": en}, {"en": [f"{en} City"], "de": [f"Stadt {de}"],
                                                          "fr": [f"ville de {en}"]}) for q, (en, de) in CITIES.items()]
    entities += [entity(q, {"en": en, "de": de, "fr": en}, {"en": [f"the {en}"], "fr": [f"le {en}"]})
                 for q, (en, de) in COUNTRIES.items()]
    entities += [entity(p, dict(zip(("en", "de", "fr"), labels)), {lang: [f"{label}!"] for lang, label in
                                                                  zip(("en", "de", "fr"), labels)})
                 for p, labels in RELATIONS.items()]
    triples = [(c, "P1", k) for c, k in zip(CITIES, COUNTRIES)] + [(c, "P2", k) for c, k in zip(CITIES, COUNTRIES)]
    triples += [(c, "P2", k) for c, k in zip(list(CITIES)[1:], list(COUNTRIES)[:-1])]
    tables = write_tables(root / "tables", entities, triples)
    run_stage("sentences", "--input", tables, "--output", root / "sentences", "--languages", "en,de,fr",
              "--holdout-triples", 0.3, "--seed", 3)
    run_stage("spm", "-o", root / "data", "--sentences", root / "sentences", "--vocab-size", 120,
              "--character-coverage", 1.0)
    run_stage("binarize", "--sentences", root / "sentences", "-o", root / "data", "--valid-fraction", 0.3,
              "--workers", 1, "--seed", 3)
    return root, triples


@pytest.fixture(scope="module")
def fairseq_side(build):
    """fairseq's own dictionary and encoder of the build's tokenizer (test_binarize's independent reading)."""
    from fairseq.data import Dictionary
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    root, _ = build
    dictionary = Dictionary.load(str(root / "data" / DICT_FILE))
    mask = dictionary.add_symbol("<mask>")
    return dictionary, mask, SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(root / "data" / SPM_FILE)))


def test_used_triples_are_exactly_those_binarize_put_in_no_valid_split(build, fairseq_side):
    """Read back from the binarized files with fairseq's loader (test_binarize.match_rows): the triples with a
    sample in some language's valid split are those ``valid_split_members`` names, none of them has a sample in
    any language's train split, and fact recall's used triples are all the others the sentences rendered."""
    root, triples = build
    summary = json.loads((root / "data" / "knowledge" / "summary.json").read_text())
    rows = rows_by_language(root / "sentences" / "sentences.parquet")
    assert set(rows) == {"de", "fr"}
    splits, samples = defaultdict(set), defaultdict(Counter)
    for lang, lang_rows in rows.items():
        for row, split in zip(lang_rows, match_rows(lang_rows, root / "data" / "knowledge" / lang, fairseq_side)):
            splits[row["triple_index"]].add(split)
            samples[row["triple_index"]][lang] += 1
    valid = {t for t, found in splits.items() if "valid" in found}
    train = {t for t, found in splits.items() if "train" in found}
    assert valid and train and not valid & train
    assert any(len(set(samples[t].values())) > 1 for t in valid)  # the languages hold different samples of one
    rendered = sorted(splits)
    assert {rendered[i] for i in np.flatnonzero(valid_split_members(summary, rendered))} == valid
    used = set(fact_recall.used_triples(root / "sentences", root / "data").tolist())
    held = set(read_heldout_triples(root / "sentences").column("triple_index").to_pylist())
    assert used == train and held and not held & set(rendered) and held | set(rendered) == set(range(len(triples)))


def test_best_fills_match_an_independent_decoding(tiny_models):
    import transformers

    path = tiny_models[0]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForMaskedLM.from_pretrained(path).eval()
    templates = ["Paris <mask> capital of <mask> [Y] .", "Rom <mask> Hauptstadt von <mask> [Y] ."]
    got = fact_recall.best_fills(model, tokenizer, templates, max_masks=3, decoding="independent", batch_size=2)
    for template, prediction in zip(templates, got):
        best = None
        for m in range(1, 4):  # m masks for the tail; the two link masks stay masks and are not predicted
            ids = tokenizer(template.replace("[Y]", " ".join(["<mask>"] * m)), return_tensors="pt")["input_ids"]
            with torch.no_grad():  # no vocabulary restriction, as X-FACTR's probe.py
                logprobs = model(input_ids=ids).logits[0].log_softmax(-1)
            positions = (ids[0] == tokenizer.mask_token_id).nonzero().flatten()[2:]
            score, tokens = logprobs[positions].max(-1)
            if best is None or score.mean() > best[0]:
                best = (score.mean(), tokens.tolist())
        assert prediction == " ".join(tokenizer.decode(best[1], skip_special_tokens=True).casefold().split())


def test_tail_bits_match_an_independent_computation(tiny_models):
    import transformers

    path = tiny_models[0]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForMaskedLM.from_pretrained(path).eval()
    templates = ["Paris <mask> capital of <mask> [Y] .", "Rom <mask> Hauptstadt von <mask> [Y] ."]
    tails = ["France", "Italien Republik"]
    got = fact_recall.tail_bits(model, tokenizer, templates, tails, batch_size=2)
    for template, tail, bits in zip(templates, tails, got):
        head = tokenizer(template.split(" [Y]")[0], add_special_tokens=False)["input_ids"]
        tail_ids = tokenizer(" " + tail, add_special_tokens=False)["input_ids"]
        full = tokenizer(template.replace("[Y]", tail))["input_ids"]
        assert full[1:1 + len(head)] == head and full[1 + len(head):1 + len(head) + len(tail_ids)] == tail_ids
        masked = full[:1 + len(head)] + [tokenizer.mask_token_id] * len(tail_ids) + full[1 + len(head) + len(tail_ids):]
        with torch.no_grad():
            logprobs = model(input_ids=torch.tensor([masked])).logits[0].log_softmax(-1)
        expected = -np.mean([logprobs[1 + len(head) + i, t].item() for i, t in enumerate(tail_ids)]) / np.log(2)
        assert bits == pytest.approx(expected, rel=1e-5)


def test_fact_recall_scores_used_and_held_out_per_language(build, tiny_models, tmp_path, monkeypatch):
    root, triples = build
    out = tmp_path / "out"
    args = ["fact-recall", "--model", f"tiny={tiny_models[0]}", "--tables", str(root / "tables"), "--sentences",
            str(root / "sentences"), "--data", str(root / "data"), "--output", str(out), "--max-masks", "2",
            "--languages", "en,de"]
    assert cli.main(args) == 0
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    held = read_heldout_triples(root / "sentences").column("triple_index").to_pylist()
    used = fact_recall.used_triples(root / "sentences", root / "data").tolist()
    korea = {i for i, (_, _, tail) in enumerate(triples) if tail == "Q16"}  # no German label: not probed in de
    expected = {("used top-1", "en"): len(used), ("used top-1", "de"): len(set(used) - korea),
                ("held-out top-1", "en"): len(held), ("held-out top-1", "de"): len(set(held) - korea)}
    counts = {(r["metric"], r["lang"]): int(r["count"]) for r in rows if r["lang"] != "avg"}
    assert counts == {**expected, **{(m.replace("top-1", "tail bits"), lang): n for (m, lang), n in expected.items()}}

    # the scoring rule: right iff the normalised prediction is the tail's label (or alias) in the language; an
    # oracle answers the capital-of queries (one tail per head) in odd case and spacing, and the others wrongly
    capital = {(CITIES[c][i], lang): COUNTRIES[k][i] for c, k in zip(CITIES, COUNTRIES)
               for i, lang in enumerate(("en", "de"))}

    def oracle(model, tokenizer, templates, *decoding_options):
        lang = "de" if "Hauptstadt" in templates[0] or "Staat" in templates[0] else "en"
        return [f"  {capital[(t.split(' <mask>')[0], lang)].upper()} " if ("capital" in t or "Hauptstadt" in t)
                else "nothing" for t in templates]

    monkeypatch.setattr(fact_recall, "best_fills", oracle)
    assert cli.main(args) == 0
    scores = {(r["metric"], r["lang"]): float(r["value"]) for r in csv.DictReader(open(out / "results.csv"))}
    for (metric, lang), count in expected.items():
        split = used if metric.startswith("used") else held
        probed = [i for i in split if lang == "en" or i not in korea]
        right = sum(triples[i][1] == "P1" for i in probed)
        assert scores[(metric, lang)] == pytest.approx(100.0 * right / len(probed), abs=1e-4)  # csv: 4 decimals
    assert 0 < scores[("used top-1", "en")] < 100


def test_fact_recall_needs_the_valid_threshold(build, tiny_models, tmp_path, caplog):
    root, _ = build
    data = tmp_path / "data" / "knowledge"
    data.mkdir(parents=True)
    summary = json.loads((root / "data" / "knowledge" / "summary.json").read_text())
    del summary["valid_threshold"]
    (data / "summary.json").write_text(json.dumps(summary))
    assert cli.main(["fact-recall", "--model", str(tiny_models[0]), "--tables", str(root / "tables"), "--sentences",
                     str(root / "sentences"), "--data", str(tmp_path / "data"), "--output", str(tmp_path / "o")]) == 2
    assert "has no valid_threshold: re-run binarize" in caplog.text


@pytest.mark.parametrize("content, message", [(None, "does not exist: pass the binarized DATA directory"),
                                              ("{not json", "is not binarize's JSON summary")])
def test_fact_recall_names_a_missing_or_broken_binarize_summary(build, tmp_path, content, message):
    root, _ = build
    data = tmp_path / "data" / "knowledge"
    data.mkdir(parents=True)
    if content is not None:
        (data / "summary.json").write_text(content)
    with pytest.raises(fact_recall.UserFacingError, match=message) as caught:
        fact_recall.used_triples(root / "sentences", tmp_path / "data")
    assert str(data / "summary.json") in str(caught.value)
