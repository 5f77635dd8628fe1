"""Task ``kmlm_reasoning`` (the paper's KMLM_R): every update takes one batch from each of three masked streams.

Input: the binarized data directory (written by preprocess/stages/binarize.py): DATA/dict.txt and
DATA/{plain,knowledge,reasoning}/<lang>/<split>*.{bin,idx} (+ .tags for knowledge and reasoning).
Output: ``self.datasets[split]``, a MultiStreamDataset whose batches are an OrderedDict stream -> masked_lm batch,
for the criterion ``kmlm_multitask``.

Streams: plain text (15%, 80/10/10: PlainMaskDataset), code-switched knowledge sentences (KnowledgeMaskDataset),
reasoning samples from cycles (ReasoningMaskDataset). In training, the stream named by ``epoch_stream`` (default:
the one with the most batches) sets the number of updates per epoch; the others are cycled through fresh
permutations (or subsampled) to the same number of batches, so a short stream repeats with new masks and in a new
order every time. Each stream may hold one dataset per language, concatenated (as the official code) or
temperature-sampled. Every default and its source: docs/recipe.md.
"""
import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from fairseq.data import Dictionary, iterators
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks import FairseqTask, register_task
from fairseq.tasks.language_modeling import SAMPLE_BREAK_MODE_CHOICES
from omegaconf import II, MISSING

from kmlm_fairseq.data.binarized_streams import (
    KNOWLEDGE,
    PLAIN,
    REASONING,
    STREAMS,
    load_plain,
    load_tagged,
    mix_languages,
    stream_languages,
)
from kmlm_fairseq.data.cycled_dataset import CycledDataset
from kmlm_fairseq.data.knowledge_mask_dataset import KNOWLEDGE_MASKING_MODES, KnowledgeMaskDataset
from kmlm_fairseq.data.multi_stream_dataset import MultiStreamDataset
from kmlm_fairseq.data.plain_mask_dataset import PLAIN_MASKING_MODES, PlainMaskDataset
from kmlm_fairseq.data.reasoning_mask_dataset import ReasoningMaskDataset
from preprocess.core.seeds import derive_seed

logger = logging.getLogger(__name__)

DEFAULT_RESTORE_FILE = "checkpoint_last.pt"


