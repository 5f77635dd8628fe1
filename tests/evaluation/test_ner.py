"""kmlm-eval ner: CoNLL-2002/2003 and PAN-X readers, first-subword labels, F1 per language."""
import csv

import pytest

from kmlm_eval import cli, ner
from kmlm_eval.common import load_tokenizer
from preprocess.core.errors import UserFacingError

CONLL03 = """-DOCSTART- -X- -X- O

Marie NNP B-NP B-PER
Curie NNP I-NP I-PER
was VBD B-VP O
born VBN I-VP O
in IN B-PP O
Warsaw NNP B-NP B-LOC
. . O O

Paris NNP B-NP B-LOC
is VBZ B-VP O
in IN B-PP O
France NNP B-NP B-LOC
"""
CONLL02 = "Berlin B-LOC\nist O\nin O\nDeutschland B-LOC\n\nMarie B-PER\nCurie I-PER\n"
PANX = "de:Berlin\tB-LOC\nde:ist\tO\nde:die\tO\nde:Hauptstadt\tO\n\nde:Marie\tB-PER\nde:Curie\tI-PER\nde:lebte\tO\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_readers_parse_conll_2003_2002_and_panx(tmp_path):
    assert ner.read_sentences(write(tmp_path / "en", CONLL03)) == [
        (["Marie", "Curie", "was", "born", "in", "Warsaw", "."], ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"]),
        (["Paris", "is", "in", "France"], ["B-LOC", "O", "O", "B-LOC"]),
    ]
    assert ner.read_sentences(write(tmp_path / "es", CONLL02))[1] == (["Marie", "Curie"], ["B-PER", "I-PER"])
    assert ner.read_sentences(write(tmp_path / "de", PANX))[0] == (["Berlin", "ist", "die", "Hauptstadt"],
                                                                    ["B-LOC", "O", "O", "O"])


@pytest.mark.parametrize("text, message", [
    ("Paris B-LOC\nlonely\n", ":2: expected 'token ... tag'"),
    ("Paris LOC\n", ":1: 'LOC' is not a NER tag"),
    ("de:Paris\tB-LOC\nParis\tO\n", ":2: PAN-X token without a lang: prefix"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    with pytest.raises(UserFacingError, match=message):
        ner.read_sentences(write(tmp_path / "bad.txt", text))


def test_only_the_first_subword_of_each_word_is_labelled(tiny_models):
    tokenizer = load_tokenizer(tiny_models[0])
    sentences = [(["Marie", "Curie", "Hauptstadtstraße"], ["B-PER", "I-PER", "O"])]
    batch, word_ids = ner.make_collate(tokenizer, {"O": 0, "B-PER": 1, "I-PER": 2}, 64)(sentences)
    labelled = [(word_ids[0][p], batch["labels"][0, p].item()) for p in range(len(word_ids[0]))
                if batch["labels"][0, p] != ner.IGNORE]
    assert labelled == [(0, 1), (1, 2), (2, 0)]
    assert word_ids[0].count(2) > 1  # the long word really was split into several subwords


def test_ner_end_to_end_writes_f1_per_language(tiny_models, tmp_path):
    train = write(tmp_path / "en.train", CONLL03 * 3)
    argv = ["ner", "--model", str(tiny_models[0]), "--train", str(train), "--test", f"en={write(tmp_path / 'en', CONLL03)}",
            "--test", f"de={write(tmp_path / 'de', PANX)}", "--output", str(tmp_path / "out"), "--epochs", "2",
            "--batch-size", "2", "--lr", "1e-3"]
    assert cli.main(argv) == 0
    rows = {r["lang"]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert set(rows) == {"en", "de", "avg"} and rows["de"]["metric"] == "f1" and rows["de"]["count"] == "2"
    assert all(0 <= float(r["value"]) <= 100 for r in rows.values())
