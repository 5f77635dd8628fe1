"""Token tagging shared by NER and POS: sentences of words -> subword examples labelled on each word's first
subword, fine-tuning with dev selection, one predicted tag per word.

As XTREME's preprocessing (utils_preprocess.py, panx/udpos_tokenize_preprocess): a word that the tokenizer turns
into no subword, or into more subwords than fit, becomes the tokenizer's unknown token; a sentence whose subwords do
not fit in ``--max-length`` is split into consecutive pieces that do. Unlike XTREME, the pieces' predictions are
joined back into the sentence before scoring (XTREME scores the pieces as separate sentences).
"""
import logging
from dataclasses import dataclass

import numpy as np

from kmlm_eval import batching, common, finetune
from kmlm_eval.batching import IGNORE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pieces:
    examples: list  # one per piece
    spans: list  # (sentence index, first word, end word) per piece
    replaced: int  # words replaced by the unknown token


def split_sentences(tokenizer, sentences, max_length):
    """-> (pieces as (sentence, start, end) word spans, sentences' words with unfit words replaced, replacements)."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    words = [word for tokens, _ in sentences for word in tokens]
    counts = np.fromiter(map(len, tokenizer(words, add_special_tokens=False)["input_ids"]), dtype=np.int64,
                         count=len(words))
    unfit = (counts == 0) | (counts > budget)
    counts[unfit] = 1
    spans, fixed, offset = [], [], 0
    for index, (tokens, _) in enumerate(sentences):
        fixed.append([tokenizer.unk_token if unfit[offset + i] else w for i, w in enumerate(tokens)])
        start, used = 0, 0
        for i, count in enumerate(counts[offset:offset + len(tokens)]):
            if used + count > budget:
                spans.append((index, start, i))
                start, used = i, 0
            used += int(count)
        spans.append((index, start, len(tokens)))
        offset += len(tokens)
    return spans, fixed, int(unfit.sum())


def encode(tokenizer, sentences, label_ids, max_length):
    """Sentences ``[(words, tags)]`` -> Pieces whose examples carry first-subword labels (``IGNORE`` elsewhere)."""
    spans, words, replaced = split_sentences(tokenizer, sentences, max_length)
    enc = tokenizer([words[s][a:b] for s, a, b in spans], is_split_into_words=True, truncation=True,
                    max_length=max_length)
    examples = []
    for row, (sentence, start, _) in enumerate(spans):
        word_ids = enc.word_ids(row)
        tags = sentences[sentence][1]
        labels = [label_ids[tags[start + w]] if w is not None and (p == 0 or word_ids[p - 1] != w) else IGNORE
                  for p, w in enumerate(word_ids)]
        examples.append({"input_ids": enc["input_ids"][row], "labels": labels})
    if replaced:
        logger.warning("%d word(s) had no subword or too many and became %s (as XTREME's preprocessing)",
                       replaced, tokenizer.unk_token)
    return Pieces(examples, spans, replaced)


def predict_tags(model, sentences, pieces, labels, batch_size, pad_id):
    """One predicted tag per word: the argmax at the word's first subword; a word the model never saw (cut by
    truncation, which the splitting should make impossible) is ``labels[0]`` and counted in the log."""
    logits = batching.predict(model, pieces.examples, batch_size, pad_id, per_token=True)[0]
    predicted = [[labels[0]] * len(tokens) for tokens, _ in sentences]
    filled = 0
    for (sentence, start, _), example, scores in zip(pieces.spans, pieces.examples, logits):
        first = np.flatnonzero(np.asarray(example["labels"]) != IGNORE)
        best = scores[first].argmax(-1)
        for k, tag in enumerate(best):
            predicted[sentence][start + k] = labels[tag]
        filled += len(first)
    unseen = sum(len(tokens) for tokens, _ in sentences) - filled
    if unseen:
        logger.warning("%d word(s) beyond --max-length were predicted %s", unseen, labels[0])
    return predicted


def label_list(*datasets, outside=None):
    """The labels of all files (``outside`` first when given, e.g. NER's ``O``), sorted otherwise."""
    tags = {tag for sentences in datasets for _, sentence_tags in sentences for tag in sentence_tags}
    return ([outside] if outside else []) + sorted(tags - {outside})


def evaluate(spec, task, train, dev, tests, args, metrics, outside=None):
    """Fine-tune ``spec`` on ``train`` for every seed; -> Scores per test language and metric.

    ``metrics``: ``{name: fn(gold_tag_lists, predicted_tag_lists) -> fraction}``; the first one selects the
    checkpoint on the dev set.
    """
    from kmlm_eval.results import Score

    labels = label_list(train, *([dev] if dev else []), *tests.values(), outside=outside)
    label_ids = {label: i for i, label in enumerate(labels)}
    tokenizer = common.load_tokenizer(spec.path)
    pad_id = tokenizer.pad_token_id
    train_pieces = encode(tokenizer, train, label_ids, args.max_length)
    dev_pieces = encode(tokenizer, dev, label_ids, args.max_length) if dev else None
    test_pieces = {lang: encode(tokenizer, sentences, label_ids, args.max_length) for lang, sentences in tests.items()}

    def score(model, sentences, pieces):
        predicted = predict_tags(model, sentences, pieces, labels, args.eval_batch_size, pad_id)
        gold = [tags for _, tags in sentences]
        return {name: 100.0 * fn(gold, predicted) for name, fn in metrics.items()}

    def load():
        return common.load_model("AutoModelForTokenClassification", spec.path, num_labels=len(labels),
                                 id2label=dict(enumerate(labels)), label2id=label_ids)

    def test_scores(model, seed):
        scores = []
        for lang, sentences in tests.items():
            values = score(model, sentences, test_pieces[lang])
            scores += [Score(task, spec.name, lang, name, value, len(sentences), seed)
                       for name, value in values.items()]
            logger.info("%s seed %d %s: %s (%d sentences)", spec.name, seed, lang,
                        ", ".join(f"{name} {value:.2f}" for name, value in values.items()), len(sentences))
        return scores

    selection = next(iter(metrics))
    dev_score = (lambda model: score(model, dev, dev_pieces)[selection]) if dev else None
    return finetune.run_seeds(args, load, train_pieces.examples, pad_id, dev_score, test_scores)
