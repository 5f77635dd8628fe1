"""``kmlm-eval TASK --model [NAME=]HF_DIR [--model ...] --output OUT ...``: downstream evaluation of Hugging Face
models on data files you provide (nothing is downloaded), with the protocols the paper names (fine-tuned tasks:
train on English, keep the checkpoint best on the English dev set, mean ± std over --seeds 1,2,3).

    kmlm-eval xlr     multiple-choice reasoning (the paper's XLR), accuracy per language
    kmlm-eval xfactr  zero-shot factual probing (X-FACTR), accuracy per language and relation
    kmlm-eval fact-recall  h <mask> r <mask> ? on used and held-out triples of a data build, top-1 per language
    kmlm-eval ner     named entities (CoNLL-02/03, PAN-X), F1 per language
    kmlm-eval relx    relation classification (KBP-37 -> RELX), F1 and accuracy per language
    kmlm-eval xnli    natural language inference (XNLI), accuracy per language
    kmlm-eval pawsx   paraphrase identification (PAWS-X), accuracy per language
    kmlm-eval pos     part of speech (Universal Dependencies), F1 and accuracy per language
    kmlm-eval qa      extractive QA (XQuAD, MLQA, TyDiQA-GoldP), F1 and exact match per language
    kmlm-eval compare RESULTS [RESULTS ...] --output OUT    merge earlier results side by side

Give ``--model`` twice to compare two models in one run (a column per model and their Δ), and ``--paper ROW`` to
print the paper's published numbers beside ours with our difference to them.
"""
import argparse
import importlib
import sys
from pathlib import Path

from kmlm_eval import common, paper, results
from preprocess.core.console import run_command
from preprocess.core.errors import UserFacingError

TASKS = {
    "xlr": ("kmlm_eval.xlr", "XLR multiple choice: fine-tune on English, accuracy per language"),
    "xfactr": ("kmlm_eval.xfactr", "X-FACTR zero-shot factual probing: accuracy per language and relation"),
    "fact-recall": ("kmlm_eval.fact_recall", "recall of the pretraining data's triples and of held-out ones, per "
                                             "language"),
    "ner": ("kmlm_eval.ner", "NER (CoNLL-02/03, PAN-X): fine-tune on English, F1 per language"),
    "relx": ("kmlm_eval.relx", "RELX relation classification: fine-tune on KBP-37, F1 per language"),
    "xnli": ("kmlm_eval.pairs", "XNLI: fine-tune on English (MultiNLI), accuracy per language"),
    "pawsx": ("kmlm_eval.pairs", "PAWS-X: fine-tune on English, accuracy per language"),
    "pos": ("kmlm_eval.pos", "POS on Universal Dependencies: fine-tune on English, F1 per language"),
    "qa": ("kmlm_eval.qa", "extractive QA (XQuAD, MLQA, TyDiQA-GoldP): fine-tune on English, F1/EM per language"),
}


def add_compare_arguments(parser):
    parser.add_argument("results", nargs="+", type=Path, help="results.csv files (or their directories)")
    parser.add_argument("--output", type=Path, required=True, help="directory for the merged results.{csv,md,png}")
    paper.add_paper_argument(parser)


def run_compare(args):
    merged = [r for path in args.results for r in results.read_results(path)]
    keys = [r.key for r in merged]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise UserFacingError(f"the same model name appears in several results for {duplicates[0]}: rename one "
                              "(kmlm-eval ... --model NAME=DIR)")
    paper.warn_missing(args.paper, merged)
    print(results.write_results(merged, args.output, args.paper))
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
        task.add_argument("--output", type=Path, required=True, help="directory for results.{csv,md,png}")
        paper.add_paper_argument(task)
        module.add_arguments(task, name)
        task.set_defaults(run=module.run)
    compare = sub.add_parser("compare", help="merge results of earlier runs side by side (and with the paper's)")
    add_compare_arguments(compare)
    compare.set_defaults(run=run_compare)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except UserFacingError as err:  # raised by argument types (missing model directory, LANG=FILE, --paper ROW)
        print(f"kmlm-eval: error: {err}", file=sys.stderr)
        return 2
    return run_command(args.run, args, f"kmlm-eval {args.task}", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
