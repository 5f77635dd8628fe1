"""Fact recall: does a model complete the knowledge triples of its pretraining data, per language, and those it
never saw? Top-1 accuracy on ``h <mask> r <mask> [Y] .`` with the tail's place filled by masks.

``kmlm-eval fact-recall --model [NAME=]HF_DIR [--model ...] --tables TABLES --sentences SENTENCES --data DATA
--output OUT [--languages en,fr] [--triples-per-split 500] [--sample-seed 1] [--max-masks 5]
[--decoding independent|confidence] [--max-iter 10]``

Input: the outputs of one data build (kmlm-preprocess): ``TABLES`` (entities.parquet: labels and aliases;
triples.parquet), ``SENTENCES`` (sentences.parquet: which triples the knowledge sentences hold;
heldout_triples.parquet: the triples ``sentences --holdout-triples`` kept out of pretraining) and ``DATA``
(``knowledge/summary.json``: which triples binarize put into the valid split, one choice for all languages).
Two sets of triples, each a sample of ``--triples-per-split`` drawn under ``--sample-seed`` (the same for every
model, so models are compared on the same triples):
  used       triples with knowledge sentences in the TRAINING split in every language (the valid split's are
             left out: the model never trained on them);
  held-out   the held-out triples: neither their sentences nor any reasoning sample with their two entities were in
             pretraining (reasoning --exclude-triples), so a right answer is inferred, not recalled.
Query per language L: the head's and relation's L labels as the knowledge sentences render them (binarize:
``h <mask> r <mask> t .``, the two link masks included and left as they are), the tail replaced by m =
1..--max-masks masks, decoded as ``kmlm-eval xfactr`` decodes (kmlm_eval.xfactr.probe_clozes, the two link masks
kept: ``independent`` argmax per mask, or ``confidence``, no vocabulary restriction); the m whose tokens have the
best mean log-probability wins (xfactr's ``--length-norm``; fewer masks on ties). Right when the decoded text,
lower-cased with whitespace collapsed, is the tail's L label or one of its L aliases alike normalised (xfactr's
``--scoring lenient``).
A triple whose head, relation or tail has no L label is not probed in L (counted in the log).
Also measured, since a small model's top-1 is often nothing at all (its argmax being a bare word-start piece):
``<split> tail bits``, the gold tail's surprisal: the query with the tail's own number of masks, -log2 p of each
tail token (masked at once), averaged over the tail's tokens, then over the triples (lower is better).
Output: OUT/results.{csv,md,png} (kmlm_eval.results), metrics ``used top-1``, ``held-out top-1`` (%), ``used tail
bits``, ``held-out tail bits`` per language, count = triples probed.
"""
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from kmlm_eval import common
from kmlm_eval.results import Score, report
from kmlm_eval.xfactr import normalise, predicted_text, probe_clozes
from preprocess.core.binarized_output import valid_split_members
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_triples import open_heldout_triples
from preprocess.core.formats.indexed import SUMMARY_FILE
from preprocess.core.formats.sentences import open_sentences
from preprocess.core.formats.tables import TRIPLE_COLUMNS, LabelTable, open_triples, resolve_languages
from preprocess.core.json_input import read_json
from preprocess.core.seeds import rng_for

logger = logging.getLogger(__name__)
TASK = "fact-recall"
USED, HELD_OUT = "used", "held-out"
SLOT, END = "[Y]", " ."  # a query ends as binarize renders a sentence: the tail, then " ."
LINK_MASKS = 2  # h <mask> r <mask>: given as in pretraining, never filled


def add_arguments(parser, name=TASK):
    parser.add_argument("--tables", type=Path, required=True, help="ingest/import-triples tables directory")
    parser.add_argument("--sentences", type=Path, required=True,
                        help="the sentences stage's directory (sentences.parquet, heldout_triples.parquet)")
    parser.add_argument("--data", type=Path, required=True, help="binarized DATA (knowledge/summary.json)")
    parser.add_argument("--languages", help="languages to probe (default: every language of the tables)")
    parser.add_argument("--triples-per-split", type=int, default=500,
                        help="triples sampled from each of used and held-out (default: %(default)s)")
    parser.add_argument("--sample-seed", type=int, default=1, help="seed of that sample (default: %(default)s)")
    parser.add_argument("--max-masks", type=int, default=5, help="longest tail tried, in tokens (default 5)")
    parser.add_argument("--decoding", choices=("independent", "confidence"), default="independent",
                        help="xfactr's decodings (default independent)")
    parser.add_argument("--max-iter", type=int, default=10, help="passes of confidence decoding (default 10)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass")


def used_triples(sentences_dir, data_dir):
    """Triple indices with knowledge sentences, none of them in binarize's valid split (one choice of triples for
    every language: a triple in it is valid in all its languages)."""
    rendered = open_sentences(sentences_dir, ("triple_index",)).read().column("triple_index")
    used = pc.unique(rendered).to_numpy()
    summary_path = Path(data_dir) / "knowledge" / SUMMARY_FILE
    summary = read_json(summary_path, f"{summary_path} does not exist: pass the binarized DATA directory",
                        lambda err: f"{summary_path} is not binarize's JSON summary ({err})")
    if "valid_threshold" not in summary:
        raise UserFacingError(f"{summary_path} has no valid_threshold: re-run binarize")
    return np.sort(used[~valid_split_members(summary, used)])


def sample(indices, n, seed, split):
    if len(indices) <= n:
        return np.asarray(indices)
    return np.sort(rng_for(seed, TASK, split).choice(indices, size=n, replace=False))


