"""XLR (cross-lingual logic reasoning): multiple-choice train/dev/test sets from mined cycles, and the leakage guard.

``kmlm-preprocess xlr --input TABLES --cycles CYCLES --output OUT [--seed 1]``

Input
    TABLES/entities.parquet, TABLES/triples.parquet (preprocess/core/formats/tables.py);
    CYCLES: ``cycles.parquet`` or its directory (cycle_id int64, kind "triangle" | "diamond", nodes list<string>).
Output (all written atomically, byte-identical for the same inputs and ``--seed``)
    OUT/train.en.jsonl           English only (the paper fine-tunes on English)
    OUT/dev.<lang>.jsonl         one file per configured language (label-swapped copies of the English set;
                                 none for a language in which no sample has all its labels)
    OUT/test.<lang>.jsonl        likewise
    OUT/heldout_cycles.parquet   kind string, nodes list<string>, cycle_id int64, split string ("dev" | "test"):
                                 the cycles the ``reasoning`` stage must drop (``--exclude``)

README section (XLR)
--------------------
One sample per line, for example::

    {"id": "test-00042", "cycle_id": 1234, "kind": "triangle", "lang": "de",
     "question": "Was ist die Beziehung zwischen Paris und Frankreich?",
     "context": ["Frankreich Hauptstadt Paris.", "Paris liegt in Île-de-France."],
     "context_triples": [["Q142", "P36", "Q90"], ["Q90", "P131", "Q13917"]],
     "choices": ["Land", "Hauptstadt", "liegt in", "Kontinent", "Amtssprache", "Zeitzone"],
     "choice_ids": ["P17", "P36", "P131", "P30", "P37", "P421"], "label": 0,
     "head": "Q90", "tail": "Q142", "relation": "P17"}

- ``id``: ``<split>-<index>``, the same in every language; ``cycle_id``/``kind``: the cycle (row of cycles.parquet);
- ``question``: "What is the relation between HEAD and TAIL?" in ``lang`` (templates below; other languages
  fall back to English with a warning); ``head``/``tail``/``relation``: ids of the question triple;
- ``context``: the cycle's other triples, in cycle order, each rendered as "h r t." with ``lang`` labels;
  ``context_triples``: their ids;
- ``choices``: 6 distinct relation labels in ``lang``; ``choice_ids``: their ids; ``label``: index of the answer
  (``choice_ids[label] == relation``).

How a sample is made. Each cycle's triples are chosen with ``EdgeTriples.choose`` and ``rng_for(seed, "xlr",
cycle_id)``; every triple of the cycle is a candidate question. Choices: the answer, then the cycle's other
relations, then relations of triples that involve the head or the tail (randomly ordered, those labelled in every
configured language first), then, if still fewer than 6, relations drawn from the global relation distribution
(weighted by triple count; counted and logged). Never a choice: a relation that also links head and tail in the
graph (either direction: it would be a second right answer), a duplicate id, or an English label equal to one
already chosen.

Selection rule (balance). A random pool of cycles is read, doubled until it holds ``--pool-factor`` x (train + dev +
test) usable cycles or all cycles (the pool depends only on ``--seed`` and the cycle ids). The
splits are filled one after another — test, dev, then train — each by a greedy pass with its own counters, at most
one question per cycle and no cycle in two splits. The next sample is always the candidate with the smallest key
``(missing > m, penalty, missing, random tie-break)`` where
    missing = number of configured languages the sample cannot be rendered in (dev/test only; 0 for train),
    m       = the smallest number such that at least 3 x the split size of the still free cycles miss at most m
              languages (so dev/test prefer cycles labelled in every language, yet keep room to balance),
    penalty = times its answer is already an answer + largest appearance count among its cycle's entities
              + largest appearance count among its cycle's relations (counts over the split so far).
So answers, entities and relations spread as evenly as the pool allows (the log reports, per split, the number
of distinct answers, entities and relations and the largest count of each). Penalties only grow, so a lazy heap
finds the minimum exactly. The answer positions of a split are a shuffled ``0..5, 0..5, ...`` sequence: each
position holds the answer equally often (+-1). The default sizes are the paper's (3,000 / 1,000 / 1,050). If fewer
usable cycles exist (warning), a split asking for at most an equal share of the cycles not yet given to a split keeps
its size (smallest first: ``--dev-size 5`` stays 5 beside a huge ``--train-size``), and the others shrink by one
common factor (the defaults keep their proportions below 3,000 usable cycles).

Label swapping. dev/test in language L use the same cycles, triples, choice order and label as English, with L
labels; a sample is left out of L (counted) when an entity or relation it shows has no L label, or two of its
entities or choices have the same L label.
"""
import heapq
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.cycle_triples import EdgeTriples, cycle_edges, edge_key
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.cycles import check_cycle_rows, open_cycles
from preprocess.core.formats.heldout_cycles import HELDOUT_FILE, HELDOUT_SCHEMA
from preprocess.core.formats.stage_summary import summary_path, write_stage_summary
from preprocess.core.formats.tables import LabelTable, open_triples
from preprocess.core.io import atomic_path, write_parquet
from preprocess.core.languages import DEFAULT_LANGUAGES, PIVOT_LANGUAGE, parse_languages
from preprocess.core.seeds import rng_for

