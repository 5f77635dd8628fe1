"""``kmlm-preprocess STAGE [options]``: one subcommand per pipeline stage, in pipeline order.

Each stage module defines ``add_arguments(parser)`` and ``run(args) -> int``; it is imported only when its
subcommand is chosen, so a broken optional dependency of one stage does not break the others.
"""
import argparse
import importlib
import sys

from preprocess.core.console import run_command
from preprocess.core.errors import UserFacingError
from preprocess.stages import STAGES

PIPELINE = ("preprocess.pipeline.command",
            "run the stages in order (data, then optionally train, export, eval), skipping those up to date")
EXPERIMENT = ("preprocess.pipeline.experiment",
              "a declared experiment (YAML): one data build, arms x seeds from a common start, evaluations, comparison")
COMMANDS = {**STAGES, "pipeline": PIPELINE, "experiment": EXPERIMENT}


def build_parser(stages=COMMANDS):
    parser = argparse.ArgumentParser(prog="kmlm-preprocess", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for name, (module_name, help_text) in stages.items():
        sub.add_parser(name, help=help_text, add_help=False)  # `STAGE --help` is answered by the stage
    return parser


def stage_parser(name):
    """(argument parser, run function) of one stage; imports only that stage's module."""
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"kmlm-preprocess {name}", description=COMMANDS[name][1])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    module.add_arguments(parser)
    return parser, module.run


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
