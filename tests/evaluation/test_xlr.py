"""kmlm-eval xlr on tiny files in the format of `kmlm-preprocess xlr`, and on a release's per-language files."""
import csv
import json

import torch

from kmlm_eval import cli, xlr

RELATIONS = ["capital of", "located in", "born in", "country", "river", "city"]


def sample(i, lang):
    label = i % 6
    return {"id": f"test-{i:05d}", "cycle_id": i, "kind": "triangle", "lang": lang,
            "question": f"What is the relation between Paris{i} and France?",
            "context": ["Paris is capital of France .", "France located in Europe ."],
            "context_triples": [["Q90", "P1376", "Q142"], ["Q142", "P30", "Q46"]],
            "choices": RELATIONS, "choice_ids": [f"P{j}" for j in range(6)], "label": label,
            "head": "Q90", "tail": "Q142", "relation": f"P{label}"}


def write_xlr(directory, train=12, test=6):
    directory.mkdir(parents=True, exist_ok=True)
    files = {"train.en.jsonl": ("en", train), "dev.en.jsonl": ("en", test), "test.en.jsonl": ("en", test),
             "test.de.jsonl": ("de", test)}
    for name, (lang, n) in files.items():
        (directory / name).write_text("".join(json.dumps(sample(i, lang)) + "\n" for i in range(n)), encoding="utf-8")
    return directory


def test_xlr_compares_two_models_side_by_side(tiny_models, tmp_path, capsys):
    data = write_xlr(tmp_path / "xlr")
    a, b = tiny_models
    argv = ["xlr", "--model", f"base={a}", "--model", f"kmlm={b}", "--data", str(data), "--output",
            str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4", "--max-length", "48", "--seeds", "1"]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert {(r["model"], r["lang"]) for r in rows} == {(m, lang) for m in ("base", "kmlm")
                                                       for lang in ("de", "en", "avg")}
    assert all(0 <= float(r["value"]) <= 100 for r in rows)
    assert {int(r["count"]) for r in rows if r["lang"] != "avg"} == {6}
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| lang | base | kmlm | Δ |" in table and "| **avg** |" in table
    assert table in capsys.readouterr().out


def test_xlr_accuracy_is_the_share_of_argmax_hits():
    class AlwaysFirstChoice(torch.nn.Module):
        config = type("Config", (), {"type_vocab_size": 1})()

        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, input_ids, **_):
            return {"logits": -torch.arange(input_ids.shape[1], dtype=torch.float).expand(input_ids.shape[0], -1)}

    examples = [{"input_ids": [[5, 6], [7], [8]], "labels": label} for label in (0, 1, 0, 2)]
    assert xlr.accuracy(AlwaysFirstChoice(), examples, batch_size=3, pad_id=1) == 50.0


def test_encoding_keeps_every_choice_with_its_sample(tiny_models):
    from kmlm_eval.common import load_tokenizer

    tokenizer = load_tokenizer(tiny_models[0])
    samples = [{"context": "Paris is capital of France .", "question": "Paris and France?", "choices": RELATIONS[:3],
                "label": 2}, {"context": "Rome", "question": "capital Rome", "choices": RELATIONS[3:], "label": 0}]
    examples = xlr.encode(tokenizer, samples, max_length=48)
    assert [len(e["input_ids"]) for e in examples] == [3, 3] and [e["labels"] for e in examples] == [2, 0]
    decoded = tokenizer.decode(examples[1]["input_ids"][2], skip_special_tokens=True)
    assert decoded == "Rome capital Rome city"  # context | question + the third choice


def test_a_release_directory_of_per_language_files_with_other_field_names(tmp_path):
    release = tmp_path / "release"
    (release / "de").mkdir(parents=True)

    def item(i):
        return {"q": f"Relation {i}?", "facts": "Paris is capital of France .", "options": RELATIONS[:4],
                "answer": RELATIONS[i % 4]}

    (release / "train_en.jsonl").write_text("".join(json.dumps(item(i)) + "\n" for i in range(5)), encoding="utf-8")
    (release / "dev_en.json").write_text(json.dumps([item(i) for i in range(3)]), encoding="utf-8")
    (release / "de" / "test.jsonl").write_text(json.dumps(item(2)) + "\n", encoding="utf-8")
    (release / "test-fr.json").write_text(json.dumps([{**item(1), "answer": "B"}]), encoding="utf-8")
    found = xlr.discover(release)
    assert set(found) == {("train", "en"), ("dev", "en"), ("test", "de"), ("test", "fr")}
    fields = xlr.parse_fields("question=q,context=facts,choices=options,label=answer")
    assert xlr.read_split(found[("test", "fr")], fields)[0]["label"] == 1
    train = xlr.read_split(found[("train", "en")], fields)
    assert [s["label"] for s in train] == [0, 1, 2, 3, 0] and train[0]["context"] == "Paris is capital of France ."
    assert list(xlr.eval_files(release, None, "test")) == ["de", "fr"]


def test_xlr_malformed_line_is_reported_with_file_and_line(tiny_models, tmp_path, caplog):
    data = write_xlr(tmp_path / "xlr")
    lines = (data / "train.en.jsonl").read_text().splitlines()
    bad = json.loads(lines[2])
    bad["label"] = 9
    (data / "train.en.jsonl").write_text("\n".join(lines[:2] + [json.dumps(bad)] + lines[3:]) + "\n")
    assert cli.main(["xlr", "--model", str(tiny_models[0]), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert "train.en.jsonl:3: field 'label' must be an integer in 0..5" in caplog.text
    data = write_xlr(tmp_path / "xlr2")
    (data / "test.de.jsonl").write_text('{"question": "q"\n')
    assert cli.main(["xlr", "--model", str(tiny_models[0]), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert "test.de.jsonl:1: not valid JSON" in caplog.text
    (data / "dev.en.jsonl").unlink()
    (data / "test.de.jsonl").unlink()
    assert cli.main(["xlr", "--model", str(tiny_models[0]), "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert "no English dev file" in caplog.text and "--select last" in caplog.text


def test_label_forms_of_a_release():
    assert [xlr.label_index(x, ["a", "b", "c"]) for x in (2, "1", "c", "B", "D", 3, True)] == [2, 1, 2, 1, None,
                                                                                                None, None]
