"""X-FACTR: zero-shot multilingual factual probing of a masked LM, scored as X-FACTR scores it.

``kmlm-eval xfactr --model [NAME=]HF_DIR [--model ...] --prompts TREx_prompts.csv --facts mTRExf/sub
--languages en,fr,nl --aliases alias/mTRExf --multi-answers mTRExf_multi_rel.txt (--entities TABLES | --labels
mTRExf_unicode_escape.txt) --output OUT [--decoding independent|confidence] [--scoring xfactr|lenient]``

Sources: jzbjyb/X-FACTR scripts/probe.py (commit 43d1b55: queries, decoding), scripts/ana.py (commit 8ae5528:
``multi_eval`` scoring), scripts/prompt.py and scripts/entity_lang.py (alias and multi-answer files), README
(the two decoding commands).

Input
    TREx_prompts.csv: ``pid`` and one template column per language with ``[X]`` (subject) and ``[Y]`` (object).
        X-FACTR fills article and preposition slots (``[ARTDEF;X]``, ``[PREPLOC;Y]``, ...) and gender/number
        agreement (``[né;X-Gender=MASC|née;X-Gender=FEM]``) from per-entity gender and instance-of files, and
        inflects case slots (``[Y.Acc]``) with unimorph; those files are not available here, so templates are
        rendered as X-FACTR's ``--disable_article --disable_inflection``: article slots removed, agreement markup
        -> its first form, case slots -> the bare name. Exact for templates without markup (en, nl, zh, vi, ko, ja
        in the real file); an approximation for fr, es, el, ru, he, tr, ... (logged).
    FACTS_DIR/<pid>.jsonl: X-FACTR facts (``sub_uri``, ``obj_uri``, English ``sub_label``/``obj_label``).
    Entity labels per language (the names put in the prompt and the object's main answer), one of:
        --entities TABLES: ``entities.parquet`` of ``kmlm-preprocess ingest`` (``label_<lang>``, ``aliases_<lang>``);
        --labels FILE: X-FACTR's ``mTRExf_unicode_escape.txt`` (``QID<TAB>"label"@lang<TAB>...``);
        without either, English only, from the facts' own labels.
    --aliases DIR: X-FACTR alias files ``DIR/<lang>.txt`` (``QID<TAB>name<TAB>name...``, a SORTED set of the
        entity's names: the first one is not its label) -- used only to accept answers, never to name a subject.
    --multi-answers FILE: ``mTRExf_multi_rel.txt`` (``subject<TAB>pid<TAB>obj obj ...``): the names of every valid
        object of the subject's relation are accepted too.
Queries (probe.py ``get_queries``, portion ``trans``): a fact is probed in a language when both its subject and
    its object have a label in that language and neither label has the tokenizer's unknown token (skips counted).
Decoding (probe.py ``iter_decode_beam_search``, beam 1, no vocabulary restriction): for m = 1..--max-masks (5)
    the object slot becomes m mask tokens;
    ``independent`` (README's default: --init_method all --iter_method none --max_iter 1): every mask takes its
        argmax in one pass;
    ``confidence`` (README: --init_method confidence --iter_method confidence --max_iter 10): each pass fills the
        single most confident mask; once none is left, the least confident filled token is masked again and
        re-predicted; a row stops changing when the re-prediction is the same token; at most --max-iter passes.
    A candidate's score is the SUM of its tokens' log-probabilities (ana.py without --norm; --length-norm: their
    mean); the best m wins (the smallest on ties).
Scoring (ana.py ``LamaPredictions.match_with_gold``): the golds are the object's label, its alias-file names and the
    alias-file names of every object in --multi-answers for (subject, relation); each is tokenized and turned back
    into a string (``convert_tokens_to_string``), lower-cased (and for Greek unstressed); the prediction is right
    when it equals one of them (in English, also when the template ends in ``[Y] .`` and a gold ending with ``.``
    equals the prediction plus that period). ``--scoring lenient`` (ours): the decoded prediction, case-folded
    with whitespace collapsed, equals a name of the object (label and aliases) alike normalised.
Output: per language the mean over relations of the per-relation accuracy (%) (ana.py's "overall acc": a relation
    with a template and facts but no probed fact counts 0 there, as ana.py counts its empty prediction file), with
    count = facts probed; per relation in OUT/relations.csv and OUT/relations.md.

Functions for other evaluations: ``fill_masks`` (decode masked sentences) and ``probe_clozes`` (one prediction per
cloze with a ``[Y]`` slot, over 1..max_masks masks) implement the decoding above; ``matches`` the matching.
"""
import csv
import io
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from kmlm_eval import batching, common
from kmlm_eval.results import Score, report
from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.core.languages import parse_languages

