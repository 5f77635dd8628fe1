"""``kmlm-eval TASK --model [NAME=]HF_DIR [--model ...] --output OUT ...``: downstream evaluation of Hugging Face
models on data files you provide (nothing is downloaded), with a results table per run.

    kmlm-eval xlr     multiple-choice reasoning (fine-tune on English, accuracy per language)
    kmlm-eval xfactr  zero-shot factual probing (accuracy per language)
    kmlm-eval fact-recall  h <mask> r <mask> ? on used and held-out triples of a data build (top-1 per language)
    kmlm-eval ner     named entities (fine-tune on English, seqeval F1 per language)
    kmlm-eval relx    relation classification (fine-tune on English, accuracy per language)
    kmlm-eval compare RESULTS [RESULTS ...] --output OUT    merge earlier results side by side

Give ``--model`` twice to compare two models in one run: the table then has a column per model and their Δ.
"""
import argparse
import importlib
import sys
from pathlib import Path

from kmlm_eval import common
from preprocess.core.console import run_command
from preprocess.core.errors import UserFacingError

TASKS = {
    "xlr": ("kmlm_eval.xlr", "XLR multiple choice: fine-tune on English, accuracy per language"),
    "xfactr": ("kmlm_eval.xfactr", "X-FACTR zero-shot factual probing: accuracy per language"),
    "fact-recall": ("kmlm_eval.fact_recall", "recall of the pretraining data's triples and of held-out ones, per "
                                             "language"),
    "ner": ("kmlm_eval.ner", "NER (CoNLL-02/03, PAN-X): fine-tune on English, F1 per language"),
    "relx": ("kmlm_eval.relx", "RELX relation classification: fine-tune on KBP-37, accuracy per "
                                            "language"),
}


def add_compare_arguments(parser):
    parser.add_argument("results", nargs="+", type=Path, help="results.csv files (or their directories)")
    parser.add_argument("--output", type=Path, required=True, help="directory for the merged results.{csv,md}")


def run_compare(args):
    scores = [s for path in args.results for s in common.read_results(path) if s.lang != "avg"]
    keys = [(s.task, s.model, s.lang, s.metric) for s in scores]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise UserFacingError(f"the same model name appears in several results for {duplicates[0]}: rename one "
                              "(kmlm-eval ... --model NAME=DIR)")
    print(common.write_results(scores, args.output))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="kmlm-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (module_name, help_text) in TASKS.items():
        module = importlib.import_module(module_name)
        task = sub.add_parser(name, help=help_text, description=module.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        task.add_argument("--model", action="append", required=True, type=common.parse_model, metavar="[NAME=]DIR",
                          help="Hugging Face model directory (repeat to compare models)")
        task.add_argument("--output", type=Path, required=True, help="directory for results.csv and results.md")
        module.add_arguments(task)
        task.set_defaults(run=module.run)
    compare = sub.add_parser("compare", help="merge results of earlier runs side by side")
    add_compare_arguments(compare)
    compare.set_defaults(run=run_compare)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except UserFacingError as err:  # raised by argument types (missing model directory, LANG=FILE)
        print(f"kmlm-eval: error: {err}", file=sys.stderr)
        return 2
    return run_command(args.run, args, f"kmlm-eval {args.task}", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
