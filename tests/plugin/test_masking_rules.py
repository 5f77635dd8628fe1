"""The KMLM masking rules, checked on binarized samples (fairseq mmap token + tag datasets in the exact layout).

Each rule is checked on every draw; the rates over thousands of draws (many epochs of a small dataset: the mask
of (seed, epoch, index) is fresh in every epoch).
"""
import os

import numpy as np
import pytest
import torch

from fairseq.data import Dictionary

from kmlm_fairseq.data.binarized_streams import load_plain, load_tagged
from kmlm_fairseq.data.knowledge_mask_dataset import KnowledgeMaskDataset
from kmlm_fairseq.data.plain_mask_dataset import PlainMaskDataset
from kmlm_fairseq.data.reasoning_mask_dataset import ReasoningMaskDataset
from preprocess.core.span_tags import (HEAD, LINK, MENTION_ROLES, RELATION, SPECIAL, TAIL, tag_role,
                                         tag_sentence, tag_span)
from kmlm_fairseq.data.toy_corpus import SampleRenderer, ToyWorld, write_split, write_toy_corpus

SEED = 7


class ArrayDataset:
    def __init__(self, arrays):
        self.arrays = arrays
        self.sizes = np.array([len(array) for array in arrays])

    def __getitem__(self, index):
        return torch.from_numpy(self.arrays[index])

    def __len__(self):
        return len(self.arrays)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("toy")
    write_toy_corpus(str(data), languages=("en", "de"))
    dictionary = Dictionary.load(str(data / "dict.txt"))
    dictionary.add_symbol("<mask>")
    return data, dictionary


@pytest.fixture(scope="module")
def long_knowledge(corpus, tmp_path_factory):
    """Samples of 10 triples each: enough mention tokens for rate checks without the at-least-one fallback."""
    data, dictionary = corpus
    world, rng = ToyWorld(), np.random.default_rng(0)
    renderer = SampleRenderer(world, dictionary)
    samples = []
    for _ in range(50):
        pairs = [rng.choice(world.entities, 2, replace=False) for _ in range(10)]
        triples = [(h, world.relation(h, t), t) for h, t in pairs]
        samples.append(renderer.render(triples, [("de", "en", "de")] * len(triples)))
    prefix = str(tmp_path_factory.mktemp("long") / "train")
    write_split(prefix, samples, len(dictionary))
    return load_tagged(os.path.dirname(prefix), "train", dictionary)


def tagged(corpus, stream, lang="de"):
    data, dictionary = corpus
    return load_tagged(str(data / stream / lang), "train", dictionary)


def draws(masked, epochs):
    """(item, masked sample) for every index of every epoch."""
    for epoch in range(1, epochs + 1):
        masked.set_epoch(epoch)
        for index in range(len(masked)):
            yield masked.dataset[index].numpy(), masked[index]


def predicted_positions(sample, pad):
    return sample["target"].numpy() != pad


def test_masks_are_a_function_of_seed_epoch_and_index(corpus):
    _, dictionary = corpus
    masked = ReasoningMaskDataset(tagged(corpus, "reasoning"), dictionary, dictionary.index("<mask>"), SEED)
    again = ReasoningMaskDataset(tagged(corpus, "reasoning"), dictionary, dictionary.index("<mask>"), SEED)
    masked.set_epoch(3)
    again.set_epoch(3)
    for index in (5, 0, 5):
        assert masked[index]["source"].tolist() == again[index]["source"].tolist()
    by_epoch = []
    for epoch in (1, 2):
        masked.set_epoch(epoch)
        by_epoch.append([masked[index]["target"].tolist() for index in range(20)])
    assert by_epoch[0] != by_epoch[1]


def test_plain_masks_15_percent_with_80_10_10_and_never_specials(corpus):
    data, dictionary = corpus
    plain = load_plain(str(data / "plain" / "en"), "train", dictionary, tokens_per_sample=128, break_mode="eos")
    mask = dictionary.index("<mask>")
    masked = PlainMaskDataset(plain, dictionary, mask, SEED)
    candidates = chosen = as_mask = unchanged = 0
    for item, sample in draws(masked, epochs=20):
        targets = predicted_positions(sample, dictionary.pad())
        assert targets.any()
        assert not targets[np.isin(item, [dictionary.bos(), dictionary.eos()])].any()
        source = sample["source"].numpy()
        assert (source[~targets] == item[~targets]).all()
        candidates += item.size - 2
        chosen += targets.sum()
        as_mask += (source[targets] == mask).sum()
        unchanged += (source[targets] == item[targets]).sum()
    assert chosen > 5000
    assert chosen / candidates == pytest.approx(0.15, abs=0.01)
    assert as_mask / chosen == pytest.approx(0.8, abs=0.02)
    # unchanged: the 10% left as is, plus the rare random replacement that drew the original token
    assert unchanged / chosen == pytest.approx(0.1, abs=0.02)


def test_plain_short_sample_always_gets_a_target(corpus):
    _, dictionary = corpus
    short = ArrayDataset([np.array([dictionary.bos(), 10, dictionary.eos()])])
    masked = PlainMaskDataset(short, dictionary, dictionary.index("<mask>"), SEED)
    for epoch in range(1, 200):
        masked.set_epoch(epoch)
        assert predicted_positions(masked[0], dictionary.pad()).tolist() == [False, True, False]


