"""kmlm-eval xfactr: X-FACTR's real files, subject labels (never alias files), decoding, scoring, relation means."""
import csv
import json

import pyarrow as pa
import pytest
import torch

from kmlm_eval import cli, xfactr
from kmlm_eval.common import load_tokenizer
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.tables import entities_schema
from preprocess.core.io import write_parquet


def real_facts(xfactr_data, pid, subject):
    lines = (xfactr_data / "mTRExf" / "sub" / f"{pid}.jsonl").read_text(encoding="utf-8").splitlines()
    return [fact for fact in map(json.loads, lines) if fact["sub_uri"] == subject]


def entity_table(path, labels):
    """entities.parquet with ``labels[lang][qid] = [label, alias...]``."""
    ids = sorted({qid for names in labels.values() for qid in names})
    rows = {"id": ids, "kind": ["item"] * len(ids)}
    for lang, names in labels.items():
        rows[f"label_{lang}"] = [names.get(q, [None])[0] for q in ids]
        rows[f"aliases_{lang}"] = [names.get(q, [None])[1:] for q in ids]
        rows[f"description_{lang}"] = [None] * len(ids)
    write_parquet(pa.table(rows, schema=entities_schema(tuple(labels))), path / "entities.parquet")
    return path


def test_subject_names_are_labels_never_the_first_name_of_a_sorted_alias_file(xfactr_data, tiny_models, tmp_path):
    """The bug: alias files list names in sorted order (Q90 Paris: en 'City of Light', fr '7.5')."""
    aliases = xfactr.read_alias_file(xfactr_data / "alias" / "mTRExf" / "en.txt")
    assert aliases["Q90"][0] == "City of Light" and "Paris" in aliases["Q90"]
    tokenizer = load_tokenizer(tiny_models[0])
    prompts = xfactr.read_prompts(xfactr_data / "TREx_prompts.csv", ("en", "fr"))
    facts = {"P1376": real_facts(xfactr_data, "P1376", "Q90")}  # Paris is the capital of France
    names = xfactr.Names(("en",), aliases=xfactr_data / "alias" / "mTRExf")
    found = xfactr.queries("en", prompts, facts, names, {}, tokenizer, skipped={})
    assert [cloze for _, cloze, _ in found] == ["Paris is the capital of [Y] ."]
    assert found[0][2][0] == "France" and "French Republic" in found[0][2]  # the label, then the alias file's names
    table = entity_table(tmp_path, {"en": {"Q90": ["Paris", "City of Light"], "Q142": ["France"]},
                                    "fr": {"Q90": ["Paris", "Ville-Lumière"], "Q142": ["France"]}})
    names = xfactr.Names(("en", "fr"), entities=table, aliases=xfactr_data / "alias" / "mTRExf")
    found = xfactr.queries("fr", prompts, facts, names, {}, tokenizer, skipped={})
    assert [cloze for _, cloze, _ in found] == ["Paris est la capitale [Y] ."]
    assert "Ville-Lumière" not in found[0][2] and "République française" in found[0][2]


def test_other_languages_need_labels_not_alias_files(xfactr_data, tiny_models, tmp_path, caplog):
    argv = ["xfactr", "--model", str(tiny_models[0]), "--prompts", str(xfactr_data / "TREx_prompts.csv"), "--facts",
            str(xfactr_data / "mTRExf" / "sub"), "--languages", "en,fr", "--aliases",
            str(xfactr_data / "alias" / "mTRExf"), "--output", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert "no labels for fr: give --entities TABLES or --labels FILE" in caplog.text
    labels = tmp_path / "mTRExf_unicode_escape.txt"
    labels.write_text('Q90\t"Paris"@en\t"Paris"@fr\nQ142\t"France"@fr\t"France"@en\n', encoding="utf-8")
    assert xfactr.read_label_file(labels, ("fr",)) == {"fr": {"Q90": "Paris", "Q142": "France"}}


def test_templates_render_as_xfactr_without_articles_or_gender(xfactr_data):
    languages = ("en", "fr", "es", "nl", "zh", "vi", "ko", "ja")
    prompts = xfactr.read_prompts(xfactr_data / "TREx_prompts.csv", languages)
    raw = {row["pid"]: row for row in csv.DictReader(open(xfactr_data / "TREx_prompts.csv", encoding="utf-8"))}
    assert len(prompts) == 46
    for pid, templates in prompts.items():
        for lang, template in templates.items():
            assert template.replace("[X]", "").replace("[Y]", "").count("[") == 0
            if lang not in ("fr", "es"):  # no markup in these columns: rendered exactly as written
                assert template == " ".join(raw[pid][lang].split())
    assert prompts["P19"]["fr"] == "[X] est né [Y] ."  # first form; the [PREPLOC;Y] article slot removed
    assert xfactr.render_template("[DEF;X] [X.Nom] γεννήθηκε [PREPDEF;Y] [Y.Acc] .") == "[X] γεννήθηκε [Y] ."


class PositionModel(torch.nn.Module):
    """Vocabulary of 8, mask 7: position 1 is sure of token 1; position 2 predicts 3 once position 1 holds 1, else
    2, less surely; every call is counted."""
    config = type("Config", (), {"type_vocab_size": 1})()

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, attention_mask):
        self.calls += 1
        logits = torch.zeros(*input_ids.shape, 8)
        logits[:, :, 0] = 1.0
        logits[:, 1, 1] = 6.0
        logits[:, 2, 2] = torch.where(input_ids[:, 1] == 1, 0.0, 3.0)
        logits[:, 2, 3] = torch.where(input_ids[:, 1] == 1, 3.0, 0.0)
        return type("Out", (), {"logits": logits})()