logger = logging.getLogger("kmlm-preprocess xlr")

NUM_CHOICES = 6
SPLITS_IN_SELECTION_ORDER = ("test", "dev", "train")
NO_CODES = np.array([], dtype=np.int32)
COVERAGE_SLACK = 3  # dev/test choose among at least this many times their size of best-covered cycles

QUESTION_TEMPLATES = {
    "en": "What is the relation between {head} and {tail}?",
    "vi": "Mối quan hệ giữa {head} và {tail} là gì?",
    "nl": "Wat is de relatie tussen {head} en {tail}?",
    "de": "Was ist die Beziehung zwischen {head} und {tail}?",
    "fr": "Quelle est la relation entre {head} et {tail} ?",
    "it": "Qual è la relazione tra {head} e {tail}?",
    "es": "¿Cuál es la relación entre {head} y {tail}?",
    "ja": "{head}と{tail}の関係は何ですか？",
    "ko": "{head}와(과) {tail}의 관계는 무엇입니까?",
    "zh": "{head}和{tail}之间是什么关系？",
}


def add_arguments(parser):
    parser.add_argument("--input", required=True, help="directory with entities.parquet and triples.parquet")
    parser.add_argument("--cycles", required=True, help="cycles.parquet, or the directory holding it")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--languages", type=parse_languages, default=",".join(DEFAULT_LANGUAGES),
                        help="dev/test languages, comma-separated (English is always included; default: %(default)s)")
    parser.add_argument("--train-size", type=int, default=3000, help="train samples (English; default: %(default)s)")
    parser.add_argument("--dev-size", type=int, default=1000, help="dev samples per language (default: %(default)s)")
    parser.add_argument("--test-size", type=int, default=1050, help="test samples per language (default: %(default)s)")
    parser.add_argument("--pool-factor", type=float, default=10.0,
                        help="select among this many times (train+dev+test) usable random cycles (or all there "
                             "are; default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")




def normalised(label):
    return label.strip().casefold()


# ---------------------------------------------------------------------------------------------------------------
# Reading the inputs


def pool_keys(cycle_ids, seed):
    """A uniform number in [0, 1) per cycle id (splitmix64 of id + a seeded offset), computed vectorised.

    The pool is the cycles whose key is below a fraction, so a larger fraction gives a superset of the same pool.
    """
    offset = np.uint64(rng_for(seed, "xlr-pool").integers(1 << 63))
    with np.errstate(over="ignore"):
        z = np.asarray(cycle_ids, dtype=np.int64).astype(np.uint64) + offset + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def read_cycle_pool(cycles_file, low, high, seed):
    """[(cycle_id, kind, nodes)] of the cycles (``open_cycles``) whose pool key is in [low, high) (high >= 1: all
    from low on); every row is checked."""
    cycles, first_row = [], 0
    for batch in cycles_file.iter_batches(1 << 16):
        check_cycle_rows(batch, cycles_file.path, first_row)
        first_row += batch.num_rows
        keys = pool_keys(batch.column("cycle_id").to_numpy(), seed)
        keep = (keys >= low) & ((keys < high) | (high >= 1))
        batch = batch.filter(pa.array(keep))
        for cycle_id, kind, nodes in zip(*(batch.column(c).to_pylist() for c in ("cycle_id", "kind", "nodes"))):
            cycles.append((cycle_id, kind, tuple(nodes)))
    return cycles