def test_knowledge_spans_are_whole_mentions_never_links(corpus):
    _, dictionary = corpus
    masked = KnowledgeMaskDataset(tagged(corpus, "knowledge"), dictionary, dictionary.index("<mask>"), SEED,
                                  mode="spans")
    spans_per_sample = []
    for item, sample in draws(masked, epochs=10):
        tokens, tags = item
        targets = predicted_positions(sample, dictionary.pad())
        roles, spans = tag_role(tags), tag_span(tags)
        assert targets.any()
        assert np.isin(roles[targets], MENTION_ROLES).all()
        chosen = np.unique(spans[targets])
        mention = np.isin(roles, MENTION_ROLES)
        assert (targets == (mention & np.isin(spans, chosen))).all(), "a mention is predicted only in part"
        source = sample["source"].numpy()
        assert (source[~targets] == tokens[~targets]).all()
        spans_per_sample.append(chosen.size)
    # 15% of 3-9 mention tokens: one mention almost always, two when the budget rounds up past a short first one
    assert np.mean(np.array(spans_per_sample) == 1) > 0.8


def test_knowledge_spans_cover_15_percent_of_mention_tokens(long_knowledge, corpus):
    _, dictionary = corpus
    masked = KnowledgeMaskDataset(long_knowledge, dictionary, dictionary.index("<mask>"), SEED, mode="spans")
    shares, longest_span_shares = [], []
    for item, sample in draws(masked, epochs=40):
        roles, spans = tag_role(item[1]), tag_span(item[1])
        mention = np.isin(roles, MENTION_ROLES)
        shares.append(predicted_positions(sample, dictionary.pad()).sum() / mention.sum())
        longest_span_shares.append(np.bincount(spans[mention]).max() / mention.sum())
    # spans are added until they cover the budget, so the share overshoots by less than one span on average
    assert 0.15 <= np.mean(shares) <= 0.15 + np.mean(longest_span_shares)


def test_knowledge_token_mode_is_the_reference_15_percent_without_links(long_knowledge, corpus):
    _, dictionary = corpus
    masked = KnowledgeMaskDataset(long_knowledge, dictionary, dictionary.index("<mask>"), SEED, mode="tokens")
    predictable = chosen = 0
    for item, sample in draws(masked, epochs=20):
        roles = tag_role(item[1])
        targets = predicted_positions(sample, dictionary.pad())
        assert not targets[(roles == LINK) | (roles == SPECIAL)].any()
        predictable += ((roles != LINK) & (roles != SPECIAL)).sum()
        chosen += targets.sum()
    assert chosen / predictable == pytest.approx(0.15, abs=0.01)


def test_reasoning_triangle_masks_exactly_one_whole_relation(corpus):
    _, dictionary = corpus
    mask = dictionary.index("<mask>")
    masked = ReasoningMaskDataset(tagged(corpus, "reasoning"), dictionary, mask, SEED)
    sentence_counts = np.zeros(3)
    for item, sample in draws(masked, epochs=20):
        tokens, tags = item
        if np.unique(tag_sentence(tags)[np.isin(tag_role(tags), MENTION_ROLES)]).size != 3:
            continue
        targets = predicted_positions(sample, dictionary.pad())
        roles, spans = tag_role(tags), tag_span(tags)
        (span,) = np.unique(spans[targets])
        assert (roles[targets] == RELATION).all()
        assert (targets == ((roles == RELATION) & (spans == span))).all()
        source = sample["source"].numpy()
        assert (source[targets] == mask).all() and (source[~targets] == tokens[~targets]).all()
        sentence_counts[tag_sentence(tags)[targets][0]] += 1
    assert sentence_counts.sum() > 500
    assert sentence_counts / sentence_counts.sum() == pytest.approx([1 / 3] * 3, abs=0.05)


def test_reasoning_diamond_rules_and_rates(corpus):
    _, dictionary = corpus
    mask = dictionary.index("<mask>")
    masked = ReasoningMaskDataset(tagged(corpus, "reasoning"), dictionary, mask, SEED)
    relation_case, entity_counts, head_tail_case = 0, [], 0
    for item, sample in draws(masked, epochs=40):
        tokens, tags = item
        roles, spans, sentences = tag_role(tags), tag_span(tags), tag_sentence(tags)
        mention = np.isin(roles, MENTION_ROLES)
        if np.unique(sentences[mention]).size != 5:
            continue
        targets = predicted_positions(sample, dictionary.pad())
        source = sample["source"].numpy()
        assert (source[targets] == mask).all() and (source[~targets] == tokens[~targets]).all()
        chosen = np.unique(spans[targets])
        assert (targets == (mention & np.isin(spans, chosen))).all(), "a mention is predicted only in part"
        relations = np.unique(spans[targets & (roles == RELATION)])
        entities = np.unique(spans[targets & ((roles == HEAD) | (roles == TAIL))])
        if relations.size == 1:
            relation_case += 1
            entity_counts.append(entities.size)
            assert entities.size in (1, 2)
        else:
            head_tail_case += 1
            assert relations.size == 0
            (sentence,) = np.unique(sentences[targets])
            assert sorted(roles[targets & (sentences == sentence)].tolist()) == sorted(
                roles[mention & (sentences == sentence) & (roles != RELATION)].tolist())
    total = relation_case + head_tail_case
    assert total > 1000
    assert relation_case / total == pytest.approx(0.8, abs=0.03)
    assert np.mean(np.array(entity_counts) == 1) == pytest.approx(0.5, abs=0.04)


def test_reasoning_sample_with_wrong_sentence_count_is_a_clear_error(corpus):
    _, dictionary = corpus
    masked = ReasoningMaskDataset(tagged(corpus, "knowledge"), dictionary, dictionary.index("<mask>"), SEED)
    with pytest.raises(ValueError, match="1 sentences.*expected 3 \\(triangle\\) or 5 \\(diamond\\)"):
        masked[0]
