"""python -m kmlm_fairseq.validate: the three validation losses of a checkpoint, scored like fairseq's own
validation (compared with the losses fairseq logs at the end of a training), per language, for any checkpoint."""
import csv
import re
import subprocess
import sys

import pytest

from kmlm_fairseq.data.toy_corpus import write_toy_corpus
from kmlm_fairseq.validate import Score, pooled
from tests.conftest import REPO_ROOT
from tests.plugin.test_kmlm_training import SIZES, hydra_train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = tmp_path_factory.mktemp("toy")
    write_toy_corpus(str(data), languages=("en", "de", "fr"), sizes=SIZES)
    save = tmp_path_factory.mktemp("ckpt")
    log = hydra_train(data, save, "optimization.max_update=12", "dataset.validate_interval_updates=12",
                      "checkpoint.save_interval_updates=12", "common.seed=4")
    return data, save, log


def validate(checkpoint, data, out, *extra):
    result = subprocess.run([sys.executable, "-m", "kmlm_fairseq.validate", str(checkpoint), "--data", str(data),
                             "--output", str(out), *extra], cwd=REPO_ROOT, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    return [Score(r["task"], r["model"], r["lang"], r["metric"], float(r["value"]), int(r["count"]))
            for r in rows if r["lang"] != "avg"], result.stderr


def test_losses_pooled_over_languages_are_fairseqs_validation(trained, tmp_path):
    data, save, log = trained
    valid = [line for line in log.splitlines() if "valid on 'valid' subset" in line][-1]
    logged = {name: float(v) for name, v in re.findall(r"(\w+_loss) ([0-9.]+)", valid)}
    scores, _ = validate(save / "checkpoint_last.pt", data, tmp_path / "out", "--seed", "4", "--config", "tiny_cpu")
    assert {s.lang for s in scores} == {"en", "de", "fr"}
    mine = pooled(scores)
    assert set(mine) == {"plain_loss", "knowledge_loss", "reasoning_loss"}
    for metric, value in mine.items():
        assert value == pytest.approx(logged[metric], abs=2e-3)  # fairseq logs 3 decimals


def test_another_seed_masks_other_tokens_and_a_plain_only_model_gets_all_three_losses(trained, tmp_path):
    data, save, _ = trained
    first, _ = validate(save / "checkpoint_last.pt", data, tmp_path / "a", "--seed", "4", "--config", "tiny_cpu")
    second, _ = validate(save / "checkpoint_last.pt", data, tmp_path / "b", "--seed", "5", "--config", "tiny_cpu")
    assert pooled(first) != pooled(second)
    plain_save = tmp_path / "plain"
    hydra_train(data, plain_save, "optimization.max_update=2", "task.streams='plain'")
    scores, _ = validate(plain_save / "checkpoint_last.pt", data, tmp_path / "c", "--config", "tiny_cpu")
    assert {s.metric for s in scores} == {"plain_loss", "knowledge_loss", "reasoning_loss"}


def test_a_config_that_does_not_compose_is_a_clear_error(trained, tmp_path):
    data, save, _ = trained
    result = subprocess.run([sys.executable, "-m", "kmlm_fairseq.validate", str(save / "checkpoint_last.pt"),
                             "--data", str(data), "--output", str(tmp_path), "--config", "tiny_cpu", "task.nosuch=1"],
                            cwd=REPO_ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2 and "does not compose" in result.stderr and "Traceback" not in result.stderr
