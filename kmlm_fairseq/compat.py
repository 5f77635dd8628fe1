"""Fixes that fairseq needs on current torch/numpy, applied once on import of :mod:`kmlm_fairseq`.

numpy 2 removed ``np.compat``; fairseq still reads ``np.compat.long`` (``TokenBlockDataset(break_mode="eos")``,
``LanguagePairDataset``), which was plain ``int``. We restore exactly that alias and nothing else.

torch >= 2.6 defaults ``torch.load`` to ``weights_only=True``; fairseq's checkpoints pickle the training
``argparse.Namespace`` (and omegaconf containers when a config is saved), so fairseq's own ``torch.load`` fails
with "Unsupported global: argparse.Namespace". Allow-listing those classes keeps the safe loader for everything else.

fairseq saves a checkpoint atomically (temp file + rename), then copies it to ``checkpoint_last.pt`` /
``checkpoint_best.pt`` with ``shutil.copyfile`` in place: a run killed during that copy leaves a truncated
``checkpoint_last.pt`` that the next run fails to resume from. Local copies go through a temp file + rename instead.

fairseq's training loop (``fairseq_cli.train.main``) starts an epoch and takes an update before it first checks
``optimization.max_update``: relaunched on a ``checkpoint_last.pt`` that already holds ``max_update`` updates (a run
killed after its last checkpoint but before the pipeline recorded it as done, a SLURM job submitted again), it trains
update ``max_update + 1``, validates and saves. With the lr decayed to 0 the weights stay bit-equal, but the update
count, Adam's moments and step, the data position and the loss meters in the checkpoint are no longer the finished
run's. Such a relaunch now stops before that update and leaves the checkpoint as it was.
"""
import argparse
import collections
import functools
import logging
import os
import shutil
import sys
import types
import typing

import numpy as np
import torch.serialization

logger = logging.getLogger(__name__)


def _checkpoint_globals():
    yield argparse.Namespace
    # fairseq broadcasts rank 0's checkpoint state to the other ranks through torch.save/torch.load
    # (distributed_utils.broadcast_object); that state holds these too (type hints, empty defaultdicts).
    # A non-empty defaultdict cannot load with weights_only at all: the configs load on every rank instead.
    yield from (typing.Any, dict, list, int, collections.defaultdict)
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode
    except ImportError:  # omegaconf is a fairseq dependency; without it there are no omegaconf objects to load
        return
    yield from (DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode)


def allow_fairseq_checkpoint_globals():
    torch.serialization.add_safe_globals(list(_checkpoint_globals()))


def restore_numpy_compat_long():
    try:
        np.compat  # noqa: B018  (numpy < 2 still has it)
    except AttributeError:
        np.compat = types.SimpleNamespace(long=int)


def copy_checkpoints_atomically():
    from fairseq.file_io import PathManager

    stock_copy = PathManager.copy

    def atomic_copy(src_path, dst_path, overwrite=False):
        if PathManager.path_requires_pathmanager(dst_path):  # a remote store (iopath): its own semantics
            return stock_copy(src_path, dst_path, overwrite)
        tmp = f"{dst_path}.tmp-{os.getpid()}"
        try:
            shutil.copyfile(src_path, tmp)
            os.replace(tmp, dst_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True

    PathManager.copy = staticmethod(atomic_copy)


def stop_a_finished_training_before_another_update():
    """Make ``fairseq_cli.train.train`` (one epoch) return "stop" at once when the trainer already holds
    ``max_update`` updates. Only when fairseq's training CLI is loaded, as it always is before it imports the plugin:
    importing ``fairseq_cli.train`` here would configure the root logger of every other process (export, tests)."""
    train_cli = sys.modules.get("fairseq_cli.train")
    if train_cli is None or getattr(train_cli.train, "stops_a_finished_training", False):
        return
    stock_train = train_cli.train

    @functools.wraps(stock_train)
    def train(cfg, trainer, task, epoch_itr):
        max_update = cfg.optimization.max_update
        if max_update and trainer.get_num_updates() >= max_update:
            logger.info(f"the checkpoint already holds {trainer.get_num_updates()} updates, optimization.max_update "
                        f"is {max_update}: the training is complete, nothing to train (the checkpoint is left as it "
                        "is; raise max_update to train on)")
            return [None], True  # (validation losses, should_stop), as fairseq's train returns them
        return stock_train(cfg, trainer, task, epoch_itr)

    train.stops_a_finished_training = True
    train_cli.train = train


allow_fairseq_checkpoint_globals()
restore_numpy_compat_long()
copy_checkpoints_atomically()
stop_a_finished_training_before_another_update()