logger = logging.getLogger(__name__)
TASK = "xfactr"
AGREEMENT = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")  # [né;X-Gender=MASC|née;X-Gender=FEM]
ARTICLE = re.compile(r"\[[^\[\]|]*;[^\[\]|]*\]")  # [ARTDEF;Y], [PREPLOC;Y], [DEF;X], [ART;Y-Gender]
SLOT = re.compile(r"\[([XY])(?:\.[^\[\]]*)?\]")  # [X], [Y.Acc]
GREEK_UNSTRESS = str.maketrans("άόίέύώή", "αοιευωη")


def add_arguments(parser, name=TASK):
    parser.add_argument("--prompts", type=Path, required=True, help="X-FACTR TREx_prompts.csv")
    parser.add_argument("--facts", type=Path, required=True, help="directory of <pid>.jsonl fact files")
    parser.add_argument("--languages", required=True, help="template columns to probe, e.g. en,fr,nl")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--entities", type=Path, help="ingest tables directory (entities.parquet): labels + aliases")
    labels.add_argument("--labels", type=Path, help="X-FACTR's mTRExf_unicode_escape.txt (labels per language)")
    parser.add_argument("--aliases", type=Path, help="directory of X-FACTR alias files <lang>.txt (answers only)")
    parser.add_argument("--multi-answers", type=Path, help="X-FACTR mTRExf_multi_rel.txt (every valid object)")
    parser.add_argument("--max-masks", type=int, default=5, help="longest object tried, in tokens (default 5)")
    parser.add_argument("--decoding", choices=("independent", "confidence"), default="independent",
                        help="X-FACTR's default decoding, or its confidence-based one (default independent)")
    parser.add_argument("--max-iter", type=int, default=10, help="passes of confidence decoding (default 10)")
    parser.add_argument("--length-norm", action="store_true",
                        help="rank the numbers of masks by the MEAN token log-probability (ana.py --norm)")
    parser.add_argument("--scoring", choices=("xfactr", "lenient"), default="xfactr",
                        help="X-FACTR's matching (default), or ours: normalised text equal to a name")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass (default 64)")
    parser.add_argument("--limit", type=int, help="at most this many facts per relation (the first ones)")


# --- templates ------------------------------------------------------------------------------------------------
def render_template(template):
    """X-FACTR's template with ``--disable_article --disable_inflection`` and unknown gender: agreement markup ->
    first form, article slots removed, ``[X.Case]`` -> ``[X]``; whitespace collapsed."""
    template = AGREEMENT.sub(lambda m: m.group(1).split("|")[0].split(";")[0], template)
    template = SLOT.sub(lambda m: f"[{m.group(1)}]", template)
    template = ARTICLE.sub("", template)
    return " ".join(template.split())


def read_prompts(path, languages):
    """``{pid: {lang: template}}``; empty templates are left out (that relation is not probed in that language)."""
    with common.open_utf8(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("pid", *languages) if c not in header]
        if missing:
            raise UserFacingError(f"{path}: no column(s) {', '.join(missing)} (header: {', '.join(header)})")
        prompts, approximated = {}, Counter()
        for number, row in enumerate(reader, 2):
            pid = (row["pid"] or "").strip()
            if not re.fullmatch(r"P\d+", pid):
                raise common.data_error(path, number, f"pid {pid!r} is not a Wikidata property id")
            prompts[pid] = {}
            for lang in languages:
                raw = (row[lang] or "").strip()
                template = render_template(raw)
                if not template:
                    continue
                if template.count("[X]") != 1 or template.count("[Y]") != 1:
                    raise common.data_error(path, number, f"{lang} template {raw!r} needs one [X] and one [Y]")
                approximated[lang] += "[" in re.sub(r"\[[XY]\]", "", raw)
                prompts[pid][lang] = template
    for lang, n in sorted(approximated.items()):
        if n:
            logger.warning("%s: %d template(s) have article, agreement or case markup, rendered without the entities' "
                           "gender (X-FACTR's --disable_article --disable_inflection)", lang, n)
    return prompts