def split_list(text):
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass
class KMLMConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={
        "help": "binarized data directory: dict.txt and plain/, knowledge/, reasoning/<lang>/<split>.{bin,idx}"})
    streams: str = field(default="plain,knowledge,reasoning", metadata={
        "help": "comma-separated streams to train on (plain, knowledge, reasoning); leave one out to ablate it"})
    languages: str = field(default="", metadata={
        "help": "comma-separated languages to read; empty: every language directory of each stream"})
    multilang_sampling_alpha: float = field(default=1.0, metadata={
        "help": "1.0: concatenate each stream's languages (the official code reads all files as one dataset); "
                "below 1: sample language l with probability proportional to n_l^alpha, redrawn every epoch "
                "(training only)"})
    plain_batch_size: Optional[int] = field(default=None, metadata={
        "help": "sequences per plain-text sub-batch (default: dataset.batch_size)"})
    knowledge_batch_size: Optional[int] = field(default=None, metadata={
        "help": "sequences per knowledge sub-batch (default: dataset.batch_size)"})
    reasoning_batch_size: Optional[int] = field(default=None, metadata={
        "help": "sequences per reasoning sub-batch (default: dataset.batch_size)"})
    epoch_stream: str = field(default="longest", metadata={
        "help": "the stream whose one pass is an epoch ('longest': the one with the most batches); the others "
                "are cycled through fresh permutations, or subsampled, to the same number of batches"})
    tokens_per_sample: int = field(default=128, metadata={
        "help": "max tokens per sample, <s> included; longer knowledge/reasoning samples are skipped"})
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = field(default="eos", metadata={
        "help": "how plain-text lines form samples (fairseq's TokenBlockDataset): eos = one line per sample, a "
                "longer line cut to its first tokens_per_sample - 2 tokens + </s> (the official run's "
                "--line_by_line); complete = whole lines packed up to tokens_per_sample; none = fixed-size blocks"})
    mask_prob: float = field(default=0.15, metadata={
        "help": "share of tokens to predict in plain text and knowledge sentences (paper, Table 9: 0.15)"})
    plain_masking: ChoiceEnum(PLAIN_MASKING_MODES) = field(default="bernoulli", metadata={
        "help": "plain text: bernoulli = each token with probability mask_prob, a line may predict nothing (the "
                "official collator); count = exactly round(mask_prob x n) tokens, at least one (fairseq's "
                "masked_lm; before issue 14)"})
    leave_unmasked_prob: float = field(default=0.1, metadata={
        "help": "share of the predicted plain/knowledge tokens left unchanged in the input"})
    random_token_prob: float = field(default=0.1, metadata={
        "help": "share of the predicted plain/knowledge tokens replaced by a random token"})
    knowledge_masking: ChoiceEnum(KNOWLEDGE_MASKING_MODES) = field(default="tokens", metadata={
        "help": "tokens: each token with probability mask_prob, 80/10/10, link positions never predicted (paper "
                "section 3.2 and the official collator); spans: whole entity/relation mentions covering about "
                "mask_prob of the mention tokens, at least one (a variant of ours; in a one-triple sentence one "
                "whole mention). kmlm_knowledge masks its reasoning samples the same way"})
    knowledge_at_least_one: bool = field(default=False, metadata={
        "help": "tokens mode: when no entity/relation token is drawn, predict one at random (before issue 14; the "
                "official collator then predicts nothing)"})
    diamond_relation_prob: float = field(default=0.8, metadata={
        "help": "diamonds: probability of masking one relation + 1-2 entity mentions (else one sentence's head "
                "and tail)"})
    recipe: str = field(default="", metadata={
        "help": "name of the config the run was composed from (configs/recipe/kmlm.yaml sets it from Hydra); kept "
                "in the checkpoint for the exported model card"})
    seed: int = II("common.seed")
    batch_size: Optional[int] = II("dataset.batch_size")
    train_subset: str = II("dataset.train_subset")
    restore_file: str = II("checkpoint.restore_file")


