"""RELX: relation classification, fine-tuned on English (KBP-37), accuracy per language (RELX test sets).

``kmlm-eval relx --model [NAME=]HF_DIR [--model ...] --train kbp37/train.txt --test en=RELX/RELX_en.txt
--test de=RELX/RELX_de.txt --output OUT``

Input, either format per file (chosen by content):
    KBP-37 / RELX text: blocks of
        ``ID<TAB>"sentence with <e1> head </e1> ... <e2> tail </e2>"``
        ``label`` (e.g. ``org:founded_by(e1,e2)``, ``no_relation``)
        [``Comment: ...``] (SemEval style, ignored)
        blank line
    RELX-Distant JSON: a JSON array, or JSON lines, of objects with the sentence in ``sentence`` (or ``text``),
    entity markers ``<e1> </e1> <e2> </e2>`` in it, and the label in ``relation`` (or ``label``).
The sentence is classified with its entity markers kept as plain text (AutoModelForSequenceClassification).
Labels come from the training file; test examples with a label unseen in training count as errors (logged).
Output: accuracy (%) per language in OUT/results.{csv,md}.
"""
import json
import logging
from pathlib import Path

import torch

from kmlm_eval import common
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
TASK = "relx"
MARKERS = ("<e1>", "</e1>", "<e2>", "</e2>")


def add_arguments(parser):
    parser.add_argument("--train", type=Path, required=True, help="English training file (KBP-37 train.txt)")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="test file of one language (repeat)")
    common.add_training_arguments(parser, epochs=3, lr=2e-5, batch_size=16, max_length=128)


def check_sentence(path, number, sentence):
    positions = [sentence.find(m) for m in MARKERS]
    if min(positions) < 0 or positions[0] > positions[1] or positions[2] > positions[3]:
        raise common.data_error(path, number, f"sentence lacks the entity markers {' '.join(MARKERS)}: {sentence!r}")
    return sentence


def read_text_file(path):
    """KBP-37/RELX blocks -> ``[(sentence, label)]``."""
    examples, block = [], []
    lines = common.read_utf8(path).splitlines()
    for number, line in enumerate(lines + [""], 1):
        if line.strip():
            block.append((number, line.strip()))
            continue
        if not block:
            continue
        (first_number, first), rest = block[0], [b for b in block[1:] if not b[1].startswith("Comment:")]
        identifier, tab, quoted = first.partition("\t")
        if not tab or not quoted:
            raise common.data_error(path, first_number, "expected 'ID<TAB>\"sentence\"'")
        if len(rest) != 1:
            where = rest[1][0] if len(rest) > 1 else first_number
            raise common.data_error(path, where, "expected exactly one label line after the sentence, then a blank "
                                                 "line")
        sentence = quoted.strip()
        if len(sentence) >= 2 and sentence[0] == sentence[-1] == '"':
            sentence = sentence[1:-1].strip()
        examples.append((check_sentence(path, first_number, sentence), rest[0][1]))
        block = []
    return examples


def read_json_file(path):
    """RELX-Distant JSON (array or JSON lines) -> ``[(sentence, label)]``."""
    text = common.read_utf8(path)
    if text.lstrip().startswith("["):
        try:
            items = list(enumerate(json.loads(text), 1))
        except json.JSONDecodeError as err:
            raise common.data_error(path, err.lineno, f"not valid JSON ({err.msg})") from err
        where = "item"
    else:
        items, where = list(common.read_jsonl(path)), "line"
    examples = []
    for number, obj in items:
        sentence = obj.get("sentence", obj.get("text")) if isinstance(obj, dict) else None
        label = obj.get("relation", obj.get("label")) if isinstance(obj, dict) else None
        if not isinstance(sentence, str) or not isinstance(label, str):
            message = "expected an object with 'sentence' (or 'text') and 'relation' (or 'label') strings"
            raise (common.data_error(path, number, message) if where == "line"
                   else UserFacingError(f"{path}: item {number}: {message}"))
        examples.append((check_sentence(path, number, sentence), label))
    return examples


def read_examples(path):
    head = common.read_utf8(path).lstrip()[:1]
    examples = read_json_file(path) if head in ("[", "{") else read_text_file(path)
    if not examples:
        raise UserFacingError(f"{path} has no examples")
    return examples


def make_collate(tokenizer, label_ids, max_length):
    def collate(examples):
        enc = tokenizer([sentence for sentence, _ in examples], truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        return {**enc, "labels": torch.tensor([label_ids.get(label, -1) for _, label in examples])}
    return collate


def accuracy(model, examples, collate, batch_size):
    logits = common.predict_logits(model, examples, collate, batch_size)
    predictions = torch.cat([l.argmax(-1) for l in logits])
    gold = collate(examples)["labels"]
    return 100.0 * (predictions == gold).float().mean().item()


def evaluate(spec, train, tests, args):
    common.set_seed(args.seed)
    labels = sorted({label for _, label in train})
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = common.load_tokenizer(spec.path)
    model = common.load_model("AutoModelForSequenceClassification", spec.path, num_labels=len(labels),
                              id2label=dict(enumerate(labels)), label2id=label_ids)
    collate = make_collate(tokenizer, label_ids, args.max_length)
    model = common.fine_tune(model, train, collate, args)
    scores = []
    for lang, examples in tests.items():
        unseen = sum(label not in label_ids for _, label in examples)
        if unseen:
            logger.warning("%s: %d test example(s) have labels unseen in training (counted wrong)", lang, unseen)
        value = accuracy(model, examples, collate, args.batch_size)
        scores.append(common.Score(TASK, spec.name, lang, "accuracy", value, len(examples)))
        logger.info("%s %s accuracy %.2f (%d examples)", spec.name, lang, value, len(examples))
    return scores


def run(args):
    train = read_examples(args.train)
    tests = {lang: read_examples(path) for lang, path in args.test}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, train, tests, args))
    print(common.write_results(scores, args.output))
    return 0