def test_independent_decoding_fills_every_mask_in_one_pass():
    model = PositionModel()
    ids = torch.tensor([[5, 7, 7, 6]])
    tokens, logprob, masks = xfactr.decode_batch(model, ids, torch.ones_like(ids), 7, "independent", 10)
    assert model.calls == 1 and tokens[0].tolist() == [5, 1, 2, 6] and masks[0].tolist() == [False, True, True, False]
    expected = torch.tensor([[1.0, 6.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 3.0, 0.0, 0, 0, 0, 0]])
    assert torch.allclose(logprob[0, 1:3], expected.log_softmax(-1).max(-1).values)


def test_confidence_decoding_fills_the_surest_mask_first_then_refines():
    model = PositionModel()
    ids = torch.tensor([[5, 7, 7, 6], [5, 7, 6, 6]])
    tokens, _, _ = xfactr.decode_batch(model, ids, torch.ones_like(ids), 7, "confidence", 10)
    # pass 1: position 1 (surest) -> 1; pass 2: position 2 sees it -> 3; pass 3: the least sure filled token is
    # masked again and re-predicted unchanged -> stop
    assert tokens.tolist() == [[5, 1, 3, 6], [5, 1, 6, 6]] and model.calls == 3
    tokens, _, _ = xfactr.decode_batch(PositionModel(), ids[:1], torch.ones_like(ids[:1]), 7, "confidence", 1)
    assert tokens.tolist() == [[5, 1, 7, 6]]  # max_iter passes at most


def test_fewest_masks_win_ties_and_sum_or_mean_ranks_candidates(tiny_models):
    from transformers import AutoModelForMaskedLM

    tokenizer = load_tokenizer(tiny_models[1])
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_models[1])).eval()
    [summed] = xfactr.probe_clozes(model, tokenizer, ["Paris is the capital of [Y] ."], max_masks=3)
    [mean] = xfactr.probe_clozes(model, tokenizer, ["Paris is the capital of [Y] ."], max_masks=3, length_norm=True)
    sums = [sum(c.logprobs) for c in summed.candidates]
    means = [sum(c.logprobs) / len(c.logprobs) for c in mean.candidates]
    assert [len(c.ids) for c in summed.candidates] == [1, 2, 3]
    assert summed.num_masks == 1 + sums.index(max(sums)) and mean.num_masks == 1 + means.index(max(means))


def test_xfactr_matching_rules(tiny_models):
    tokenizer = load_tokenizer(tiny_models[0])
    ids = tokenizer("Paris", add_special_tokens=False)["input_ids"]
    assert xfactr.matches(tokenizer, ids, ["France", "paris"], "en")  # lower-cased
    assert not xfactr.matches(tokenizer, ids, ["Paris France"], "en")
    assert xfactr.is_right("u.s.a", ["u.s.a."], period=xfactr.y_followed_by_period("[X] was born in [Y] ."))
    assert not xfactr.y_followed_by_period("The capital of [X] is [Y] .")  # ana.py's re.match needs a leading [
    assert not xfactr.y_followed_by_period("[X] is [Y] citizen .")
    assert not xfactr.is_right("u.s.a", ["u.s.a."], period=False)
    assert xfactr.matches(tokenizer, tokenizer("PARIS", add_special_tokens=False)["input_ids"], ["  paris "], "en",
                          scoring="lenient")
    assert xfactr.xfactr_text(tokenizer, ["▁Αθήνα"], "el") == "αθηνα"  # Greek: lower-cased and unstressed
    assert xfactr.xfactr_text(tokenizer, ["▁Αθήνα"], "en") == "αθήνα"


