"""Token ids and their per-token span tags (preprocess.core.span_tags), aligned, as one item, <s> and its tag first.

Input: two datasets with the same number of samples and the same size per sample: token ids (``PREFIX.bin/.idx``)
and tags (``PREFIX.tags.bin/.idx``); the ids of <s> and of its tag (SPECIAL) to prepend, as fairseq's masked_lm
prepends <s>. The alignment is checked here, on the stored sizes, so an error names the sample as stored.
Output: one LongTensor of shape (2, 1 + L) per sample: row 0 the token ids, row 1 the tags. Keeping both in one
tensor lets fairseq's index-mapping wrappers (ConcatDataset, CycledDataset) move them together.
"""
import numpy as np
import torch
from fairseq.data import FairseqDataset

from kmlm_fairseq.data.stored_sizes import StoredSizesMixin


class TaggedTokensDataset(StoredSizesMixin, FairseqDataset):
    def __init__(self, tokens, tags, bos, bos_tag, name="tagged dataset"):
        super().__init__()
        self._check_aligned(tokens, tags, name)
        self.tokens, self.tags = tokens, tags
        self.first = torch.tensor([[bos], [bos_tag]], dtype=torch.long)
        self._sizes = np.asarray(tokens.sizes) + 1

    @staticmethod
    def _check_aligned(tokens, tags, name):
        token_sizes, tag_sizes = np.asarray(tokens.sizes), np.asarray(tags.sizes)
        if len(token_sizes) != len(tag_sizes):
            raise ValueError(f"{name}: {len(token_sizes)} token samples but {len(tag_sizes)} tag samples")
        differ = np.flatnonzero(token_sizes != tag_sizes)
        if differ.size:
            first = int(differ[0])
            raise ValueError(f"{name}: sample {first} has {token_sizes[first]} tokens but {tag_sizes[first]} tags "
                             f"({differ.size} samples differ)")

    def __getitem__(self, index):
        return torch.cat([self.first, torch.stack([self.tokens[index], self.tags[index]]).long()], dim=1)

    def __len__(self):
        return len(self._sizes)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return True