def read_facts(directory, pids, limit):
    facts = {}
    for pid in pids:
        path = Path(directory) / f"{pid}.jsonl"
        if not path.is_file():
            logger.warning("no facts for %s (%s missing)", pid, path)
            continue
        facts[pid] = []
        for number, obj in common.read_jsonl(path):
            if not all(isinstance(obj.get(k), str) for k in ("sub_uri", "obj_uri")):
                raise common.data_error(path, number, "a fact needs string fields sub_uri and obj_uri")
            facts[pid].append(obj)
            if limit and len(facts[pid]) >= limit:
                break
    if not facts:
        raise UserFacingError(f"no fact files <pid>.jsonl in {directory} for the prompts' relations")
    return facts


# --- entity names ---------------------------------------------------------------------------------------------
def read_label_file(path, languages):
    """X-FACTR's ``QID<TAB>"label"@lang<TAB>...`` (probe.py ``load_entity_lang``) -> ``{lang: {qid: label}}``."""
    labels = {lang: {} for lang in languages}
    with common.open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if not re.fullmatch(r"Q\d+", fields[0]):
                raise common.data_error(path, number, "expected 'QID<TAB>\"label\"@lang...'")
            for item in fields[1:]:
                label, at, lang = item.rpartition("@")
                if not at:
                    raise common.data_error(path, number, f"{item!r} is not \"label\"@lang")
                if lang in labels:
                    labels[lang][fields[0]] = label.strip('"')
    return labels


def read_alias_file(path):
    """X-FACTR alias file -> ``{qid: [names]}`` (entity_lang.py ``Alias``: the names of repeated lines add up)."""
    if not path.is_file():
        raise UserFacingError(f"alias file {path} does not exist")
    names = defaultdict(list)
    with common.open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [x.strip() for x in line.rstrip("\n").split("\t")]
            if not re.fullmatch(r"Q\d+", fields[0]):
                raise common.data_error(path, number, "expected 'QID<TAB>name[<TAB>name...]'")
            names[fields[0]] += [x for x in fields[1:] if x]
    return names


def read_multi_answers(path):
    """``mTRExf_multi_rel.txt`` -> ``{(subject, pid): [objects]}``."""
    answers = {}
    with common.open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or not re.fullmatch(r"Q\d+", fields[0]) or not re.fullmatch(r"P\d+", fields[1]):
                raise common.data_error(path, number, "expected 'QID<TAB>PID<TAB>QID QID ...'")
            answers[(fields[0], fields[1])] = fields[2].split()
    return answers


class Names:
    """Labels (subject names, main answers) and answer names (aliases) per language."""

    def __init__(self, languages, entities=None, labels=None, aliases=None, ids=None):
        self.table = self.labels = None
        if entities is not None:
            from preprocess.core.formats.tables import LabelTable

            self.table = LabelTable(entities, languages, ids=ids, with_aliases=True)
        elif labels is not None:
            self.labels = read_label_file(labels, languages)
        self.alias_files = {lang: read_alias_file(Path(aliases) / f"{lang}.txt") for lang in languages} if aliases \
            else {}

    def has_labels(self, lang):
        return self.table is not None or self.labels is not None or lang == "en"

    def label(self, qid, lang, fact_label):
        """The entity's label in ``lang`` (None if it has none): never taken from an alias file."""
        if self.table is not None:
            return self.table.label(qid, lang)
        if self.labels is not None:
            return self.labels[lang].get(qid)
        return fact_label if lang == "en" and isinstance(fact_label, str) and fact_label else None

    def answer_names(self, qid, lang):
        """Names accepted as answers besides the label: the alias file's, else the table's label and aliases."""
        if lang in self.alias_files:
            return self.alias_files[lang].get(qid, [])
        if self.table is not None:
            label = self.table.label(qid, lang)
            return ([label] if label else []) + self.table.aliases(qid, lang)
        return []


# --- decoding -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filled:
    """The tokens a decoding put at a sentence's mask positions, and each one's log-probability when chosen."""
    ids: list
    logprobs: list


