"""Readers of the binarized training data, written by `kmlm-preprocess binarize` (preprocess/stages/binarize.py).

    DATA/dict.txt
    DATA/plain/<lang>/<split>{,1,2,...}.{bin,idx}                    one line per sample, tokens + </s>
    DATA/{knowledge,reasoning}/<lang>/<split>{,1,...}.{bin,idx}      one sentence / cycle sample per sample
    DATA/{knowledge,reasoning}/<lang>/<split>{,1,...}.tags.{bin,idx} one span tag per stored token

Output: unmasked datasets starting with <s> (and, for the tagged streams, a SPECIAL tag), as fairseq's masked_lm
prepends it: plain text as TokenBlockDataset blocks of at most tokens_per_sample tokens, knowledge and reasoning
as TaggedTokensDataset (2 x L). Shards are concatenated; languages are concatenated or sampled with a temperature.
"""
import logging
import os

import numpy as np
from fairseq.data import ConcatDataset, PrependTokenDataset, TokenBlockDataset, TruncateDataset
from fairseq.data.indexed_dataset import MMapIndexedDataset

from kmlm_fairseq.data.cycled_dataset import CycledDataset
from kmlm_fairseq.data.tagged_tokens_dataset import TaggedTokensDataset
from kmlm_fairseq.data.truncated_lines_dataset import TruncatedLinesDataset
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.indexed import check_indexed_dataset
from preprocess.core.seeds import derive_seed
from preprocess.core.span_tags import SPECIAL, TAG_DTYPE, pack_tags

logger = logging.getLogger(__name__)

PLAIN, KNOWLEDGE, REASONING = "plain", "knowledge", "reasoning"
STREAMS = (PLAIN, KNOWLEDGE, REASONING)
TAGS_SUFFIX = ".tags"
SPECIAL_TAG = int(pack_tags(SPECIAL))


def shard_prefixes(directory, split):
    """``split``, ``split1``, ``split2``, ... while they exist (fairseq's own sharding convention)."""
    prefixes = []
    while MMapIndexedDataset.exists(os.path.join(directory, split + (str(len(prefixes)) if prefixes else ""))):
        prefixes.append(os.path.join(directory, split + (str(len(prefixes)) if prefixes else "")))
    return prefixes


def stream_languages(data, stream, split, languages=()):
    """Languages with ``split`` data for a stream, sorted; restricted to ``languages`` when given."""
    root = os.path.join(data, stream)
    found = sorted(lang for lang in (os.listdir(root) if os.path.isdir(root) else ())
                   if shard_prefixes(os.path.join(root, lang), split))
    return [lang for lang in found if not languages or lang in languages]


def checked_dataset(prefix, dtype=None):
    """(fairseq's MMapIndexedDataset of ``prefix``, its sizes), opened once its index is checked against its data
    file (``check_indexed_dataset``): a damaged file stops the task while it loads (ValueError naming the file),
    before the first update."""
    try:
        sizes, _ = check_indexed_dataset(prefix, dtype)
    except UserFacingError as err:
        raise ValueError(str(err)) from None
    return MMapIndexedDataset(prefix), sizes


def concat(datasets):
    return datasets[0] if len(datasets) == 1 else ConcatDataset(datasets)


def load_plain(directory, split, dictionary, tokens_per_sample, break_mode):
    """Plain text in samples of at most tokens_per_sample tokens, <s> included; longer lines are truncated.

    eos (one line per sample): a longer line keeps its first tokens_per_sample - 2 tokens and its </s>, as the
    official run's tokenizer truncation (--line_by_line, max_seq_length 128); the number cut is logged. complete:
    a line longer than a block keeps its first tokens_per_sample - 1 tokens, then lines are packed."""
    lines = concat([checked_dataset(prefix)[0] for prefix in shard_prefixes(directory, split)])
    if break_mode == "eos":
        lines = TruncatedLinesDataset(lines, tokens_per_sample - 1, dictionary.eos())
        if lines.truncated:
            logger.info(f"{directory} {split}: {lines.truncated} of {len(lines)} lines longer than "
                        f"{tokens_per_sample} tokens truncated")
    elif break_mode != "none":
        lines = TruncateDataset(lines, tokens_per_sample - 1)
    blocks = TokenBlockDataset(lines, lines.sizes, tokens_per_sample - 1, pad=dictionary.pad(),
                               eos=dictionary.eos(), break_mode=break_mode)
    return PrependTokenDataset(blocks, dictionary.bos())


def load_tagged(directory, split, dictionary):
    """Token ids and span tags of every shard, <s> and a SPECIAL tag prepended."""
    shards = []
    for prefix in shard_prefixes(directory, split):
        if not MMapIndexedDataset.exists(prefix + TAGS_SUFFIX):
            raise FileNotFoundError(f"{prefix}.bin has no span tags: expected {prefix}{TAGS_SUFFIX}.bin/.idx")
        tokens, tags = checked_dataset(prefix)[0], checked_dataset(prefix + TAGS_SUFFIX, TAG_DTYPE)[0]
        shards.append(TaggedTokensDataset(tokens, tags, dictionary.bos(), SPECIAL_TAG,
                                          name=f"{prefix}.bin/.idx and {prefix}{TAGS_SUFFIX}.bin/.idx"))
    return concat(shards)


def temperature_sizes(lengths, alpha):
    """Per-language sizes of one epoch with p_l proportional to n_l^alpha, keeping the total number of samples."""
    lengths = np.asarray(lengths, dtype=np.float64)
    probabilities = lengths**alpha / (lengths**alpha).sum()
    return np.maximum(np.round(probabilities * lengths.sum()), 1).astype(np.int64)


def mix_languages(datasets, alpha, seed, name, epoch=1):
    """Concatenate the languages' datasets (alpha = 1, as the official code), or resample them per epoch with a
    temperature."""
    langs = list(datasets)
    if alpha == 1.0 or len(langs) == 1:
        return concat([datasets[lang] for lang in langs])
    sizes = temperature_sizes([len(datasets[lang]) for lang in langs], alpha)
    logger.info(f"{name}: languages sampled with alpha={alpha}: "
                + ", ".join(f"{lang} {len(datasets[lang])} -> {size}" for lang, size in zip(langs, sizes)))
    return ConcatDataset([
        CycledDataset(datasets[lang], size, seed=derive_seed(seed, name, lang), epoch=epoch)
        for lang, size in zip(langs, sizes)
    ])
