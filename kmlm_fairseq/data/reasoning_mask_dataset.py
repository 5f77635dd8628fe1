"""Masking of reasoning samples from entity-graph cycles (stream 3, loss L_L): the rules of the official collator.

Input: (2, L) token+tag tensors (TaggedTokensDataset): 3 sentences ``h <mask> r <mask> t .`` for a triangle,
5 for a diamond (the 4-cycle A-B-D-C-A, then its diagonal B-C), told apart by the number of sentences.
Output: MaskingDataset's {"source", "target"} pair; every token of a chosen mention becomes <mask> (no 80/10/10,
as the official DataCollatorForSyntheticSentenceReasoning) and is predicted (sources: docs/recipe.md).

- triangle: one whole relation mention (its entities appear twice each, so masking them would be trivial);
- diamond: with probability relation_prob one relation mention plus one or two entity (head/tail) mentions, one
  or two with equal chance; otherwise one sentence's head and tail mentions, its relation kept.
"""
import numpy as np

from kmlm_fairseq.data.masking_dataset import MaskingDataset
from preprocess.core.span_tags import HEAD, MENTION_ROLES, RELATION, TAIL, tag_role, tag_sentence, tag_span

TRIANGLE_SENTENCES, DIAMOND_SENTENCES = 3, 5


class ReasoningMaskDataset(MaskingDataset):
    def __init__(self, dataset, vocab, mask_idx, seed, relation_prob=0.8, epoch=1):
        super().__init__(dataset, vocab, mask_idx, seed, epoch)
        self.relation_prob = relation_prob

    def mask(self, item, rng):
        tokens, tags = item
        roles, spans, sentences = tag_role(tags), tag_span(tags), tag_sentence(tags)
        mention = np.isin(roles, MENTION_ROLES)
        sentence_count = np.unique(sentences[mention]).size
        relation_spans = np.unique(spans[roles == RELATION])
        if sentence_count not in (TRIANGLE_SENTENCES, DIAMOND_SENTENCES) or relation_spans.size != sentence_count:
            raise ValueError(
                f"reasoning sample with {sentence_count} sentences and {relation_spans.size} relation mentions; "
                f"expected {TRIANGLE_SENTENCES} (triangle) or {DIAMOND_SENTENCES} (diamond), one relation each"
            )
        if sentence_count == TRIANGLE_SENTENCES:
            chosen = [rng.choice(relation_spans)]
        elif rng.random() < self.relation_prob:
            entity_spans = np.unique(spans[(roles == HEAD) | (roles == TAIL)])
            entity_count = min(int(rng.integers(1, 3)), entity_spans.size)
            chosen = [rng.choice(relation_spans), *rng.choice(entity_spans, entity_count, replace=False)]
        else:
            sentence = rng.integers(DIAMOND_SENTENCES)
            chosen = np.unique(spans[((roles == HEAD) | (roles == TAIL)) & (sentences == sentence)])
        predicted = mention & np.isin(spans, chosen)
        source = tokens.copy()
        source[predicted] = self.mask_idx
        return source, predicted
