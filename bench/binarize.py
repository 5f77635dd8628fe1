"""Benchmark: one plain-text file -> fairseq mmap dataset, through fairseq-preprocess and through our direct writer.

    python bench/binarize.py                     # 1M lines; fairseq-preprocess alone takes ~2-3 min of it
    python bench/binarize.py --lines 100000      # quick check
    python bench/binarize.py --spm-model xlmr.base/sentencepiece.bpe.model --dict xlmr.base/dict.txt
    python bench/binarize.py --spm-threads 2     # + a round on 2 cores: ours 1 worker x 2 spm threads,
                                                 #   fairseq-preprocess --workers 2

The text: "label: description" strings of the bundled real Wikidata items in 10 languages, joined at random into
lines of 1-3 strings (~137 bytes, ~38 tokens of the default tokenizer: a long sentence). The tokenizer: XLM-R's
files when given, else a sentencepiece model trained on the first 50k lines (``preprocess.stages.spm``).

Both paths start from the same text file and end in byte-identical ``train.bin/.idx`` (checked):
  fairseq: sentencepiece pieces -> a text file (what ``spm_encode`` would write), then
           ``fairseq-preprocess --only-source --srcdict dict.txt --workers W``;
  ours:    ``kmlm-preprocess plain --backend direct --workers W`` (sentencepiece ids -> NumPy lookup -> one write).
Printed: lines per second (wall) and per CPU-second of fairseq-preprocess alone, of the whole fairseq path and of
ours, and the ratios (target: fairseq-preprocess / ours >= 20x by CPU time at 1M lines). And the limit of this
path: sentencepiece's own batch encoding of the same lines, ``SentencePieceProcessor.encode(lines)`` on one thread
(ids only: no reading, no valid split, no dictionary lookup, nothing written), against which ours is at most 1.5x
by CPU time (target). With ``--spm-threads T`` a second round follows on the same files: ours with
``--workers W --spm-threads T`` against ``fairseq-preprocess --workers W*T`` (the same core count each).
On a shared machine the CPU-time figures are the steadier ones: the two runs happen minutes apart under different
load. Run it once: the machine is shared.
"""
import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: it reads the variable then

from samples import sample_entities  # noqa: E402  (bench/, the script's directory)

from preprocess.core.languages import DEFAULT_LANGUAGES  # noqa: E402
from preprocess.core.tokenizers.dictionary import DICT_FILE  # noqa: E402
from preprocess.core.tokenizers.sentencepiece import SPM_FILE, Tokenizer  # noqa: E402
from preprocess.stages.plain import DIRECT, binarize_plain  # noqa: E402
from preprocess.stages.spm import dict_text, train_model  # noqa: E402


def wikidata_strings():
    strings = []
    for item in sample_entities():
        for lang in DEFAULT_LANGUAGES:
            label = item.get("labels", {}).get(lang, {}).get("value")
            description = item.get("descriptions", {}).get(lang, {}).get("value")
            if label and description:
                strings.append(f"{label}: {description}")
    return strings


def make_text(path, n_lines, seed=0):
    strings = np.array(wikidata_strings(), dtype=object)
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n_lines, 100_000):
            n = min(100_000, n_lines - start)
            parts = rng.integers(1, 4, size=n)
            picks = strings[rng.integers(0, len(strings), size=int(parts.sum()))]
            ends = np.cumsum(parts)
            f.write("".join(". ".join(picks[e - k:e]) + "\n" for e, k in zip(ends, parts)))
    return len(strings)


def cpu_seconds():
    """CPU time of this process and its reaped children (fairseq-preprocess runs as one)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function, *args, **kwargs):
    """(wall seconds, CPU seconds) of a call: CPU time is what a shared, loaded machine distorts least."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    function(*args, **kwargs)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def spm_encode_to_file(tokenizer, source, target, chunk=100_000):
    with open(source, encoding="utf-8") as f, open(target, "w", encoding="utf-8") as out:
        while True:
            lines = [line.rstrip("\n") for _, line in zip(range(chunk), f)]
            if not lines:
                return
            out.write("".join(" ".join(pieces) + "\n" for pieces in tokenizer.encode_pieces(lines)))


