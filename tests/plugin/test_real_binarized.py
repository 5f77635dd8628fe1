"""The plugin on real binarized data: the bundled Wikidata samples through the preprocessing stages (ingest ...
spm, binarize, plain), then the masking rules on every sample and tiny_cpu training on the result."""
import os
import subprocess

import numpy as np
import pytest

from kmlm_fairseq.data.knowledge_mask_dataset import KnowledgeMaskDataset
from kmlm_fairseq.data.reasoning_mask_dataset import ReasoningMaskDataset
from kmlm_fairseq.tasks.kmlm_reasoning import KMLMConfig, KMLMReasoningTask
from preprocess.core.span_tags import HEAD, MENTION_ROLES, RELATION, TAIL, tag_role, tag_sentence, tag_span
from preprocess.pipeline.train_log import TrainingProgress
from tests.conftest import REPO_ROOT, venv_bin

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def data(bundled_training_data):
    return bundled_training_data


@pytest.fixture(scope="module")
def task(data):
    cfg = KMLMConfig(data=str(data), seed=1, batch_size=8, train_subset="train", restore_file="checkpoint_last.pt")
    task = KMLMReasoningTask.setup_task(cfg)
    task.load_dataset("train")
    return task


def masked_samples(masked, epochs=3):
    unmasked = masked.dataset
    for epoch in range(1, epochs + 1):
        masked.set_epoch(epoch)
        for index in range(len(masked)):
            tokens, tags = unmasked[index].numpy()
            sample = masked[index]
            yield tokens, tags, sample["source"].numpy(), sample["target"].numpy() != masked.pad_idx


def test_real_knowledge_sentences_mask_whole_mentions_only(task):
    masked = task.dataset("train").streams["knowledge"]
    assert isinstance(masked, KnowledgeMaskDataset) and len(masked) > 1000
    for tokens, tags, source, targets in masked_samples(masked):
        roles, spans = tag_role(tags), tag_span(tags)
        mention = np.isin(roles, MENTION_ROLES)
        assert targets.any() and not targets[~mention].any()
        assert (targets == (mention & np.isin(spans, spans[targets]))).all()
        assert (source[~targets] == tokens[~targets]).all()


def test_real_reasoning_samples_follow_the_cycle_rules(task):
    masked = task.dataset("train").streams["reasoning"]
    mask = task.mask_idx
    assert isinstance(masked, ReasoningMaskDataset)
    kinds = {3: 0, 5: 0}
    for tokens, tags, source, targets in masked_samples(masked):
        roles, spans, sentences = tag_role(tags), tag_span(tags), tag_sentence(tags)
        mention = np.isin(roles, MENTION_ROLES)
        count = np.unique(sentences[mention]).size
        kinds[count] += 1
        assert (source[targets] == mask).all() and (source[~targets] == tokens[~targets]).all()
        assert (targets == (mention & np.isin(spans, spans[targets]))).all()
        relations = np.unique(spans[targets & (roles == RELATION)]).size
        entities = np.unique(spans[targets & ((roles == HEAD) | (roles == TAIL))]).size
        if count == 3:
            assert (relations, entities) == (1, 0)
        else:
            assert (relations, entities) in ((1, 1), (1, 2), (0, 2))
    assert kinds[3] > 0 and kinds[5] > 0


def test_tiny_cpu_trains_on_real_data_and_the_pipeline_echo_tabulates_it(data, tmp_path):
    result = subprocess.run([venv_bin("fairseq-hydra-train"), "--config-dir", str(REPO_ROOT / "configs"),
                             "--config-name", "tiny_cpu", f"task.data={data}", f"checkpoint.save_dir={tmp_path}",
                             "optimization.max_update=10", "common.log_interval=5"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    echo = TrainingProgress()
    shown = [echo(line) for line in (result.stdout + result.stderr).splitlines(keepends=True)]
    rows = [line.split() for text in shown if text for line in text.splitlines()]
    assert rows[0] == ["update", "loss", "plain_loss", "knowledge_loss", "reasoning_loss"]
    updates = [row for row in rows if row[0] in ("5", "10")]
    assert [row[0] for row in updates] == ["5", "10"]
    assert all(len(row) == 5 and all(float(x) > 0 for x in row[1:]) for row in updates)
    assert (tmp_path / "checkpoint_last.pt").exists()
