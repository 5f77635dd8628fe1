"""What binarize and plain share: the hashed valid split, sharded dataset writers, summaries and options."""
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from preprocess.core.errors import UserFacingError
from preprocess.core.formats import indexed
from preprocess.core.formats.indexed import SUMMARY_FILE, TRAIN, VALID, ShardedSplitWriter
from preprocess.core.seeds import held_out_hash, held_out_salt
from preprocess.core.tokenizers.install import add_tokenizer_arguments
from preprocess.core.workers import default_workers

logger = logging.getLogger(__name__)


def valid_split_members(summary, keys):
    """Which group keys (triple_index of knowledge, cycle_id of reasoning samples) binarize put into the valid split,
    from the kind's ``summary.json``: the same hash and threshold as the split itself. The threshold is one for all
    languages of the kind (``HeldOutPlanner.shared_threshold``), so a group is valid in every language or in none."""
    threshold = summary.get("valid_threshold")
    if threshold is None:
        raise UserFacingError(f"the {summary.get('kind')} summary has no valid_threshold: re-run binarize")
    salt = held_out_salt(summary["settings"]["seed"], summary["kind"])
    return held_out_hash(keys, salt) < np.uint64(threshold)


class HeldOutPlanner:
    """Sets each dataset's valid threshold from the hashes of all its samples, keeping only the smallest
    ``valid_max + 1`` hashes per dataset (bounded memory)."""

    def __init__(self, fraction, valid_max):
        if not 0 <= fraction < 1:
            raise UserFacingError(f"--valid-fraction must be in [0, 1), got {fraction}")
        if valid_max < 0:
            raise UserFacingError(f"--valid-max must be >= 0, got {valid_max}")
        self.fraction, self.valid_max = fraction, valid_max
        self.samples, self.smallest = Counter(), {}

    def add(self, name, hashes):
        self.samples[name] += len(hashes)
        if self.fraction == 0 or self.valid_max == 0:
            return
        kept = np.concatenate([self.smallest.get(name, np.zeros(0, np.uint64)), hashes])
        if len(kept) > self.valid_max + 1:
            kept = np.partition(kept, self.valid_max)[:self.valid_max + 1]
        self.smallest[name] = kept

    def target(self, name):
        n = self.samples[name]
        if n < 2 or self.fraction == 0 or self.valid_max == 0:
            return 0
        return min(self.valid_max, max(1, round(self.fraction * n)), n - 1)

    def thresholds(self):
        """{dataset: threshold}: samples whose hash is below it go to valid (0: none)."""
        out = {}
        for name in self.samples:
            target = self.target(name)
            if target == 0:
                out[name] = 0
                continue
            smallest = np.sort(self.smallest[name])
            threshold = int(smallest[target]) if len(smallest) > target else (1 << 64) - 1
            if threshold == int(smallest[0]):  # the first group alone is larger than the target: take it whole
                threshold += 1
            out[name] = threshold
        return out

    def shared_threshold(self):
        """One threshold for datasets that hold the same groups (the languages of a kind), so that a group is held
        out in all of them or in none: the largest that keeps every dataset within its target, i.e. the smallest of
        their own thresholds. A dataset with a target of 0 (fewer than 2 samples) sets no bound."""
        return min((threshold for name, threshold in self.thresholds().items() if self.target(name) > 0), default=0)


class DatasetWriters:
    """The sharded writers of one kind's datasets, ``ROOT/<lang>/<split>``, opened on first use."""

    def __init__(self, root, streams, shard_size):
        self.root, self.streams, self.shard_size = Path(root), streams, shard_size
        self.writers = {}

    def add(self, lang, split, sizes, arrays):
        key = (lang, split)
        if key not in self.writers:
            self.writers[key] = ShardedSplitWriter(self.root / lang, split, self.streams, self.shard_size)
        self.writers[key].add(sizes, arrays)

    def close(self):
        """Finish every shard; returns {"<lang>/<split>": {samples, tokens, shards}}."""
        datasets = {}
        for (lang, split), writer in sorted(self.writers.items()):
            samples, tokens, shards = writer.close()
            datasets[f"{lang}/{split}"] = {"samples": samples, "tokens": tokens, "shards": shards}
        for lang in {lang for lang, _ in self.writers}:
            for split in (TRAIN, VALID):
                if (lang, split) not in self.writers:  # none this time: stale shards of an earlier run must go
                    indexed.remove_shards(self.root / lang, split)
        return datasets

    def abort(self):
        for writer in self.writers.values():
            writer.abort()


def output_root(data_dir, kind, part):
    root = Path(data_dir) / kind
    return indexed.part_dir(root, part) if part else root


def start_output(root):
    """Forget an earlier run's completion marker (a part's directory is rewritten from scratch)."""
    if indexed.PARTS_DIR in root.parts and root.exists():
        shutil.rmtree(root)
    (root / SUMMARY_FILE).unlink(missing_ok=True)


def log_summary(kind, summary, root, log=logger):
    counts = summary["counts"]
    written = ", ".join(f"{name} {d['samples']:,} ({d['tokens']:,} tokens, {d['shards']} shard(s))"
                        for name, d in summary["datasets"].items()) or "nothing"
    dropped = "; ".join(f"{k} {v:,}" for k, v in counts.items() if k.startswith(("dropped", "skipped"))) or "none"
    level = logging.INFO if summary["datasets"] else logging.WARNING
    log.log(level, "%s: read %s samples in %.1f s; wrote %s under %s; dropped/skipped: %s", kind,
            f"{counts.get('samples read', 0):,}", summary["seconds"], written, root, dropped)


def add_output_arguments(parser, what):
    """Options shared by ``binarize`` and ``plain``."""
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DATA", help="binarized data directory")
    add_tokenizer_arguments(parser)
    split = parser.add_argument_group("valid split")
    split.add_argument("--valid-fraction", type=float, default=0.01,
                       help="share of each dataset held out as valid (binarize: at most, the held-out groups "
                            "being one choice for all languages; default: %(default)s)")
    split.add_argument("--valid-max", type=int, default=1000, help="at most this many valid samples per dataset "
                       "(default: %(default)s)")
    split.add_argument("--seed", type=int, default=1, help="seed of the held-out choice (default: %(default)s)")
    scale = parser.add_argument_group("scale")
    scale.add_argument("--workers", type=int, default=default_workers(),
                       help="encoding processes; 1 encodes in the main process (default: CPUs - 1 = %(default)s)")
    scale.add_argument("--shard-size", type=int, default=10_000_000, metavar="SAMPLES",
                       help="samples per shard file: train, train1, ... (default: %(default)s)")
    scale.add_argument("--part", type=indexed.parse_part, metavar="I/N",
                       help=f"binarize only the I-th of N {what} ranges into DATA/<kind>/parts/ (SLURM array task)")
    scale.add_argument("--gather", action="store_true",
                       help="only number the shards of all finished --part runs contiguously (after the array job)")


def check_scale_arguments(args):
    if args.workers < 1:
        raise UserFacingError(f"--workers must be at least 1, got {args.workers}")
    if args.shard_size < 1:
        raise UserFacingError(f"--shard-size must be at least 1, got {args.shard_size}")
