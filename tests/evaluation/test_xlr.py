"""kmlm-eval xlr on tiny files in the format of `kmlm-preprocess xlr`."""
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
    files = {"train.en.jsonl": ("en", train), "test.en.jsonl": ("en", test), "test.de.jsonl": ("de", test)}
    for name, (lang, n) in files.items():
        (directory / name).write_text("".join(json.dumps(sample(i, lang)) + "\n" for i in range(n)), encoding="utf-8")
    return directory


def test_xlr_compares_two_models_side_by_side(tiny_models, tmp_path, capsys):
    data = write_xlr(tmp_path / "xlr")
    a, b = tiny_models
    argv = ["xlr", "--model", f"base={a}", "--model", f"kmlm={b}", "--data", str(data), "--output",
            str(tmp_path / "out"), "--epochs", "1", "--batch-size", "4", "--max-length", "48"]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert {(r["model"], r["lang"]) for r in rows} == {(m, l) for m in ("base", "kmlm") for l in ("de", "en", "avg")}
    assert all(0 <= float(r["value"]) <= 100 for r in rows)
    assert {int(r["count"]) for r in rows if r["lang"] != "avg"} == {6}
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| lang | base | kmlm | Δ |" in table and "| **avg** |" in table
    assert table in capsys.readouterr().out


def test_xlr_accuracy_is_the_share_of_argmax_hits():
    class AlwaysFirstChoice(torch.nn.Module):
        config = type("Config", (), {"type_vocab_size": 1})()

        def forward(self, input_ids, **_):
            scores = -torch.arange(input_ids.shape[1], dtype=torch.float).expand(input_ids.shape[0], -1)
            return type("Output", (), {"logits": scores})()

    samples = [{"context": "c", "question": "q", "choices": ["a", "b", "c"], "label": label}
               for label in (0, 1, 0, 2)]
    collate = lambda batch: {"input_ids": torch.zeros(len(batch), 3, 2, dtype=torch.long)}  # noqa: E731
    assert xlr.accuracy(AlwaysFirstChoice(), samples, collate, batch_size=3) == 50.0


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


def test_compare_merges_earlier_results(tmp_path, caplog):
    for name, value in (("base", 40.0), ("kmlm", 55.5)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.csv").write_text(
            "task,model,lang,metric,value,count\n"
            f"xlr,{name},en,test accuracy,{value},10\nxlr,{name},de,test accuracy,{value - 10},10\n")
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "kmlm" / "results.csv"),
                     "--output", str(tmp_path / "merged")]) == 0
    table = (tmp_path / "merged" / "results.md").read_text()
    assert "| en | 40.00 | 55.50 | +15.50 |" in table and "| **avg** | 35.00 | 50.50 | +15.50 |" in table
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "base"), "--output", str(tmp_path / "x")]) == 2
    assert "same model name" in caplog.text
