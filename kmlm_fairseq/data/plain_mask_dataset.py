"""Plain-text MLM masking (stream 1, loss L_MLM): BERT/RoBERTa's 15% with 80/10/10.

Input: 1-D token tensors ``<s> ... [</s>]`` (TokenBlockDataset blocks behind a PrependTokenDataset).
Output: MaskingDataset's {"source", "target"} pair. The candidates are the n tokens other than <s>, </s> and <pad>.
mode "bernoulli" (the default, as the official run's DataCollatorForLanguageModeling): each candidate is chosen
independently with probability mask_prob; a sample may predict nothing (its tokens are still context).
mode "count" (fairseq's MaskTokensDataset, the rule before issue 14): exactly round(mask_prob x n) candidates
(probabilistic rounding), at least one.
Each chosen position becomes <mask> (80%), a random real token (10%) or stays (10%), and is predicted in all three
cases.
"""
import numpy as np

from kmlm_fairseq.data.masking_dataset import MaskingDataset

PLAIN_MASKING_MODES = ("bernoulli", "count")


class PlainMaskDataset(MaskingDataset):
    def __init__(self, dataset, vocab, mask_idx, seed, mask_prob=0.15, leave_unmasked_prob=0.1,
                 random_token_prob=0.1, epoch=1, mode="bernoulli"):
        super().__init__(dataset, vocab, mask_idx, seed, epoch)
        if mode not in PLAIN_MASKING_MODES:
            raise ValueError(f"plain masking mode must be one of {PLAIN_MASKING_MODES}, not {mode!r}")
        self.mask_prob = mask_prob
        self.leave_unmasked_prob = leave_unmasked_prob
        self.random_token_prob = random_token_prob
        self.mode = mode
        self.may_predict_nothing = mode == "bernoulli"
        self.special_ids = np.array([vocab.bos(), vocab.eos(), vocab.pad()])

    def mask(self, tokens, rng):
        candidates = ~np.isin(tokens, self.special_ids)
        if not candidates.any():
            raise ValueError(f"plain-text sample without any token besides <s>, </s>, <pad>: {tokens.tolist()}")
        if self.mode == "bernoulli":
            chosen = candidates & (rng.random(tokens.size) < self.mask_prob)
        else:
            positions = np.flatnonzero(candidates)
            count = int(self.mask_prob * positions.size + rng.random())
            count = min(max(count, 1), positions.size)
            chosen = np.zeros(tokens.size, dtype=bool)
            chosen[rng.choice(positions, count, replace=False)] = True
        source = self.bert_replace(tokens, chosen, rng, self.leave_unmasked_prob, self.random_token_prob)
        return source, chosen
