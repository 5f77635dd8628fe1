"""X-FACTR: zero-shot multilingual factual probing of a masked LM (no fine-tuning), accuracy per language.

``kmlm-eval xfactr --model [NAME=]HF_DIR [--model ...] --prompts TREx_prompts.csv --facts FACTS_DIR
--languages en,de,... (--entities TABLES | --aliases ALIAS_DIR) --output OUT [--max-masks 5]
[--decoding independent|confidence]``

Input
    TREx_prompts.csv: a header with ``pid`` and one template column per language code (other columns, such as the
        relation name, are ignored); a template has ``[X]`` (subject) and ``[Y]`` (object) slots, e.g.
        ``[X] was born in [Y] .``. Inflection markup ``[form1;FEATS|form2;FEATS|...]`` (e.g.
        ``[né;X-Gender=MASC|née;X-Gender=FEM]``) is replaced by its FIRST form (``né``): we do not know the
        entities' grammatical features, so the default (first-listed) form is used. ``[X.Case]``/``[Y.Case]``-style
        slots are treated as ``[X]``/``[Y]``.
    FACTS_DIR/<pid>.jsonl: one fact per line, JSON with ``sub_uri`` and ``obj_uri`` (Wikidata ids) and optionally
        ``sub_label``, ``obj_label`` (English), ``predicate_id``.
    Entity names per language, one of:
        --entities TABLES: ``entities.parquet`` of ``kmlm-preprocess ingest`` (``label_<lang>``, ``aliases_<lang>``);
        --aliases DIR: X-FACTR alias files ``DIR/<lang>.txt`` with lines ``QID<TAB>name<TAB>alias...`` (the first
        name is the label used for the subject).
    Without either, English uses the facts' own ``sub_label``/``obj_label``. A fact whose subject or object has no
    name in a language is skipped for that language (counted).
Prediction: for each number of masks m = 1..--max-masks, the object slot becomes m mask tokens and is decoded
    ``independent`` (every mask takes its argmax in one pass) or ``confidence`` (X-FACTR's confidence-based
    decoding: repeatedly fill the single most confident remaining mask and re-run the model). The score of a
    candidate is the mean log-probability of its tokens (each taken when it was chosen); the best-scoring m wins
    (the smallest m on ties). The prediction is correct if its text, lower-cased and with whitespace collapsed,
    equals the object's label or one of its aliases in that language (same normalisation).
Output: accuracy (%) per language in OUT/results.{csv,md} (count = facts scored).
"""
import csv
import logging
import re
from collections import Counter
from pathlib import Path

import torch

from kmlm_eval import common
from preprocess.core.errors import UserFacingError
from preprocess.core.languages import parse_languages

logger = logging.getLogger(__name__)
TASK = "xfactr"
INFLECTION = re.compile(r"\[([^\[\]]*[;|][^\[\]]*)\]")
SLOT = re.compile(r"\[([XY])(?:\.[^\[\]]*)?\]")


def add_arguments(parser):
    parser.add_argument("--prompts", type=Path, required=True, help="X-FACTR TREx_prompts.csv")
    parser.add_argument("--facts", type=Path, required=True, help="directory of <pid>.jsonl fact files")
    parser.add_argument("--languages", required=True, help="template columns to probe, e.g. en,de,fr")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--entities", type=Path, help="ingest tables directory (entities.parquet)")
    names.add_argument("--aliases", type=Path, help="directory of X-FACTR alias files <lang>.txt")
    parser.add_argument("--max-masks", type=int, default=5, help="longest object tried, in tokens (default 5)")
    parser.add_argument("--decoding", choices=("independent", "confidence"), default="independent")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass")
    parser.add_argument("--limit", type=int, help="at most this many facts per relation (the first ones)")


def render_template(template):
    """Inflection markup -> first form; ``[X.Case]`` -> ``[X]``."""
    template = INFLECTION.sub(lambda m: m.group(1).split("|")[0].split(";")[0], template)
    return SLOT.sub(lambda m: f"[{m.group(1)}]", template)


def read_prompts(path, languages):
    """``{pid: {lang: template}}``; empty templates are left out (that relation is not probed in that language)."""
    with common.open_utf8(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in ("pid", *languages) if c not in header]
        if missing:
            raise UserFacingError(f"{path}: no column(s) {', '.join(missing)} (header: {', '.join(header)})")
        prompts = {}
        for number, row in enumerate(reader, 2):
            pid = (row["pid"] or "").strip()
            if not re.fullmatch(r"P\d+", pid):
                raise common.data_error(path, number, f"pid {pid!r} is not a Wikidata property id")
            prompts[pid] = {}
            for lang in languages:
                template = render_template((row[lang] or "").strip())
                if not template:
                    continue
                if template.count("[X]") != 1 or template.count("[Y]") != 1:
                    raise common.data_error(path, number, f"{lang} template {row[lang]!r} needs one [X] and one [Y]")
                prompts[pid][lang] = template
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


