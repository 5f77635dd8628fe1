"""Base of the KMLM masking datasets: one deterministic mask per (seed, epoch, index), as a source/target pair.

Input: a dataset of 1-D token tensors (plain text) or of (2, L) token+tag tensors (TaggedTokensDataset).
Output: ``{"source": LongTensor[L], "target": LongTensor[L]}``: the target holds the original token at every
position to predict and pad elsewhere; the source hides those positions. A subclass decides which positions
(``mask``); this class draws the random generator, checks that a sample has at least one target unless the
subclass allows none (``may_predict_nothing``: the criterion's per-stream mean is over the whole batch, so an empty
sample costs nothing) and offers BERT's 80/10/10 replacement. Computing source and target in one call (instead of
fairseq's two MaskTokensDataset copies behind an LRU cache) draws the mask once and cannot go stale across epochs.
"""
import numpy as np
import torch
from fairseq.data import BaseWrapperDataset


class MaskingDataset(BaseWrapperDataset):
    may_predict_nothing = False

    def __init__(self, dataset, vocab, mask_idx, seed, epoch=1):
        super().__init__(dataset)
        self.pad_idx = vocab.pad()
        self.mask_idx = mask_idx
        self.seed = seed
        self.epoch = epoch
        # replacement tokens for the "10% random": real symbols only, never <s>, <pad>, </s>, <unk> or <mask>
        self.random_token_ids = np.array([i for i in range(vocab.nspecial, len(vocab)) if i != mask_idx])

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index):
        item = self.dataset[index].numpy()
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(index)]))
        source, targets = self.mask(item, rng)
        if not self.may_predict_nothing and not targets.any():
            raise RuntimeError(f"{type(self).__name__}: sample {index} ended up with nothing to predict")
        tokens = item[0] if item.ndim == 2 else item
        target = np.full_like(tokens, self.pad_idx)
        target[targets] = tokens[targets]
        return {"source": torch.from_numpy(source), "target": torch.from_numpy(target)}

    def mask(self, item, rng):
        """Return (source token ids, boolean array of the positions to predict) for one sample."""
        raise NotImplementedError

    def bert_replace(self, tokens, chosen, rng, leave_unmasked_prob, random_token_prob):
        """A copy of ``tokens`` with the ``chosen`` positions replaced, each independently: <mask> with probability
        1 - leave_unmasked_prob - random_token_prob, a random real token with random_token_prob, else unchanged."""
        source = tokens.copy()
        positions = np.flatnonzero(chosen)
        draw = rng.random(positions.size)
        to_mask = draw < 1.0 - leave_unmasked_prob - random_token_prob
        to_random = draw >= 1.0 - random_token_prob
        source[positions[to_mask]] = self.mask_idx
        if to_random.any():
            source[positions[to_random]] = rng.choice(self.random_token_ids, int(to_random.sum()))
        return source
