"""The fine-tuning protocol (dev selection, seeds, micro-batches), the seed statistics, the paper's numbers beside
ours, the result files, and that kmlm_eval never imports fairseq."""
import argparse
import csv
import subprocess
import sys

import numpy as np
import pytest
import torch

from kmlm_eval import cli, finetune, paper
from kmlm_eval.batching import collate, length_sorted_batches, pad_rows
from kmlm_eval.results import Score, markdown_table, read_results, summarise, write_results
from preprocess.core.errors import UserFacingError
from tests.conftest import REPO_ROOT


class Regressor(torch.nn.Module):
    """y = w·x: deterministic (no dropout), so updates can be compared exactly."""
    config = argparse.Namespace(type_vocab_size=1)

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(4))

    def forward(self, input_ids, attention_mask, labels=None):
        prediction = (input_ids.float() * attention_mask).matmul(self.weight)
        return argparse.Namespace(loss=((prediction - labels.float()) ** 2).mean(), logits=prediction)


def training_args(**changes):
    parser = argparse.ArgumentParser()
    finetune.add_training_arguments(parser, "test", epochs=2, lr=0.05, batch_size=4, max_length=8, eval_steps=2)
    args = parser.parse_args([])
    for key, value in changes.items():
        setattr(args, key, value)
    return args


EXAMPLES = [{"input_ids": [i % 3, 1, (i * 7) % 5, 2], "labels": i % 4} for i in range(8)]


def test_dev_selection_restores_the_best_scored_state_and_last_keeps_the_last():
    seen, scores = [], iter([10.0, 30.0, 20.0, 30.0])  # after updates 1, 2 (the best: first of the tie), 3, 4

    def dev_score(model):
        seen.append(model.weight.detach().clone())
        return next(scores)

    model = finetune.train(Regressor(), EXAMPLES, training_args(eval_steps=1), pad_id=0, seed=1, dev_score=dev_score)
    assert len(seen) == 4  # 2 epochs x 2 updates, each scored
    assert torch.equal(model.weight, seen[1]) and not torch.equal(model.weight, seen[3])
    last = finetune.train(Regressor(), EXAMPLES, training_args(select="last"), pad_id=0, seed=1)
    assert torch.equal(last.weight, seen[3])


def test_evaluation_steps_every_n_updates_or_epoch_and_always_the_last():
    args = training_args(eval_steps=3)
    assert finetune.evaluation_steps(args, steps_per_epoch=4, total=8) == {3, 6, 8}
    args.eval_steps = 0
    assert finetune.evaluation_steps(args, steps_per_epoch=4, total=10) == {4, 8, 10}


def test_micro_batches_give_the_same_updates():
    one = finetune.train(Regressor(), EXAMPLES, training_args(select="last"), pad_id=0, seed=3)
    four = finetune.train(Regressor(), EXAMPLES, training_args(select="last", grad_accum=4), pad_id=0, seed=3)
    assert torch.allclose(one.weight, four.weight, atol=1e-6)
    other_seed = finetune.train(Regressor(), EXAMPLES, training_args(select="last"), pad_id=0, seed=4)
    assert not torch.allclose(one.weight, other_seed.weight)  # the seed orders the data


def test_dev_selection_needs_a_dev_set_and_seeds_are_checked():
    with pytest.raises(UserFacingError, match="needs an English dev set"):
        finetune.check_training_arguments(training_args(), has_dev=False)
    finetune.check_training_arguments(training_args(select="last"), has_dev=False)
    with pytest.raises(UserFacingError, match="distinct integers"):
        finetune.parse_seeds("1,1")
    assert finetune.parse_seeds("1,2,3") == [1, 2, 3]


def test_padding_and_length_sorted_batches():
    ids, mask = pad_rows([[5, 6, 7], [8], []], value=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [1, 1, 1]] and mask.sum() == 4
    batch = collate([{"input_ids": [[1, 2], [3]], "labels": 1}, {"input_ids": [[4], [5, 6, 7]], "labels": 0}], 0)
    assert batch["input_ids"].shape == (2, 2, 3) and batch["labels"].tolist() == [1, 0]
    examples = [{"input_ids": [0] * n} for n in (3, 9, 1, 5, 7)]
    assert length_sorted_batches(examples, 2) == [[1, 4], [3, 0], [2]]


