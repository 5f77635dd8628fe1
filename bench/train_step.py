"""Time per update of kmlm_reasoning (3 streams x B sequences, criterion kmlm_multitask) against fairseq's stock
masked_lm (one batch of 3B sequences, criterion masked_lm) on the same tiny model and the same sequences, in one
process, and print the ratio (target: at most 1.15x).

Input: a tiny synthetic corpus in the binarized layout (kmlm_fairseq.data.toy_corpus), written to a temporary
directory; the stock task reads the same stored samples (every stream's, concatenated) as one fairseq dataset.
Both runs use configs/tiny_cpu.yaml (dropout and all), one sample per line (sample_break_mode eos), fp32 on CPU.
Timed: fetching + masking + collating the batch (inline: data_buffer_size=0, no prefetch thread) and
trainer.train_step, in alternating blocks of the two tasks so that machine noise hits both alike; reported: the
median over blocks of the mean time per update. Measured on the 2-core VM: 0.91x with 32 sequences per stream and
1.00x with 16 when it was quiet, 0.87-1.19x while other jobs ran. A joint forward over the three sub-batches padded
to the longest was tried and was slower (1.27x against 1.15x in the same run): padding costs more than the saved
passes.

    python bench/train_step.py [--batch-size 32] [--updates 40] [--rounds 5] [--threads 1]
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import kmlm_fairseq  # noqa: E402,F401  (registers the plugin; numpy-2 and torch.load fixes)
from fairseq import tasks  # noqa: E402
from fairseq.data import Dictionary  # noqa: E402
from fairseq.data.indexed_dataset import MMapIndexedDataset, MMapIndexedDatasetBuilder  # noqa: E402
from fairseq.dataclass.initialize import add_defaults, hydra_init  # noqa: E402
from fairseq.dataclass.utils import omegaconf_no_object_check  # noqa: E402
from fairseq.logging import metrics  # noqa: E402
from fairseq.trainer import Trainer  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from kmlm_fairseq.data.binarized_streams import STREAMS, shard_prefixes, stream_languages  # noqa: E402
from kmlm_fairseq.data.toy_corpus import write_toy_corpus  # noqa: E402

SIZES = {("plain", "train"): 400, ("knowledge", "train"): 400, ("reasoning", "train"): 200}


def write_stock_corpus(data, stock):
    """All stored samples of all streams and languages as one fairseq dataset, for stock masked_lm (which refuses
    <mask> in its input: the link masks become <unk>, same lengths)."""
    stock.mkdir()
    (stock / "dict.txt").write_bytes((data / "dict.txt").read_bytes())
    dictionary = Dictionary.load(str(data / "dict.txt"))
    link_mask = dictionary.add_symbol("<mask>")
    dtype = None
    samples = []
    for stream in STREAMS:
        for lang in stream_languages(str(data), stream, "train"):
            for prefix in shard_prefixes(str(data / stream / lang), "train"):
                dataset = MMapIndexedDataset(prefix)
                dtype = dataset._index.dtype
                samples.extend(dataset[i].masked_fill(dataset[i] == link_mask, dictionary.unk())
                               for i in range(len(dataset)))
    builder = MMapIndexedDatasetBuilder(str(stock / "train.bin"), dtype=dtype)
    for sample in samples:
        builder.add_item(sample)
    builder.finalize(str(stock / "train.idx"))
    return len(samples)


def training_config(data, batch_size, stock):
    hydra_init("tiny_cpu")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose("tiny_cpu", overrides=[f"task.data={data}", "++task.sample_break_mode=eos",
                                             f"dataset.batch_size={batch_size}", "dataset.disable_validation=true",
                                             "optimization.max_update=100000", "checkpoint.no_save=true",
                                             "dataset.data_buffer_size=0"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # for ${hydra:job.config_name} (task.recipe)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.common.user_dir = None  # already imported
        if stock:
            cfg.task = OmegaConf.create({"_name": "masked_lm", "data": str(data), "sample_break_mode": "eos",
                                         "tokens_per_sample": 128})
            cfg.criterion = OmegaConf.create({"_name": "masked_lm"})
    add_defaults(cfg)
    with omegaconf_no_object_check():
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


class Run:
    """A trainer and an endless stream of its training batches."""

    def __init__(self, cfg):
        self.task = tasks.setup_task(cfg.task)
        self.task.load_dataset("train")
        model = self.task.build_model(cfg.model)
        self.trainer = Trainer(cfg, self.task, model, self.task.build_criterion(cfg.criterion))
        self.epoch_iterator = self.trainer.get_train_iterator(epoch=1)
        self.batches = self.epoch_iterator.next_epoch_itr(shuffle=True)

    def next_batch(self):
        if not self.batches.has_next():
            self.batches = self.epoch_iterator.next_epoch_itr(shuffle=True)
        return next(self.batches)

    def seconds_per_update(self, updates):
        metrics.reset()  # both tasks log "loss" into fairseq's global "train" meters, of different kinds
        start = time.perf_counter()
        for _ in range(updates):
            self.trainer.train_step([self.next_batch()])
        return (time.perf_counter() - start) / updates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per stream (stock: 3x this)")
    parser.add_argument("--updates", type=int, default=40, help="updates per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks per task, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        data, stock_data = Path(tmp) / "kmlm", Path(tmp) / "stock"
        write_toy_corpus(str(data), languages=("en", "de"), sizes=SIZES)
        samples = write_stock_corpus(data, stock_data)
        os.chdir(REPO_ROOT)
        runs = {
            f"kmlm_reasoning  3 streams x {args.batch_size:3d}": Run(training_config(data, args.batch_size, False)),
            f"masked_lm       1 stream  x {3 * args.batch_size:3d}": Run(
                training_config(stock_data, 3 * args.batch_size, stock=True)),
        }
        for run in runs.values():
            run.seconds_per_update(args.updates)  # warm-up: allocator and kernel caches for the batch shapes
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(run.seconds_per_update(args.updates))

    median = {name: statistics.median(values) for name, values in times.items()}
    stock_name = list(runs)[-1]
    print(f"tiny model (roberta_tiny), {samples} stored samples, {args.threads} thread(s), "
          f"{args.rounds} x {args.updates} updates each, median ms/update (blocks)")
    for name, values in times.items():
        print(f"  {name:34s} {1000 * median[name]:6.1f}  ({', '.join(f'{1000 * t:.1f}' for t in values)})")
    kmlm_name = list(runs)[0]
    print(f"ratio kmlm_reasoning / masked_lm: {median[kmlm_name] / median[stock_name]:.2f}x (target <= 1.15x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
