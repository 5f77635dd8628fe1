"""What every tokenizer of binarize/plain shares: fairseq ids, picklable for worker processes."""
import itertools

import numpy as np

from preprocess.core.tokenizers.dictionary import MASK


# --- The tokenizer --------------------------------------------------------------------------------------------
def flatten(lists, dtype=np.int64):
    """list of lists of ints -> (flat array, lengths)."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def append_eos(ids, lengths, eos, dtype):
    """Flat ids + tokens per text -> (flat ids with ``eos`` after each text's, as ``dtype``; sizes with it)."""
    sizes = lengths + 1
    tokens = np.full(int(sizes.sum()), eos, dtype=dtype)
    tokens[np.arange(len(ids)) + np.repeat(np.arange(len(lengths)), lengths)] = ids
    return tokens, sizes


class FairseqIdsTokenizer:
    """What every tokenizer of binarize/plain shares: a fairseq dictionary and its special ids; picklable, a worker
    rebuilds the unpicklable part (``_build``) from the state."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    @property
    def bos(self):
        return self.dictionary.bos

    @property
    def eos(self):
        return self.dictionary.eos

    @property
    def mask(self):
        return self.dictionary.mask

    def __len__(self):
        """The dictionary size fairseq-preprocess sees (without ``<mask>``)."""
        return len(self.dictionary)

    def symbols(self, ids):
        return [self.dictionary.symbols[i] if i < len(self.dictionary) else MASK for i in ids]
