"""Several masked streams in one index space; every batch holds one sub-batch of each stream.

Input: an ordered mapping stream name -> dataset of {"source", "target"} items (a MaskingDataset). A global index is
the stream's offset plus the index within the stream.
Output of ``collater``: an OrderedDict stream name -> a masked_lm-style batch (``net_input.src_tokens``,
``net_input.src_lengths``, ``target``, ``ntokens``, ``nsentences``, ``id``) for every stream present in the batch.

``batches`` builds one epoch's batches (fairseq's EpochBatchIterator calls it through the task for every epoch):
each stream is ordered by size with a per-epoch random tie-break, cut into its own batches (its own batch size;
``max_tokens`` caps each padded sub-batch), the batch lists are shuffled and zipped. In training (``cycle``) the
epoch has as many batches as the longest list, rounded up to a multiple of the number of distributed workers so that
every worker takes the same number of steps, and shorter lists restart, reshuffled. (The task has already resized
the streams to about the same number of batches with CycledDataset, so this only evens out rounding.) In validation
every sample is used exactly once and a stream may be absent from the last batches.
"""
import logging
import math
from collections import OrderedDict

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from preprocess.core.seeds import derive_seed

logger = logging.getLogger(__name__)

MIN_SAMPLE_SIZE = 3  # <s>, one token to predict, </s>


class MultiStreamDataset(FairseqDataset):
    def __init__(self, streams, pad_idx, cycle):
        super().__init__()
        if not streams:
            raise ValueError("MultiStreamDataset needs at least one stream")
        self.streams = OrderedDict(streams)
        self.names = list(self.streams)
        self.pad_idx = pad_idx
        self.cycle = cycle
        lengths = [len(dataset) for dataset in self.streams.values()]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])

    def _locate(self, index):
        stream = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.names[stream], int(index - self.offsets[stream])

    def __getitem__(self, index):
        name, local = self._locate(index)
        return {"stream": name, "id": local, **self.streams[name][local]}

    def __len__(self):
        return int(self.offsets[-1])

    def num_tokens(self, index):
        name, local = self._locate(index)
        return self.streams[name].sizes[local]

    def size(self, index):
        return self.num_tokens(index)

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        for dataset in self.streams.values():
            dataset.set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False  # batches are rebuilt every epoch (see batches)

    def collater(self, samples):
        batch = OrderedDict()
        for name in self.names:
            items = [sample for sample in samples if sample["stream"] == name]
            if items:
                batch[name] = self._collate_stream(items)
        return batch

    def _collate_stream(self, items):
        sources = [item["source"] for item in items]
        return {
            "id": torch.LongTensor([item["id"] for item in items]),
            "nsentences": len(items),
            "ntokens": sum(len(source) for source in sources),
            "net_input": {
                "src_tokens": data_utils.collate_tokens(sources, self.pad_idx),
                "src_lengths": torch.LongTensor([len(source) for source in sources]),
            },
            "target": data_utils.collate_tokens([item["target"] for item in items], self.pad_idx),
        }

    def batches(self, epoch, seed, batch_sizes, max_tokens=None, max_positions=None, required_batch_size_multiple=1,
                num_shards=1, ignore_invalid_inputs=True):
        """One epoch's batches: a list of arrays of global indices, each with one sub-batch per stream."""
        per_stream = OrderedDict()
        for name, offset in zip(self.names, self.offsets):
            rng = np.random.default_rng(np.random.SeedSequence([derive_seed(seed, name), epoch]))
            stream_batches = self._stream_batches(name, rng, batch_sizes.get(name), max_tokens, max_positions,
                                                  required_batch_size_multiple, ignore_invalid_inputs)
            per_stream[name] = (stream_batches, offset, rng)
        count = max(len(stream_batches) for stream_batches, _, _ in per_stream.values())
        if self.cycle:
            count = math.ceil(count / num_shards) * num_shards
        columns = [self._column(*per_stream[name], count) for name in self.names]
        return [np.concatenate(parts) for parts in zip(*columns) if any(len(part) for part in parts)]

    def _stream_batches(self, name, rng, batch_size, max_tokens, max_positions, bsz_mult, ignore_invalid_inputs):
        sizes = np.asarray(self.streams[name].sizes, dtype=np.int64)
        order = rng.permutation(sizes.size)
        order = order[np.argsort(sizes[order], kind="stable")]
        too_long = sizes[order] > max_positions if max_positions is not None else np.zeros(order.size, dtype=bool)
        too_short = sizes[order] < MIN_SAMPLE_SIZE
        if too_long.any() and not ignore_invalid_inputs:
            raise ValueError(f"{name}: {int(too_long.sum())} samples are longer than {max_positions} tokens, "
                             f"e.g. sample {order[too_long][0]} ({sizes[order[too_long][0]]} tokens)")
        if too_long.any() or too_short.any():
            logger.warning(f"{name}: skipped {int(too_long.sum())} samples longer than {max_positions} tokens and "
                           f"{int(too_short.sum())} with nothing to mask")
        order = order[~too_long & ~too_short]
        if order.size == 0:
            raise ValueError(f"{name}: no sample left to batch")
        stream_batches = data_utils.batch_by_size(order, self.streams[name].num_tokens, num_tokens_vec=sizes[order],
                                                  max_tokens=max_tokens, max_sentences=batch_size,
                                                  required_batch_size_multiple=bsz_mult)
        if not stream_batches:
            raise ValueError(f"{name}: {order.size} samples make no batch that is a multiple of "
                             f"required_batch_size_multiple={bsz_mult}")
        return [stream_batches[i] for i in rng.permutation(len(stream_batches))]

    def _column(self, stream_batches, offset, rng, count):
        """``count`` sub-batches of one stream (global indices); cycling restarts the list in a new order."""
        column = [batch + offset for batch in stream_batches[:count]]
        if not self.cycle:
            return column + [np.zeros(0, dtype=np.int64)] * (count - len(column))
        while len(column) < count:
            column += [stream_batches[i] + offset for i in rng.permutation(len(stream_batches))[: count - len(column)]]
        return column