@torch.inference_mode()
def decode_batch(model, input_ids, attention_mask, mask_id, decoding, max_iter, keep_masks=0):
    """probe.py ``iter_decode_beam_search`` with beam 1 -> (filled ids, chosen log-probabilities, positions filled),
    (B, L) each. The first ``keep_masks`` masks of each row stay masks, never predicted (fact recall's link masks of
    ``h <mask> r <mask> t .``); X-FACTR's own queries keep none."""
    tokens = input_ids.clone()
    masks = tokens == mask_id
    masks &= masks.cumsum(1) > keep_masks
    logprob = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    passes = 1 if decoding == "independent" else max_iter
    for step in range(passes):
        inputs = tokens.clone()
        if step > 0:  # rows without a mask left: mask their least confident filled token again
            done = ~((inputs == mask_id) & masks).any(1)
            worst = logprob.masked_fill(~masks, float("inf")).argmin(1)
            inputs[done, worst[done]] = mask_id
        current = (inputs == mask_id) & masks
        logits = model(input_ids=inputs, attention_mask=attention_mask).logits
        best_logprob, best = logits.float().log_softmax(-1).max(-1)
        if decoding == "independent":
            change = current
        else:  # the single most confident masked position of each row
            position = best_logprob.masked_fill(~current, float("-inf")).argmax(1)
            change = torch.zeros_like(current)
            change[torch.arange(len(tokens)), position] = True
            change &= current
        change &= best != tokens  # probe.py changes only tokens that differ
        if not change.any():
            break
        tokens = torch.where(change, best, tokens)
        logprob = torch.where(change, best_logprob, logprob)
    return tokens, logprob, masks


def fill_masks(model, tokenizer, sentences, decoding="independent", max_iter=10, batch_size=64, keep_masks=0):
    """Fill the mask tokens of each sentence but its first ``keep_masks``; -> ``[Filled]`` in sentence order (one
    tokenizer call; batches of similar length)."""
    examples = batching.encode(tokenizer, sentences, truncation=True)
    device = next(model.parameters()).device
    model.eval()
    out = [None] * len(sentences)
    for indices in tqdm(batching.length_sorted_batches(examples, batch_size), desc="probing", unit="batch",
                        leave=False, disable=len(examples) <= batch_size):
        batch = batching.to_device(batching.collate([examples[i] for i in indices], tokenizer.pad_token_id), device)
        tokens, logprob, masks = decode_batch(model, batch["input_ids"], batch["attention_mask"],
                                              tokenizer.mask_token_id, decoding, max_iter, keep_masks)
        for row, index in enumerate(indices):
            out[index] = Filled(tokens[row][masks[row]].tolist(), logprob[row][masks[row]].tolist())
    return out


@dataclass(frozen=True)
class Prediction:
    ids: list  # the best candidate's tokens
    num_masks: int
    score: float
    candidates: list  # Filled per number of masks 1..max_masks


def probe_clozes(model, tokenizer, clozes, max_masks=5, decoding="independent", max_iter=10, length_norm=False,
                 batch_size=64, slot="[Y]", keep_masks=0):
    """One Prediction per cloze (a sentence with ``slot``): the slot becomes 1..max_masks masks, each decoded; the
    candidate with the highest summed (``length_norm``: mean) log-probability wins, the fewest masks on ties.
    ``keep_masks``: masks of the cloze itself before the slot that stay masks (``decode_batch``)."""
    sentences = [cloze.replace(slot, " ".join([tokenizer.mask_token] * m))
                 for cloze in clozes for m in range(1, max_masks + 1)]
    filled = fill_masks(model, tokenizer, sentences, decoding, max_iter, batch_size, keep_masks)
    predictions = []
    for i in range(len(clozes)):
        candidates = filled[i * max_masks:(i + 1) * max_masks]
        scores = [np.mean(c.logprobs) if length_norm else np.sum(c.logprobs) for c in candidates]
        best = int(np.argmax(scores))
        predictions.append(Prediction(candidates[best].ids, best + 1, float(scores[best]), candidates))
    return predictions


# --- scoring --------------------------------------------------------------------------------------------------
def y_followed_by_period(template):
    """ana.py ``is_y_followed_by_at_end(prompt, '.')``, with its ``re.match`` (anchored at the start)."""
    return template.endswith(".") and re.match(r"\[.*Y.*\]$", template[:-1].rstrip()) is not None


