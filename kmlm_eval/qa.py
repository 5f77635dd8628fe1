"""Extractive QA on SQuAD-format JSON (XQuAD, MLQA, TyDiQA-GoldP): fine-tune on English, F1 / exact match per
language.

``kmlm-eval qa --dataset xquad --model [NAME=]HF_DIR [--model ...] --train train-v1.1.json
--test de=xquad.de.json --test zh=xquad.zh.json --output OUT``
(``--dataset mlqa`` with ``--test de=test-context-de-question-de.json``; ``--dataset tydiqa`` trains on
``tydiqa.goldp.en.train.json``)

Input: SQuAD v1.1 JSON as distributed: ``{"data": [{"title"?, "paragraphs": [{"context", "qas": [{"id",
"question", "answers": [{"answer_start", "text"}, ...]}]}]}], "version"?}``. A question may have several answers
(all count as right). A training answer whose ``answer_start`` does not point at its ``text`` in the context is
skipped (counted), as Hugging Face's SQuAD reader (used by XTREME's run_squad.py) does.
Scoring: ``f1`` and ``exact_match`` (%), each the maximum over a question's answers, with the official SQuAD v1.1
normalisation (lower case, punctuation and English articles removed, whitespace collapsed; evaluate-v1.1.py) or,
for ``--dataset mlqa``, MLQA's (mlqa_evaluation_v1.py: Unicode punctuation, the answer language's articles for en,
es, de, vi, ar, and Chinese split into characters).
Protocol (defaults): XTREME's scripts/train_qa.sh with third_party/run_squad.py: 3 epochs, lr 3e-5, 32 questions
per update, 500 warmup updates, weight decay 0.0001, 384 tokens with a 128-token stride over long contexts,
questions cut to 64 tokens, the last checkpoint (no dev selection), answers of at most 30 tokens chosen among the 20
best starts and ends (start and end logits summed), seeds 1,2,3. Unlike run_squad.py, the answer text is the
context's characters under the predicted tokens (offset mapping), not a projection of the detokenized prediction.
"""
import json
import logging
import re
import string
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kmlm_eval import batching, common, finetune
from kmlm_eval.results import Score, report
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
XTREME = ("google-research/xtreme scripts/train_qa.sh + third_party/run_squad.py (lr 3e-5, 3 epochs, batch 4 x 8, "
          "max length 384, stride 128, warmup 500, weight decay 0.0001, last checkpoint)")
MAX_QUESTION_TOKENS, N_BEST, MAX_ANSWER_TOKENS, STRIDE = 64, 20, 30, 128  # run_squad.py's defaults


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    context: str
    answers: tuple  # texts
    starts: tuple  # answer_start of each text


def add_arguments(parser, name="qa"):
    parser.add_argument("--dataset", choices=("xquad", "mlqa", "tydiqa", "squad"), default="xquad",
                        help="names the results' task; mlqa scores with MLQA's per-language normalisation")
    parser.add_argument("--train", type=Path, required=True, help="English training JSON (SQuAD v1.1 train, or the "
                                                                  "TyDiQA-GoldP English train for tydiqa)")
    parser.add_argument("--dev", type=Path, help="English dev JSON (only with --select dev)")
    parser.add_argument("--test", action="append", required=True, metavar="LANG=FILE", type=common.parse_lang_file,
                        help="test JSON of one language (repeat)")
    parser.add_argument("--doc-stride", type=int, default=STRIDE, help=f"overlap of context windows (default {STRIDE})")
    parser.add_argument("--max-query-length", type=int, default=MAX_QUESTION_TOKENS,
                        help=f"questions are cut to this many tokens (default {MAX_QUESTION_TOKENS})")
    finetune.add_training_arguments(parser, XTREME, epochs=3, lr=3e-5, batch_size=32, max_length=384, eval_steps=0,
                                    warmup_steps=500, weight_decay=0.0001, select="last")


def read_squad(path):
    """``[Question]`` of a SQuAD-format file; a malformed item names the file and its place in the JSON."""
    try:
        data = json.loads(common.read_utf8(path))
    except json.JSONDecodeError as err:
        raise common.data_error(path, err.lineno, f"not valid JSON ({err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise UserFacingError(f"{path}: expected a SQuAD JSON object with a 'data' list")
    questions = []
    for a, article in enumerate(data["data"]):
        for p, paragraph in enumerate(article.get("paragraphs", []) if isinstance(article, dict) else [None]):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("context"), str):
                raise UserFacingError(f"{where}: expected an object with a 'context' string and 'qas'")
            for q, qa in enumerate(paragraph.get("qas", [])):
                answers = qa.get("answers") if isinstance(qa, dict) else None
                if (not isinstance(answers, list) or not isinstance(qa.get("question"), str)
                        or not all(isinstance(x, dict) and isinstance(x.get("text"), str)
                                   and isinstance(x.get("answer_start"), int) for x in answers)):
                    raise UserFacingError(f"{where}.qas[{q}]: expected 'id', 'question' and 'answers' "
                                          "[{'text', 'answer_start'}]")
                questions.append(Question(str(qa.get("id", f"{a}.{p}.{q}")), qa["question"], paragraph["context"],
                                          tuple(x["text"] for x in answers), tuple(x["answer_start"] for x in answers)))
    if not questions:
        raise UserFacingError(f"{path} has no questions")
    return questions


