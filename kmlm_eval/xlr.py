"""XLR (cross-lingual logical reasoning): fine-tune multiple choice on English, accuracy per language (zero-shot).

``kmlm-eval xlr --model [NAME=]HF_DIR [--model ...] --data XLR_DIR --output OUT [--languages en,de,...]``

Input: the directory ``kmlm-preprocess xlr`` writes (preprocess/stages/xlr.py): ``train.en.jsonl``,
``test.<lang>.jsonl`` (and ``dev.<lang>.jsonl``, scored with ``--dev``). One JSON object per line with at least
``question`` (string), ``context`` (list of strings), ``choices`` (list of strings, the same number on every line
of a file) and ``label`` (index of the right choice); other fields (id, cycle_id, lang, choice_ids, ...) are
ignored.
Model input per choice (AutoModelForMultipleChoice): first segment the context sentences joined by spaces, second
segment ``question + " " + choice``; only the context is truncated.
Output: accuracy (%) per language in OUT/results.{csv,md} (metric ``test accuracy``, or ``dev accuracy`` with
``--dev``).
"""
import logging
from pathlib import Path

import torch

from kmlm_eval import common
from preprocess.core.errors import UserFacingError
from preprocess.core.languages import parse_languages

logger = logging.getLogger(__name__)
TASK = "xlr"


def add_arguments(parser):
    parser.add_argument("--data", type=Path, required=True, help="XLR directory (train.en.jsonl, test.<lang>.jsonl)")
    parser.add_argument("--languages", help="languages to score (default: every test.<lang>.jsonl found)")
    parser.add_argument("--dev", action="store_true", help="score dev.<lang>.jsonl instead of test.<lang>.jsonl")
    parser.add_argument("--train-file", type=Path, help="training file (default: DATA/train.en.jsonl)")
    common.add_training_arguments(parser, epochs=3, lr=2e-5, batch_size=8, max_length=128)


def read_split(path):
    """Validated samples ``{"context", "question", "choices", "label"}`` of one XLR JSONL file."""
    samples, width = [], None
    for number, obj in common.read_jsonl(path):
        context, question, choices, label = (obj.get(k) for k in ("context", "question", "choices", "label"))
        if not isinstance(question, str):
            raise common.data_error(path, number, "field 'question' must be a string")
        if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
            raise common.data_error(path, number, "field 'context' must be a list of strings")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise common.data_error(path, number, "field 'choices' must be a list of at least 2 strings")
        if width is not None and len(choices) != width:
            raise common.data_error(path, number, f"{len(choices)} choices; earlier lines have {width}")
        width = len(choices)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < width:
            raise common.data_error(path, number, f"field 'label' must be an integer in 0..{width - 1}")
        samples.append({"context": " ".join(context), "question": question, "choices": choices, "label": label})
    if not samples:
        raise UserFacingError(f"{path} has no samples")
    return samples


def eval_files(data, languages, split):
    if languages:
        files = {lang: data / f"{split}.{lang}.jsonl" for lang in parse_languages(languages)}
        missing = [str(p) for p in files.values() if not p.is_file()]
        if missing:
            raise UserFacingError(f"missing XLR file(s): {', '.join(missing)}")
        return files
    files = {p.name[len(split) + 1:-len(".jsonl")]: p for p in sorted(data.glob(f"{split}.*.jsonl"))}
    if not files:
        raise UserFacingError(f"no {split}.<lang>.jsonl in {data}: run `kmlm-preprocess xlr` or pass --data")
    return files


def make_collate(tokenizer, max_length):
    def collate(samples):
        firsts = [s["context"] for s in samples for _ in s["choices"]]
        seconds = [f"{s['question']} {c}" for s in samples for c in s["choices"]]
        enc = tokenizer(firsts, seconds, truncation="only_first", max_length=max_length, padding=True,
                        return_tensors="pt")
        width = len(samples[0]["choices"])
        batch = {k: v.view(len(samples), width, -1) for k, v in enc.items()}
        batch["labels"] = torch.tensor([s["label"] for s in samples])
        return batch
    return collate


def accuracy(model, samples, collate, batch_size):
    logits = common.predict_logits(model, samples, collate, batch_size)
    predictions = torch.cat([l.argmax(-1) for l in logits]) if logits else torch.empty(0, dtype=torch.long)
    gold = torch.tensor([s["label"] for s in samples])
    return 100.0 * (predictions == gold).float().mean().item()


def evaluate(spec, train, tests, args, split):
    common.set_seed(args.seed)
    tokenizer = common.load_tokenizer(spec.path)
    model = common.load_model("AutoModelForMultipleChoice", spec.path)
    collate = make_collate(tokenizer, args.max_length)
    model = common.fine_tune(model, train, collate, args)
    scores = []
    for lang, samples in tests.items():
        value = accuracy(model, samples, collate, args.batch_size)
        scores.append(common.Score(TASK, spec.name, lang, f"{split} accuracy", value, len(samples)))
        logger.info("%s %s %s accuracy %.2f (%d samples)", spec.name, lang, split, value, len(samples))
    return scores


def run(args):
    split = "dev" if args.dev else "test"
    train = read_split(args.train_file or args.data / "train.en.jsonl")
    tests = {lang: read_split(path) for lang, path in eval_files(args.data, args.languages, split).items()}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, train, tests, args, split))
    print(common.write_results(scores, args.output))
    return 0