class Graph:
    """What choosing triples and choices needs from triples.parquet, restricted to the pool's entities.

    Relations are coded by their index in ``relation_names`` (sorted ids), so the per-question choice drawing works
    on small integer arrays.
    """

    def __init__(self, triples, cycles, labels, languages):
        self.labels = labels
        self.languages = languages
        heads, relations, tails = (triples.column(c) for c in ("head", "relation", "tail"))
        self.edges = EdgeTriples.from_table(triples.filter(self._on_pool_edges(heads, tails, cycles)))
        counts = sorted((c["values"], c["counts"]) for c in pc.value_counts(relations).to_pylist())
        self.relation_names = [r for r, _ in counts]
        # tier 0: labelled in every configured language, preferred as a distractor (it survives label swapping)
        self.relation_tier = np.array([0 if self.fully_labelled(r) else 1 for r in self.relation_names], np.int8)
        english = np.array([self.label(r, PIVOT_LANGUAGE) is not None for r in self.relation_names], dtype=bool)
        self.global_codes = np.flatnonzero(english)
        self.global_weights = np.array([n for _, n in counts], dtype=np.float64)[self.global_codes]
        self.relations_of = self._relations_by_entity(heads, relations, tails, cycles)

    @staticmethod
    def _on_pool_edges(heads, tails, cycles):
        needed = sorted({"\t".join(edge_key(u, v)) for _, kind, nodes in cycles for u, v in cycle_edges(kind, nodes)})
        first = pc.less_equal(heads, tails)
        keys = pc.binary_join_element_wise(pc.if_else(first, heads, tails), pc.if_else(first, tails, heads), "\t")
        return pc.is_in(keys, value_set=pa.array(needed, pa.string()))

    def _relations_by_entity(self, heads, relations, tails, cycles):
        """{entity: sorted int32 array of the relation codes of the triples it is head or tail of} (pool entities)."""
        entities = pa.array(sorted({n for _, _, nodes in cycles for n in nodes}), pa.string())
        codes = pc.index_in(relations, value_set=pa.array(self.relation_names, pa.string()))
        pairs = pa.concat_tables([
            pa.table({"entity": heads, "code": codes}).filter(pc.is_in(heads, value_set=entities)),
            pa.table({"entity": tails, "code": codes}).filter(pc.is_in(tails, value_set=entities)),
        ]).group_by(["entity", "code"]).aggregate([]).sort_by([("entity", "ascending"), ("code", "ascending")])
        names = pairs.column("entity").to_numpy(zero_copy_only=False)
        codes = pairs.column("code").to_numpy().astype(np.int32)
        starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]]) if len(names) else np.array([], np.int64)
        ends = np.r_[starts[1:], len(names)]
        return {names[a]: codes[a:b] for a, b in zip(starts, ends)}

    def label(self, entity_id, lang):
        return self.labels.label(entity_id, lang) or None

    def fully_labelled(self, entity_id):
        return all(self.label(entity_id, lang) for lang in self.languages)

    def associated_order(self, head, tail, rng):
        """Codes of the relations of head's and tail's triples in random order, tier 0 first."""
        codes = np.union1d(self.relations_of.get(head, NO_CODES), self.relations_of.get(tail, NO_CODES))
        return codes[np.lexsort((rng.random(len(codes)), self.relation_tier[codes]))]

    def global_order(self, rng):
        """Codes of all English-labelled relations, tier 0 first, each tier a weighted sample without replacement."""
        keys = rng.exponential(size=len(self.global_codes)) / self.global_weights  # Efraimidis-Spirakis
        return self.global_codes[np.lexsort((keys, self.relation_tier[self.global_codes]))]


# ---------------------------------------------------------------------------------------------------------------
# Candidates: one per (cycle, question triple)


