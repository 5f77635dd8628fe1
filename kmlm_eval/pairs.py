"""Sentence-pair classification, XNLI and PAWS-X: fine-tune on English, accuracy per language (zero-shot).

``kmlm-eval xnli --model [NAME=]HF_DIR [--model ...] --train train-en.tsv --dev dev-en.tsv --test de=test-de.tsv
--test zh=test-zh.tsv --output OUT`` (``kmlm-eval pawsx`` alike)

Input files, chosen by content:
    XTREME TSV (``premise<TAB>hypothesis<TAB>label``, no header, CSV-quoted where a field holds ``"``);
    the original PAWS-X x-final TSV (header ``id<TAB>sentence1<TAB>sentence2<TAB>label``, not quoted);
    the original XNLI TSV (header with ``language``, ``gold_label``, ``sentence1``, ``sentence2``): only the rows of
    the ``LANG`` of ``--test LANG=FILE`` (``en`` for --train/--dev) are read;
    JSON lines with ``premise``/``hypothesis``/``label`` (jiant) or ``sentence1``/``sentence2``/``gold_label``
    (MultiNLI), whose ``-`` labels (no annotator consensus) are skipped and counted.
Labels: XNLI ``contradiction``/``entailment``/``neutral`` (``contradictory`` read as ``contradiction``, as XTREME
does), PAWS-X ``0``/``1``; another label is an error naming the file and line.
Protocol (defaults): XTREME's scripts/train_xnli.sh and train_pawsx.sh with third_party/run_classify.py: 5 epochs,
lr 2e-5, 32 pairs per update, 128 tokens, no warmup or weight decay, the checkpoint with the best English dev
accuracy (scored every 100 (XNLI) / 200 (PAWS-X) updates and after the last), seeds 1,2,3.
"""
import csv
import logging
from collections import Counter
from pathlib import Path

from kmlm_eval import batching, common, finetune
from kmlm_eval.results import Score, report
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
LABELS = {"xnli": ("contradiction", "entailment", "neutral"), "pawsx": ("0", "1")}
SYNONYMS = {"contradictory": "contradiction"}
EVAL_STEPS = {"xnli": 100, "pawsx": 200}
SCRIPT = {"xnli": "train_xnli.sh", "pawsx": "train_pawsx.sh"}


def add_arguments(parser, name):
    parser.add_argument("--train", type=Path, required=True, help="English training file")
    parser.add_argument("--dev", type=Path, help="English dev file: the checkpoint with the best accuracy is kept")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="test file of one language (repeat)")
    source = (f"google-research/xtreme scripts/{SCRIPT[name]} (lr 2e-5, 5 epochs, batch 8 x 4, max length 128, "
              f"dev accuracy every {EVAL_STEPS[name]} updates)")
    finetune.add_training_arguments(parser, source, epochs=5, lr=2e-5, batch_size=32, max_length=128,
                                    eval_steps=EVAL_STEPS[name])
    parser.set_defaults(pair_task=name)


def read_headed_tsv(path, lines, lang):
    """``(line, first, second, label)`` of an original PAWS-X or XNLI TSV (a header row, fields not quoted)."""
    header = lines[0].split("\t")
    column = {name: i for i, name in enumerate(header)}
    label_column = column.get("gold_label", column.get("label"))
    if label_column is None:
        raise common.data_error(path, 1, "a header with sentence1 and sentence2 needs a label or gold_label column")
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise common.data_error(path, number, f"{len(fields)} tab-separated fields; the header has {len(header)}")
        if "language" in column and fields[column["language"]] != lang:
            continue
        yield number, fields[column["sentence1"]], fields[column["sentence2"]], fields[label_column]