def normalise(text):
    return " ".join(text.casefold().split())


def xfactr_text(tokenizer, tokens, lang):
    """ana.py's comparison form: tokens joined back into a string, lower-cased, Greek unstressed."""
    text = tokenizer.convert_tokens_to_string(tokens).lower()
    return text.translate(GREEK_UNSTRESS) if lang == "el" else text


def gold_texts(tokenizer, names, lang, scoring):
    """``{name: comparison form}`` of many names in ONE batched tokenizer call."""
    names = list(dict.fromkeys(names))
    if scoring == "lenient":
        return {name: normalise(name) for name in names}
    enc = tokenizer(names, add_special_tokens=False) if names else None
    return {name: xfactr_text(tokenizer, enc.tokens(i), lang) for i, name in enumerate(names)}


def predicted_text(tokenizer, ids, lang, scoring):
    if scoring == "lenient":
        return normalise(tokenizer.decode(ids, skip_special_tokens=True))
    return xfactr_text(tokenizer, tokenizer.convert_ids_to_tokens(ids), lang)


def is_right(predicted, golds, period=False):
    """ana.py ``match_with_gold``: equal to a gold, or (English, template ending in ``[Y] .``) to a gold ending in
    ``.`` without that period."""
    return any(predicted == gold or (period and gold.endswith(".") and predicted.rstrip() == gold[:-1].rstrip())
               for gold in golds)


def matches(tokenizer, ids, names, lang, template="", scoring="xfactr"):
    """Is the prediction ``ids`` one of ``names`` under the scoring rule? (one call; see is_right for batches)"""
    golds = gold_texts(tokenizer, names, lang, scoring).values()
    period = scoring == "xfactr" and lang == "en" and y_followed_by_period(template)
    return is_right(predicted_text(tokenizer, ids, lang, scoring), golds, period)


def gold_names(fact, pid, lang, label, names, multi):
    """ana.py's golds: the object's label, its answer names, and those of every object in the multi-answer file."""
    golds = [label] + names.answer_names(fact["obj_uri"], lang)
    for obj in multi.get((fact["sub_uri"], pid), []):
        golds += names.answer_names(obj, lang)
    return list(dict.fromkeys(golds))


def queries(lang, prompts, facts, names, multi, tokenizer, skipped):
    """``[(pid, cloze, names of the golds)]`` of the facts probed in ``lang`` (probe.py ``get_queries``)."""
    labelled = []
    for pid, templates in prompts.items():
        if lang not in templates or pid not in facts:
            continue
        for fact in facts[pid]:
            subject = names.label(fact["sub_uri"], lang, fact.get("sub_label"))
            obj = names.label(fact["obj_uri"], lang, fact.get("obj_label"))
            if not subject or not obj:
                skipped[(lang, "no label in the language (subject or object)")] += 1
                continue
            labelled.append((pid, fact, subject, obj))
    unique = list(dict.fromkeys(label for _, _, subject, obj in labelled for label in (subject, obj)))
    with_unk = {label for label, ids in zip(unique, tokenizer(unique, add_special_tokens=False)["input_ids"] if unique
                                            else []) if tokenizer.unk_token_id in ids}
    found = []
    for pid, fact, subject, obj in labelled:
        if subject in with_unk or obj in with_unk:
            skipped[(lang, "unknown token in the subject or object label")] += 1
            continue
        found.append((pid, prompts[pid][lang].replace("[X]", subject), gold_names(fact, pid, lang, obj, names, multi)))
    return found


def probe_language(model, tokenizer, lang, prompts, facts, names, multi, args, skipped):
    """-> ``{pid: (correct, probed)}`` for every relation with a template and facts in ``lang``."""
    found = queries(lang, prompts, facts, names, multi, tokenizer, skipped)
    predictions = probe_clozes(model, tokenizer, [cloze for _, cloze, _ in found], args.max_masks, args.decoding,
                               args.max_iter, args.length_norm, args.batch_size)
    texts = gold_texts(tokenizer, [name for _, _, golds in found for name in golds], lang, args.scoring)
    per_relation = {pid: [0, 0] for pid, templates in prompts.items() if lang in templates and pid in facts}
    for (pid, _, golds), prediction in zip(found, predictions):
        period = args.scoring == "xfactr" and lang == "en" and y_followed_by_period(prompts[pid][lang])
        right = is_right(predicted_text(tokenizer, prediction.ids, lang, args.scoring), [texts[g] for g in golds],
                         period)
        per_relation[pid][0] += int(right)
        per_relation[pid][1] += 1
    return {pid: tuple(v) for pid, v in per_relation.items()}


