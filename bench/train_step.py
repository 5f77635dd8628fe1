"""Time per update of kmlm_reasoning (3 streams x B sequences, criterion kmlm_multitask) against fairseq's stock
masked_lm (one batch of 3B sequences, criterion masked_lm) on the same model and the same sequences, in one
process, and print the ratio (targets: at most 1.15x for the tiny model on CPU, 1.05x for the base model on a GPU)
and the tokens per second (non-padding input tokens) of each.

Input: a tiny synthetic corpus in the binarized layout (kmlm_fairseq.data.toy_corpus), written to a temporary
directory, or ``--data DATA`` (e.g. the bundled Wikidata samples binarized, as run/gpu_check.sh makes it); the
stock task reads the same stored samples (every stream's, concatenated) as one fairseq dataset. ``--vocab-size``
pads the dictionary with unused symbols (XLM-R's 250,002 for a realistic embedding and output layer).
Both runs use configs/tiny_cpu.yaml (dropout and all) with ``--model`` (tiny, or base: XLM-R base's
architecture), one sample per line (sample_break_mode eos) of at most ``--tokens-per-sample``, on ``--device``
in ``--precision``. Timed: fetching + masking + collating the batch (inline: data_buffer_size=0, no prefetch
thread) and trainer.train_step, in alternating blocks of the two tasks so that machine noise hits both alike;
on a GPU the batches are fetched before each block (training overlaps that with DataLoader workers) and the
clock waits for the GPU. Reported: the median over blocks of the mean time per update.
Measured on the 2-core VM (tiny, CPU): 0.91x with 32 sequences per stream and 1.00x with 16 when it was quiet,
0.87-1.19x while other jobs ran. A joint forward over the three sub-batches padded to the longest was tried and
was slower on CPU (1.27x against 1.15x in the same run): padding costs more than the saved passes.

    python bench/train_step.py [--batch-size 32] [--updates 40] [--rounds 5] [--threads 1]
    python bench/train_step.py --device cuda --model base --precision bf16 --batch-size 100 --data DATA \
        --vocab-size 250002                  # run/gpu_check.sh's benchmark
"""
import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import kmlm_fairseq  # noqa: E402,F401  (registers the plugin; numpy-2 and torch.load fixes)

# isort: split
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

from kmlm_fairseq.data.binarized_streams import STREAMS, TAGS_SUFFIX, shard_prefixes, stream_languages  # noqa: E402
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


PRECISIONS = {"fp32": ("common.fp16=false", "common.bf16=false"), "fp16": ("common.fp16=true", "common.bf16=false"),
              "bf16": ("common.fp16=false", "common.bf16=true")}
MODELS = {"tiny": "tiny", "base": "xlmr_base"}


def pad_vocabulary(data, padded, size):
    """A copy of DATA whose dict.txt has ``size`` entries (fairseq's 4 specials and <mask> included), unused
    symbols added at the end; the stored link masks move to the new <mask> id."""
    dictionary = Dictionary.load(str(data / "dict.txt"))
    old_mask, extra = len(dictionary), size - len(dictionary) - 1
    if extra < 0:
        raise SystemExit(f"--vocab-size {size} is below the data's {len(dictionary) + 1} symbols")
    padded.mkdir()
    (padded / "dict.txt").write_text((data / "dict.txt").read_text(encoding="utf-8")
                                     + "".join(f"unusedsymbol{k} 0\n" for k in range(extra)), encoding="utf-8")
    new_mask = old_mask + extra
    for stream in STREAMS:
        for lang in stream_languages(str(data), stream, "train"):
            for prefix in shard_prefixes(str(data / stream / lang), "train"):
                target = padded / Path(prefix).relative_to(data)
                target.parent.mkdir(parents=True, exist_ok=True)
                for suffix, remap in (("", True), (TAGS_SUFFIX, False)):
                    if not MMapIndexedDataset.exists(prefix + suffix):
                        continue
                    source = MMapIndexedDataset(prefix + suffix)
                    builder = MMapIndexedDatasetBuilder(f"{target}{suffix}.bin", dtype=np.int32 if remap else
                                                        source._index.dtype)
                    for i in range(len(source)):
                        item = source[i]
                        builder.add_item(item.masked_fill(item == old_mask, new_mask) if remap else item)
                    builder.finalize(f"{target}{suffix}.idx")
    return padded