def read_tsv(path, lang):
    """``(line, first, second, label)`` of an XTREME TSV, or of an original one (see read_headed_tsv)."""
    lines = common.read_utf8(path).splitlines()
    if lines and {"sentence1", "sentence2"} <= set(lines[0].split("\t")):
        yield from read_headed_tsv(path, lines, lang)
        return
    reader = csv.reader(lines, delimiter="\t")
    for fields in reader:
        if not any(fields):
            continue
        if len(fields) != 3:
            raise common.data_error(path, reader.line_num, f"expected 'first<TAB>second<TAB>label', got {len(fields)} "
                                                           "fields")
        yield reader.line_num, *fields


def read_jsonl(path):
    for number, obj in common.read_jsonl(path):
        first = obj.get("premise", obj.get("sentence1"))
        second = obj.get("hypothesis", obj.get("sentence2"))
        label = obj.get("label", obj.get("gold_label"))
        if not all(isinstance(x, str) for x in (first, second)) or label is None:
            raise common.data_error(path, number, "expected premise/hypothesis/label (or sentence1/sentence2/"
                                                  "gold_label)")
        yield number, first, second, str(label)


def read_pairs(path, task, lang="en"):
    """``[(first, second, label)]`` of a file; labels checked against the task's label set."""
    labels, pairs, skipped = LABELS[task], [], Counter()
    head = common.read_utf8(path).lstrip()[:1]
    for number, first, second, label in (read_jsonl(path) if head == "{" else read_tsv(path, lang)):
        label = SYNONYMS.get(label.strip(), label.strip())
        if label == "-":
            skipped["label '-' (no consensus)"] += 1
            continue
        if label not in labels:
            raise common.data_error(path, number, f"label {label!r} is not one of {', '.join(labels)}")
        pairs.append((first, second, label))
    if skipped:
        logger.warning("%s: skipped %s", path, ", ".join(f"{n} {why}" for why, n in skipped.items()))
    if not pairs:
        raise UserFacingError(f"{path} has no {task} pairs" + (f" for language {lang}" if lang else ""))
    return pairs


def encode(tokenizer, pairs, label_ids, max_length):
    examples = batching.encode(tokenizer, [a for a, _, _ in pairs], [b for _, b, _ in pairs], truncation=True,
                               max_length=max_length)
    return batching.with_labels(examples, [label_ids[label] for _, _, label in pairs])


def accuracy(model, examples, batch_size, pad_id):
    logits = batching.predict(model, examples, batch_size, pad_id)[0]
    return 100.0 * sum(int(row.argmax() == e["labels"]) for row, e in zip(logits, examples)) / len(examples)


def evaluate(spec, task, train, dev, tests, args):
    labels = LABELS[task]
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = common.load_tokenizer(spec.path)
    pad_id = tokenizer.pad_token_id
    train_examples = encode(tokenizer, train, label_ids, args.max_length)
    dev_examples = encode(tokenizer, dev, label_ids, args.max_length) if dev else None
    test_examples = {lang: encode(tokenizer, pairs, label_ids, args.max_length) for lang, pairs in tests.items()}

    def load():
        return common.load_model("AutoModelForSequenceClassification", spec.path, num_labels=len(labels),
                                 id2label=dict(enumerate(labels)), label2id=label_ids)

    def test_scores(model, seed):
        scores = []
        for lang, examples in test_examples.items():
            value = accuracy(model, examples, args.eval_batch_size, pad_id)
            scores.append(Score(task, spec.name, lang, "accuracy", value, len(examples), seed))
            logger.info("%s seed %d %s accuracy %.2f (%d pairs)", spec.name, seed, lang, value, len(examples))
        return scores

    dev_score = (lambda model: accuracy(model, dev_examples, args.eval_batch_size, pad_id)) if dev else None
    return finetune.run_seeds(args, load, train_examples, pad_id, dev_score, test_scores)


def run(args):
    task = args.pair_task
    finetune.check_training_arguments(args, args.dev is not None)
    train = read_pairs(args.train, task)
    dev = read_pairs(args.dev, task) if args.dev else None
    tests = {lang: read_pairs(path, task, lang) for lang, path in common.parse_lang_files(args.test).items()}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, task, train, dev, tests, args))
    return report(scores, args)