def cut_questions(tokenizer, questions, limit):
    """Questions longer than ``limit`` tokens cut after their last allowed token (run_squad.py's max_query_length)."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [text if len(offsets) <= limit else text[:offsets[limit - 1][1]]
            for text, offsets in zip(questions, enc["offset_mapping"])]


@dataclass
class Features:
    examples: list  # model inputs (+ start/end positions for training)
    question: list  # index of the feature's question
    offsets: list  # per token (start, end) character offsets into the context, None outside the context
    max_context: list  # per token: is this window the one where the token has the most context


def features(tokenizer, questions, args, train=False):
    """Questions -> overlapping windows over their contexts (one batched tokenizer call)."""
    enc = tokenizer(cut_questions(tokenizer, [q.question for q in questions], args.max_query_length),
                    [q.context for q in questions], truncation="only_second", max_length=args.max_length,
                    stride=args.doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    owner = list(enc["overflow_to_sample_mapping"])
    offsets = [[tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], enc.sequence_ids(i))]
               for i in range(len(owner))]
    keys = [k for k in ("input_ids", "token_type_ids") if k in enc]
    examples = [{k: enc[k][i] for k in keys} for i in range(len(owner))]
    out = Features(examples, owner, offsets, max_context_flags(owner, offsets))
    if train:
        out = with_positions(out, questions)
    return out


def max_context_flags(owner, offsets):
    """run_squad's ``_check_is_max_context``: a token counts only in the window where min(left, right context)
    + 0.01 x window length is the largest."""
    best, keys = {}, []
    for feature, (question, spans) in enumerate(zip(owner, offsets)):
        positions = [j for j, o in enumerate(spans) if o is not None]
        seen, row = Counter(), {}
        for j in positions:  # a token is its (start, end) and which of the window's tokens with those offsets it is
            row[j] = (question, *spans[j], seen[spans[j]])
            seen[spans[j]] += 1
            score = min(j - positions[0], positions[-1] - j) + 0.01 * len(positions)
            if row[j] not in best or score > best[row[j]][0]:
                best[row[j]] = (score, feature)
        keys.append(row)
    return [{j for j, key in row.items() if best[key][1] == f} for f, row in enumerate(keys)]


def with_positions(feats, questions):
    """Training windows with answer token positions; a window without the answer points at token 0 (as run_squad
    for SQuAD v1.1); a question whose first answer is not where its answer_start says is dropped (counted)."""
    kept, bad = [], set()
    for f, (example, question) in enumerate(zip(feats.examples, feats.question)):
        q = questions[question]
        if not q.answers:
            bad.add(question)
            continue
        start_char = q.starts[0]
        end_char = start_char + len(q.answers[0])
        if q.context[start_char:end_char] != q.answers[0]:
            bad.add(question)
            continue
        spans = feats.offsets[f]
        inside = [j for j, o in enumerate(spans) if o is not None]
        start = next((j for j in inside if spans[j][0] <= start_char < spans[j][1]), None)
        end = next((j for j in reversed(inside) if spans[j][0] < end_char <= spans[j][1]), None)
        if start is None or end is None or end < start:
            start = end = 0
        kept.append({**example, "start_positions": start, "end_positions": end})
    if bad:
        logger.warning("skipped %d training question(s) without an answer at its answer_start", len(bad))
    return Features(kept, None, None, None)


def predictions(model, questions, feats, args, pad_id):
    """The best answer text per question (n-best starts x ends of at most 30 tokens, start + end logit)."""
    starts, ends = batching.predict(model, feats.examples, args.eval_batch_size, pad_id,
                                    heads=("start_logits", "end_logits"), per_token=True)
    best = {}
    for f, question in enumerate(feats.question):
        spans, allowed = feats.offsets[f], feats.max_context[f]
        top_starts = np.argsort(-starts[f])[:N_BEST]
        top_ends = np.argsort(-ends[f])[:N_BEST]
        for s in top_starts:
            if s not in allowed or spans[s] is None:
                continue
            for e in top_ends:
                if e < s or e - s + 1 > MAX_ANSWER_TOKENS or spans[e] is None:
                    continue
                score = float(starts[f][s] + ends[f][e])
                if question not in best or score > best[question][0]:
                    best[question] = (score, questions[question].context[spans[s][0]:spans[e][1]])
    return [best.get(i, (0.0, ""))[1] for i in range(len(questions))]


# --- scoring: SQuAD v1.1 (evaluate-v1.1.py) and MLQA (mlqa_evaluation_v1.py) normalisation ---------------------
MLQA_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")} | set(
    string.punctuation)
MLQA_ARTICLES = {"en": r"\b(a|an|the)\b", "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
                 "vi": r"\b(của|là|cái|chiếc|những)\b",
                 "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b", "ar": r"\sال^|ال",
                 "hi": None, "zh": None}


SQUAD_PUNCT = set(string.punctuation)


def normalise_squad(text, lang=None):
    text = "".join(ch for ch in text.lower() if ch not in SQUAD_PUNCT)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def mixed_segmentation(text):
    """MLQA's Chinese tokenisation: every CJK character and punctuation mark a token, the rest split on spaces."""
    tokens, pending = [], ""
    for char in text:
        if re.search(r"[\u4e00-\u9fa5]", char) or char in MLQA_PUNCT:
            tokens += pending.split() + [char]
            pending = ""
        else:
            pending += char
    return tokens + pending.split()


