"""kmlm-eval qa: real SQuAD-format files, windows over long contexts, answer extraction, SQuAD and MLQA scoring."""
import argparse
import csv
import json
from collections import Counter

import pytest
import torch

from kmlm_eval import cli, qa
from kmlm_eval.common import load_tokenizer
from preprocess.core.errors import UserFacingError

WINDOWS = argparse.Namespace(max_length=64, doc_stride=16, max_query_length=16, eval_batch_size=16)


def test_reads_the_real_files_of_every_benchmark(xtreme):
    counts = {"xquad/xquad.de.first2articles.json": 97, "mlqa/dev-context-zh-question-zh.first44articles.json": 100,
              "tydiqa/tydiqa.goldp.en.train.first100.json": 100, "squad/squad_v1.1_train_sample.json": 5}
    for name, count in counts.items():
        questions = qa.read_squad(xtreme / name)
        assert len(questions) == count
        assert all(q.context[s:s + len(a)] == a for q in questions for a, s in zip(q.answers, q.starts))
    first = qa.read_squad(xtreme / "xquad" / "xquad.de.first2articles.json")[0]
    assert first.answers == ("308",) and "Panthers" in first.question


def test_several_answers_are_read(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"data": [{"paragraphs": [{"context": "The Carolina Panthers won.", "qas": [
        {"id": "q1", "question": "Who won?", "answers": [{"text": "Carolina Panthers", "answer_start": 4},
                                                           {"text": "Panthers", "answer_start": 13}]}]}]}]}))
    [question] = qa.read_squad(path)
    assert question.answers == ("Carolina Panthers", "Panthers") and question.starts == (4, 13)


def test_malformed_json_is_located(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n{"paragraphs": [{"context": "c", "qas": [{"id": "1", "answers": []}]}]}]}')
    with pytest.raises(UserFacingError, match=r"data\[0\].paragraphs\[0\].qas\[0\]: expected 'id', 'question'"):
        qa.read_squad(bad)
    bad.write_text('{"data": [\n{"paragraphs": ]}')
    with pytest.raises(UserFacingError, match="bad.json:2: not valid JSON"):
        qa.read_squad(bad)


def test_squad_and_mlqa_normalisation_and_several_answers():
    question = qa.Question("1", "q", "c", ("the Panthers", "Carolina Panthers"), (0, 0))
    assert qa.qa_scores(["Panthers!"], [question], "xquad", "en") == (100.0, 100.0)  # best of two answers
    german = qa.Question("2", "q", "c", ("der Hund",), (0,))
    assert qa.qa_scores(["Hund"], [german], "xquad", "de")[1] == 0.0  # SQuAD knows only English articles
    assert qa.qa_scores(["Hund"], [german], "mlqa", "de")[1] == 100.0
    chinese = qa.Question("3", "q", "c", ("北京",), (0,))
    assert qa.qa_scores(["北京市"], [chinese], "mlqa", "zh")[0] == pytest.approx(100 * 0.8)  # characters: P 2/3, R 1
    assert qa.qa_scores(["北京市"], [chinese], "xquad", "zh")[0] == 0.0
    assert qa.normalise_mlqa("«Ein» Hund, der bellt.", "de") == "hund bellt"
    with pytest.raises(UserFacingError, match="MLQA's normalisation knows"):
        qa.normalise_mlqa("x", "fr")


def test_training_windows_point_at_the_answer(tiny_models, xtreme):
    tokenizer = load_tokenizer(tiny_models[0])
    questions = qa.read_squad(xtreme / "tydiqa" / "tydiqa.goldp.en.train.first100.json")[:20]
    plain = qa.features(tokenizer, questions, WINDOWS)
    assert len(plain.examples) > 2 * len(questions)  # long contexts: several overlapping windows each
    train = qa.features(tokenizer, questions, WINDOWS, train=True)
    assert len(train.examples) == len(plain.examples)
    shifted = [questions[0].__class__(**{**questions[0].__dict__, "starts": (questions[0].starts[0] + 1,)})]
    assert qa.features(tokenizer, shifted, WINDOWS, train=True).examples == []  # answer_start not at its text
    found = set()
    for example, owner, spans in zip(train.examples, plain.question, plain.offsets):
        start, end = example["start_positions"], example["end_positions"]
        if start:
            text = questions[owner].context[spans[start][0]:spans[end][1]]
            assert questions[owner].answers[0] in text and len(text) < len(questions[owner].answers[0]) + 12
            found.add(owner)
    short = {i for i, q in enumerate(questions)  # an answer of at most --doc-stride tokens always fits a window
             if len(tokenizer(q.answers[0], add_special_tokens=False)["input_ids"]) < WINDOWS.doc_stride}
    assert short and short <= found
    for owner in set(plain.question):  # every context token counts in exactly one window
        counted = Counter(plain.offsets[f][j] for f in range(len(plain.question)) if plain.question[f] == owner
                          for j in plain.max_context[f])
        context = questions[owner].context
        assert counted == Counter(map(tuple, tokenizer(context, add_special_tokens=False,
                                                       return_offsets_mapping=True)["offset_mapping"]))


