"""kmlm-eval xnli / pawsx: the real XTREME, PAWS-X x-final, XNLI and MultiNLI file layouts; accuracy per language."""
import csv

import pytest

from kmlm_eval import cli, pairs
from preprocess.core.errors import UserFacingError
from tests.evaluation.conftest import first_lines


def test_xtreme_tsv_with_csv_quoting_and_the_original_layouts(xtreme, tmp_path):
    en = pairs.read_pairs(xtreme / "xnli" / "dev-en.first300.tsv", "xnli")
    assert len(en) == 300 and en[0] == ("And he said, Mama, I'm home.",
                                        "He called his mom as soon as the school bus dropped him off.", "neutral")
    ja = pairs.read_pairs(xtreme / "pawsx" / "dev-ja.first300.tsv", "pawsx", "ja")
    assert len(ja) == 300 and '""' not in ja[8][0] and '"Macpelah Cemetery"' in ja[8][0]  # a CSV-quoted field
    ko = pairs.read_pairs(xtreme / "pawsx" / "ko" / "dev_2k.first300.tsv", "pawsx", "ko")  # header, ids, no quoting
    assert len(ko) == 300 and ko[0][2] == "1" and ko[0][0].startswith("Four Rivers")
    mnli = pairs.read_pairs(xtreme / "xnli" / "mnli_train.sample.jsonl", "xnli")
    assert mnli[0] == ("Conceptually cream skimming has two basic dimensions - product and geography.",
                       "Product and geography are what make cream skimming work. ", "neutral")
    original = tmp_path / "xnli.test.tsv"
    original.write_text("language\tgold_label\tsentence1\tsentence2\n"
                        "de\tcontradictory\tEr kam.\tEr ging.\nfr\tneutral\tIl vint.\tIl part.\n"
                        "de\tentailment\tJa.\tJa.\n", encoding="utf-8")
    assert pairs.read_pairs(original, "xnli", "de") == [("Er kam.", "Er ging.", "contradiction"),
                                                       ("Ja.", "Ja.", "entailment")]
    crlf = tmp_path / "dev-en.tsv"  # XTREME's own TSVs end their lines with CRLF
    crlf.write_bytes((xtreme / "xnli" / "dev-en.first300.tsv").read_bytes().replace(b"\n", b"\r\n"))
    assert pairs.read_pairs(crlf, "xnli") == en


@pytest.mark.parametrize("text, message", [
    ("a\tb\tneutral\nc\td\n", ":2: expected 'first<TAB>second<TAB>label', got 2 fields"),
    ("a\tb\tneutral\nc\td\tmaybe\n", ":2: label 'maybe' is not one of contradiction, entailment, neutral"),
    ('{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{"premise": "a"}\n', ":2: expected premise/"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    bad = tmp_path / "bad.tsv"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(UserFacingError, match=message):
        pairs.read_pairs(bad, "xnli")


def test_multinli_no_consensus_labels_are_skipped_and_counted(tmp_path, caplog):
    mnli = tmp_path / "train.jsonl"
    mnli.write_text('{"sentence1": "a", "sentence2": "b", "gold_label": "-"}\n'
                    '{"sentence1": "c", "sentence2": "d", "gold_label": "entailment"}\n', encoding="utf-8")
    assert pairs.read_pairs(mnli, "xnli") == [("c", "d", "entailment")]
    assert "skipped 1 label '-' (no consensus)" in caplog.text


def test_pawsx_end_to_end_on_real_slices(tiny_models, xtreme, tmp_path):
    train = first_lines(xtreme / "pawsx" / "dev-en.first300.tsv", tmp_path / "train.tsv", 40)
    dev = first_lines(xtreme / "pawsx" / "dev-en.first300.tsv", tmp_path / "dev.tsv", 12)
    test = first_lines(xtreme / "pawsx" / "dev-zh.first300.tsv", tmp_path / "zh.tsv", 12)
    argv = ["pawsx", "--model", f"tiny={tiny_models[0]}", "--train", str(train), "--dev", str(dev), "--test",
            f"zh={test}", "--test", f"en={dev}", "--output", str(tmp_path / "out"), "--seeds", "1,2", "--epochs", "1",
            "--batch-size", "8", "--eval-steps", "2", "--max-length", "64"]
    assert cli.main(argv) == 0
    rows = {r["lang"]: r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert set(rows) == {"zh", "en", "avg"} and rows["zh"]["count"] == "12" and rows["zh"]["seeds"] == "2"
    runs = [float(v) for v in rows["zh"]["runs"].split(";")]
    assert float(rows["zh"]["value"]) == pytest.approx(sum(runs) / 2, abs=1e-3)
    assert all(100 * k / 12 == pytest.approx(v, abs=1e-3) for v in runs for k in [round(v * 12 / 100)])