class Names:
    """Entity label (for the subject) and accepted answers (label + aliases) per language."""

    def __init__(self, languages, entities=None, aliases=None, ids=None):
        self.table, self.alias_files = None, {}
        if entities is not None:
            from preprocess.core.formats.tables import LabelTable

            self.table = LabelTable(entities, languages, ids=ids, with_aliases=True)
        elif aliases is not None:
            for lang in languages:
                self.alias_files[lang] = self._read_alias_file(Path(aliases) / f"{lang}.txt")

    @staticmethod
    def _read_alias_file(path):
        if not path.is_file():
            raise UserFacingError(f"alias file {path} does not exist")
        names = {}
        with common.open_utf8(path) as f:
            for number, line in enumerate(f, 1):
                fields = [x.strip() for x in line.rstrip("\n").split("\t")]
                if not line.strip():
                    continue
                if len(fields) < 2 or not re.fullmatch(r"Q\d+", fields[0]) or not fields[1]:
                    raise common.data_error(path, number, "expected 'QID<TAB>name[<TAB>alias...]'")
                names[fields[0]] = [x for x in fields[1:] if x]
        return names

    def all_names(self, qid, lang, fact_label):
        if self.table is not None:
            label = self.table.label(qid, lang)
            return [label] + self.table.aliases(qid, lang) if label else []
        if lang in self.alias_files:
            return self.alias_files[lang].get(qid, [])
        return [fact_label] if lang == "en" and isinstance(fact_label, str) and fact_label else []


def normalise(text):
    return " ".join(text.casefold().split())


@torch.no_grad()
def decode(model, tokenizer, sentences, decoding, keep_masks=0):
    """Fill the masks of each sentence, except its first ``keep_masks`` (they stay masks: the link masks of
    ``h <mask> r <mask> t .``); -> list of (token ids, mean log-prob) of the filled ones."""
    enc = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
    input_ids = enc["input_ids"].clone()
    attention = enc["attention_mask"]
    masks = input_ids == tokenizer.mask_token_id
    masks &= masks.cumsum(1) > keep_masks
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    chosen_logprob = torch.zeros(input_ids.shape)
    remaining = masks.clone()
    steps = 1 if decoding == "independent" else int(masks.sum(1).max().item())
    for _ in range(steps):
        logits = model(**common.model_inputs({"input_ids": input_ids, "attention_mask": attention}, model)).logits
        logprobs = logits.float().cpu().log_softmax(-1)
        logprobs[..., special] = float("-inf")
        best_logprob, best_token = logprobs.max(-1)
        if decoding == "independent":
            fill = remaining
        else:  # the single most confident remaining mask of each row
            confidence = best_logprob.masked_fill(~remaining, float("-inf"))
            position = confidence.argmax(-1)
            fill = torch.zeros_like(remaining)
            rows = remaining.any(-1)
            fill[rows, position[rows]] = True
        input_ids = torch.where(fill, best_token, input_ids)
        chosen_logprob = torch.where(fill, best_logprob, chosen_logprob)
        remaining &= ~fill
    results = []
    for row in range(len(sentences)):
        ids = input_ids[row][masks[row]].tolist()
        results.append((ids, chosen_logprob[row][masks[row]].mean().item()))
    return results


def probe_language(model, tokenizer, lang, prompts, facts, names, args, skipped):
    """-> (correct, scored) for one language."""
    queries = []  # (sentence, fact index, m)
    answers = []
    for pid, templates in prompts.items():
        if lang not in templates or pid not in facts:
            continue
        for fact in facts[pid]:
            subject = names.all_names(fact["sub_uri"], lang, fact.get("sub_label"))
            gold = names.all_names(fact["obj_uri"], lang, fact.get("obj_label"))
            if not subject or not gold:
                skipped[(lang, "no subject name" if not subject else "no object name")] += 1
                continue
            answers.append({normalise(g) for g in gold})
            for m in range(1, args.max_masks + 1):
                masks = " ".join([tokenizer.mask_token] * m)
                sentence = templates[lang].replace("[X]", subject[0]).replace("[Y]", masks)
                queries.append((sentence, len(answers) - 1, m))
    best = {}
    for start in range(0, len(queries), args.batch_size):
        chunk = queries[start:start + args.batch_size]
        for (sentence, fact, m), (ids, score) in zip(chunk, decode(model, tokenizer, [q[0] for q in chunk],
                                                                   args.decoding)):
            if fact not in best or score > best[fact][0]:
                best[fact] = (score, ids)
    correct = sum(normalise(tokenizer.decode(best[i][1], skip_special_tokens=True)) in gold
                  for i, gold in enumerate(answers))
    return correct, len(answers)


def evaluate(spec, prompts, facts, names, languages, args):
    tokenizer = common.load_tokenizer(spec.path)
    if tokenizer.mask_token is None:
        raise UserFacingError(f"{spec.path}: the tokenizer has no mask token")
    model = common.load_model("AutoModelForMaskedLM", spec.path).to(common.device()).eval()
    scores, skipped = [], Counter()
    for lang in languages:
        correct, scored = probe_language(model, tokenizer, lang, prompts, facts, names, args, skipped)
        if scored == 0:
            logger.warning("%s: no fact could be probed in %s", spec.name, lang)
            continue
        scores.append(common.Score(TASK, spec.name, lang, "accuracy", 100.0 * correct / scored, scored))
        logger.info("%s %s accuracy %.2f (%d/%d facts)", spec.name, lang, 100.0 * correct / scored, correct, scored)
    if skipped:
        logger.info("skipped facts: %s", ", ".join(f"{lang} {why}: {n}" for (lang, why), n in sorted(skipped.items())))
    return scores


def run(args):
    if args.max_masks < 1:
        raise UserFacingError("--max-masks must be at least 1")
    languages = parse_languages(args.languages)
    prompts = read_prompts(args.prompts, languages)
    facts = read_facts(args.facts, prompts, args.limit)
    fact_ids = {fact[key] for pid_facts in facts.values() for fact in pid_facts for key in ("sub_uri", "obj_uri")}
    names = Names(languages, entities=args.entities, aliases=args.aliases, ids=fact_ids)
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, prompts, facts, names, languages, args))
    if not scores:
        raise UserFacingError("no fact could be probed in any language: check --languages and the entity names")
    print(common.write_results(scores, args.output))
    return 0