def covering_span(tokenizer, context, start, end):
    """Independent: the context's characters under the tokens that overlap [start, end) (context tokenized alone)."""
    offsets = [o for o in tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]]
    inside = [o for o in offsets if o[0] < end and o[1] > start]
    return context[inside[0][0]:inside[-1][1]]


def test_a_model_pointing_at_the_answer_gets_it_back(tiny_models, xtreme):
    """An oracle whose logits peak at the tokens holding the answer's first and last characters in the window where
    the start token has the most context (run_squad's rule, recomputed here), at a longer wrong span elsewhere, and
    above all at a question token (never an answer): the n-best search, the max-context rule and the offsets must
    give back the answer (to the tokens' granularity)."""
    tokenizer = load_tokenizer(tiny_models[0])
    questions = qa.read_squad(xtreme / "xquad" / "xquad.es.first2articles.json")[:30]
    wide = argparse.Namespace(max_length=250, doc_stride=64, max_query_length=64, eval_batch_size=16)
    feats = qa.features(tokenizer, questions, wide)  # the oracle has no position limit: long windows
    windows = {}  # question -> [(context score of the answer's start token, window, start, end)]
    for f, (owner, spans) in enumerate(zip(feats.question, feats.offsets)):
        q = questions[owner]
        first, last = q.starts[0], q.starts[0] + len(q.answers[0])
        context = [j for j, o in enumerate(spans) if o]
        s = next((j for j in context if spans[j][0] <= first < spans[j][1]), None)
        e = next((j for j in context if spans[j][0] < last <= spans[j][1]), None)
        if s is not None and e is not None:
            score = min(s - context[0], context[-1] - s) + 0.01 * len(context)
            windows.setdefault(owner, []).append((score, f, s, e))
    peaks = {}
    for candidates in windows.values():
        best = max(candidates)[1]
        for _, f, s, e in candidates:
            peaks[tuple(feats.examples[f]["input_ids"])] = (s, e, f == best)
    assert any(len(c) > 1 for c in windows.values())  # answers seen in several windows: the rule matters

    class Oracle(torch.nn.Module):
        config = argparse.Namespace(type_vocab_size=1)

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, attention_mask):
            start, end = torch.zeros(input_ids.shape), torch.zeros(input_ids.shape)
            start[:, 1] = 30.0  # a question token: never an answer
            for row, (ids, mask) in enumerate(zip(input_ids, attention_mask)):
                s, e, best = peaks.get(tuple(ids[mask.bool()].tolist()), (None, None, False))
                if s is not None:
                    start[row, s], end[row, e if best else e + 1] = 10.0, 10.0 if best else 20.0
            return {"start_logits": start, "end_logits": end}

    predicted = qa.predictions(Oracle(), questions, feats, wide, pad_id=1)
    expected = [covering_span(tokenizer, q.context, q.starts[0], q.starts[0] + len(q.answers[0])) for q in questions]
    assert predicted == expected
    assert sum(p == q.answers[0] for p, q in zip(predicted, questions)) >= 20  # most answers are whole tokens


def test_qa_end_to_end_on_real_files(tiny_models, xtreme, tmp_path):
    test = tmp_path / "mlqa.de.json"
    data = json.loads((xtreme / "mlqa" / "dev-context-de-question-de.first46articles.json").read_text())
    test.write_text(json.dumps({"data": data["data"][:6], "version": data["version"]}), encoding="utf-8")
    argv = ["qa", "--dataset", "mlqa", "--model", f"tiny={tiny_models[0]}", "--train",
            str(xtreme / "squad" / "squad_v1.1_train_sample.json"), "--test", f"de={test}", "--output",
            str(tmp_path / "out"), "--seeds", "1", "--epochs", "1", "--max-length", "64", "--doc-stride", "16",
            "--max-query-length", "16", "--warmup-steps", "0"]
    assert cli.main(argv) == 0
    rows = {(r["task"], r["lang"], r["metric"]) for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert rows == {("mlqa", "de", "f1"), ("mlqa", "de", "exact_match")}
    assert cli.main(argv[:-8] + ["--max-length", "32", "--doc-stride", "16", "--max-query-length", "16"]) == 2
