"""``kmlm-preprocess pipeline``: run the stages in order, Make-like, skipping those already done as asked.

Input: the settings of a run (Wikidata dump files, seed, languages, XLR sizes, vocabulary size, plain text;
optionally a training config, an initial checkpoint and evaluations) and ``--set STAGE.option=value`` for any other
stage option (checked against the stage's parser, or for train composed with Hydra, before anything runs).
Output: WORKDIR laid out as in run/demo.sh::

    tables/ sentences/ cycles/ xlr/ reasoning/ report/ [plain_text/] data/ [checkpoints/ hf/ eval_xlr/]

Each stage runs as ``python -m MODULE ...`` in its own process (``preprocess.cli STAGE`` for the data stages,
fairseq's ``fairseq_cli.hydra_train`` for train, ``kmlm_fairseq.export.cli hf``, ``kmlm_eval.cli
xlr``), through ``preprocess.pipeline.traced``, which lists the source files of ours the run loaded: memory is
returned after it, and a killed driver kills its stage (Linux PR_SET_PDEATHSIG). After a stage succeeds the driver
writes its completion marker ``WORKDIR/<its directory>/.done.<stage>.json`` (atomically; no timestamps, so equal
runs give equal files) holding a fingerprint: a hash of the stage name, its exact arguments (WORKDIR written as
``{WORKDIR}``, so a moved WORKDIR stays valid), the fingerprints of the stages it reads, the path, size and mtime of
each file it reads from outside WORKDIR and, for train, configs/ and the fairseq and torch versions; next to it
``code``: the hash of every source file of ours the run loaded (lazy imports and the plugin included).

A stage is skipped iff its marker holds the fingerprint the current settings give, none of the files in its
``code`` changed and its outputs exist. A stage
runs when it is not, when ``--force`` names it, or when a stage it reads runs. Before anything runs, the markers of
every stage about to run are removed, and each stage's outputs are cleared just before it runs, so a killed run is
never taken as complete and never leaves stale files. The one exception is resumable work: train records the
fingerprint it started with (``.started.train.json``), and when only its completion marker is missing (it was
killed) and that fingerprint still holds and no file of the packages it can load changed (kmlm_fairseq/ and
preprocess/core/: the package graph points one way), it keeps its checkpoints and fairseq continues from
checkpoint_last.pt.
The plan is logged one line a stage ("skip (up to date)" / "run (reason: ...)"); ``--dry-run`` prints it and the
commands without running anything.
"""
import logging

from preprocess.pipeline.execute import execute

logger = logging.getLogger("kmlm-preprocess pipeline")


# ---------------------------------------------------------------------------------------------------------------
# the plan


def add_arguments(parser):
    run = parser.add_argument_group("the run")
    run.add_argument("--dump", nargs="+", metavar="FILE",
                     help="Wikidata JSON dump(s) (.json, .json.gz, .json.bz2), read in this order; with --triples "
                          "they only give the relations' labels and the descriptions")
    run.add_argument("--triples", nargs="+", metavar="PATH",
                     help="instead of a dump: triple files (Wikidata5M, X-FACTR *.jsonl) or directories, read by "
                          "import-triples with --names (e.g. --set import-triples.label-rule=closest-to-english)")
    run.add_argument("--names", nargs="+", default=[], metavar="LANG=FILE",
                     help="name files of the --triples' entities and relations, per language")
    run.add_argument("-o", "--output", required=True, metavar="WORKDIR", help="directory of every stage's outputs")
    run.add_argument("--seed", type=int, default=1, help="seed of every seeded stage (default: 1)")
    run.add_argument("--languages", help="languages of ingest, sentences, xlr, reasoning and descriptions, "
                                         "e.g. en,de,fr (default: each stage's default)")
    run.add_argument("--xlr-sizes", metavar="TRAIN,DEV,TEST",
                     help="XLR train samples and dev/test samples per language (default: xlr's defaults)")
    tokenizer = run.add_mutually_exclusive_group()
    tokenizer.add_argument("--vocab-size", type=int, help="sentencepiece pieces of the spm stage (default: its own)")
    tokenizer.add_argument("--tokenizer", metavar="DIR",
                           help="a real run: XLM-R's sentencepiece.bpe.model + dict.txt (or a Hugging Face XLM-R "
                                "directory), or the `kmlm-export fairseq` output of a BERT model (WordPiece: dict.txt "
                                "+ hf_tokenizer/) for binarize and plain; the spm stage is left out")
    run.add_argument("--workers", type=int, help="processes of ingest, binarize and plain (default: theirs)")
    plain = run.add_mutually_exclusive_group()
    plain.add_argument("--plain-text-from-descriptions", action="store_true",
                       help="the plain-text (MLM) stream: entity descriptions (the descriptions stage)")
    plain.add_argument("--plain", nargs="+", metavar="[LANG=]FILE", help="the plain-text stream: these files")
    run.add_argument("--set", action="append", default=[], metavar="STAGE.option[=value]", dest="overrides",
                     help="pass --option [value] to STAGE, e.g. --set cycles.max-apexes=4 (repeatable)")
    model = parser.add_argument_group("training, export and evaluation (optional; after the data stages)")
    model.add_argument("--train", metavar="CONFIG",
                       help="train with configs/CONFIG.yaml on WORKDIR/data into WORKDIR/checkpoints (e.g. tiny_cpu), "
                            "then export checkpoint_last.pt to WORKDIR/hf; --set train.KEY=VALUE is a Hydra override")
    model.add_argument("--init", metavar="CHECKPOINT",
                       help="start training from this fairseq checkpoint (e.g. XLM-R's model.pt; +init=pretrained)")
    model.add_argument("--eval", choices=["xlr"], action="append", default=[],
                       help="evaluate the exported model on the run's XLR dataset into WORKDIR/eval_xlr")
    control = parser.add_argument_group("control")
    control.add_argument("--force", action="append", default=[], metavar="STAGE",
                         help="re-run STAGE (and so every stage reading it) even if up to date (repeatable)")
    control.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")


# ---------------------------------------------------------------------------------------------------------------
# fingerprints


# ---------------------------------------------------------------------------------------------------------------
# execution


def run(args):
    execute(args)
    return 0