def fairseq_preprocess(pieces, dict_path, destdir, workers):
    subprocess.run([sys.executable, "-m", "fairseq_cli.preprocess", "--only-source", "--srcdict", str(dict_path),
                    "--trainpref", str(pieces), "--destdir", str(destdir), "--workers", str(workers),
                    "--dataset-impl", "mmap"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def spm_batch_encode(tokenizer, source, chunk=100_000):
    """sentencepiece's own batch encoding of every line (as str, one thread), chunk by chunk, results dropped."""
    with open(source, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for _, line in zip(range(chunk), f)]
        while lines:
            tokenizer.sp.encode(lines, num_threads=1)
            lines = [line.rstrip("\n") for _, line in zip(range(chunk), f)]


def check_identical(data, fairseq_dir):
    for ext in ("bin", "idx"):
        ours_file, reference = data / "plain" / "en" / f"train.{ext}", fairseq_dir / f"train.{ext}"
        if ours_file.read_bytes() != reference.read_bytes():
            sys.exit(f"train.{ext} differs between the two paths")


def report(n, cpu_counted, ours, preprocess, encode):
    """Print the rates; ``cpu_counted``: False when our pool workers' CPU time is unseen (not our children)."""
    path = (encode[0] + preprocess[0], encode[1] + preprocess[1])

    def rate(seconds):
        wall = f"{n / seconds[0]:>10,.0f} lines/s ({seconds[0]:6.1f} s wall)"
        return wall + (f", {n / seconds[1]:>9,.0f} lines/CPU-s ({seconds[1]:6.1f} s)" if cpu_counted else "")

    print(f"  fairseq-preprocess alone:          {rate(preprocess)}")
    print(f"  fairseq path (spm pieces + above): {rate(path)}")
    print(f"  ours (kmlm-preprocess plain):      {rate(ours)}")
    ratios = f"wall {preprocess[0] / ours[0]:.1f}x" + (f", CPU {preprocess[1] / ours[1]:.1f}x" if cpu_counted else "")
    print(f"  ratio ours / fairseq-preprocess: {ratios}; ours / fairseq path: wall {path[0] / ours[0]:.1f}x"
          + (f", CPU {path[1] / ours[1]:.1f}x" if cpu_counted else "") + "; outputs byte-identical")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of text (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="workers of both tools (default: %(default)s)")
    parser.add_argument("--spm-threads", type=int, default=1, metavar="T",
                        help="if > 1, a second round: ours with T sentencepiece threads per worker against "
                             "fairseq-preprocess with workers x T workers (default: %(default)s)")
    parser.add_argument("--spm-model", type=Path, help="e.g. XLM-R's sentencepiece.bpe.model (with --dict)")
    parser.add_argument("--dict", type=Path, help="e.g. XLM-R's dict.txt")
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary directory)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-binarize-"))
    workdir.mkdir(parents=True, exist_ok=True)
    text = workdir / "en.txt"
    started = time.perf_counter()
    n_strings = make_text(text, args.lines)
    print(f"text: {args.lines:,} lines from {n_strings:,} Wikidata strings, {text.stat().st_size / 1e6:.1f} MB "
          f"({time.perf_counter() - started:.1f} s to make)")
    data = workdir / "ours"
    data.mkdir(exist_ok=True)
    if args.spm_model:
        shutil.copy(args.spm_model, data / SPM_FILE)
        shutil.copy(args.dict, data / DICT_FILE)
    else:
        with open(text, encoding="utf-8") as f:
            sample = [line.rstrip("\n") for _, line in zip(range(50_000), f)]
        model = train_model(sample, vocab_size=8000)
        (data / SPM_FILE).write_bytes(model)
        (data / DICT_FILE).write_text(dict_text(model, sample), encoding="utf-8")
    tokenizer = Tokenizer(data / SPM_FILE, data / DICT_FILE)
    print(f"tokenizer: {len(tokenizer):,} symbols; workers: {args.workers} for both")

    ours = timed(binarize_plain, [("en", text)], data, tokenizer, DIRECT, valid_fraction=0, workers=args.workers,
                 shard_size=1 << 40)
    encode = timed(spm_encode_to_file, tokenizer, text, workdir / "pieces.txt")
    preprocess = timed(fairseq_preprocess, workdir / "pieces.txt", data / DICT_FILE, workdir / "fairseq", args.workers)
    check_identical(data, workdir / "fairseq")
    limit = timed(spm_batch_encode, tokenizer, text)
    print(f"round 1: ours --workers {args.workers} --spm-threads 1; fairseq-preprocess --workers {args.workers}")
    report(args.lines, args.workers == 1, ours, preprocess, encode)
    print(f"  sentencepiece batch encode alone:  {args.lines / limit[0]:>10,.0f} lines/s ({limit[0]:6.1f} s wall), "
          f"{args.lines / limit[1]:>9,.0f} lines/CPU-s ({limit[1]:6.1f} s)")
    if args.workers == 1:
        print(f"  fairseq-preprocess / ours, CPU time: {preprocess[1] / ours[1]:.1f}x (target >= 20x at 1M lines); "
              f"ours / sentencepiece batch encode, CPU time: {ours[1] / limit[1]:.2f}x (target <= 1.5x); "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.spm_threads > 1:
        cores = args.workers * args.spm_threads
        ours = timed(binarize_plain, [("en", text)], data, tokenizer, DIRECT, valid_fraction=0,
                     workers=args.workers, shard_size=1 << 40, spm_threads=args.spm_threads)
        preprocess = timed(fairseq_preprocess, workdir / "pieces.txt", data / DICT_FILE, workdir / "fairseq",
                           cores)
        check_identical(data, workdir / "fairseq")
        print(f"round 2 ({cores} cores each): ours --workers {args.workers} --spm-threads {args.spm_threads}; "
              f"fairseq-preprocess --workers {cores} (spm pieces: 1 thread, as in round 1)")
        report(args.lines, args.workers == 1, ours, preprocess, encode)
    if not args.workdir:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
