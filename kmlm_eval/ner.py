"""NER: fine-tune token classification on English, entity F1 (seqeval) per language.

``kmlm-eval ner --model [NAME=]HF_DIR [--model ...] --train en.train --dev en.testa --test en=en.testb
--test de=de.testb --output OUT [--format auto|conll|panx]``

Input files, one token per line, a blank line between sentences:
    CoNLL-2002/2003: ``token [POS [chunk]] tag`` separated by spaces or tabs (the tag is the last column);
                     ``-DOCSTART-`` lines are skipped;
    XTREME PAN-X (WikiAnn): ``lang:token<TAB>tag`` (the ``lang:`` prefix is removed).
Tags are IOB1/IOB2/IOBES (``O`` or ``X-TYPE``); any other line is an error naming the file and line.
Each word is labelled on its first subword (the other subwords are ignored in the loss and in prediction);
sentences longer than ``--max-length`` subwords are split into pieces (kmlm_eval/tagging.py).
Protocol (defaults): XTREME's PAN-X script (scripts/train_panx.sh): 10 epochs, lr 2e-5, 32 sentences per update,
128 subwords, the checkpoint with the best English dev F1 (scored every 1,000 updates and after the last),
seeds 1,2,3.
Output: entity-level F1 (%) of seqeval (conlleval rules), mean ± std over seeds, per language.
"""
import logging
import re
from pathlib import Path

from kmlm_eval import common, finetune, tagging
from kmlm_eval.results import report
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
TASK = "ner"
TAG = re.compile(r"^(O|[BIES]-\S+)$")
PANX_TOKEN = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]+)?:")
XTREME = "google-research/xtreme scripts/train_panx.sh (lr 2e-5, 10 epochs, batch 8 x 4, max length 128, dev F1 " \
         "every 1000 updates)"


def add_arguments(parser, name=TASK):
    parser.add_argument("--train", type=Path, required=True, help="English training file")
    parser.add_argument("--dev", type=Path, help="English dev file: the checkpoint with the best F1 on it is kept")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="evaluation file of one language (repeat)")
    parser.add_argument("--format", choices=("auto", "conll", "panx"), default="auto",
                        help="file format (default: auto, PAN-X when tokens carry a lang: prefix)")
    finetune.add_training_arguments(parser, XTREME, epochs=10, lr=2e-5, batch_size=32, max_length=128,
                                    eval_steps=1000)


def detect_format(path):
    with common.open_utf8(path) as f:
        for line in f:
            if line.strip() and not line.startswith("-DOCSTART-"):
                return "panx" if "\t" in line and PANX_TOKEN.match(line) else "conll"
    return "conll"


def read_sentences(path, file_format="auto"):
    """``[(tokens, tags)]`` of a CoNLL or PAN-X file."""
    file_format = detect_format(path) if file_format == "auto" else file_format
    sentences, tokens, tags = [], [], []
    with common.open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if tokens:
                    sentences.append((tokens, tags))
                tokens, tags = [], []
                continue
            fields = line.split("\t") if file_format == "panx" else line.split()
            if len(fields) < 2:
                raise common.data_error(path, number, f"expected 'token ... tag', got {line!r}")
            token, tag = fields[0], fields[-1]
            if file_format == "panx":
                if not PANX_TOKEN.match(token):
                    raise common.data_error(path, number, f"PAN-X token without a lang: prefix: {token!r}")
                token = token.split(":", 1)[1]
            if not TAG.match(tag):
                raise common.data_error(path, number, f"{tag!r} is not a NER tag (O, B-X, I-X, E-X, S-X)")
            tokens.append(token)
            tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise UserFacingError(f"{path} has no sentences")
    return sentences


def run(args):
    from seqeval.metrics import f1_score

    finetune.check_training_arguments(args, args.dev is not None)
    train = read_sentences(args.train, args.format)
    dev = read_sentences(args.dev, args.format) if args.dev else None
    tests = {lang: read_sentences(path, args.format) for lang, path in common.parse_lang_files(args.test).items()}
    scores = common.evaluate_models(args.model, lambda spec: tagging.evaluate(
        spec, TASK, train, dev, tests, args, {"f1": f1_score}, outside="O"))
    return report(scores, args)
