"""The KMLM masking rules, checked on binarized samples (fairseq mmap token + tag datasets in the exact layout).

Each rule is checked on every draw; the rates over thousands of draws (many epochs of a small dataset: the mask
of (seed, epoch, index) is fresh in every epoch).
"""
import logging
import math
import os

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary

from kmlm_fairseq.data.binarized_streams import load_plain, load_tagged
from kmlm_fairseq.data.knowledge_mask_dataset import KnowledgeMaskDataset
from kmlm_fairseq.data.plain_mask_dataset import PlainMaskDataset
from kmlm_fairseq.data.reasoning_mask_dataset import ReasoningMaskDataset
from kmlm_fairseq.data.toy_corpus import SampleRenderer, ToyWorld, write_split, write_toy_corpus
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

SEED = 7


def binomial_bound(n, p, sigmas=4):
    """How far a share of n independent Bernoulli(p) draws may stray from p (sigmas standard deviations)."""
    return sigmas * math.sqrt(p * (1 - p) / n)


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


def test_plain_default_draws_each_token_independently_as_the_official_collator(corpus):
    """Bernoulli(0.15) per token: a line with n candidates predicts none with probability 0.85^n (no forced one)."""
    data, dictionary = corpus
    plain = load_plain(str(data / "plain" / "en"), "train", dictionary, tokens_per_sample=128, break_mode="eos")
    masked = PlainMaskDataset(plain, dictionary, dictionary.index("<mask>"), SEED)
    assert masked.mode == "bernoulli"
    empty, expected, counts = [], [], set()
    for item, sample in draws(masked, epochs=10):
        chosen = int(predicted_positions(sample, dictionary.pad()).sum())
        empty.append(chosen == 0)
        expected.append(0.85 ** (item.size - 2))
        counts.add((item.size - 2, chosen))
    p = np.mean(expected)
    assert abs(np.mean(empty) - p) < binomial_bound(len(empty), p)
    # with a fixed count, a line of n tokens would always predict round(0.15 n) +- 1
    assert any(chosen > round(0.15 * n) + 1 for n, chosen in counts)


def test_plain_count_mode_always_gets_a_target(corpus):
    _, dictionary = corpus
    short = ArrayDataset([np.array([dictionary.bos(), 10, dictionary.eos()])])
    masked = PlainMaskDataset(short, dictionary, dictionary.index("<mask>"), SEED, mode="count")
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


def test_knowledge_default_hides_15_percent_of_entity_relation_tokens_80_10_10_never_links(long_knowledge, corpus):
    """The paper's knowledge masking (section 3.2, Table 9) with the official collator's replacement: each token
    independently with p = 0.15, the chosen ones shown as <mask> (80%), a random token (10%) or themselves (10%)."""
    _, dictionary = corpus
    mask = dictionary.index("<mask>")
    masked = KnowledgeMaskDataset(long_knowledge, dictionary, mask, SEED)  # the defaults
    mentions = predicted_mentions = partial = expected_partial = links = links_replaced = 0
    shown = {"mask": 0, "random": 0, "itself": 0}
    for item, sample in draws(masked, epochs=20):
        tokens, tags = item
        roles, spans = tag_role(tags), tag_span(tags)
        targets = predicted_positions(sample, dictionary.pad())
        source = sample["source"].numpy()
        assert not targets[(roles == LINK) | (roles == SPECIAL)].any(), "a link or <s>/</s> was predicted"
        kept = ~targets & (roles != LINK)  # a link chosen for the 10% random shows a random token, unpredicted
        assert (source[kept] == tokens[kept]).all()
        links += (roles == LINK).sum()
        links_replaced += (source[roles == LINK] != mask).sum()
        mention = np.isin(roles, MENTION_ROLES)
        mentions += mention.sum()
        predicted_mentions += (targets & mention).sum()
        shown["mask"] += (source[targets] == mask).sum()
        shown["itself"] += (source[targets] == tokens[targets]).sum()
        shown["random"] += ((source[targets] != mask) & (source[targets] != tokens[targets])).sum()
        for span in np.unique(spans[mention]):  # token level: a mention is often predicted in part
            hit = targets[mention & (spans == span)]
            partial += 0 < hit.sum() < hit.size
            expected_partial += 1 - 0.85 ** hit.size - 0.15 ** hit.size
    assert abs(predicted_mentions / mentions - 0.15) < binomial_bound(mentions, 0.15)
    assert partial > 0.8 * expected_partial
    # a link is drawn like any token (p = 0.15) and then shows a random token in 10% of the cases, as the official
    assert abs(links_replaced / links - 0.015) < binomial_bound(links, 0.015)
    chosen = sum(shown.values())
    assert abs(shown["mask"] / chosen - 0.8) < binomial_bound(chosen, 0.8)
    assert abs(shown["random"] / chosen - 0.1) < binomial_bound(chosen, 0.1)
    # itself: the 10% left as is, plus the rare random draw of the same token
    assert abs(shown["itself"] / chosen - 0.1) < binomial_bound(chosen, 0.1) + 1 / len(dictionary)