@dataclass(frozen=True)
class Candidate:
    cycle_id: int
    kind: str
    nodes: tuple
    triples: tuple        # (head, relation, tail) per cycle edge, in sentence order
    question: int         # index of the question triple in ``triples``
    choice_ids: tuple     # answer first; the output order is shuffled
    languages: tuple      # configured languages (English included) the sample renders in
    global_fill: int      # choices drawn from the global relation distribution
    tiebreak: float
    answer: str = field(init=False)
    relations: tuple = field(init=False)  # distinct relations of the cycle

    def __post_init__(self):
        object.__setattr__(self, "answer", self.triples[self.question][1])
        object.__setattr__(self, "relations", tuple(dict.fromkeys(r for _, r, _ in self.triples)))


def choose_choices(graph, triples, question, rng):
    """(choice ids, answer first, and how many came from the global distribution), or (None, 0) if < 6 exist."""
    head, answer, tail = triples[question]
    ambiguous = {r for _, r, _ in graph.edges.between(head, tail)} - {answer}
    choices, seen_labels, from_global = [], set(), 0

    def add(relation):
        label = graph.label(relation, PIVOT_LANGUAGE)
        if relation in choices or relation in ambiguous or label is None or normalised(label) in seen_labels:
            return False
        choices.append(relation)
        seen_labels.add(normalised(label))
        return True

    add(answer)
    for _, relation, _ in triples:
        add(relation)
    for code in graph.associated_order(head, tail, rng):
        if len(choices) == NUM_CHOICES:
            break
        add(graph.relation_names[code])
    if len(choices) < NUM_CHOICES:
        for code in graph.global_order(rng):
            if len(choices) == NUM_CHOICES:
                break
            from_global += add(graph.relation_names[code])
    if len(choices) < NUM_CHOICES:
        return None, 0
    return tuple(choices[:NUM_CHOICES]), from_global


def distinct_labels(graph, ids, lang):
    labels = [graph.label(i, lang) for i in ids]
    return None not in labels and len({normalised(label) for label in labels}) == len(labels)


def cycle_candidates(cycle, graph, languages, seed, skipped):
    """All candidate samples of one cycle (possibly none; the reason is counted in ``skipped``)."""
    cycle_id, kind, nodes = cycle
    rng = rng_for(seed, "xlr", cycle_id)
    try:
        triples = tuple(graph.edges.choose(kind, nodes, rng))
    except KeyError:
        skipped["an edge has no triple in triples.parquet"] += 1
        return []
    relations = tuple(dict.fromkeys(r for _, r, _ in triples))
    cycle_languages = [lang for lang in languages
                       if distinct_labels(graph, nodes, lang) and all(graph.label(r, lang) for r in relations)]
    if PIVOT_LANGUAGE not in cycle_languages:
        skipped["an entity or relation has no English label, or two entities share one"] += 1
        return []
    candidates = []
    for question in range(len(triples)):
        choice_ids, global_fill = choose_choices(graph, triples, question, rng)
        tiebreak = rng.random()
        if choice_ids is None:
            continue
        sample_languages = tuple(lang for lang in cycle_languages if distinct_labels(graph, choice_ids, lang))
        candidates.append(Candidate(cycle_id, kind, nodes, triples, question, choice_ids, sample_languages,
                                    global_fill, tiebreak))
    if not candidates:
        skipped[f"fewer than {NUM_CHOICES} distinct relations for the choices"] += 1
    return candidates


# ---------------------------------------------------------------------------------------------------------------
# Balanced selection


class BalanceCounts:
    """Appearances of answers, entities and relations in the samples selected so far (one split)."""

    def __init__(self):
        # defaultdict: a lookup of an unseen key is C-fast (Counter's goes through Python); zeros never matter here
        self.answers, self.entities, self.relations = defaultdict(int), defaultdict(int), defaultdict(int)

    def cycle_penalty(self, nodes, relations):
        """The part of the penalty that all questions of a cycle share."""
        return max(self.entities[e] for e in nodes) + max(self.relations[r] for r in relations)

    def add(self, candidate):
        self.answers[candidate.answer] += 1
        for e in candidate.nodes:
            self.entities[e] += 1
        for r in candidate.relations:
            self.relations[r] += 1


def coverage_threshold(missing_by_cycle, size):
    """The fewest missing languages m such that COVERAGE_SLACK x size cycles (or all) miss at most m."""
    if not missing_by_cycle or not size:
        return 0
    ranked = sorted(missing_by_cycle.values())
    return ranked[min(len(ranked), COVERAGE_SLACK * size) - 1]


