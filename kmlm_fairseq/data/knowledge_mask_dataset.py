"""Masking of code-switched knowledge sentences ``h <mask> r <mask> t .`` (stream 2, loss L_CS).

Input: (2, L) token+tag tensors (TaggedTokensDataset; tags from preprocess.core.span_tags).
Output: MaskingDataset's {"source", "target"} pair; the two link <mask>s are never predicted.

mode "tokens" (the default: the paper, section 3.2 and Fig. 3, "we randomly mask the remaining tokens", with
probability 0.15 (Table 9); the official collator DataCollatorForSyntheticSentence does exactly this): every token
but <s>/</s> is chosen independently with probability mask_prob, link positions included, and the links' labels
are then dropped. A sample where no entity/relation/punctuation token is drawn predicts nothing, as in the official
collator (its tokens still serve as context for the batch); ``at_least_one`` instead predicts one such token drawn
at random (the behaviour of this mode before it became the default).
mode "spans" (a variant of ours, not the paper's): whole mentions (all subwords of a head, relation or tail span)
are added in random order until they cover round(mask_prob x the number of mention tokens) tokens (probabilistic
rounding; the last span may overshoot), at least one mention; in a one-triple sentence that is one whole mention,
about a third of the mention tokens.
Chosen positions get 80/10/10 (<mask> / random token / unchanged) in both modes, as the official collator does.
"""
import numpy as np

from kmlm_fairseq.data.masking_dataset import MaskingDataset
from preprocess.core.span_tags import LINK, MENTION_ROLES, SPECIAL, tag_role, tag_span

KNOWLEDGE_MASKING_MODES = ("tokens", "spans")


class KnowledgeMaskDataset(MaskingDataset):
    def __init__(self, dataset, vocab, mask_idx, seed, mask_prob=0.15, mode="tokens", leave_unmasked_prob=0.1,
                 random_token_prob=0.1, epoch=1, at_least_one=False):
        super().__init__(dataset, vocab, mask_idx, seed, epoch)
        if mode not in KNOWLEDGE_MASKING_MODES:
            raise ValueError(f"knowledge masking mode must be one of {KNOWLEDGE_MASKING_MODES}, not {mode!r}")
        self.mask_prob = mask_prob
        self.mode = mode
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        self.at_least_one = at_least_one
        self.may_predict_nothing = mode == "tokens" and not at_least_one

    def mask(self, item, rng):
        tokens, tags = item
        roles = tag_role(tags)
        if self.mode == "spans":
            chosen = self._choose_spans(roles, tag_span(tags), rng)
            predicted = chosen
        else:
            chosen, predicted = self._choose_tokens(roles, rng)
        source = self.bert_replace(tokens, chosen, rng, self.leave_unmasked_prob, self.random_token_prob)
        return source, predicted

    def _choose_spans(self, roles, spans, rng):
        mention = np.isin(roles, MENTION_ROLES)
        span_ids, span_lengths = np.unique(spans[mention], return_counts=True)
        if span_ids.size == 0:
            raise ValueError("knowledge sample without any head/relation/tail mention")
        budget = int(self.mask_prob * span_lengths.sum() + rng.random())
        order = rng.permutation(span_ids.size)
        covered = np.cumsum(span_lengths[order])
        count = min(int(np.searchsorted(covered, budget)) + 1, span_ids.size)  # spans added while covered < budget
        return mention & np.isin(spans, span_ids[order[:count]])

    def _choose_tokens(self, roles, rng):
        candidates = roles != SPECIAL
        chosen = candidates & (rng.random(roles.size) < self.mask_prob)
        predictable = candidates & (roles != LINK)
        if self.at_least_one and not (chosen & predictable).any():
            options = np.flatnonzero(predictable)
            if options.size == 0:
                raise ValueError("knowledge sample without any token to predict")
            chosen[rng.choice(options)] = True
        return chosen, chosen & predictable
