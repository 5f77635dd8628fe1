"""``kmlm-export hf|fairseq ...``: convert between fairseq RoBERTa checkpoints and Hugging Face directories.

    kmlm-export hf CHECKPOINT OUTDIR [--dict dict.txt --spm sentencepiece.bpe.model]   fairseq -> Hugging Face
    kmlm-export fairseq HF_DIR OUTDIR                                                   Hugging Face -> fairseq

Each direction verifies tokenizer ids and logits before it writes anything (see ``--help`` of each).
"""
import argparse
import importlib
import sys

from preprocess.core.console import run_command

COMMANDS = {
    "hf": ("kmlm_fairseq.export.to_hf", "fairseq checkpoint -> Hugging Face XLMRobertaForMaskedLM/BertForMaskedLM"),
    "fairseq": ("kmlm_fairseq.export.from_hf", "Hugging Face XLM-R/BERT directory -> fairseq checkpoint + dict"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="kmlm-export", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(args.run, args, f"kmlm-export {args.command}", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