def select_balanced(candidates, size, taken_cycles, wanted_languages=()):
    """Greedy: repeatedly take the candidate with the smallest (beyond coverage threshold, penalty, missing
    languages, tie-break), at most one per cycle; ``taken_cycles`` is updated in place.

    The heap holds one entry per cycle, keyed by its best question. Penalties never decrease, so a popped entry
    whose recomputed key is unchanged is the true minimum (lazy greedy); otherwise it goes back with the new key.
    """
    wanted = set(wanted_languages)
    by_cycle = defaultdict(list)  # cycle id -> [(missing languages, tie-break, candidate index, answer)]
    for i, c in enumerate(candidates):
        if c.cycle_id not in taken_cycles:
            by_cycle[c.cycle_id].append((len(wanted - set(c.languages)), c.tiebreak, i, c.answer))
    threshold = coverage_threshold({cycle: min(q)[0] for cycle, q in by_cycle.items()}, size)
    cycles = {cycle: (candidates[q[0][2]].nodes, candidates[q[0][2]].relations,
                      [(missing > threshold, missing, tiebreak, i, answer) for missing, tiebreak, i, answer in q])
              for cycle, q in by_cycle.items()}
    counts, selected = BalanceCounts(), []
    answers = counts.answers

    def best_key(cycle):
        nodes, relations, questions = cycles[cycle]
        shared = counts.cycle_penalty(nodes, relations)
        return min((beyond, answers[answer] + shared, missing, tiebreak, i)
                   for beyond, missing, tiebreak, i, answer in questions)

    heap = [best_key(cycle) for cycle in cycles]
    heapq.heapify(heap)
    while heap and len(selected) < size:
        key = heapq.heappop(heap)
        candidate = candidates[key[-1]]
        current = best_key(candidate.cycle_id)
        if current > key:
            heapq.heappush(heap, current)
            continue
        selected.append(candidate)
        counts.add(candidate)
        taken_cycles.add(candidate.cycle_id)
    return selected


def balance_summary(selected):
    counts = BalanceCounts()
    for candidate in selected:
        counts.add(candidate)

    def most(counter):
        return max(counter.values(), default=0)

    return (f"{len(counts.answers)} distinct answers (max {most(counts.answers)} per answer), "
            f"{len(counts.entities)} entities (max {most(counts.entities)} appearances), "
            f"{len(counts.relations)} relations (max {most(counts.relations)} appearances), "
            f"{sum(c.global_fill > 0 for c in selected)} with choices from the global relation distribution")


def split_sizes(requested, usable_cycles):
    """The requested sizes or, when fewer usable cycles exist: a split asking for at most an equal share of the
    cycles still unassigned keeps its size (smallest first), and the others shrink by one common factor."""
    total = sum(requested.values())
    if total <= usable_cycles:
        return dict(requested)
    kept, left, shrinking = {}, usable_cycles, dict(requested)
    for split, size in sorted(requested.items(), key=lambda item: item[1]):
        if size * len(shrinking) > left:
            break
        kept[split], left = size, left - size
        del shrinking[split]
    factor = left / sum(shrinking.values())
    sizes = {split: kept[split] if split in kept else int(size * factor) for split, size in requested.items()}
    logger.warning("only %d usable cycles for %d requested samples: split sizes shrunk to %s", usable_cycles, total,
                   ", ".join(f"{s} {n}" for s, n in sizes.items()))
    return sizes


# ---------------------------------------------------------------------------------------------------------------
# Rendering and writing


def question_template(lang):
    return QUESTION_TEMPLATES.get(lang, QUESTION_TEMPLATES[PIVOT_LANGUAGE])


def ordered_choices(candidate, label, seed):
    """The choice ids with the answer at ``label`` and the others in a seeded random order."""
    others = list(candidate.choice_ids[1:])
    others = [others[i] for i in rng_for(seed, "xlr-choices", candidate.cycle_id).permutation(len(others))]
    return tuple(others[:label]) + (candidate.answer,) + tuple(others[label:])