def test_every_valid_object_of_the_multi_answer_file_is_accepted(xfactr_data):
    multi = xfactr.read_multi_answers(xfactr_data / "mTRExf_multi_rel.txt")
    assert multi[("Q23", "P27")] == ["Q30", "Q161885"]
    names = xfactr.Names(("en",), aliases=xfactr_data / "alias" / "mTRExf")
    [fact] = real_facts(xfactr_data, "P27", "Q23")  # Washington, citizen of the United States
    golds = xfactr.gold_names(fact, "P27", "en", fact["obj_label"], names, multi)
    assert golds[0] == "United States" and "U.S.A." in golds and "Kingdom of Great Britain" in golds


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


def test_language_accuracy_is_the_mean_over_relations(paris_model, tmp_path):
    (tmp_path / "facts").mkdir()
    (tmp_path / "prompts.csv").write_text("pid,en\nP19,[X] was born in [Y] .\nP36,The capital of [X] is [Y] .\n"
                                          "P17,[X] is in [Y] .\n", encoding="utf-8")
    facts = {"P19": [("Q1", "Marie Curie", "Q270", "Warsaw"), ("Q2", "Somebody", "Q90", "Rome"),
                     ("Q3", "Nobody", "Q4", "Nowhere")],
             "P36": [("Q142", "France", "Q90", "Paris")],
             "P17": [("Q5", "Köln ü", "Q183", "Germany")]}  # 'ü' is not in the tiny vocabulary: not probed
    for pid, rows in facts.items():
        (tmp_path / "facts" / f"{pid}.jsonl").write_text("".join(json.dumps(
            {"sub_uri": s, "sub_label": sl, "obj_uri": o, "obj_label": ol}) + "\n" for s, sl, o, ol in rows))
    (tmp_path / "aliases").mkdir()
    (tmp_path / "aliases" / "en.txt").write_text("Q90\tCity of Light\tParis\tRome\n", encoding="utf-8")
    argv = ["xfactr", "--model", f"paris={paris_model}", "--prompts", str(tmp_path / "prompts.csv"), "--facts",
            str(tmp_path / "facts"), "--languages", "en", "--aliases", str(tmp_path / "aliases"), "--max-masks", "2",
            "--output", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    row = next(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    # P19: Q90 ("Rome" label, "Paris" alias) right, 1 of 3; P36: 1 of 1; P17: no fact probed, 0 (as ana.py)
    assert float(row["value"]) == pytest.approx(100 * (1 / 3 + 1 + 0) / 3, abs=1e-3) and row["count"] == "4"
    relations = {r["relation"]: r for r in csv.DictReader(open(tmp_path / "out" / "relations.csv"))}
    assert (relations["P19"]["correct"], relations["P19"]["facts"], relations["P17"]["facts"]) == ("1", "3", "0")


def test_real_x_factr_files_end_to_end(xfactr_data, tiny_models, tmp_path):
    argv = ["xfactr", "--model", f"tiny={tiny_models[0]}", "--prompts", str(xfactr_data / "TREx_prompts.csv"),
            "--facts", str(xfactr_data / "mTRExf" / "sub"), "--languages", "en", "--aliases",
            str(xfactr_data / "alias" / "mTRExf"), "--multi-answers", str(xfactr_data / "mTRExf_multi_rel.txt"),
            "--limit", "2", "--decoding", "confidence", "--output", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    relations = list(csv.DictReader(open(tmp_path / "out" / "relations.csv")))
    assert len(relations) == 46 and sum(int(r["facts"]) for r in relations) > 0
    assert "### xfactr accuracy per relation: tiny" in (tmp_path / "out" / "relations.md").read_text()


@pytest.mark.parametrize("reader, text, message", [
    (xfactr.read_alias_file, "Q90\tParis\nParis\tQ90\n", ":2: expected 'QID<TAB>name"),
    (xfactr.read_multi_answers, "Q23\tP27\tQ30 Q161885\nQ23 P27 Q30\n", ":2: expected 'QID<TAB>PID<TAB>QID"),
    (lambda path: xfactr.read_label_file(path, ("en",)), 'Q90\t"Paris"@en\nQ91\tParis\n', ":2: 'Paris' is not"),
])
def test_malformed_x_factr_lines_name_file_and_line(tmp_path, reader, text, message):
    path = tmp_path / "en.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserFacingError, match=message):
        reader(path)


def test_prompts_without_the_language_column_are_refused(tmp_path):
    (tmp_path / "p.csv").write_text("pid,relation,en\nP19,x,[X] in [Y]\n")
    with pytest.raises(UserFacingError, match="no column"):
        xfactr.read_prompts(tmp_path / "p.csv", ("en", "fr"))
    (tmp_path / "q.csv").write_text("pid,relation,en\nP19,x,[X] in [X]\n")
    with pytest.raises(UserFacingError, match=r"q.csv:2: en template .* needs one \[X\] and one \[Y\]"):
        xfactr.read_prompts(tmp_path / "q.csv", ("en",))
