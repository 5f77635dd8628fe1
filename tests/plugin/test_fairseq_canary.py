"""The canary for the fairseq base: stock RoBERTa masked_lm trains and resumes through fairseq-hydra-train.

If this fails, nothing of ours is to blame yet: the fairseq/torch/numpy install or our compat fixes are.
"""
import random
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, venv_bin

UPDATE_LOSS = re.compile(r"loss=([0-9.]+).*num_updates=(\d+),")


def write_corpus(path, lines=300, seed=0):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    sentences = (" ".join(rng.choice(words) for _ in range(rng.randint(5, 15))) for _ in range(lines))
    path.write_text("\n".join(sentences) + "\n")


@pytest.fixture(scope="module")
def data_bin(tmp_path_factory):
    work = tmp_path_factory.mktemp("canary")
    write_corpus(work / "train.txt")
    subprocess.run(
        [venv_bin("fairseq-preprocess"), "--only-source", "--trainpref", str(work / "train.txt"),
         "--destdir", str(work / "bin"), "--workers", "1"],
        check=True, capture_output=True, text=True,
    )
    return work / "bin"


def hydra_train(data_bin, save_dir, max_update):
    result = subprocess.run(
        [venv_bin("fairseq-hydra-train"), "--config-dir", "configs", "--config-name", "canary_masked_lm",
         f"task.data={data_bin}", f"checkpoint.save_dir={save_dir}", f"optimization.max_update={max_update}"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def losses_by_update(log):
    return {int(update): float(loss) for loss, update in UPDATE_LOSS.findall(log)}


def test_canary_masked_lm_trains_and_resumes_exactly(data_bin, tmp_path):
    straight = losses_by_update(hydra_train(data_bin, tmp_path / "straight", max_update=8))
    assert sorted(straight) == list(range(1, 9))

    first = hydra_train(data_bin, tmp_path / "resumed", max_update=4)
    assert (tmp_path / "resumed" / "checkpoint_last.pt").exists()
    second = hydra_train(data_bin, tmp_path / "resumed", max_update=8)

    assert "Loaded checkpoint" in second and "(epoch 1 @ 4 updates)" in second
    resumed = {**losses_by_update(first), **losses_by_update(second)}
    assert sorted(losses_by_update(second)) == [5, 6, 7, 8]
    assert resumed == straight


def test_import_kmlm_fairseq_makes_fairseq_checkpoints_loadable(tmp_path):
    """torch >= 2.6 refuses argparse.Namespace in torch.load by default; importing the plugin allows it."""
    checkpoint = tmp_path / "ckpt.pt"
    write = "import argparse, torch; torch.save({'args': argparse.Namespace(lr=1.0)}, %r)" % str(checkpoint)
    subprocess.run([sys.executable, "-c", write], check=True)

    plain = subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(checkpoint)!r})"],
                           capture_output=True, text=True)
    assert plain.returncode != 0 and "Namespace" in plain.stderr

    fixed = subprocess.run(
        [sys.executable, "-c", f"import kmlm_fairseq, torch; print(torch.load({str(checkpoint)!r})['args'].lr)"],
        capture_output=True, text=True,
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout.strip() == "1.0"


def test_import_kmlm_fairseq_makes_broadcast_checkpoint_state_loadable(tmp_path):
    """What fairseq broadcasts between ranks on resume (distributed_utils.broadcast_object) must load too."""
    state = tmp_path / "state.pt"
    write = ("import collections, typing, torch; "
             f"torch.save({{'hint': typing.Any, 'meters': collections.defaultdict(list), 'n': [1]}}, {str(state)!r})")
    subprocess.run([sys.executable, "-c", write], check=True)
    read = f"import kmlm_fairseq, torch; s = torch.load({str(state)!r}); print(s['n'], s['hint'], dict(s['meters']))"
    result = subprocess.run([sys.executable, "-c", read], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[1]", "typing.Any", "{}"]
