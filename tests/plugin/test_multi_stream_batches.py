"""The kmlm tasks' data path in one process: streams, per-stream batches, cycling, languages, the criterion."""
import collections
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fairseq import models
from fairseq.logging import metrics
from omegaconf import OmegaConf

from kmlm_fairseq.criterions.kmlm_multitask import KMLMMultitaskConfig, KMLMMultitaskLoss
from kmlm_fairseq.data.binarized_streams import temperature_sizes
from kmlm_fairseq.data.knowledge_mask_dataset import KnowledgeMaskDataset
from kmlm_fairseq.data.toy_corpus import write_toy_corpus
from kmlm_fairseq.tasks.kmlm_knowledge import KMLMKnowledgeConfig, KMLMKnowledgeTask
from kmlm_fairseq.tasks.kmlm_reasoning import KMLMConfig, KMLMReasoningTask
from preprocess.core.span_tags import LINK, MENTION_ROLES, SPECIAL, tag_role

# per language: plain 80 lines, knowledge 64 (de only: code-switched en-de), reasoning 15 samples
SIZES = {("plain", "train"): 80, ("knowledge", "train"): 64, ("reasoning", "train"): 15,
         ("plain", "valid"): 5, ("knowledge", "valid"): 7, ("reasoning", "valid"): 3}
