"""XLR (cross-lingual logical reasoning): multiple choice fine-tuned on English, accuracy per language (zero-shot).

``kmlm-eval xlr --model [NAME=]HF_DIR [--model ...] --data XLR_DIR --output OUT [--languages en,de,...]``

Input, a directory of per-language files:
    ours (``kmlm-preprocess xlr``, preprocess/stages/xlr.py): ``train.en.jsonl``, ``dev.<lang>.jsonl``,
        ``test.<lang>.jsonl``;
    an externally provided release: any ``.jsonl`` (one object a line) or ``.json`` (an array of objects) file
        whose path names a split (train, dev/valid/validation, test) and a language code, as ``test_de.json``,
        ``de/test.jsonl`` or ``test/de.jsonl``; ``--fields question=KEY,context=KEY,choices=KEY,label=KEY`` names its
        keys where they differ from ours. (The paper's own release could not be read here: its exact layout is not
        known, hence this loader's tolerance.)
One object per sample with ``question`` (string), ``context`` (list of strings, or one string), ``choices`` (list
of strings, the same number in every sample of a file) and ``label`` (index of the right choice, or its text, or
its letter A, B, ...); other fields are ignored.
Model input per choice (AutoModelForMultipleChoice): first segment the context sentences joined by spaces, second
segment ``question + " " + choice``; only the context is truncated.
Protocol: fine-tune on English train, keep the checkpoint with the best English dev accuracy (scored after every
epoch), test zero-shot on every language, seeds 1,2,3 (the paper: "average of 3 runs"). The paper's XLR
fine-tuning hyper-parameters were not read here: the defaults (3 epochs, lr 2e-5, 8 samples per update, 128
tokens) are ours.
Output: accuracy (%) per language (metric ``test accuracy``, or ``dev accuracy`` with ``--dev``).
"""
import json
import logging
import re
from pathlib import Path

from kmlm_eval import batching, common, finetune
from kmlm_eval.results import Score, report
from preprocess.core.errors import UserFacingError
from preprocess.core.languages import parse_languages

logger = logging.getLogger(__name__)
TASK = "xlr"
FIELDS = ("question", "context", "choices", "label")
SPLITS = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}
SPLIT = r"(train|dev|valid|validation|test)"
LANG = r"([a-z]{2,3}(?:[-_][a-zA-Z]{2,4})?)"
RELEASE_NAMES = [re.compile(p) for p in (rf"^{SPLIT}[._-]{LANG}\.jsonl?$", rf"^{LANG}[._-]{SPLIT}\.jsonl?$",
                                         rf"^{SPLIT}/{LANG}\.jsonl?$", rf"^{LANG}/{SPLIT}\.jsonl?$")]


def add_arguments(parser, name=TASK):
    parser.add_argument("--data", type=Path, required=True, help="XLR directory (ours, or a release's files)")
    parser.add_argument("--languages", help="languages to score (default: every test file found)")
    parser.add_argument("--dev", action="store_true", help="score the dev files instead of the test files")
    parser.add_argument("--train-file", type=Path, help="training file (default: the English train file of DATA)")
    parser.add_argument("--fields", type=parse_fields, default={f: f for f in FIELDS},
                        help="KEY names of a release, e.g. question=q,choices=options,label=answer")
    finetune.add_training_arguments(parser, "ours (the paper's XLR fine-tuning settings were not read)", epochs=3,
                                    lr=2e-5, batch_size=8, max_length=128, eval_steps=0)


def parse_fields(text):
    fields = {f: f for f in FIELDS}
    for item in filter(None, text.split(",")):
        ours, sep, theirs = item.partition("=")
        if not sep or ours not in FIELDS or not theirs:
            raise UserFacingError(f"--fields {text!r}: expected FIELD=KEY items with FIELD one of {', '.join(FIELDS)}")
        fields[ours] = theirs
    return fields


