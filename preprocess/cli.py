"""``kmlm-preprocess STAGE [options]``: one subcommand per pipeline stage, in pipeline order.

Each stage module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is imported only when its
subcommand is chosen, so a broken optional dependency of one stage does not break the others.
"""
import argparse
import importlib
import sys

from preprocess.core.common import UserFacingError, run_command

# subcommand -> (module, one-line help); the order is the pipeline's order.
STAGES = {
    "ingest": ("preprocess.stages.ingest", "Wikidata JSON dump -> entities.parquet + triples.parquet"),
    "merge": ("preprocess.stages.merge", "merge the shards of `ingest --shard I/N` into one pair of tables"),
    "sentences": ("preprocess.stages.sentences", "triples -> code-switched and alias-replaced knowledge sentences"),
    "cycles": ("preprocess.stages.cycles", "triples -> triangles and diamonds (length-4 cycles with a diagonal)"),
    "reasoning": ("preprocess.stages.reasoning", "cycles -> monolingual reasoning samples"),
    "xlr": ("preprocess.stages.xlr", "cycles -> XLR multiple-choice train/dev/test splits"),
    "check-leakage": ("preprocess.stages.xlr", "prove no XLR dev/test cycle is in the reasoning data"),
    "descriptions": ("preprocess.stages.descriptions", "entity descriptions -> plain text per language (the demo's MLM stream)"),
    "spm": ("preprocess.stages.spm", "a small sentencepiece model + fairseq dict.txt (demo/tests; real runs: XLM-R's)"),
    "binarize": ("preprocess.stages.binarize", "knowledge + reasoning samples -> fairseq datasets with span tags"),
    "plain": ("preprocess.stages.plain", "plain text files per language -> fairseq mmap datasets"),
    "report": ("preprocess.stages.report", "dataset report: counts, distributions, plots"),
    "pipeline": ("preprocess.pipeline",
                 "run the stages in order (data, then optionally train, export, eval), skipping those up to date"),
}


def build_parser(stages=STAGES):
    parser = argparse.ArgumentParser(prog="kmlm-preprocess", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module_name, help_text) in stages.items():
        sub.add_parser(name, help=help_text, add_help=False)  # `STAGE --help` is answered by the stage
    return parser


def stage_parser(name):
    """(argument parser, run function) of one stage; imports only that stage's module."""
    module = importlib.import_module(STAGES[name][0])
    parser = argparse.ArgumentParser(prog=f"kmlm-preprocess {name}", description=STAGES[name][1])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_arguments = getattr(module, f"add_{name.replace('-', '_')}_arguments", module.add_arguments)
    add_arguments(parser)
    return parser, getattr(module, f"run_{name.replace('-', '_')}", module.run)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    stage_names = build_parser().parse_known_args(argv)[0]
    name = stage_names.stage
    parser, run = stage_parser(name)
    rest = argv[argv.index(name) + 1:]
    try:
        args = parser.parse_args(rest)
    except UserFacingError as err:  # from a type= converter such as parse_languages: argparse's usage + message
        parser.error(str(err))
    return run_command(run, args, f"kmlm-preprocess {name}", verbose=args.verbose or stage_names.verbose)


if __name__ == "__main__":
    sys.exit(main())