BATCH = {"plain": 4, "knowledge": 8, "reasoning": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy")
    write_toy_corpus(str(path), languages=("en", "de"), sizes=SIZES)
    return path


def make_task(data, task_class=KMLMReasoningTask, config_class=KMLMConfig, **overrides):
    settings = dict(data=str(data), seed=1, batch_size=8, train_subset="train", restore_file="checkpoint_last.pt",
                    sample_break_mode="eos", epoch_stream="longest")
    cfg = config_class(**{**settings, **overrides})
    return task_class.setup_task(cfg)


def batch_iterator(task, split="train", epoch=1, num_shards=1, shard_id=0):
    if split not in task.datasets:
        task.load_dataset(split)
    return task.get_batch_iterator(task.dataset(split), max_sentences=8, max_positions=128, seed=1,
                                   num_shards=num_shards, shard_id=shard_id, epoch=epoch,
                                   ignore_invalid_inputs=True)


def per_stream_batch_task(data, **overrides):
    return make_task(data, **{f"{stream}_batch_size": size for stream, size in BATCH.items()}, **overrides)


def test_every_update_has_one_sub_batch_of_each_stream_with_its_own_size(data):
    task = per_stream_batch_task(data)
    batches = list(batch_iterator(task).next_epoch_itr(shuffle=True))
    # the longest stream in batches (plain: 160 / 4) sets the epoch; the others are cycled to as many batches
    assert len(batches) == 40
    for batch in batches:
        assert list(batch) == ["plain", "knowledge", "reasoning"]
        assert {stream: sub["nsentences"] for stream, sub in batch.items()} == BATCH
        for stream, sub in batch.items():
            predicted = sub["target"].ne(task.dictionary.pad()).sum(dim=1)
            # a plain line or knowledge sentence may draw no token (the official collator's Bernoulli); a
            # reasoning sample always predicts its masked mentions
            assert (predicted.min() if stream == "reasoning" else predicted.sum()) > 0


def test_distributed_workers_get_equal_numbers_of_full_batches(data):
    task = per_stream_batch_task(data)
    lengths = []
    for shard_id in range(3):
        batches = list(batch_iterator(task, num_shards=3, shard_id=shard_id).next_epoch_itr(shuffle=True))
        assert all(len(batch) == 3 for batch in batches), "a worker got a batch without every stream"
        lengths.append(len(batches))
    assert lengths == [14, 14, 14]  # 40 batches rounded up to a multiple of 3 workers


def appearances(task, epoch):
    """How often each reasoning sample fills a slot in an epoch, and the masks of its repeats."""
    cycled = task.dataset("train").streams["reasoning"].dataset
    masked = task.dataset("train").streams["reasoning"]
    masked.set_epoch(epoch)
    counts = np.bincount(cycled.mapping, minlength=len(cycled.dataset))
    masks = collections.defaultdict(list)
    for slot, item in enumerate(cycled.mapping):
        masks[int(item)].append(tuple(masked[slot]["target"].tolist()))
    return counts, masks


def test_short_stream_cycles_reshuffled_per_epoch_with_new_masks(data):
    task = per_stream_batch_task(data)
    task.load_dataset("train")
    # reasoning: 30 samples cycled to 40 batches x 2 = 80 slots: every sample 2 or 3 times per epoch
    counts_1, masks_1 = appearances(task, epoch=1)
    counts_2, _ = appearances(task, epoch=2)
    assert sorted(set(counts_1)) == [2, 3] and counts_1.sum() == 80
    assert not np.array_equal(counts_1, counts_2), "the same samples got the extra appearance in both epochs"
    # a triangle has only 3 possible masks, so repeats may coincide; with one mask per sample none would differ
    repeats = [masks for masks in masks_1.values() if len(masks) > 1]
    assert np.mean([len(set(masks)) > 1 for masks in repeats]) > 0.5, "repeats should get masks of their own"


def test_masks_and_order_change_between_epochs_through_the_iterator(data):
    task = per_stream_batch_task(data)
    iterator = batch_iterator(task)
    epochs = []
    for _ in range(2):
        epochs.append({(int(i), tuple(t.tolist())) for batch in iterator.next_epoch_itr(shuffle=True)
                       for i, t in zip(batch["plain"]["id"], batch["plain"]["target"])})
    assert len(epochs[0] & epochs[1]) < 0.2 * len(epochs[0])


def test_validation_uses_every_sample_exactly_once(data):
    task = per_stream_batch_task(data)
    ids = collections.defaultdict(list)
    for batch in batch_iterator(task, split="valid").next_epoch_itr(shuffle=False):
        for stream, sub in batch.items():
            ids[stream].extend(sub["id"].tolist())
    assert {stream: sorted(values) for stream, values in ids.items()} == {
        "plain": list(range(10)), "knowledge": list(range(7)), "reasoning": list(range(6))}


def test_languages_are_temperature_sampled_per_epoch_reproducibly(tmp_path):
    write_toy_corpus(str(tmp_path), languages=("en", "de"), sizes={("plain", "train"): {"en": 60, "de": 15}})
    make = lambda: make_task(tmp_path, streams="plain", multilang_sampling_alpha=0.5)  # noqa: E731
    task, twin = make(), make()
    for t in (task, twin):
        t.load_dataset("train")
    expected = temperature_sizes([15, 60], 0.5)  # languages in sorted order: de, en
    assert expected.tolist() == [25, 50]
    mixed = task.dataset("train").streams["plain"].dataset
    assert [len(d) for d in mixed.datasets] == expected.tolist()
    de = mixed.datasets[0]
    draws = {}
    for epoch in (1, 2):
        mixed.set_epoch(epoch)
        twin.dataset("train").streams["plain"].dataset.set_epoch(epoch)
        draws[epoch] = de.mapping.copy()
        assert np.array_equal(draws[epoch], twin.dataset("train").streams["plain"].dataset.datasets[0].mapping)
        assert sorted(set(np.bincount(draws[epoch], minlength=15))) == [1, 2]
    assert not np.array_equal(draws[1], draws[2])


def test_a_stream_can_be_left_out(data):
    task = make_task(data, streams="plain,reasoning")
    batches = list(batch_iterator(task).next_epoch_itr(shuffle=True))
    assert all(list(batch) == ["plain", "reasoning"] for batch in batches)


def test_kmlm_knowledge_masks_reasoning_with_token_mlm_as_the_official_ablation(data):
    """KMLM (no R): each reasoning token with p = 0.15, the links never predicted (run_k_mlm_ablation_mlm.py)."""
    task = make_task(data, task_class=KMLMKnowledgeTask, config_class=KMLMKnowledgeConfig)
    task.load_dataset("train")
    masked = task.dataset("train").streams["reasoning"]
    assert isinstance(masked, KnowledgeMaskDataset) and masked.mode == "tokens"
    mentions = predicted = 0
    for epoch in range(1, 11):
        masked.set_epoch(epoch)
        for index in range(len(masked)):
            roles = tag_role(masked.dataset[index].numpy()[1])
            targets = masked[index]["target"].numpy() != task.dictionary.pad()
            assert not targets[(roles == LINK) | (roles == SPECIAL)].any()
            mention = np.isin(roles, MENTION_ROLES)
            mentions += mention.sum()
            predicted += (targets & mention).sum()
    assert abs(predicted / mentions - 0.15) < 4 * math.sqrt(0.15 * 0.85 / mentions)
    spans = make_task(data, task_class=KMLMKnowledgeTask, config_class=KMLMKnowledgeConfig, knowledge_masking="spans")
    spans.load_dataset("train")
    assert spans.dataset("train").streams["reasoning"].mode == "spans"  # kmlm_base before issue 14


def test_missing_or_misaligned_tags_are_clear_errors(tmp_path):
    write_toy_corpus(str(tmp_path), languages=("en", "de"), sizes=SIZES)
    knowledge = tmp_path / "knowledge" / "de"
    os.replace(knowledge / "train.tags.idx", tmp_path / "saved.idx")
    with pytest.raises(FileNotFoundError, match="train.bin has no span tags"):
        make_task(tmp_path).load_dataset("train")
    os.replace(tmp_path / "saved.idx", knowledge / "train.tags.idx")
    os.replace(tmp_path / "reasoning" / "de" / "train.tags.idx", knowledge / "train.tags.idx")
    os.replace(tmp_path / "reasoning" / "de" / "train.tags.bin", knowledge / "train.tags.bin")
    with pytest.raises(ValueError, match="64 token samples but 15 tag samples"):
        make_task(tmp_path).load_dataset("train")


def test_training_stream_without_data_is_a_clear_error(tmp_path):
    write_toy_corpus(str(tmp_path), languages=("en",), sizes=SIZES)  # English only: no knowledge data
    with pytest.raises(FileNotFoundError, match="knowledge: no train data.*leave the stream out"):
        make_task(tmp_path).load_dataset("train")


def test_criterion_combines_stream_means_and_logs_every_stream(data):
    task = per_stream_batch_task(data)
    model = models.build_model(OmegaConf.create({"_name": "roberta_tiny"}), task).eval()  # no dropout
    criterion = KMLMMultitaskLoss(KMLMMultitaskConfig(alpha=0.3), task)
    batch = next(iter(batch_iterator(task).next_epoch_itr(shuffle=False)))
    with torch.no_grad():
        loss, sample_size, log = criterion(model, batch)
    means = {stream: float(log[f"{stream}_loss"]) / float(log[f"{stream}_predicted"]) for stream in BATCH}
    assert sample_size == 1
    assert float(loss) == pytest.approx(means["plain"] + 0.3 * (means["knowledge"] + means["reasoning"]), rel=1e-5)

    del batch["knowledge"]
    with torch.no_grad():
        partial_loss, _, partial_log = criterion(model, batch)
    assert set(partial_log) == set(log)
    assert all(torch.is_tensor(partial_log[f"knowledge_{key}"]) and partial_log[f"knowledge_{key}"] == 0
               for key in ("loss", "weighted_loss", "predicted", "correct"))
    assert float(partial_loss) == pytest.approx(means["plain"] + 0.3 * means["reasoning"], rel=1e-5)


def test_logged_loss_is_l_mlm_plus_alpha_times_l_cs_plus_l_l_from_an_independent_cross_entropy(data):
    """Each stream's mean cross-entropy over its predicted tokens, computed here from the model's full logits, then
    L = L_MLM + alpha (L_CS + L_L): the loss optimised and the logged `loss` (base 2) and `<stream>_loss`."""
    task = per_stream_batch_task(data)
    model = models.build_model(OmegaConf.create({"_name": "roberta_tiny"}), task).eval()
    alpha = 0.5  # not the default, so that a hard-coded 0.3 fails too
    criterion = KMLMMultitaskLoss(KMLMMultitaskConfig(alpha=alpha), task)
    batch = next(iter(batch_iterator(task).next_epoch_itr(shuffle=False)))
    means = {}
    with torch.no_grad():
        loss, _, log = criterion(model, batch)
        for stream, sub in batch.items():
            logits = model(**sub["net_input"])[0]  # every position
            predicted = sub["target"] != task.dictionary.pad()
            means[stream] = F.cross_entropy(logits[predicted].double(), sub["target"][predicted]).item()
    expected = means["plain"] + alpha * (means["knowledge"] + means["reasoning"])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    with metrics.aggregate(new_root=True) as aggregate:
        KMLMMultitaskLoss.reduce_metrics([log])
        logged = aggregate.get_smoothed_values()
    assert logged["loss"] == pytest.approx(expected / math.log(2), abs=1.5e-3)  # rounded to 3 decimals
    for stream, mean in means.items():
        assert logged[f"{stream}_loss"] == pytest.approx(mean / math.log(2), abs=1.5e-3)


def test_logged_loss_of_an_interval_where_a_stream_predicted_nothing(data):
    """fairseq resets the train_inner meters after every log line; when the next interval's masks drew no token of
    a stream (bernoulli/token masking may), that stream's meter is empty: the logged loss is then the other
    streams' weighted sum, not a crash of fairseq's logging."""
    task = per_stream_batch_task(data)
    model = models.build_model(OmegaConf.create({"_name": "roberta_tiny"}), task).eval()
    criterion = KMLMMultitaskLoss(KMLMMultitaskConfig(), task)
    batch = next(iter(batch_iterator(task).next_epoch_itr(shuffle=False)))
    with torch.no_grad():
        _, _, log = criterion(model, batch)
    without_knowledge = {**log, **{f"knowledge_{key}": 0 for key in ("loss", "weighted_loss", "predicted",
                                                                       "correct")}}
    with metrics.aggregate(new_root=True) as aggregate:
        KMLMMultitaskLoss.reduce_metrics([log])
        aggregate.reset()
        KMLMMultitaskLoss.reduce_metrics([without_knowledge])
        logged = aggregate.get_smoothed_values()
    weighted = {stream: float(log[f"{stream}_weighted_loss"]) / float(log[f"{stream}_predicted"]) / math.log(2)
                for stream in ("plain", "reasoning")}
    assert logged["loss"] == pytest.approx(sum(weighted.values()), abs=1.5e-3)