def render(graph, candidate, sample_id, choice_ids, label, lang):
    def text(entity_id):
        return graph.label(entity_id, lang)

    head, relation, tail = candidate.triples[candidate.question]
    context = [t for i, t in enumerate(candidate.triples) if i != candidate.question]
    return {
        "id": sample_id,
        "cycle_id": candidate.cycle_id,
        "kind": candidate.kind,
        "lang": lang,
        "question": question_template(lang).format(head=text(head), tail=text(tail)),
        "context": [f"{text(h)} {text(r)} {text(t)}." for h, r, t in context],
        "context_triples": [list(t) for t in context],
        "choices": [text(r) for r in choice_ids],
        "choice_ids": list(choice_ids),
        "label": label,
        "head": head,
        "tail": tail,
        "relation": relation,
    }


def write_jsonl(samples, path):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for sample in samples:
                f.write(json.dumps(sample, ensure_ascii=False) + "\n")


def arrange_split(split, selected, seed):
    """[(sample id, candidate, choice ids, label)] in a seeded order, answer positions balanced over the split."""
    order = rng_for(seed, "xlr-order", split).permutation(len(selected))
    labels = rng_for(seed, "xlr-labels", split).permutation(np.arange(len(selected)) % NUM_CHOICES)
    arranged = []
    for k, (i, label) in enumerate(zip(order, labels)):
        candidate = selected[i]
        arranged.append((f"{split}-{k:05d}", candidate, ordered_choices(candidate, int(label), seed), int(label)))
    return arranged


def write_split(graph, split, arranged, languages, output):
    """Write one file per language; returns {lang: (written, left out)}.

    A language none of the split's samples renders in gets no file (a stale one from an earlier run is removed), so
    readers that take every ``<split>.<lang>.jsonl`` they find never meet an empty set; English always has its file.
    """
    written = {}
    for lang in languages:
        samples = [render(graph, c, sample_id, choice_ids, label, lang)
                   for sample_id, c, choice_ids, label in arranged if lang in c.languages]
        path = Path(output) / f"{split}.{lang}.jsonl"
        written[lang] = (len(samples), len(arranged) - len(samples))
        if samples or lang == PIVOT_LANGUAGE:
            write_jsonl(samples, path)
        else:
            why = f"no {split} sample has every label in {lang!r}" if arranged else f"the {split} split is empty"
            logger.warning("%s: %s not written", why, path.name)
            path.unlink(missing_ok=True)
    return written


def write_heldout(selections, output):
    rows = sorted((c.cycle_id, split, c.kind, list(c.nodes)) for split in ("dev", "test") for c in selections[split])
    table = pa.table({
        "kind": [r[2] for r in rows],
        "nodes": [r[3] for r in rows],
        "cycle_id": [r[0] for r in rows],
        "split": [r[1] for r in rows],
    }, schema=HELDOUT_SCHEMA)
    write_parquet(table, Path(output) / HELDOUT_FILE)
    return len(rows)


# ---------------------------------------------------------------------------------------------------------------
# The xlr stage


