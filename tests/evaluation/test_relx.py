"""kmlm-eval relx: KBP-37/RELX text files and RELX-Distant JSON, RELX's input, loss weights and F1."""
import csv
import json

import numpy as np
import pytest

from kmlm_eval import cli, relx
from kmlm_eval.common import load_tokenizer
from preprocess.core.errors import UserFacingError

KBP = ('1\t" <e1> Thom Yorke </e1> of <e2> Radiohead </e2> has a new album . "\nper:employee_of(e1,e2)\n\n'
       '2\t" <e2> Apple </e2> was founded by <e1> Steve Jobs </e1> . "\norg:founded_by(e2,e1)\nComment: x\n\n'
       '3\t" <e1> Paris </e1> is in <e2> France </e2> . "\nno_relation\n\n'
       '4\t" <e1> Apple </e1> was founded by <e2> Steve Jobs </e2> . "\norg:founded_by(e1,e2)\n\n')


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_kbp37_blocks_with_optional_comment(tmp_path):
    examples = relx.read_examples(write(tmp_path / "train.txt", KBP))
    assert examples[1] == ("<e2> Apple </e2> was founded by <e1> Steve Jobs </e1> .", "org:founded_by(e2,e1)")
    assert [label for _, label in examples] == ["per:employee_of(e1,e2)", "org:founded_by(e2,e1)", "no_relation",
                                                "org:founded_by(e1,e2)"]


def test_reads_relx_distant_json_array_and_lines(tmp_path):
    items = [{"sentence": "<e1> Köln </e1> liegt in <e2> Deutschland </e2> .", "relation": "P17"}]
    assert relx.read_examples(write(tmp_path / "a.json", json.dumps(items))) == [(items[0]["sentence"], "P17")]
    lines = json.dumps({"text": items[0]["sentence"], "label": "P17"}) + "\n"
    assert relx.read_examples(write(tmp_path / "b.jsonl", lines)) == [(items[0]["sentence"], "P17")]


@pytest.mark.parametrize("text, message", [
    ('1\t"<e1> a </e1> b <e2> c </e2>"\n\n', ":1: expected exactly one label line"),
    ('1\t"<e1> a </e1> b <e2> c </e2>"\nno_relation\nextra\n\n', ":3: expected exactly one label line"),
    ('1\t"a b c"\nno_relation\n\n', ":1: sentence lacks the entity markers"),
    ('just a sentence\nno_relation\n\n', ":1: expected 'ID<TAB>\"sentence\"'"),
])
def test_malformed_blocks_name_file_and_line(tmp_path, text, message):
    with pytest.raises(UserFacingError, match=message):
        relx.read_examples(write(tmp_path / "bad.txt", text))


def test_input_as_relx_markers_around_the_entities_in_text_order(tiny_models):
    """finetune.py: the entity that comes first gets the first marker pair, whatever its role; URLs dropped."""
    tokenizer = load_tokenizer(tiny_models[0])
    markers = relx.marker_ids(tokenizer)
    assert len(set(markers)) == 4 and tokenizer.unk_token_id not in markers
    sentence = "<e2> Paris </e2> http://x.org is in <e1> France </e1> ."
    assert relx.segments(sentence) == ("", " Paris ", " is in ", " France ", " .")
    example = relx.encode(tokenizer, markers, [(sentence, "loc(e2,e1)")], {"loc(e2,e1)": 3}, 64)[0]
    ids = example["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and example["labels"] == 3
    assert [i for i in ids if i in markers] == markers  # in text order: [M1] Paris [/M1] ... [M2] France [/M2]
    m1, m2 = ids.index(markers[0]), ids.index(markers[2])
    assert tokenizer.decode(ids[m1 + 1:ids.index(markers[1])]) == "Paris"
    assert tokenizer.decode(ids[m2 + 1:ids.index(markers[3])]) == "France"
    long = relx.encode(tokenizer, markers, [(sentence.replace("is in", "is in " * 40), "x")], {}, 32)[0]
    assert len(long["input_ids"]) == 31 and long["labels"] == -1  # cut to max_length - 1, as finetune.py


def test_mbert_s_unused_ids_are_the_markers_as_in_finetune_py(tmp_path):
    from tests.export.tiny import tiny_bert_dir

    tokenizer = load_tokenizer(tiny_bert_dir(tmp_path))
    size = len(tokenizer)
    assert relx.marker_ids(tokenizer) == tokenizer.convert_tokens_to_ids([f"[unused{i}]" for i in range(1, 5)])
    assert len(tokenizer) == size  # nothing added


def test_loss_weights_and_f1_are_relx_s():
    labels = ["no_relation", "org:founded_by(e1,e2)", "org:founded_by(e2,e1)", "per:x(e1,e2)", "per:x(e2,e1)"]
    weights = relx.class_weights([0, 0, 1, 1, 1, 2, 3], labels)
    assert weights.tolist() == pytest.approx([1.0, 0.75, 0.25, 1.0, 0.0])
    gold, predicted = [1, 2, 3, 4, 0, 1], [1, 1, 3, 0, 0, 2]
    groups = relx.relation_groups(labels)
    assert groups == {"org:founded_by": [1, 2], "per:x": [3, 4]}

    def micro_f1(ids):  # sklearn f1_score(average='micro', labels=ids), computed from precision and recall
        tp = sum(g == p and g in ids for g, p in zip(gold, predicted))
        precision = tp / max(1, sum(p in ids for p in predicted))
        recall = tp / max(1, sum(g in ids for g in gold))
        return 2 * precision * recall / (precision + recall) if tp else 0.0

    assert relx.relation_f1(gold, predicted, groups) == pytest.approx(100 * np.mean([micro_f1([1, 2]),
                                                                                    micro_f1([3, 4])]))


def test_relx_end_to_end_f1_and_accuracy_per_language(tiny_models, tmp_path):
    distant = [{"sentence": "<e1> Marie Curie </e1> was born in <e2> Warsaw </e2> .", "relation": "no_relation"},
               {"sentence": "<e1> Apple </e1> gegründet von <e2> Steve Jobs </e2> .", "relation": "unseen"}]
    argv = ["relx", "--model", f"tiny={tiny_models[0]}", "--train", str(write(tmp_path / "train.txt", KBP * 4)),
            "--dev", str(write(tmp_path / "dev.txt", KBP)), "--test", f"en={write(tmp_path / 'en.txt', KBP)}",
            "--test", f"de={write(tmp_path / 'de.json', json.dumps(distant))}", "--output", str(tmp_path / "out"),
            "--epochs", "2", "--batch-size", "4", "--seeds", "1", "--max-length", "48"]
    assert cli.main(argv) == 0
    rows = {(r["lang"], r["metric"]): r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert rows[("en", "f1")]["count"] == "4" and rows[("de", "accuracy")]["count"] == "2"
    assert float(rows[("de", "accuracy")]["value"]) in (0.0, 50.0)  # the unseen label can never be right
