"""POS tagging on Universal Dependencies: fine-tune on English, UPOS F1 and accuracy per language.

``kmlm-eval pos --model [NAME=]HF_DIR [--model ...] --train en_ewt-ud-train.conllu --dev en_ewt-ud-dev.conllu
--test de=de_gsd-ud-test.conllu --test zh=zh_gsd-ud-test.conllu --output OUT [--multiword fused|words]``

Input: CoNLL-U as distributed (10 tab-separated columns, ``#`` comment lines, a blank line after each sentence).
Empty nodes (ids ``n.m``) are skipped. Multiword tokens (ids ``a-b``, e.g. German ``zum`` = ``zu dem``): with
``--multiword fused`` (default, as XTREME, which converts UD with ud-conversion-tools
``--replace_subtokens_with_fused_forms``) the surface token is kept and takes the UPOS of the span's head word (the
word whose head is outside the span; the first such word if several: the converter's tie-break list was not read);
``--multiword words`` keeps the syntactic words instead. As XTREME's preprocessing (utils_preprocess.py
udpos_preprocess), zero-width non-joiners and spaces inside a word are removed, and a sentence whose word forms are
(all but one) ``_`` is skipped (counted).
Metrics: ``f1``, seqeval's F1 on the UPOS sequences, which is what XTREME's run_tag.py reports for POS (seqeval
treats runs of one tag as a chunk; tags starting with S are one-word chunks; in seqeval 1.x CCONJ and SCONJ share
a chunk type), and ``accuracy``, the share of words with the right tag.
Protocol (defaults): XTREME's scripts/train_udpos.sh: 10 epochs, lr 2e-5, 32 sentences per update, 128 subwords,
the checkpoint with the best English dev F1 (scored every 500 updates and after the last), seeds 1,2,3.
"""
import logging
import re
import warnings
from pathlib import Path

from kmlm_eval import common, finetune, tagging
from kmlm_eval.results import report
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
TASK = "pos"
WORD_ID, RANGE_ID, EMPTY_ID = re.compile(r"\d+"), re.compile(r"(\d+)-(\d+)"), re.compile(r"\d+\.\d+")
XTREME = "google-research/xtreme scripts/train_udpos.sh (lr 2e-5, 10 epochs, batch 8 x 4, max length 128, dev F1 " \
         "every 500 updates)"


def add_arguments(parser, name=TASK):
    parser.add_argument("--train", type=Path, required=True, help="English training .conllu")
    parser.add_argument("--dev", type=Path, help="English dev .conllu: the checkpoint with the best F1 on it is kept")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="test .conllu of one language (repeat)")
    parser.add_argument("--multiword", choices=("fused", "words"), default="fused",
                        help="multiword tokens: the surface token with its head word's tag (XTREME), or the words")
    finetune.add_training_arguments(parser, XTREME, epochs=10, lr=2e-5, batch_size=32, max_length=128,
                                    eval_steps=500)


def clean_form(form):
    return "".join(form.replace("\u200c", "").split(" "))


def sentence_words(path, rows, ranges, multiword):
    """Rows ``(line, id, form, upos, head)`` and multiword ranges ``{start: (end, form)}`` -> (words, tags)."""
    words, tags, skip_until = [], [], 0
    by_id = {row[1]: row for row in rows}
    for line, word_id, form, upos, _ in rows:
        if word_id <= skip_until:
            continue
        if multiword == "fused" and word_id in ranges:
            end, fused = ranges[word_id]
            span = [by_id.get(i) for i in range(word_id, end + 1)]
            if None in span:
                raise common.data_error(path, line, f"multiword token {word_id}-{end} covers words that are missing")
            heads = [r for r in span if not word_id <= r[4] <= end] or span
            words.append(clean_form(fused))
            tags.append(heads[0][3])
            skip_until = end
            continue
        words.append(clean_form(form))
        tags.append(upos)
    return words, tags


def read_conllu(path, multiword="fused"):
    """``[(words, upos_tags)]`` of a CoNLL-U file."""
    sentences, rows, ranges, skipped = [], [], {}, 0

    def close():
        nonlocal skipped
        if rows:
            words, tags = sentence_words(path, rows, ranges, multiword)
            blanks = sum(w == "_" for w in words)
            if blanks and blanks >= len(words) - 1:
                skipped += 1
            else:
                sentences.append((words, tags))
        rows.clear()
        ranges.clear()

    with common.open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                close()
                continue
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise common.data_error(path, number, f"expected 10 tab-separated CoNLL-U columns, got {len(fields)}")
            token_id, form, upos, head = fields[0], fields[1], fields[3], fields[6]
            if EMPTY_ID.fullmatch(token_id):
                continue
            span = RANGE_ID.fullmatch(token_id)
            if span:
                ranges[int(span[1])] = (int(span[2]), form)
                continue
            if not WORD_ID.fullmatch(token_id):
                raise common.data_error(path, number, f"{token_id!r} is not a CoNLL-U word id (n, n-m or n.m)")
            if not upos or upos == "_":
                raise common.data_error(path, number, "a word without a UPOS tag (column 4)")
            if not head.isdigit() and head != "_":
                raise common.data_error(path, number, f"head {head!r} (column 7) is not a word id")
            rows.append((number, int(token_id), form, upos, int(head) if head.isdigit() else -1))
    close()
    if skipped:
        logger.warning("%s: %d sentence(s) whose word forms are '_' skipped (as XTREME)", path, skipped)
    if not sentences:
        raise UserFacingError(f"{path} has no sentences")
    return sentences


def seqeval_f1(gold, predicted):
    from seqeval.metrics import f1_score

    with warnings.catch_warnings():  # "NOUN seems not to be NE tag": expected for POS tags
        warnings.simplefilter("ignore", UserWarning)
        return f1_score(gold, predicted)


def word_accuracy(gold, predicted):
    pairs = [(g, p) for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / max(1, len(pairs))


def run(args):
    finetune.check_training_arguments(args, args.dev is not None)
    train = read_conllu(args.train, args.multiword)
    dev = read_conllu(args.dev, args.multiword) if args.dev else None
    tests = {lang: read_conllu(path, args.multiword) for lang, path in common.parse_lang_files(args.test).items()}
    metrics = {"f1": seqeval_f1, "accuracy": word_accuracy}
    scores = common.evaluate_models(args.model, lambda spec: tagging.evaluate(
        spec, TASK, train, dev, tests, args, metrics))
    return report(scores, args)
