"""The size accessors of a dataset that keeps its per-item sizes in one array, ``self._sizes``.

fairseq asks a dataset for ``sizes`` (batching by length), ``num_tokens(i)`` and ``size(i)``; a dataset whose sizes
differ from its input's (a resampled, cut or zipped one) sets ``self._sizes`` and inherits the three from here.
List it before fairseq's base class (``class X(StoredSizesMixin, BaseWrapperDataset)``) so that these win over
BaseWrapperDataset's, which forward to the wrapped dataset.
"""


class StoredSizesMixin:
    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, index):
        return self._sizes[index]

    def size(self, index):
        return self._sizes[index]
