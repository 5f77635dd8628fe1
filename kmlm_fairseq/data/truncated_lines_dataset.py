"""Lines cut to a maximum length that keep their end-of-sentence token.

Input: a dataset of 1-D token tensors, each a line ending with </s> (fairseq's binarized plain text).
Output: the same lines; one longer than ``max_tokens`` becomes its first ``max_tokens - 1`` tokens + </s>, which is
what a Hugging Face tokenizer's ``truncation=True`` gives the official KMLM run (``--line_by_line``). fairseq's
TruncateDataset would drop the </s> instead. ``truncated`` counts the lines cut.
"""
import numpy as np
import torch
from fairseq.data import BaseWrapperDataset

from kmlm_fairseq.data.stored_sizes import StoredSizesMixin


class TruncatedLinesDataset(StoredSizesMixin, BaseWrapperDataset):
    def __init__(self, dataset, max_tokens, eos):
        super().__init__(dataset)
        if max_tokens < 2:
            raise ValueError(f"max_tokens must leave room for a token and </s>, got {max_tokens}")
        self.max_tokens = max_tokens
        self.eos = eos
        original = np.asarray(dataset.sizes)
        self.truncated = int((original > max_tokens).sum())
        self._sizes = np.minimum(original, max_tokens)

    def __getitem__(self, index):
        item = self.dataset[index]
        if len(item) <= self.max_tokens:
            return item
        return torch.cat([item[: self.max_tokens - 1], item.new_tensor([self.eos])])