@register_task("kmlm_reasoning", dataclass=KMLMConfig)
class KMLMReasoningTask(FairseqTask):
    cfg: KMLMConfig

    def __init__(self, cfg: KMLMConfig, dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.mask_idx = dictionary.add_symbol("<mask>")
        self.streams = split_list(cfg.streams)
        unknown = sorted(set(self.streams) - set(STREAMS))
        if unknown or not self.streams:
            raise ValueError(f"task.streams={cfg.streams!r}: choose among {', '.join(STREAMS)}")
        if cfg.epoch_stream not in ("longest", *self.streams):
            raise ValueError(f"task.epoch_stream={cfg.epoch_stream!r} is neither 'longest' nor one of the streams")
        self.languages = split_list(cfg.languages)

    @classmethod
    def setup_task(cls, cfg: KMLMConfig, **kwargs):
        path = os.path.join(cfg.data, "dict.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"task.data={cfg.data!r}: no dictionary {path} (make DATA with kmlm-preprocess "
                                    "binarize)")
        dictionary = Dictionary.load(path)
        logger.info(f"dictionary: {len(dictionary)} types (+ <mask>)")
        return cls(cfg, dictionary)

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary

    def max_positions(self):
        return self.cfg.tokens_per_sample

    def stream_batch_size(self, stream, default=None):
        return getattr(self.cfg, f"{stream}_batch_size") or default

    # ---- data -----------------------------------------------------------------------------------------------

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        training = split == self.cfg.train_subset
        streams = OrderedDict()
        for stream in self.streams:
            languages = stream_languages(self.cfg.data, stream, split, self.languages)
            if not languages:
                message = f"{stream}: no {split} data in {os.path.join(self.cfg.data, stream)}/<lang>/"
                if training:
                    raise FileNotFoundError(message + " (leave the stream out with task.streams)")
                logger.warning(message + ": not evaluated")
                continue
            per_language = OrderedDict((lang, self.load_stream(stream, lang, split)) for lang in languages)
            alpha = self.cfg.multilang_sampling_alpha if training else 1.0
            streams[stream] = mix_languages(per_language, alpha, self.cfg.seed, stream, epoch)
            logger.info(f"{split} {stream}: {len(streams[stream])} samples ("
                        + ", ".join(f"{lang} {len(dataset)}" for lang, dataset in per_language.items()) + ")")
        if not streams:
            raise FileNotFoundError(f"no {split} data for any of the streams {self.streams} in {self.cfg.data}")
        if training:
            streams = self.resize_to_epoch(streams, epoch)
        masked = OrderedDict((stream, self.mask_stream(stream, dataset, epoch)) for stream, dataset in streams.items())
        self.datasets[split] = MultiStreamDataset(masked, self.dictionary.pad(), cycle=training)

    def load_stream(self, stream, lang, split):
        directory = os.path.join(self.cfg.data, stream, lang)
        if stream == PLAIN:
            return load_plain(directory, split, self.dictionary, self.cfg.tokens_per_sample,
                              self.cfg.sample_break_mode)
        return load_tagged(directory, split, self.dictionary)

    def resize_to_epoch(self, streams, epoch):
        """Cycle (or subsample) every stream to the number of batches of the epoch-defining stream."""
        batch = {stream: self.stream_batch_size(stream, self.cfg.batch_size) or 1 for stream in streams}
        if self.cfg.epoch_stream == "longest":
            updates = max(len(dataset) / batch[stream] for stream, dataset in streams.items())
        elif self.cfg.epoch_stream in streams:
            updates = len(streams[self.cfg.epoch_stream]) / batch[self.cfg.epoch_stream]
        else:
            raise ValueError(f"task.epoch_stream={self.cfg.epoch_stream!r} has no training data")
        resized = OrderedDict()
        for stream, dataset in streams.items():
            size = math.ceil(updates * batch[stream])
            if size != len(dataset):
                logger.info(f"{stream}: {len(dataset)} samples -> {size} per epoch (reshuffled every pass)")
                dataset = CycledDataset(dataset, size, seed=derive_seed(self.cfg.seed, stream, "cycle"), epoch=epoch)
            resized[stream] = dataset
        return resized

    def mask_stream(self, stream, dataset, epoch):
        seed = derive_seed(self.cfg.seed, stream)
        if stream == PLAIN:
            return PlainMaskDataset(dataset, self.dictionary, self.mask_idx, seed, self.cfg.mask_prob,
                                    self.cfg.leave_unmasked_prob, self.cfg.random_token_prob, epoch=epoch,
                                    mode=self.cfg.plain_masking)
        if stream == KNOWLEDGE:
            return self.knowledge_masking(dataset, seed, epoch)
        assert stream == REASONING, stream
        return self.reasoning_masking(dataset, seed, epoch)

    def knowledge_masking(self, dataset, seed, epoch):
        return KnowledgeMaskDataset(dataset, self.dictionary, self.mask_idx, seed, self.cfg.mask_prob,
                                    self.cfg.knowledge_masking, self.cfg.leave_unmasked_prob,
                                    self.cfg.random_token_prob, epoch=epoch,
                                    at_least_one=self.cfg.knowledge_at_least_one)

    def reasoning_masking(self, dataset, seed, epoch):
        return ReasoningMaskDataset(dataset, self.dictionary, self.mask_idx, seed,
                                    self.cfg.diamond_relation_prob, epoch=epoch)

    def get_batch_iterator(self, dataset, max_tokens=None, max_sentences=None, max_positions=None,
                           ignore_invalid_inputs=False, required_batch_size_multiple=1, seed=1, num_shards=1,
                           shard_id=0, num_workers=0, epoch=1, data_buffer_size=0, disable_iterator_cache=False,
                           skip_remainder_batch=False, grouped_shuffling=False, update_epoch_batch_itr=False):
        """Batches of all streams at once, rebuilt every epoch (MultiStreamDataset.batches).

        A fresh iterator (and DataLoader) per call: reusing fairseq's cached one would keep DataLoader workers
        holding the previous epoch's datasets (docs/design.md §7).
        """
        if not isinstance(dataset, MultiStreamDataset):
            return super().get_batch_iterator(
                dataset, max_tokens, max_sentences, max_positions, ignore_invalid_inputs,
                required_batch_size_multiple, seed, num_shards, shard_id, num_workers, epoch, data_buffer_size,
                disable_iterator_cache, skip_remainder_batch, grouped_shuffling, update_epoch_batch_itr)
        batch_sizes = {stream: self.stream_batch_size(stream, max_sentences) for stream in dataset.names}
        # in validation every sample counts: no batch is dropped for not being a multiple of N
        multiple = required_batch_size_multiple if dataset.cycle else 1

        def make_batches(dataset, epoch):
            return dataset.batches(epoch, seed, batch_sizes, max_tokens, max_positions, multiple, num_shards,
                                   ignore_invalid_inputs)

        dataset.set_epoch(epoch)
        return iterators.EpochBatchIterator(
            dataset=dataset, collate_fn=dataset.collater, batch_sampler=make_batches, seed=seed,
            num_shards=num_shards, shard_id=shard_id, num_workers=num_workers, epoch=epoch,
            buffer_size=data_buffer_size, skip_remainder_batch=skip_remainder_batch,
            grouped_shuffling=grouped_shuffling, reuse_dataloader=False,
        )

    # ---- model ----------------------------------------------------------------------------------------------

    def build_model(self, cfg, from_checkpoint=False):
        if not from_checkpoint and self.cfg.restore_file != DEFAULT_RESTORE_FILE:
            if not os.path.isfile(self.cfg.restore_file):
                raise FileNotFoundError(f"checkpoint.restore_file={self.cfg.restore_file!r} does not exist (fairseq "
                                        "would silently train from scratch): set it to the checkpoint to start from")
        model = super().build_model(cfg, from_checkpoint)
        embed_tokens = getattr(getattr(getattr(model, "encoder", None), "sentence_encoder", None),
                               "embed_tokens", None)
        if embed_tokens is not None:
            embed_tokens.register_load_state_dict_pre_hook(self._check_embedding_rows)
        return model

    def _check_embedding_rows(self, module, state_dict, prefix, *unused):
        weight = state_dict.get(prefix + "weight")
        if weight is not None and weight.shape[0] != len(self.dictionary):
            message = (
                f"the checkpoint's token embedding has {weight.shape[0]} rows but the dictionary has "
                f"{len(self.dictionary)} symbols ({os.path.join(self.cfg.data, 'dict.txt')} + <mask>): binarize "
                "the data with the checkpoint's own dict.txt (XLM-R: the dict.txt inside xlmr.base / xlmr.large)"
            )
            logger.error(message)
            raise ValueError(message)

    def begin_epoch(self, epoch, model):
        model.set_epoch(epoch)

    def begin_valid_epoch(self, epoch, model):
        """Start fairseq's ``valid`` meters afresh at every validation, so that they (and the checkpoint saved after
        it, and the exported model card) hold the last validation. fairseq never resets them: they would average every
        validation since the process started, or since a resume restored them, which fairseq skips for a checkpoint
        saved at the end of an epoch, so a resumed run's meters would depend on where it was interrupted."""
        super().begin_valid_epoch(epoch, model)
        metrics.reset_meters("valid")