def build_xlr(input_dir, cycles_path, output, languages=DEFAULT_LANGUAGES, sizes=None, pool_factor=10.0, seed=1):
    """Make the XLR dataset; returns a summary dict (sizes per split and language, skip counts, pool size)."""
    sizes = dict(sizes or {"train": 3000, "dev": 1000, "test": 1050})
    if any(n < 0 for n in sizes.values()) or sum(sizes.values()) == 0:
        raise UserFacingError(f"split sizes must be >= 0 and not all 0, got {sizes}")
    if pool_factor < 1:
        raise UserFacingError(f"--pool-factor must be >= 1, got {pool_factor}")
    languages = tuple(dict.fromkeys((PIVOT_LANGUAGE,) + tuple(languages)))
    for lang in languages:
        if lang not in QUESTION_TEMPLATES:
            logger.warning("no question template for language %r: using the English one", lang)

    cycles_file = open_cycles(cycles_path)
    total_cycles = cycles_file.num_rows
    triples = open_triples(input_dir).read()
    graph, cycles, candidates, skipped = grow_pool(input_dir, cycles_file, total_cycles, triples, languages, sizes,
                                                   pool_factor, seed)
    usable = len({c.cycle_id for c in candidates})
    sizes = split_sizes(sizes, usable)

    taken, selections = set(), {}
    other_languages = tuple(lang for lang in languages if lang != PIVOT_LANGUAGE)
    for split in SPLITS_IN_SELECTION_ORDER:
        wanted = other_languages if split != "train" else ()
        selections[split] = select_balanced(candidates, sizes[split], taken, wanted)
        logger.info("%s balance: %d samples, %s", split, len(selections[split]), balance_summary(selections[split]))

    written = {}
    for split in ("train", "dev", "test"):
        arranged = arrange_split(split, selections[split], seed)
        split_languages = (PIVOT_LANGUAGE,) if split == "train" else languages
        written[split] = write_split(graph, split, arranged, split_languages, output)
        positions = Counter(label for _, _, _, label in arranged)
        logger.info("%s answer positions: %s", split, [positions[i] for i in range(NUM_CHOICES)])
    heldout = write_heldout(selections, output)

    summary = {"cycles": total_cycles, "pool": len(cycles), "usable": usable, "candidates": len(candidates),
               "skipped": dict(skipped), "written": written, "heldout": heldout, "sizes": sizes}
    log_summary(summary, output)
    counts = {"cycles": total_cycles, "cycles in the pool": len(cycles), "usable cycles": usable,
              "candidate questions": len(candidates), "held-out cycles": heldout,
              **{f"cycles skipped: {reason}": n for reason, n in skipped.items()},
              **{f"{split} {lang}": n for split, by_lang in written.items() for lang, (n, _) in by_lang.items()}}
    write_stage_summary(output, "xlr", counts, sizes=sizes)
    return summary


def grow_pool(input_dir, cycles_file, total_cycles, triples, languages, sizes, pool_factor, seed):
    """Candidates from a random pool of cycles, doubled until it holds pool_factor x (train+dev+test) usable cycles
    or all cycles. Returns (graph, pooled cycles, candidates, skip counts)."""
    need = sum(sizes.values())
    wanted = pool_factor * need
    low, high = 0.0, min(1.0, wanted / max(total_cycles, 1))
    cycles, candidates, skipped = [], [], Counter()
    relations = set(pc.unique(triples.column("relation")).to_pylist())
    while True:
        new = read_cycle_pool(cycles_file, low, high, seed)
        cycles += new
        # labels of the pool's entities and of every relation (choices come from all of them), not of all entities
        labels = LabelTable(input_dir, languages, ids=relations | {n for _, _, nodes in cycles for n in nodes})
        graph = Graph(triples, cycles, labels, languages)  # a cycle's candidates depend only on its own entities
        for cycle in tqdm(new, desc="xlr candidates", unit="cycle", mininterval=2):
            candidates.extend(cycle_candidates(cycle, graph, languages, seed, skipped))
        usable = len({c.cycle_id for c in candidates})
        if usable >= wanted or high >= 1:
            return graph, cycles, candidates, skipped
        logger.info("a pool of %d cycles holds %d usable ones (wanted: %d): doubling it", len(cycles), usable, wanted)
        low, high = high, min(1.0, 2 * high)


def log_summary(summary, output):
    def per_language(split):
        return ", ".join(f"{lang} {n}" + (f" (-{left} unlabelled)" if left else "")
                         for lang, (n, left) in summary["written"][split].items())

    skipped = "; ".join(f"{n} {reason}" for reason, n in sorted(summary["skipped"].items())) or "none"
    logger.info(
        "xlr: wrote %s: train %s | dev %s | test %s | %d held-out cycles in %s; from %d of %d cycles "
        "(%d usable, %d candidate questions); cycles skipped: %s",
        output, per_language("train"), per_language("dev"), per_language("test"), summary["heldout"], HELDOUT_FILE,
        summary["pool"], summary["cycles"], summary["usable"], summary["candidates"], skipped)


def run(args):
    summary_path(args.output, "xlr").unlink(missing_ok=True)
    build_xlr(args.input, args.cycles, args.output, languages=args.languages,
              sizes={"train": args.train_size, "dev": args.dev_size, "test": args.test_size},
              pool_factor=args.pool_factor, seed=args.seed)
    return 0




# ---------------------------------------------------------------------------------------------------------------
# The leakage guard


