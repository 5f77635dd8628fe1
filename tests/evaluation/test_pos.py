"""kmlm-eval pos: real UD CoNLL-U (multiword tokens, empty nodes), XTREME's F1 and accuracy per language."""
import csv

import pytest

from kmlm_eval import cli, pos
from preprocess.core.errors import UserFacingError


def conllu_words(path):
    """Independent count: word lines (integer ids) and multiword ranges of a CoNLL-U file."""
    ids = [line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()
           if line and not line.startswith("#")]
    return sum(i.isdigit() for i in ids), [i for i in ids if "-" in i]


def test_multiword_tokens_fused_as_xtreme_or_as_words(xtreme):
    path = xtreme / "udpos" / "de_gsd-ud-dev.first100.conllu"
    words, ranges = conllu_words(path)
    fused, split = pos.read_conllu(path), pos.read_conllu(path, "words")
    assert sum(len(w) for w, _ in split) == words
    assert sum(len(w) for w, _ in fused) == words - sum(int(b) - int(a) for a, b in (r.split("-") for r in ranges))
    sentence = next((w, t) for w, t in fused if "im" in w)  # 4-5 im = in (ADP, head 6) + dem (DET, head 6)
    assert sentence[1][sentence[0].index("im")] == "ADP"
    assert "im" not in next(w for w, _ in split if "Ferienhaus" in w)


def test_empty_nodes_are_skipped_and_all_treebanks_read(xtreme):
    path = xtreme / "udpos" / "en_ewt-ud-dev.first100.conllu"
    assert any("." in line.split("\t")[0] for line in path.read_text().splitlines() if not line.startswith("#"))
    words, _ = conllu_words(path)
    assert sum(len(w) for w, _ in pos.read_conllu(path, "words")) == words
    for name in ("ko_gsd", "zh_gsd"):
        sentences = pos.read_conllu(xtreme / "udpos" / f"{name}-ud-dev.first100.conllu")
        assert len(sentences) == 100 and all(len(w) == len(t) for w, t in sentences)


@pytest.mark.parametrize("line, message", [
    ("1\tParis\tParis\tPROPN\n", ":2: expected 10 tab-separated CoNLL-U columns, got 4"),
    ("x\tParis\tParis\tPROPN\t_\t_\t0\troot\t_\t_\n", ":2: 'x' is not a CoNLL-U word id"),
    ("1\tParis\tParis\t_\t_\t_\t0\troot\t_\t_\n", ":2: a word without a UPOS tag"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    bad = tmp_path / "bad.conllu"
    bad.write_text("# sent_id = 1\n" + line + "\n", encoding="utf-8")
    with pytest.raises(UserFacingError, match=message):
        pos.read_conllu(bad)


def test_sentences_of_underscore_forms_are_skipped_as_xtreme(tmp_path, caplog):
    row = "{}\t{}\t_\tNOUN\t_\t_\t0\troot\t_\t_\n"
    path = tmp_path / "hidden.conllu"  # treebanks distributed without their text have '_' forms
    path.write_text(row.format(1, "_") + row.format(2, "_") + "\n" + row.format(1, "Haus") + "\n", encoding="utf-8")
    assert pos.read_conllu(path) == [(["Haus"], ["NOUN"])]
    assert "1 sentence(s) whose word forms are '_' skipped" in caplog.text


def test_metrics_are_seqeval_f1_as_xtreme_and_word_accuracy():
    gold = [["NOUN", "NOUN", "VERB", "PUNCT"], ["PRON", "VERB"]]
    predicted = [["NOUN", "ADJ", "VERB", "PUNCT"], ["PRON", "VERB"]]
    assert pos.word_accuracy(gold, predicted) == 5 / 6
    # seqeval chunks: gold {NOUN 0-1, VERB 2, PUNCT 3, PRON, VERB}; predicted {NOUN 0, ADJ 1, VERB 2, PUNCT 3, PRON,
    # VERB}: 4 of 5 gold and 4 of 6 predicted chunks match
    assert pos.seqeval_f1(gold, predicted) == pytest.approx(2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5))


def test_pos_end_to_end_on_real_treebank_slices(tiny_models, xtreme, tmp_path):
    udpos = xtreme / "udpos"
    argv = ["pos", "--model", f"tiny={tiny_models[0]}", "--train", str(udpos / "en_ewt-ud-dev.first100.conllu"),
            "--dev", str(udpos / "en_ewt-ud-dev.first100.conllu"), "--test",
            f"de={udpos / 'de_gsd-ud-dev.first100.conllu'}", "--test", f"ko={udpos / 'ko_gsd-ud-dev.first100.conllu'}",
            "--output", str(tmp_path / "out"), "--seeds", "1", "--epochs", "1", "--max-length", "64",
            "--eval-steps", "2"]
    assert cli.main(argv) == 0
    rows = {(r["lang"], r["metric"]): r for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert set(rows) == {(lang, m) for lang in ("de", "ko", "avg") for m in ("f1", "accuracy")}
    assert rows[("ko", "accuracy")]["count"] == "100"