def write_relations(rows, outdir):
    """OUT/relations.csv (model, lang, relation, accuracy, correct, facts) and OUT/relations.md."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("model", "lang", "relation", "accuracy", "correct", "facts"))
    writer.writerows(rows)
    write_text(buffer.getvalue(), Path(outdir) / "relations.csv")
    lines = []
    for model in dict.fromkeys(r[0] for r in rows):
        langs = list(dict.fromkeys(r[1] for r in rows if r[0] == model))
        value = {(r[1], r[2]): r for r in rows if r[0] == model}
        lines += [f"### xfactr accuracy per relation: {model}", "", "| relation | " + " | ".join(langs) + " |",
                  "|---|" + "---:|" * len(langs)]
        for pid in dict.fromkeys(r[2] for r in rows if r[0] == model):
            lines.append(f"| {pid} | " + " | ".join(
                f"{value[(lang, pid)][3]} ({value[(lang, pid)][5]})" if (lang, pid) in value else "–"
                for lang in langs) + " |")
        lines.append("")
    write_text("\n".join(lines), Path(outdir) / "relations.md")


def evaluate(spec, prompts, facts, names, multi, languages, args, relation_rows):
    tokenizer = common.load_tokenizer(spec.path)
    if tokenizer.mask_token is None:
        raise UserFacingError(f"{spec.path}: the tokenizer has no mask token")
    model = common.load_model("AutoModelForMaskedLM", spec.path).to(common.device()).eval()
    scores, skipped = [], Counter()
    for lang in languages:
        per_relation = probe_language(model, tokenizer, lang, prompts, facts, names, multi, args, skipped)
        probed = sum(n for _, n in per_relation.values())
        if not probed:
            logger.warning("%s: no fact could be probed in %s", spec.name, lang)
            continue
        accuracy = 100.0 * float(np.mean([c / n if n else 0.0 for c, n in per_relation.values()]))
        empty = sum(n == 0 for _, n in per_relation.values())
        if empty:
            logger.warning("%s %s: %d relation(s) without a probed fact count 0 in the mean (as X-FACTR's ana.py)",
                           spec.name, lang, empty)
        relation_rows += [(spec.name, lang, pid, f"{100.0 * c / n if n else 0.0:.2f}", c, n)
                          for pid, (c, n) in per_relation.items()]
        scores.append(Score(TASK, spec.name, lang, "accuracy", accuracy, probed))
        logger.info("%s %s accuracy %.2f (mean over %d relations; %d facts)", spec.name, lang, accuracy,
                    len(per_relation), probed)
    if skipped:
        logger.info("skipped facts: %s", ", ".join(f"{lang} {why}: {n}" for (lang, why), n in sorted(skipped.items())))
    return scores


def run(args):
    if args.max_masks < 1 or args.max_iter < 1:
        raise UserFacingError("--max-masks and --max-iter must be at least 1")
    languages = parse_languages(args.languages)
    names_needed = [lang for lang in languages if lang != "en"]
    if names_needed and args.entities is None and args.labels is None:
        raise UserFacingError(f"no labels for {', '.join(names_needed)}: give --entities TABLES or --labels FILE "
                              "(alias files list names in sorted order and are used only to accept answers)")
    prompts = read_prompts(args.prompts, languages)
    facts = read_facts(args.facts, prompts, args.limit)
    multi = read_multi_answers(args.multi_answers) if args.multi_answers else {}
    fact_ids = {f[k] for pid_facts in facts.values() for f in pid_facts for k in ("sub_uri", "obj_uri")}
    fact_ids |= {obj for objects in multi.values() for obj in objects}
    names = Names(languages, entities=args.entities, labels=args.labels, aliases=args.aliases, ids=fact_ids)
    relation_rows = []
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, prompts, facts, names, multi, languages,
                                                                      args, relation_rows))
    if not scores:
        raise UserFacingError("no fact could be probed in any language: check --languages and the entity labels")
    write_relations(relation_rows, args.output)
    return report(scores, args)
