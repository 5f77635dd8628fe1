"""kmlm-eval relx: KBP-37/RELX text files and RELX-Distant JSON, accuracy per language."""
import csv
import json

import pytest

from kmlm_eval import cli, relx
from preprocess.core.errors import UserFacingError

KBP = ('1\t" <e1> Thom Yorke </e1> of <e2> Radiohead </e2> has a new album . "\nper:employee_of(e1,e2)\n\n'
       '2\t" <e1> Apple </e1> was founded by <e2> Steve Jobs </e2> . "\norg:founded_by(e1,e2)\nComment: x\n\n'
       '3\t" <e1> Paris </e1> is in <e2> France </e2> . "\nno_relation\n\n')


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_kbp37_blocks_with_optional_comment(tmp_path):
    examples = relx.read_examples(write(tmp_path / "train.txt", KBP))
    assert examples[1] == ("<e1> Apple </e1> was founded by <e2> Steve Jobs </e2> .", "org:founded_by(e1,e2)")
    assert [label for _, label in examples] == ["per:employee_of(e1,e2)", "org:founded_by(e1,e2)", "no_relation"]


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


def test_relx_end_to_end_accuracy_per_language(tiny_models, tmp_path):
    distant = [{"sentence": "<e1> Marie Curie </e1> was born in <e2> Warsaw </e2> .", "relation": "no_relation"},
               {"sentence": "<e1> Apple </e1> gegründet von <e2> Steve Jobs </e2> .", "relation": "unseen"}]
    argv = ["relx", "--model", f"tiny={tiny_models[0]}", "--train", str(write(tmp_path / "train.txt", KBP * 4)),
            "--test", f"en={write(tmp_path / 'en.txt', KBP)}", "--test", f"de={write(tmp_path / 'de.json', json.dumps(distant))}",
            "--output", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4"]
    assert cli.main(argv) == 0
    rows = {r["lang"]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert rows["en"]["count"] == "3" and rows["de"]["count"] == "2"
    assert float(rows["de"]["value"]) in (0.0, 50.0)  # the unseen label can never be right
