"""Token ids and their per-token span tags (preprocess.core.span_tags), aligned, as one item.

Input: two datasets with the same number of samples and the same size per sample: token ids (``PREFIX.bin/.idx``)
and tags (``PREFIX.tags.bin/.idx``), usually each behind a PrependTokenDataset (<s> and a SPECIAL tag).
Output: one LongTensor of shape (2, L) per sample: row 0 the token ids, row 1 the tags. Keeping both in one tensor
lets fairseq's index-mapping wrappers (ConcatDataset, CycledDataset) move them together.
"""
import numpy as np
import torch
from fairseq.data import FairseqDataset

from kmlm_fairseq.data.stored_sizes import StoredSizesMixin


class TaggedTokensDataset(StoredSizesMixin, FairseqDataset):
    def __init__(self, tokens, tags, name="tagged dataset"):
        super().__init__()
        self._check_aligned(tokens, tags, name)
        self.tokens = tokens
        self.tags = tags
        self._sizes = np.asarray(tokens.sizes)

    @staticmethod
    def _check_aligned(tokens, tags, name):
        if len(tokens) != len(tags):
            raise ValueError(f"{name}: {len(tokens)} token samples but {len(tags)} tag samples")
        mismatch = np.flatnonzero(np.asarray(tokens.sizes) != np.asarray(tags.sizes))
        if mismatch.size:
            first = mismatch[0]
            raise ValueError(
                f"{name}: {mismatch.size} samples have a different number of tokens and tags, first sample {first} "
                f"({tokens.sizes[first]} tokens, {tags.sizes[first]} tags)"
            )

    def __getitem__(self, index):
        return torch.stack([self.tokens[index], self.tags[index]])

    def __len__(self):
        return len(self._sizes)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return True