def normalise_mlqa(text, lang):
    if lang not in MLQA_ARTICLES:
        raise UserFacingError(f"MLQA's normalisation knows the languages {', '.join(MLQA_ARTICLES)}, not {lang!r}")
    text = "".join(ch for ch in text.lower() if ch not in MLQA_PUNCT)
    if MLQA_ARTICLES[lang]:
        text = re.sub(MLQA_ARTICLES[lang], " ", text)
    tokens = mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def f1(prediction, gold, normalise, lang):
    predicted, truth = normalise(prediction, lang).split(), normalise(gold, lang).split()
    same = sum((Counter(predicted) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction, gold, normalise, lang):
    return float(normalise(prediction, lang) == normalise(gold, lang))


def qa_scores(predicted, questions, dataset, lang):
    """-> (F1, exact match) in percent, each the max over a question's answers, averaged over questions."""
    normalise = normalise_mlqa if dataset == "mlqa" else normalise_squad
    totals = np.zeros(2)
    for text, question in zip(predicted, questions):
        golds = question.answers or ("",)
        totals += [max(f1(text, g, normalise, lang) for g in golds),
                   max(exact_match(text, g, normalise, lang) for g in golds)]
    return tuple(100.0 * totals / len(questions))


def evaluate(spec, dataset, train, dev, tests, args):
    tokenizer = common.load_tokenizer(spec.path)
    pad_id = tokenizer.pad_token_id
    train_feats = features(tokenizer, train, args, train=True)
    dev_feats = features(tokenizer, dev, args) if dev else None
    test_feats = {lang: features(tokenizer, q, args) for lang, q in tests.items()}

    def test_scores(model, seed):
        scores = []
        for lang, questions in tests.items():
            f1_value, em = qa_scores(predictions(model, questions, test_feats[lang], args, pad_id), questions,
                                     dataset, lang)
            scores += [Score(dataset, spec.name, lang, "f1", f1_value, len(questions), seed),
                       Score(dataset, spec.name, lang, "exact_match", em, len(questions), seed)]
            logger.info("%s seed %d %s F1 %.2f EM %.2f (%d questions)", spec.name, seed, lang, f1_value, em,
                        len(questions))
        return scores

    def dev_score(model):
        return qa_scores(predictions(model, dev, dev_feats, args, pad_id), dev, dataset, "en")[0]

    return finetune.run_seeds(args, lambda: common.load_model("AutoModelForQuestionAnswering", spec.path),
                              train_feats.examples, pad_id, dev_score if dev else None, test_scores)


def run(args):
    finetune.check_training_arguments(args, args.dev is not None)
    tests = {lang: read_squad(path) for lang, path in common.parse_lang_files(args.test).items()}
    if args.dataset == "mlqa":
        for lang in tests:
            normalise_mlqa("", lang)  # an unknown language is an error now, not after fine-tuning
    room = args.max_length - args.max_query_length - 4  # <s> question </s></s> context </s>
    if args.max_query_length < 1 or not 0 <= args.doc_stride < room:
        raise UserFacingError(f"--max-length {args.max_length} leaves {room} context tokens after a question of "
                              f"--max-query-length {args.max_query_length}: --doc-stride ({args.doc_stride}) must be "
                              "smaller")
    train = read_squad(args.train)
    dev = read_squad(args.dev) if args.dev else None
    scores = common.evaluate_models(args.model, lambda spec: evaluate(spec, args.dataset, train, dev, tests, args))
    return report(scores, args)
