"""RELX: relation classification fine-tuned on English (KBP-37), F1 and accuracy per language (RELX test sets).

``kmlm-eval relx --model [NAME=]HF_DIR [--model ...] --train kbp37/train.txt --dev kbp37/dev.txt
--test en=RELX/RELX_en.txt --test de=RELX/RELX_de.txt --output OUT``

Input, either format per file (chosen by content):
    KBP-37 / RELX text: blocks of
        ``ID<TAB>"sentence with <e1> head </e1> ... <e2> tail </e2>"``
        ``label`` (e.g. ``org:founded_by(e1,e2)``, ``no_relation``)
        [``Comment: ...``] (SemEval style, ignored)
        blank line
    RELX-Distant JSON: a JSON array, or JSON lines, of objects with the sentence in ``sentence`` (or ``text``),
    entity markers ``<e1> </e1> <e2> </e2>`` in it, and the label in ``relation`` (or ``label``).
The settings of RELX's authors (boun-tabi/RELX finetune.py):
    input: words starting with ``http``, ``www``, ``**********`` or ``-------`` dropped; the four markers replaced
        by four marker tokens, the first pair around the entity that comes first in the sentence and the second
        around the other one (finetune.py used mBERT's unused ids 1-4; a tokenizer without such ids, as XLM-R's,
        gets four new tokens ``[M1] [/M1] [M2] [/M2]`` with freshly initialised embeddings); at most 256 tokens
        (an input that long is cut to 255, as finetune.py does);
    model: the encoder's first-token state, dropout 0.5, a linear layer (no pooler); cross-entropy weighted per
        class: ``no_relation`` 1, a relation's two directions their share of that relation's training examples;
    training: AdamW lr 3e-5, weight decay 0.1 (not on biases and LayerNorm weights), eps 1e-6, no schedule and no
        clipping, 16 x 4 = 64 examples per update, 10 epochs;
    selection: the epoch with the best dev F1, the mean over relations of the micro-F1 on the relation's two
        directions (``no_relation`` excluded), the metric finetune.py reports.
Labels come from the training file; test examples with a label unseen in training count as wrong (logged).
Output: ``f1`` (as above) and ``accuracy`` (%), mean ± std over seeds, per language.
"""
import json
import logging
import re
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from kmlm_eval import batching, common, finetune
from kmlm_eval.results import Score, report
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
TASK = "relx"
MARKERS = ("<e1>", "</e1>", "<e2>", "</e2>")
MARKER_TOKENS = ("[M1]", "[/M1]", "[M2]", "[/M2]")
NO_RELATION = ("no_relation", "Other")
DROPPED_WORDS = ("http", "www", "**********", "-------")
DIRECTION = re.compile(r"\((e1,e2|e2,e1)\)$")
SOURCE = "boun-tabi/RELX finetune.py (lr 3e-5, weight decay 0.1, batch 16 x 4, 10 epochs, max length 256, dev F1 " \
         "per epoch)"


def add_arguments(parser, name=TASK):
    parser.add_argument("--train", type=Path, required=True, help="English training file (KBP-37 train.txt)")
    parser.add_argument("--dev", type=Path, help="English dev file (KBP-37 dev.txt): the best epoch on it is kept")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="test file of one language (repeat)")
    finetune.add_training_arguments(parser, SOURCE, epochs=10, lr=3e-5, batch_size=64, max_length=256, eval_steps=0,
                                    weight_decay=0.1, max_grad_norm=0.0, schedule="constant", adam_eps=1e-6)


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


def segments(sentence):
    """finetune.py's ``to_id`` split: (before, first entity, between, second entity, after), entities in text
    order."""
    text = " ".join(w for w in sentence.replace("<e1>", "<e1> ").replace("</e1>", " </e1>").replace(
        "<e2>", "<e2> ").replace("</e2>", " </e2>").split() if not w.startswith(DROPPED_WORDS))
    first, second = ("e1", "e2") if text.index("<e1>") < text.index("<e2>") else ("e2", "e1")
    a, b = text.index(f"<{first}>"), text.index(f"</{first}>")
    c, d = text.index(f"<{second}>"), text.index(f"</{second}>")
    return text[:a], text[a + 4:b], text[b + 5:c], text[c + 4:d], text[d + 5:]


def marker_ids(tokenizer):
    """Four marker token ids: the tokenizer's ``[unused1..4]`` when it has them (mBERT, as finetune.py), else four
    added tokens."""
    unused = tokenizer.convert_tokens_to_ids([f"[unused{i}]" for i in range(1, 5)])
    if tokenizer.unk_token_id not in unused and None not in unused:
        return unused
    tokenizer.add_tokens(list(MARKER_TOKENS), special_tokens=True)
    return tokenizer.convert_tokens_to_ids(list(MARKER_TOKENS))