def probe_triples(args):
    """{split: list of (head, relation, tail)} of the sampled triples."""
    triples = open_triples(args.tables).read()
    held = open_heldout_triples(args.sentences, ("triple_index",)).read().column("triple_index").to_numpy()
    chosen = {USED: sample(used_triples(args.sentences, args.data), args.triples_per_split, args.sample_seed, USED),
              HELD_OUT: sample(np.unique(held), args.triples_per_split, args.sample_seed, HELD_OUT)}
    probes = {}
    for split, index in chosen.items():
        rows = triples.take(pa.array(index, pa.int64()))
        probes[split] = list(zip(*(rows.column(c).to_pylist() for c in TRIPLE_COLUMNS)))
        logger.info("%s triples: %d probed", split, len(probes[split]))
    return probes


def queries(triples, lang, names, mask, skipped, split):
    """(template with the [Y] slot, accepted answers, the tail's label) per triple that has its three labels in
    ``lang``."""
    out = []
    for head, relation, tail in triples:
        labels = [names.label(entity, lang) for entity in (head, relation, tail)]
        if not all(labels):
            skipped[(split, lang)] += 1
            continue
        answers = {normalise(a) for a in [labels[2], *names.aliases(tail, lang)]}
        out.append((f"{labels[0]} {mask} {labels[1]} {mask} {SLOT}{END}", answers, labels[2]))
    return out


def best_fills(model, tokenizer, templates, max_masks, decoding, batch_size, max_iter=10):
    """Per template, the normalised text of the best-scoring number of masks (xfactr's ``probe_clozes`` with
    ``--length-norm``: mean log-probability, fewer masks on ties; the link masks kept)."""
    predictions = probe_clozes(model, tokenizer, templates, max_masks, decoding, max_iter, length_norm=True,
                               batch_size=batch_size, slot=SLOT, keep_masks=LINK_MASKS)
    return [predicted_text(tokenizer, p.ids, None, "lenient") for p in predictions]


@torch.inference_mode()
def tail_bits(model, tokenizer, templates, tails, batch_size):
    """Per template (ending with [Y] END), the tail's mean surprisal in bits per token: the template filled with
    the tail, the tail's tokens masked at once (as many masks as the tail has tokens), -mean log2 p(tail token)."""
    bits = []
    end = len(tokenizer(END, add_special_tokens=False)["input_ids"])  # the tokens after the tail, then </s>
    for start in range(0, len(templates), batch_size):
        sentences = [t.replace(SLOT, tail) for t, tail in zip(templates[start:start + batch_size],
                                                              tails[start:start + batch_size])]
        enc = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
        ids = enc["input_ids"]
        masks = ids == tokenizer.mask_token_id
        after_links = masks.cumsum(1) >= LINK_MASKS
        last = enc["attention_mask"].sum(1, keepdim=True) - 1  # </s>
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        tail = after_links & ~masks & (positions < last - end)
        masked = ids.masked_fill(tail, tokenizer.mask_token_id)
        logits = model(input_ids=masked.to(model.device),
                       attention_mask=enc["attention_mask"].to(model.device)).logits.float().cpu()
        gold = logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        per_row = (gold * tail).sum(1) / tail.sum(1).clamp(min=1)
        bits += (-per_row / math.log(2)).tolist()
    return bits


def evaluate(spec, probes, names, languages, args):
    tokenizer = common.load_tokenizer(spec.path)
    if tokenizer.mask_token is None:
        raise UserFacingError(f"{spec.path}: the tokenizer has no mask token")
    model = common.load_model("AutoModelForMaskedLM", spec.path).to(common.device()).eval()
    scores, skipped = [], Counter()
    for split, triples in probes.items():
        for lang in languages:
            probe = queries(triples, lang, names, tokenizer.mask_token, skipped, split)
            if not probe:
                continue
            predictions = best_fills(model, tokenizer, [t for t, _, _ in probe], args.max_masks, args.decoding,
                                     args.batch_size, args.max_iter)
            correct = sum(normalise(p) in answers for p, (_, answers, _) in zip(predictions, probe))
            bits = tail_bits(model, tokenizer, [t for t, _, _ in probe], [tail for _, _, tail in probe],
                             args.batch_size)
            scores += [Score(TASK, spec.name, lang, f"{split} top-1", 100.0 * correct / len(probe), len(probe)),
                       Score(TASK, spec.name, lang, f"{split} tail bits", float(np.mean(bits)), len(probe))]
            logger.info("%s %s %s: %d/%d right, tail %.3f bits/token", spec.name, split, lang, correct, len(probe),
                        np.mean(bits))
    if skipped:
        logger.info("not probed (a label missing in the language): %s",
                    ", ".join(f"{split} {lang} {n}" for (split, lang), n in sorted(skipped.items())))
    return scores


def run(args):
    if args.max_masks < 1 or args.triples_per_split < 1 or args.max_iter < 1:
        raise UserFacingError("--max-masks, --max-iter and --triples-per-split must be at least 1")
    languages = resolve_languages(args.languages, args.tables)
    probes = probe_triples(args)
    ids = {entity for triples in probes.values() for triple in triples for entity in triple}
    names = LabelTable(args.tables, languages, ids=ids, with_aliases=True)
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, probes, names, languages, args))
    if not scores:
        raise UserFacingError("no triple could be probed in any language: check --languages and the tables")
    return report(scores, args)
