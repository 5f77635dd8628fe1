"""The plugin on real binarized data: the bundled Wikidata samples through the preprocessing stages (ingest ...
spm, binarize, plain), then the masking rules on every sample and tiny_cpu training on the result."""
import math
import os
import subprocess

import numpy as np
import pytest

from kmlm_fairseq.data.knowledge_mask_dataset import KnowledgeMaskDataset
from kmlm_fairseq.data.reasoning_mask_dataset import ReasoningMaskDataset
from kmlm_fairseq.tasks.kmlm_reasoning import KMLMConfig, KMLMReasoningTask
from preprocess.core.span_tags import (
    HEAD,
    LINK,
    MENTION_ROLES,
    RELATION,
    SPECIAL,
    TAIL,
    tag_role,
    tag_sentence,
    tag_span,
)
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


def test_real_knowledge_sentences_predict_15_percent_of_entity_relation_tokens_never_links(task):
    """The default knowledge masking on real sentences (the paper, section 3.2 / Table 9): the share of predicted
    entity and relation tokens is 0.15 within a binomial bound, no link (or <s>, </s>) is ever predicted, and the
    predicted tokens are hidden (80% <mask>)."""
    masked = task.dataset("train").streams["knowledge"]
    assert isinstance(masked, KnowledgeMaskDataset) and masked.mode == "tokens" and len(masked) > 1000
    mentions = predicted = hidden = 0
    for tokens, tags, source, targets in masked_samples(masked):
        roles = tag_role(tags)
        assert not targets[(roles == LINK) | (roles == SPECIAL)].any()
        mention = np.isin(roles, MENTION_ROLES)
        mentions += mention.sum()
        predicted += (targets & mention).sum()
        hidden += (source[targets] == task.mask_idx).sum()
        kept = ~targets & (roles != LINK)
        assert (source[kept] == tokens[kept]).all()
    assert abs(predicted / mentions - 0.15) < 4 * math.sqrt(0.15 * 0.85 / mentions), (predicted, mentions)
    assert hidden > 0.75 * predicted


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


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """(fairseq-hydra-train's output, save_dir) of 10 tiny_cpu updates on the real data."""
    save_dir = tmp_path_factory.mktemp("checkpoints")
    result = subprocess.run([venv_bin("fairseq-hydra-train"), "--config-dir", str(REPO_ROOT / "configs"),
                             "--config-name", "tiny_cpu", f"task.data={data}", f"checkpoint.save_dir={save_dir}",
                             "optimization.max_update=10", "common.log_interval=5"],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result, save_dir


def test_tiny_cpu_trains_on_real_data_and_the_pipeline_echo_tabulates_it(trained):
    result, tmp_path = trained
    echo = TrainingProgress()
    shown = [echo(line) for line in (result.stdout + result.stderr).splitlines(keepends=True)]
    rows = [line.split() for text in shown if text for line in text.splitlines()]
    assert rows[0] == ["update", "loss", "plain_loss", "knowledge_loss", "reasoning_loss"]
    updates = [row for row in rows if row[0] in ("5", "10")]
    assert [row[0] for row in updates] == ["5", "10"]
    assert all(len(row) == 5 and all(float(x) > 0 for x in row[1:]) for row in updates)
    assert (tmp_path / "checkpoint_last.pt").exists()


@pytest.mark.parametrize("hub_class", ["XLMRModel", "RobertaModel"])
def test_fairseq_hub_loads_our_checkpoint_offline_with_its_sentencepiece_model(trained, data, hub_class):
    """The checkpoint records bpe: sentencepiece and DATA's model (recipe/kmlm.yaml), so fairseq's hub interface
    neither needs the model passed nor tries to download GPT-2's BPE (RobertaModel's default)."""
    from fairseq.models.roberta import RobertaModel, XLMRModel

    _, save_dir = trained
    hub_type = {"XLMRModel": XLMRModel, "RobertaModel": RobertaModel}[hub_class]
    hub = hub_type.from_pretrained(str(save_dir), "checkpoint_last.pt", str(data)).eval()
    assert type(hub.bpe).__name__ == "SentencepieceBPE"
    sentence = "Berlin <mask> Deutschland ."
    filled = hub.fill_mask(sentence, topk=3)
    assert len(filled) == 3
    for text, score, token in filled:
        assert text.startswith("Berlin") and text.endswith("Deutschland .") and "<mask>" not in text
        assert token.strip("▁") in text and 0 < score <= 1
    assert hub.encode("Berlin").tolist()[0] == hub.task.source_dictionary.bos()


def test_export_of_a_kmlm_checkpoint_has_a_model_card_with_its_recipe_and_losses(trained, tmp_path):
    from kmlm_fairseq.export import cli

    _, save_dir = trained
    assert cli.main(["hf", str(save_dir / "checkpoint_last.pt"), str(tmp_path / "hf")]) == 0
    card = (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("# tiny_cpu: XLMRobertaForMaskedLM") and "KMLM_R: plain-text MLM" in card
    assert "--config-name tiny_cpu" in card and "`checkpoint_last.pt` after 10 updates" in card
    assert "plain: de, en, ja; knowledge: de, ja; reasoning: de, en, ja" in card and str(save_dir) not in card
    assert "| knowledge masking | tokens |" in card and "| alpha | 0.3 |" in card
    assert "| split | loss | plain_loss | knowledge_loss | reasoning_loss |" in card
    train_row = next(line for line in card.splitlines() if line.startswith("| train "))
    losses = [float(cell) for cell in train_row.strip("|").split("|")[1:]]
    assert len(losses) == 4 and all(value > 0 for value in losses)
    assert losses[0] == pytest.approx(losses[1] + 0.3 * (losses[2] + losses[3]), abs=2e-3)