def label_index(label, choices):
    """An index, a digit string, the right choice's text or its letter -> index (None when it is none of these)."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label if 0 <= label < len(choices) else None
    if isinstance(label, str):
        if label.isdigit():
            return label_index(int(label), choices)
        if label in choices:
            return choices.index(label)
        if len(label) == 1 and "A" <= label.upper() < chr(ord("A") + len(choices)):
            return ord(label.upper()) - ord("A")
    return None


def objects(path):
    """``(where, object)`` of a JSON-lines file or of a JSON array file."""
    text = common.read_utf8(path)
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise common.data_error(path, err.lineno, f"not valid JSON ({err.msg})") from None
        for number, obj in enumerate(items, 1):
            if not isinstance(obj, dict):
                raise UserFacingError(f"{path}: item {number}: expected a JSON object")
            yield f"{path}: item {number}", obj
        return
    for number, obj in common.read_jsonl(path):
        yield f"{path}:{number}", obj


def read_split(path, fields=None):
    """Validated samples ``{"context", "question", "choices", "label"}`` of one XLR file."""
    fields = fields or {f: f for f in FIELDS}
    samples, width = [], None
    for where, obj in objects(Path(path)):
        question, context, choices, label = (obj.get(fields[f]) for f in ("question", "context", "choices", "label"))
        if isinstance(context, str):
            context = [context]
        if not isinstance(question, str):
            raise UserFacingError(f"{where}: field '{fields['question']}' must be a string")
        if not isinstance(context, list) or not all(isinstance(c, str) for c in context):
            raise UserFacingError(f"{where}: field '{fields['context']}' must be a list of strings")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise UserFacingError(f"{where}: field '{fields['choices']}' must be a list of at least 2 strings")
        if width is not None and len(choices) != width:
            raise UserFacingError(f"{where}: {len(choices)} choices; earlier samples have {width}")
        width = len(choices)
        index = label_index(label, choices)
        if index is None:
            raise UserFacingError(f"{where}: field '{fields['label']}' must be an integer in 0..{width - 1} (or the "
                                  "right choice's text or letter)")
        samples.append({"context": " ".join(context), "question": question, "choices": choices, "label": index})
    if not samples:
        raise UserFacingError(f"{path} has no samples")
    return samples


def discover(data):
    """``{(split, lang): path}`` of a directory: our ``split.lang.jsonl`` names, else a release's."""
    found = {}
    for path in sorted(p for p in data.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl")):
        relative = path.relative_to(data).as_posix()
        if re.fullmatch(r"(train|dev|test)\.[^./]+\.jsonl", relative):
            split, lang = relative.split(".")[:2]
            found[(split, lang)] = path
            continue
        for pattern in RELEASE_NAMES:
            match = pattern.match(relative)
            if match:
                first, second = match.groups()
                split, lang = (first, second) if first in SPLITS else (second, first)
                found.setdefault((SPLITS[split], lang), path)
                break
    return found


def eval_files(data, languages, split):
    found = discover(data)
    files = {lang: path for (s, lang), path in sorted(found.items()) if s == split}
    if languages:
        wanted = parse_languages(languages)
        missing = [lang for lang in wanted if lang not in files]
        if missing:
            raise UserFacingError(f"no XLR {split} file for {', '.join(missing)} in {data}")
        return {lang: files[lang] for lang in wanted}
    if not files:
        raise UserFacingError(f"no {split} files in {data}: run `kmlm-preprocess xlr` or give a release directory")
    return files


def english_file(data, split):
    path = discover(data).get((split, "en"))
    if path is None:
        raise UserFacingError(f"no English {split} file in {data}" + (" (--select dev needs one; or --select last)"
                                                                         if split == "dev" else ""))
    return path


def encode(tokenizer, samples, max_length):
    """Samples -> multiple-choice examples (one batched tokenizer call over every (sample, choice) pair)."""
    firsts = [s["context"] for s in samples for _ in s["choices"]]
    seconds = [f"{s['question']} {c}" for s in samples for c in s["choices"]]
    flat = batching.encode(tokenizer, firsts, seconds, truncation="only_first", max_length=max_length)
    examples, start = [], 0
    for s in samples:
        rows = flat[start:start + len(s["choices"])]
        start += len(rows)
        examples.append({**{k: [r[k] for r in rows] for k in rows[0]}, "labels": s["label"]})
    return examples


def accuracy(model, examples, batch_size, pad_id):
    logits = batching.predict(model, examples, batch_size, pad_id)[0]
    return 100.0 * sum(int(row.argmax() == e["labels"]) for row, e in zip(logits, examples)) / len(examples)


def evaluate(spec, train, dev, tests, args, split):
    tokenizer = common.load_tokenizer(spec.path)
    pad_id = tokenizer.pad_token_id
    train_examples = encode(tokenizer, train, args.max_length)
    dev_examples = encode(tokenizer, dev, args.max_length) if dev else None
    test_examples = {lang: encode(tokenizer, samples, args.max_length) for lang, samples in tests.items()}

    def test_scores(model, seed):
        scores = []
        for lang, examples in test_examples.items():
            value = accuracy(model, examples, args.eval_batch_size, pad_id)
            scores.append(Score(TASK, spec.name, lang, f"{split} accuracy", value, len(examples), seed))
            logger.info("%s seed %d %s %s accuracy %.2f (%d samples)", spec.name, seed, lang, split, value,
                        len(examples))
        return scores

    dev_score = (lambda model: accuracy(model, dev_examples, args.eval_batch_size, pad_id)) if dev else None
    return finetune.run_seeds(args, lambda: common.load_model("AutoModelForMultipleChoice", spec.path),
                              train_examples, pad_id, dev_score, test_scores)


def run(args):
    split = "dev" if args.dev else "test"
    finetune.check_training_arguments(args, True)
    train = read_split(args.train_file or english_file(args.data, "train"), args.fields)
    dev = read_split(english_file(args.data, "dev"), args.fields) if args.select == "dev" else None
    tests = {lang: read_split(path, args.fields) for lang, path in eval_files(args.data, args.languages, split).items()}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, train, dev, tests, args, split))
    return report(scores, args)
