"""kmlm-eval xfactr: templates with inflection markup, multi-token decoding, accuracy against labels/aliases."""
import csv
import json

import pyarrow as pa
import pytest
import torch

from kmlm_eval import cli, xfactr
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.tables import entities_schema
from preprocess.core.io import write_parquet

PROMPTS = ("pid,relation,en,de\n"
           "P19,place of birth,[X] was born in [Y] .,[X] ist in [Y] [geboren;X-Gender=MASC|geborene;X-Gender=FEM] .\n"
           "P36,capital,The capital of [X] is [Y] .,\n")
FACTS = [("Q7186", "Marie Curie", "Q270", "Warsaw"), ("Q1", "Somebody", "Q90", "Paris"),
         ("Q2", "Nobody", "Q3", "Nowhere")]
NAMES = {"en": {"Q7186": ["Marie Curie"], "Q270": ["Warsaw"], "Q1": ["Somebody"], "Q90": ["Paris", "City of Light"],
                "Q2": ["Nobody"], "Q3": ["Nowhere"]},
         "de": {"Q7186": ["Marie Curie"], "Q270": ["Warschau"], "Q1": ["Jemand"], "Q90": ["Stadt", "paris"],
                "Q2": ["Niemand"]}}  # Q3 has no German name: that fact is skipped in German


def write_inputs(root):
    (root / "facts").mkdir(parents=True)
    (root / "prompts.csv").write_text(PROMPTS, encoding="utf-8")
    (root / "facts" / "P19.jsonl").write_text("".join(
        json.dumps({"sub_uri": s, "sub_label": sl, "obj_uri": o, "obj_label": ol, "predicate_id": "P19"}) + "\n"
        for s, sl, o, ol in FACTS), encoding="utf-8")
    (root / "aliases").mkdir()
    for lang, names in NAMES.items():
        (root / "aliases" / f"{lang}.txt").write_text(
            "".join(f"{qid}\t" + "\t".join(n) + "\n" for qid, n in names.items()), encoding="utf-8")
    rows = {"id": list(NAMES["en"]), "kind": ["item"] * len(NAMES["en"])}
    for lang, names in NAMES.items():
        rows[f"label_{lang}"] = [names.get(q, [None])[0] for q in rows["id"]]
        rows[f"aliases_{lang}"] = [names.get(q, [None, ])[1:] for q in rows["id"]]
        rows[f"description_{lang}"] = [None] * len(rows["id"])
    write_parquet(pa.table(rows, schema=entities_schema(("en", "de"))), root / "tables" / "entities.parquet")
    return root


@pytest.fixture(scope="module")
def paris_model(tiny_models, tmp_path_factory):
    """The tiny model with its LM head forced to predict '▁Paris' at every position."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path_factory.mktemp("paris") / "model"
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_models[0]))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models[0]))
    paris = tokenizer.convert_tokens_to_ids("▁Paris")
    assert paris != tokenizer.unk_token_id
    with torch.no_grad():
        model.lm_head.layer_norm.weight.zero_()
        model.lm_head.layer_norm.bias.zero_()
        model.lm_head.bias.zero_()
        model.lm_head.bias[paris] = 10.0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_inflection_markup_takes_the_first_form():
    assert xfactr.render_template("[X] est [né;X-Gender=MASC|née;X-Gender=FEM] à [Y] .") == "[X] est né à [Y] ."
    assert xfactr.render_template("[X.Nom] живёт в [Y.Loc] .") == "[X] живёт в [Y] ."


@pytest.mark.parametrize("route, decoding", [("--entities", "independent"), ("--aliases", "confidence")])
def test_accuracy_counts_label_and_alias_matches(paris_model, tmp_path, route, decoding):
    root = write_inputs(tmp_path)
    names = root / ("tables" if route == "--entities" else "aliases")
    argv = ["xfactr", "--model", f"paris={paris_model}", "--prompts", str(root / "prompts.csv"), "--facts",
            str(root / "facts"), "--languages", "en,de", route, str(names), "--max-masks", "3",
            "--decoding", decoding, "--output", str(root / "out")]
    assert cli.main(argv) == 0
    rows = {r["lang"]: r for r in csv.DictReader(open(root / "out" / "results.csv"))}
    # en: "Paris" is right for Q90 only (1 of 3); de: the alias "paris" matches (1 of 2, Q3 has no German name).
    assert float(rows["en"]["value"]) == pytest.approx(100 / 3, abs=1e-3) and rows["en"]["count"] == "3"
    assert (float(rows["de"]["value"]), rows["de"]["count"]) == (50.0, "2")


def test_confidence_decoding_fills_one_mask_per_pass(tiny_models):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(str(tiny_models[1])).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models[1]))
    sentences = ["Paris is the capital of <mask> <mask> <mask> .", "Rome <mask> Italy ."]
    results = xfactr.decode(model, tokenizer, sentences, "confidence")
    assert [len(ids) for ids, _ in results] == [3, 1]
    assert all(score <= 0 and tokenizer.mask_token_id not in ids for ids, score in results)


def test_prompts_without_the_language_column_are_refused(tmp_path):
    (tmp_path / "p.csv").write_text("pid,relation,en\nP19,x,[X] in [Y]\n")
    with pytest.raises(UserFacingError, match="no column"):
        xfactr.read_prompts(tmp_path / "p.csv", ("en", "fr"))
    (tmp_path / "q.csv").write_text("pid,relation,en\nP19,x,[X] in [X]\n")
    with pytest.raises(UserFacingError, match=r"q.csv:2: en template .* needs one \[X\] and one \[Y\]"):
        xfactr.read_prompts(tmp_path / "q.csv", ("en",))
