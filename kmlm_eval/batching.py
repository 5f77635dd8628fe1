"""Batches of pre-tokenized examples: padding (numpy, one array per batch) and length-sorted inference.

An *example* is a dict made once per dataset by one batched tokenizer call (no tokenizer call per example):
``input_ids`` (a list of ids, or for multiple choice a list of such lists, one per choice), optionally
``token_type_ids`` of the same shape, and ``labels`` (an int, or for token tagging a list of ids with ``IGNORE``
where no label applies; extractive QA has ``start_positions``/``end_positions`` instead). ``collate`` pads a list
of examples into model tensors; ``predict`` runs a model over examples in batches of similar length (longest
first, so the padding is small and a batch too large for memory fails at once) under ``torch.inference_mode`` and
returns the outputs in the examples' order.
"""
import itertools

import numpy as np
import torch
from tqdm import tqdm

IGNORE = -100  # label of positions that are not scored (special tokens, non-first subwords, padding)
LABEL_KEYS = ("labels", "start_positions", "end_positions")  # what a model's loss takes


def pad_rows(rows, value):
    """Lists of ints -> ``(len(rows), longest)`` int64 array padded with ``value``, and the boolean mask of real
    positions."""
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    mask = np.arange(int(lengths.max(initial=0))) < lengths[:, None]
    array = np.full(mask.shape, value, dtype=np.int64)
    array[mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    return array, mask


def is_multiple_choice(example):
    ids = example["input_ids"]
    return bool(ids) and isinstance(ids[0], (list, tuple))


def example_length(example):
    ids = example["input_ids"]
    return max(map(len, ids)) if is_multiple_choice(example) else len(ids)


def collate(examples, pad_id, token_types=False):
    """Examples -> a dict of tensors for a Hugging Face model (``labels`` included when the examples have them).

    ``token_types``: keep ``token_type_ids`` (a model with a single token type, such as XLM-R, cannot take them).
    """
    choices = is_multiple_choice(examples[0])
    def flat(key):
        return [row for e in examples for row in e[key]] if choices else [e[key] for e in examples]

    ids, mask = pad_rows(flat("input_ids"), pad_id)
    batch = {"input_ids": ids, "attention_mask": mask.astype(np.int64)}
    if token_types and "token_type_ids" in examples[0]:
        batch["token_type_ids"] = pad_rows(flat("token_type_ids"), 0)[0]
    if choices:
        batch = {k: v.reshape(len(examples), -1, v.shape[-1]) for k, v in batch.items()}
    for key in LABEL_KEYS:
        if key in examples[0]:
            labels = [e[key] for e in examples]
            batch[key] = pad_rows(labels, IGNORE)[0] if isinstance(labels[0], list) else np.asarray(labels)
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def length_sorted_batches(examples, batch_size):
    """Index lists of at most ``batch_size`` examples of similar length, the longest first."""
    lengths = np.fromiter(map(example_length, examples), dtype=np.int64, count=len(examples))
    order = np.argsort(-lengths, kind="stable")
    return [order[start:start + batch_size].tolist() for start in range(0, len(order), batch_size)]


def encode(tokenizer, firsts, seconds=None, **kwargs):
    """Texts (or text pairs) -> examples, in ONE batched tokenizer call."""
    enc = tokenizer(firsts, seconds, **kwargs) if seconds is not None else tokenizer(firsts, **kwargs)
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(firsts))]


def with_labels(examples, labels):
    return [{**e, "labels": label} for e, label in zip(examples, labels)]


def to_device(batch, device):
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def uses_token_types(model):
    return getattr(model.config, "type_vocab_size", 2) >= 2


@torch.inference_mode()
def predict(model, examples, batch_size, pad_id, heads=("logits",), per_token=False):
    """Run ``model`` over ``examples``; -> one list per output head of float32 numpy arrays, in example order.

    ``per_token``: the outputs have a position axis (tagging logits, QA start/end logits), cut to each example's
    own length; otherwise one row per example (classification and multiple-choice logits).
    """
    model.eval()
    device = next(model.parameters()).device
    token_types = uses_token_types(model)
    outputs = [[None] * len(examples) for _ in heads]
    batches = length_sorted_batches(examples, batch_size)
    for indices in tqdm(batches, desc="predicting", unit="batch", leave=False, disable=len(batches) < 10):
        chunk = [examples[i] for i in indices]
        batch = collate(chunk, pad_id, token_types)
        for key in LABEL_KEYS:
            batch.pop(key, None)
        result = model(**to_device(batch, device))
        for head, out in zip(heads, outputs):
            values = result[head].float().cpu().numpy()
            for row, (index, example) in enumerate(zip(indices, chunk)):
                out[index] = values[row, :example_length(example)] if per_token else values[row]
    return outputs
