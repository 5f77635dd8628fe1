"""NER: fine-tune token classification on English, entity F1 (seqeval) per language.

``kmlm-eval ner --model [NAME=]HF_DIR [--model ...] --train en.train --test en=en.testb --test de=de.testb
--output OUT [--format auto|conll|panx]``

Input files, one token per line, a blank line between sentences:
    CoNLL-2002/2003: ``token [POS [chunk]] tag`` separated by spaces or tabs (the tag is the last column);
                     ``-DOCSTART-`` lines are skipped;
    XTREME PAN-X (WikiAnn): ``lang:token<TAB>tag`` (the ``lang:`` prefix is removed).
Tags are IOB1/IOB2/IOBES (``O`` or ``X-TYPE``); any other line is an error naming the file and line.
Each word is labelled on its first subword (the other subwords are ignored in the loss and in prediction); words
cut off by ``--max-length`` are predicted ``O`` (counted in the log).
Output: entity-level F1 (%) of seqeval (conlleval rules) per language in OUT/results.{csv,md}.
"""
import logging
import re
from pathlib import Path

import torch

from kmlm_eval import common
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
TASK = "ner"
TAG = re.compile(r"^(O|[BIES]-\S+)$")
PANX_TOKEN = re.compile(r"^[a-z]{2,3}(?:[-_][A-Za-z]+)?:")
IGNORE = -100


def add_arguments(parser):
    parser.add_argument("--train", type=Path, required=True, help="English training file")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="evaluation file of one language (repeat)")
    parser.add_argument("--format", choices=("auto", "conll", "panx"), default="auto",
                        help="file format (default: auto, PAN-X when tokens carry a lang: prefix)")
    common.add_training_arguments(parser, epochs=3, lr=3e-5, batch_size=16, max_length=128)


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


def label_list(*datasets):
    tags = {tag for sentences in datasets for _, sentence_tags in sentences for tag in sentence_tags}
    return ["O"] + sorted(tags - {"O"})


def make_collate(tokenizer, label_ids, max_length):
    """sentences -> (model batch with first-subword labels, word index of every position per row)."""
    def collate(sentences):
        enc = tokenizer([tokens for tokens, _ in sentences], is_split_into_words=True, truncation=True,
                        max_length=max_length, padding=True, return_tensors="pt")
        word_ids = [enc.word_ids(row) for row in range(len(sentences))]
        labels = torch.full(enc["input_ids"].shape, IGNORE, dtype=torch.long)
        for row, (_, tags) in enumerate(sentences):
            for position, word in enumerate(word_ids[row]):
                if word is not None and (position == 0 or word_ids[row][position - 1] != word):
                    labels[row, position] = label_ids[tags[word]]
        return {**enc, "labels": labels}, word_ids
    return collate


def predict_tags(model, sentences, collate, labels, batch_size):
    """Tags per word (its first subword's argmax); words lost to truncation are ``O``. -> (tags, truncated)"""
    predicted, truncated = [], 0
    for start in range(0, len(sentences), batch_size):
        chunk = sentences[start:start + batch_size]
        batch, word_ids = collate(chunk)
        gold = batch.pop("labels")
        with torch.no_grad():
            best = model(**common.model_inputs(batch, model)).logits.argmax(-1).cpu()
        for row, (tokens, _) in enumerate(chunk):
            tags = ["O"] * len(tokens)
            positions = (gold[row] != IGNORE).nonzero().flatten().tolist()
            for position in positions:
                tags[word_ids[row][position]] = labels[best[row, position]]
            truncated += len(tokens) - len(positions)
            predicted.append(tags)
    return predicted, truncated


def evaluate(spec, train, tests, args):
    from seqeval.metrics import f1_score

    common.set_seed(args.seed)
    labels = label_list(train, *tests.values())
    tokenizer = common.load_tokenizer(spec.path)
    model = common.load_model("AutoModelForTokenClassification", spec.path, num_labels=len(labels),
                              id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    collate = make_collate(tokenizer, {label: i for i, label in enumerate(labels)}, args.max_length)
    model = common.fine_tune(model, train, lambda sentences: collate(sentences)[0], args)
    scores = []
    for lang, sentences in tests.items():
        predicted, truncated = predict_tags(model, sentences, collate, labels, args.batch_size)
        value = 100.0 * f1_score([tags for _, tags in sentences], predicted)
        if truncated:
            logger.warning("%s %s: %d words beyond --max-length predicted O", spec.name, lang, truncated)
        scores.append(common.Score(TASK, spec.name, lang, "f1", value, len(sentences)))
        logger.info("%s %s F1 %.2f (%d sentences)", spec.name, lang, value, len(sentences))
    return scores


def run(args):
    train = read_sentences(args.train, args.format)
    tests = {lang: read_sentences(path, args.format) for lang, path in args.test}
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, train, tests, args))
    print(common.write_results(scores, args.output))
    return 0
