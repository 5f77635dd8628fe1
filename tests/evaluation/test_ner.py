"""kmlm-eval ner: CoNLL-2002/2003 and PAN-X readers, first-subword labels, long sentences split, F1 per language."""
import csv

import pytest

from kmlm_eval import cli, ner, tagging
from kmlm_eval.batching import IGNORE
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
    pieces = tagging.encode(tokenizer, sentences, {"O": 0, "B-PER": 1, "I-PER": 2}, 64)
    labels = pieces.examples[0]["labels"]
    assert [label for label in labels if label != IGNORE] == [1, 2, 0]
    assert len(labels) > 3 + 2  # <s>, </s> and more subwords than words: the long word really was split


def test_a_sentence_longer_than_max_length_is_split_and_joined_back(tiny_models):
    """As XTREME's preprocessing: pieces that fit; every word keeps its own prediction."""
    tokenizer = load_tokenizer(tiny_models[0])
    words = ["Paris", "is", "capital", "of", "France"] * 12
    sentences = [(words, ["B-LOC", "O", "O", "O", "B-LOC"] * 12), (["Berlin"], ["B-LOC"])]
    pieces = tagging.encode(tokenizer, sentences, {"O": 0, "B-LOC": 1}, max_length=16)
    assert all(len(e["input_ids"]) <= 16 for e in pieces.examples) and len(pieces.examples) > 3
    assert [s for s, _, _ in pieces.spans].count(0) == len(pieces.examples) - 1
    assert sum(b - a for s, a, b in pieces.spans if s == 0) == len(words)

    class Oracle:
        """Predicts each labelled position's gold label: what a perfect model returns."""
        def __init__(self):
            import torch
            self.parameter = torch.nn.Parameter(torch.zeros(1))
            self.config = type("Config", (), {"type_vocab_size": 1})()

        def parameters(self):
            yield self.parameter

        def eval(self):
            return self

        def __call__(self, input_ids, attention_mask):
            import torch
            gold = {tuple(e["input_ids"]): e["labels"] for e in pieces.examples}
            rows = [gold[tuple(row[mask.bool()].tolist())] for row, mask in zip(input_ids, attention_mask)]
            logits = torch.zeros(*input_ids.shape, 2)
            for r, labels in enumerate(rows):
                for p, label in enumerate(labels):
                    logits[r, p, max(label, 0)] = 1.0
            return {"logits": logits}

    predicted = tagging.predict_tags(Oracle(), sentences, pieces, ["O", "B-LOC"], batch_size=3, pad_id=1)
    assert predicted == [tags for _, tags in sentences]


def test_ner_end_to_end_writes_f1_per_language(tiny_models, tmp_path):
    train = write(tmp_path / "en.train", CONLL03 * 3)
    dev = write(tmp_path / "en.dev", CONLL03)
    argv = ["ner", "--model", str(tiny_models[0]), "--train", str(train), "--dev", str(dev),
            "--test", f"en={write(tmp_path / 'en', CONLL03)}", "--test", f"de={write(tmp_path / 'de', PANX)}",
            "--output", str(tmp_path / "out"), "--epochs", "2", "--batch-size", "2", "--lr", "1e-3", "--seeds", "1",
            "--eval-steps", "2"]
    assert cli.main(argv) == 0
    rows = {r["lang"]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert set(rows) == {"en", "de", "avg"} and rows["de"]["metric"] == "f1" and rows["de"]["count"] == "2"
    assert all(0 <= float(r["value"]) <= 100 for r in rows.values())
    assert cli.main(argv[:5] + argv[7:]) == 2  # no --dev: the paper's protocol needs one