def test_knowledge_default_predicts_nothing_when_no_token_is_drawn_as_the_official_collator(corpus):
    """No forced target: a one-triple sentence with n predictable tokens predicts none with probability 0.85^n."""
    _, dictionary = corpus
    masked = KnowledgeMaskDataset(tagged(corpus, "knowledge"), dictionary, dictionary.index("<mask>"), SEED)
    empty, expected = [], []
    for item, sample in draws(masked, epochs=10):
        roles = tag_role(item[1])
        empty.append(not predicted_positions(sample, dictionary.pad()).any())
        expected.append(0.85 ** ((roles != LINK) & (roles != SPECIAL)).sum())
    p = np.mean(expected)
    assert abs(np.mean(empty) - p) < binomial_bound(len(empty), p)
    forced = KnowledgeMaskDataset(tagged(corpus, "knowledge"), dictionary, dictionary.index("<mask>"), SEED,
                                  at_least_one=True)
    assert all(predicted_positions(sample, dictionary.pad()).any() for _, sample in draws(forced, epochs=2))


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
    head_tail_sentences, relation_sentences = np.zeros(5), np.zeros(5)
    for item, sample in draws(masked, epochs=60):
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
            relation_sentences[sentences[targets & (roles == RELATION)][0]] += 1
        else:
            head_tail_case += 1
            assert relations.size == 0
            (sentence,) = np.unique(sentences[targets])
            assert sorted(roles[targets & (sentences == sentence)].tolist()) == sorted(
                roles[mention & (sentences == sentence) & (roles != RELATION)].tolist())
            head_tail_sentences[sentence] += 1
    total = relation_case + head_tail_case
    assert total > 1500
    assert abs(relation_case / total - 0.8) < binomial_bound(total, 0.8)
    assert abs(np.mean(np.array(entity_counts) == 1) - 0.5) < binomial_bound(len(entity_counts), 0.5)
    # each of the 5 sentences, the diagonal (the last) included, as often: for the relation and for head + tail
    for counts in (relation_sentences, head_tail_sentences):
        assert np.all(np.abs(counts / counts.sum() - 0.2) < binomial_bound(counts.sum(), 0.2)), counts


def test_reasoning_sample_with_wrong_sentence_count_is_a_clear_error(corpus):
    _, dictionary = corpus
    masked = ReasoningMaskDataset(tagged(corpus, "knowledge"), dictionary, dictionary.index("<mask>"), SEED)
    with pytest.raises(ValueError, match="1 sentences.*expected 3 \\(triangle\\) or 5 \\(diamond\\)"):
        masked[0]


def test_plain_eos_mode_is_one_line_per_sample_long_lines_cut_keeping_their_eos(corpus, tmp_path, caplog):
    """The official --line_by_line: every line its own sample, truncated to 128 tokens with <s> ... </s>."""
    _, dictionary = corpus
    eos, bos = dictionary.eos(), dictionary.bos()
    lengths = (5, 3, 200, 127, 126)  # tokens before </s>
    lines = [np.append(np.arange(length) % 50 + dictionary.nspecial, eos).astype(np.int64) for length in lengths]
    write_split(str(tmp_path / "train"), [(line, None) for line in lines], len(dictionary))
    with caplog.at_level(logging.INFO):
        plain = load_plain(str(tmp_path), "train", dictionary, tokens_per_sample=128, break_mode="eos")
    assert len(plain) == len(lines)
    for line, length, sample in zip(lines, lengths, (plain[i].numpy() for i in range(len(plain)))):
        assert sample[0] == bos and sample[-1] == eos and sample.size == min(length + 2, 128)
        assert (sample[1:-1] == line[: sample.size - 2]).all()
    assert plain.sizes.tolist() == [7, 5, 128, 128, 128]
    assert "2 of 5 lines longer than 128 tokens truncated" in caplog.text
    packed = load_plain(str(tmp_path), "train", dictionary, tokens_per_sample=128, break_mode="complete")
    assert len(packed) < len(lines)  # the option: whole lines packed up to 128 tokens