def test_seeds_reduce_to_mean_and_sample_std_with_the_average_language_per_seed():
    scores = [Score("t", "m", lang, "acc", value, 10, seed)
              for seed, (en, de) in enumerate([(60.0, 40.0), (70.0, 44.0), (65.0, 30.0)], 1)
              for lang, value in (("en", en), ("de", de))]
    results = {r.lang: r for r in summarise(scores)}
    assert results["en"].value == pytest.approx(65.0) and results["en"].std == pytest.approx(np.std([60, 70, 65],
                                                                                                      ddof=1))
    averages = [50.0, 57.0, 47.5]  # per seed
    assert results["avg"].runs == tuple(averages)
    assert results["avg"].std == pytest.approx(np.std(averages, ddof=1))
    single = summarise([Score("t", "m", "en", "acc", 50.0, 3, 1)])
    assert single[0].std == 0.0 and "±" not in markdown_table(single)


def test_paper_numbers_beside_ours_with_the_difference(tmp_path):
    rows = paper.load()
    assert rows["XLM-R base"].value("xlr", "test accuracy", "en") == 64.38
    assert rows["KMLM_R base"].value("xlr", "test accuracy", "avg") == 57.45
    ours = summarise([Score("xlr", "kmlm", lang, "test accuracy", v, 5, 1) for lang, v in (("en", 70.0), ("de", 50.0))])
    table = write_results(ours, tmp_path, [rows["KMLM_R base"]])
    assert "| lang | kmlm | paper: KMLM_R base | kmlm − paper |" in table
    assert "| en | 70.00 | 71.52 | -1.52 |" in table and "| de | 50.00 | – | – |" in table
    assert "| **avg** | 60.00 | 57.45 | +2.55 |" in table
    assert (tmp_path / "results.png").stat().st_size > 1000
    with pytest.raises(UserFacingError, match="has the rows"):
        paper.paper_row("KMLM huge")


def test_paper_data_file_lines_are_checked(tmp_path):
    bad = tmp_path / "paper.csv"
    bad.write_text(",".join(paper.COLUMNS) + "\nT2,xlr,acc,en,XLM-R base,sixty,src\n", encoding="utf-8")
    with pytest.raises(UserFacingError, match=r"paper.csv:2: value 'sixty' is not a number"):
        paper.load(bad)


def test_compare_merges_runs_and_reads_the_one_seed_format(tmp_path, caplog):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.csv").write_text("task,model,lang,metric,value,count\n"
                                                  "xlr,base,en,test accuracy,40.0,10\n")
    new = summarise([Score("xlr", "kmlm", "en", "test accuracy", v, 10, s) for s, v in ((1, 50.0), (2, 54.0))])
    write_results(new, tmp_path / "new")
    assert cli.main(["compare", str(tmp_path / "old"), str(tmp_path / "new" / "results.csv"), "--paper",
                     "XLM-R base", "--output", str(tmp_path / "merged")]) == 0
    table = (tmp_path / "merged" / "results.md").read_text()
    assert "| en | 40.00 | 52.00 ± 2.83 | +12.00 | 64.38 | -24.38 | -12.38 |" in table
    rows = list(csv.DictReader(open(tmp_path / "merged" / "results.csv")))
    assert [(r["model"], r["seeds"], r["runs"]) for r in rows] == [("base", "1", "40.0000"),
                                                                    ("kmlm", "2", "50.0000;54.0000")]
    assert read_results(tmp_path / "merged")[1].runs == (50.0, 54.0)
    assert cli.main(["compare", str(tmp_path / "old"), str(tmp_path / "old"), "--output", str(tmp_path / "x")]) == 2
    assert "same model name" in caplog.text


def test_kmlm_eval_never_imports_fairseq():
    code = ("import sys, kmlm_eval.cli as c; c.build_parser(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fairseq', 'kmlm_fairseq')); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