def encode(tokenizer, markers, examples, label_ids, max_length):
    """Examples -> ``[CLS] before M1 first /M1 between M2 second /M2 after [SEP]`` (one batched tokenizer call)."""
    pieces = [piece.strip() for sentence, _ in examples for piece in segments(sentence)]
    ids = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    encoded = []
    for i, (_, label) in enumerate(examples):
        before, first, between, second, after = ids[5 * i:5 * i + 5]
        row = ([tokenizer.cls_token_id] + before + [markers[0]] + first + [markers[1]] + between + [markers[2]]
               + second + [markers[3]] + after + [tokenizer.sep_token_id])
        encoded.append({"input_ids": row[:max_length - 1] if len(row) >= max_length else row,
                        "labels": label_ids.get(label, -1)})
    return encoded


def relation_groups(labels):
    """``{relation: [label ids of its directions]}`` (``no_relation`` left out): finetune.py's label pairs."""
    groups = {}
    for i, label in enumerate(labels):
        if label not in NO_RELATION:
            groups.setdefault(DIRECTION.sub("", label), []).append(i)
    return groups


def class_weights(train_labels, labels):
    """finetune.py's loss weights: 1 for no_relation, else the label's share of its relation's examples."""
    counts = Counter(train_labels)
    weights = np.ones(len(labels), dtype=np.float32)
    for ids in relation_groups(labels).values():
        total = sum(counts[i] for i in ids)
        for i in ids:
            weights[i] = counts[i] / total if total else 1.0
    return torch.from_numpy(weights)


def relation_f1(gold, predicted, groups):
    """Mean over relations of the micro-F1 restricted to the relation's direction labels (in percent)."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    values = []
    for ids in groups.values():
        in_gold, in_pred = np.isin(gold, ids), np.isin(predicted, ids)
        tp = int((in_gold & (gold == predicted)).sum())
        denominator = 2 * tp + int((in_pred & (gold != predicted)).sum()) + int((in_gold & (gold != predicted)).sum())
        values.append(2 * tp / denominator if denominator else 0.0)
    return 100.0 * float(np.mean(values)) if values else 0.0


class MarkedEntityClassifier(torch.nn.Module):
    """finetune.py's Model: encoder, first-token state, dropout 0.5, linear; class-weighted cross-entropy."""

    def __init__(self, encoder, num_labels, weights):
        super().__init__()
        self.encoder, self.config = encoder, encoder.config
        self.dropout = torch.nn.Dropout(0.5)
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, num_labels)
        self.register_buffer("weights", weights)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.classifier(self.dropout(self.encoder(**inputs).last_hidden_state[:, 0]))
        loss = torch.nn.functional.cross_entropy(logits, labels, weight=self.weights) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def scores_of(model, examples, groups, batch_size, pad_id):
    logits = batching.predict(model, examples, batch_size, pad_id)[0]
    predicted = [int(row.argmax()) for row in logits]
    gold = [e["labels"] for e in examples]
    accuracy = 100.0 * sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    return {"f1": relation_f1(gold, predicted, groups), "accuracy": accuracy}


def evaluate(spec, train, dev, tests, args):
    labels = sorted({label for _, label in train})
    label_ids = {label: i for i, label in enumerate(labels)}
    groups = relation_groups(labels)
    tokenizer = common.load_tokenizer(spec.path)
    pad_id = tokenizer.pad_token_id
    markers = marker_ids(tokenizer)
    train_examples = encode(tokenizer, markers, train, label_ids, args.max_length)
    dev_examples = encode(tokenizer, markers, dev, label_ids, args.max_length) if dev else None
    test_examples = {lang: encode(tokenizer, markers, examples, label_ids, args.max_length)
                     for lang, examples in tests.items()}
    weights = class_weights([e["labels"] for e in train_examples], labels)

    def load():
        encoder = common.load_model("AutoModel", spec.path)
        encoder.resize_token_embeddings(len(tokenizer))
        return MarkedEntityClassifier(encoder, len(labels), weights)

    def test_scores(model, seed):
        scores = []
        for lang, examples in test_examples.items():
            unseen = sum(e["labels"] < 0 for e in examples)
            if unseen:
                logger.warning("%s: %d test example(s) have labels unseen in training (counted wrong)", lang, unseen)
            values = scores_of(model, examples, groups, args.eval_batch_size, pad_id)
            scores += [Score(TASK, spec.name, lang, name, value, len(examples), seed) for name, value in values.items()]
            logger.info("%s seed %d %s F1 %.2f accuracy %.2f (%d examples)", spec.name, seed, lang, values["f1"],
                        values["accuracy"], len(examples))
        return scores

    def dev_score(model):
        return scores_of(model, dev_examples, groups, args.eval_batch_size, pad_id)["f1"]

    return finetune.run_seeds(args, load, train_examples, pad_id, dev_score if dev else None, test_scores)


def run(args):
    finetune.check_training_arguments(args, args.dev is not None)
    train = read_examples(args.train)
    dev = read_examples(args.dev) if args.dev else None
    tests = {lang: read_examples(path) for lang, path in common.parse_lang_files(args.test).items()}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, train, dev, tests, args))
    return report(scores, args)
