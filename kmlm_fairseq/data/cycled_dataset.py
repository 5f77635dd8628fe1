"""A dataset resized to a fixed number of items per epoch by cycling through fresh permutations.

Input: any FairseqDataset with ``sizes``. Output: ``size`` items per epoch; item i of epoch e is
``dataset[mapping_e[i]]`` where mapping_e concatenates permutations drawn from (seed, epoch, pass), cut to ``size``.
So every item appears floor(size/n) or ceil(size/n) times per epoch, which items get the extra appearance (or, when
size < n, which items are left out) changes every epoch, and a masking dataset above this one gives every
appearance its own mask (its index i differs). Used to cycle the shorter streams within an epoch and to sample
languages with a temperature.
"""
import math

import numpy as np
from fairseq.data import BaseWrapperDataset

from kmlm_fairseq.data.stored_sizes import StoredSizesMixin


class CycledDataset(StoredSizesMixin, BaseWrapperDataset):
    def __init__(self, dataset, size, seed, epoch=1):
        super().__init__(dataset)
        if len(dataset) == 0 and size > 0:
            raise ValueError("cannot draw items from an empty dataset")
        self.size_per_epoch = int(size)
        self.seed = seed
        self.epoch = None
        self.set_epoch(epoch)

    def set_epoch(self, epoch, **unused):
        super().set_epoch(epoch)
        if epoch == self.epoch:
            return
        self.epoch = epoch
        n = len(self.dataset)
        passes = math.ceil(self.size_per_epoch / n) if n else 0
        dtype = np.uint32 if n < 2**32 else np.int64
        self.mapping = np.concatenate(
            [np.random.default_rng(np.random.SeedSequence([self.seed, epoch, p])).permutation(n).astype(dtype)
             for p in range(passes)] or [np.zeros(0, dtype)]
        )[: self.size_per_epoch]
        self._sizes = np.asarray(self.dataset.sizes)[self.mapping]

    def __getitem__(self, index):
        return self.dataset[int(self.mapping[index])]

    def __len__(self):
        return self.size_per_epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False