def training_config(data, batch_size, stock, model="tiny", device="cpu", precision="fp32", tokens_per_sample=128):
    hydra_init("tiny_cpu")
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
        cfg = compose("tiny_cpu", overrides=[f"task.data={data}", "++task.sample_break_mode=eos",
                                             f"task.tokens_per_sample={tokens_per_sample}",
                                             f"dataset.batch_size={batch_size}", "dataset.disable_validation=true",
                                             "optimization.max_update=100000", "checkpoint.no_save=true",
                                             "dataset.data_buffer_size=0", f"model={MODELS[model]}",
                                             f"common.cpu={device == 'cpu'}", *PRECISIONS[precision]],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # for ${hydra:job.config_name} (task.recipe)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.common.user_dir = None  # already imported
        if stock:
            cfg.task = OmegaConf.create({"_name": "masked_lm", "data": str(data), "sample_break_mode": "eos",
                                         "tokens_per_sample": tokens_per_sample})
            cfg.criterion = OmegaConf.create({"_name": "masked_lm"})
    add_defaults(cfg)
    with omegaconf_no_object_check():
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def input_tokens(sample, pad):
    """Non-padding input tokens of a batch (of every stream's sub-batch)."""
    if isinstance(sample, dict) and "net_input" in sample:
        return int(sample["net_input"]["src_tokens"].ne(pad).sum())
    return sum(input_tokens(part, pad) for part in sample.values() if isinstance(part, dict))


class Run:
    """A trainer and an endless stream of its training batches."""

    def __init__(self, cfg, prefetch=False):
        self.task = tasks.setup_task(cfg.task)
        self.task.load_dataset("train")
        model = self.task.build_model(cfg.model)
        self.trainer = Trainer(cfg, self.task, model, self.task.build_criterion(cfg.criterion))
        self.epoch_iterator = self.trainer.get_train_iterator(epoch=1)
        self.batches = self.epoch_iterator.next_epoch_itr(shuffle=True)
        self.cuda, self.prefetch, self.pad = not cfg.common.cpu, prefetch, self.task.source_dictionary.pad()
        self.tokens = 0

    def next_batch(self):
        if not self.batches.has_next():
            self.batches = self.epoch_iterator.next_epoch_itr(shuffle=True)
        return next(self.batches)

    def seconds_per_update(self, updates):
        metrics.reset()  # both tasks log "loss" into fairseq's global "train" meters, of different kinds
        batches = [self.next_batch() for _ in range(updates)] if self.prefetch else None
        self.synchronize()
        start = time.perf_counter()
        for k in range(updates):
            batch = batches[k] if batches else self.next_batch()
            self.tokens += input_tokens(batch, self.pad)
            self.trainer.train_step([batch])
        self.synchronize()
        return (time.perf_counter() - start) / updates

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=32, help="sequences per stream (stock: 3x this)")
    parser.add_argument("--updates", type=int, default=40, help="updates per timed block")
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks per task, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="(default: %(default)s)")
    parser.add_argument("--model", choices=tuple(MODELS), default="tiny",
                        help="tiny (roberta_tiny) or base (XLM-R base's architecture) (default: %(default)s)")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), default="fp32", help="(default: %(default)s)")
    parser.add_argument("--data", type=Path, help="binarized DATA to read (default: a tiny synthetic corpus)")
    parser.add_argument("--vocab-size", type=int, help="pad the dictionary to this many symbols (XLM-R: 250002)")
    parser.add_argument("--tokens-per-sample", type=int, default=128, help="longest sample (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")

    with tempfile.TemporaryDirectory() as tmp:
        data, stock_data = Path(tmp) / "kmlm", Path(tmp) / "stock"
        if args.data:
            data = args.data.resolve()
        else:
            write_toy_corpus(str(data), languages=("en", "de"), sizes=SIZES)
        if args.vocab_size:
            data = pad_vocabulary(data, Path(tmp) / "padded", args.vocab_size)
        samples = write_stock_corpus(data, stock_data)
        os.chdir(REPO_ROOT)
        settings = dict(model=args.model, device=args.device, precision=args.precision,
                        tokens_per_sample=args.tokens_per_sample)
        prefetch = args.device == "cuda"
        runs = {
            f"kmlm_reasoning  3 streams x {args.batch_size:3d}": Run(
                training_config(data, args.batch_size, False, **settings), prefetch),
            f"masked_lm       1 stream  x {3 * args.batch_size:3d}": Run(
                training_config(stock_data, 3 * args.batch_size, True, **settings), prefetch),
        }
        for run in runs.values():
            run.seconds_per_update(args.updates)  # warm-up: allocator and kernel caches for the batch shapes
            run.tokens = 0
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                times[name].append(run.seconds_per_update(args.updates))

    median = {name: statistics.median(values) for name, values in times.items()}
    stock_name, kmlm_name = list(runs)[-1], list(runs)[0]
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"{args.model} model ({MODELS[args.model]}), {len(runs[kmlm_name].task.source_dictionary):,} symbols, "
          f"{samples} stored samples, {device}, {args.precision}, {args.rounds} x {args.updates} updates each, "
          f"median ms/update (blocks), input tokens/s (all timed updates)")
    for name, values in times.items():
        tokens_per_second = runs[name].tokens / (sum(values) * args.updates)
        print(f"  {name:34s} {1000 * median[name]:7.1f} ms  ({', '.join(f'{1000 * t:.1f}' for t in values)})  "
              f"{tokens_per_second:10,.0f} tokens/s" + (" per GPU" if args.device == "cuda" else ""))
    target = "1.05x (base model on a GPU)" if args.device == "cuda" else "1.15x"
    print(f"ratio kmlm_reasoning / masked_lm step time: {median[kmlm_name] / median[stock_name]:.2f}x "
          f"(target <= {target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
