"""``kmlm-preprocess report``: counts, distributions, samples and plots of what the pipeline made.

``kmlm-preprocess report --tables DIR [--sentences DIR] [--cycles DIR] [--reasoning DIR] [--xlr DIR] --output OUT
[--seed 1] [--top 20]``

Input (every option but ``--tables`` optional: the report covers what is given; a given directory without its
files is an error naming what is missing and the stage that makes it). Each option takes the stage's output
directory (``--sentences``, ``--cycles`` and ``--reasoning`` also its Parquet file). Every Parquet file is opened
through its format's reader (``open_...`` of the module named; preprocess/core/parquet_input.py), which checks the
columns read, their types and the ids that must not be null: a wrong one is one line naming the file.
    --tables     entities.parquet (id, kind, label_L; aliases_L and description_L where the table has them) +
                 triples.parquet (preprocess/core/formats/tables.py) + ingest_summary.json (or
                 import_triples_summary.json, where import-triples made the tables)
    --sentences  sentences.parquet (preprocess/core/formats/sentences.py) + sentences_summary.json
    --cycles     cycles.parquet + cycles_stats.json (preprocess/core/formats/cycles.py)
    --reasoning  reasoning.parquet (preprocess/core/formats/reasoning.py) + reasoning_summary.json
    --xlr        train.en.jsonl, dev.<lang>.jsonl, test.<lang>.jsonl (lang, choice_ids, label, relation, cycle_id)
                 + xlr_summary.json
Output (each file written atomically; the same inputs and ``--seed`` give byte-identical files):
    OUT/report.json  every number below, machine-readable
    OUT/report.md    the same as tables, with the plots linked
    OUT/*.png        coverage.png, relation_frequency.png, degree_distribution.png, samples_per_language.png,
                     cycles.png, relation_combinations.png, xlr_answer_positions.png (each only when its data is
                     given; one of these names left by an earlier run is removed, so no plot outlives its data)

Where each number comes from. What a stage counts, the report reads from what that stage wrote
(``<stage>_summary.json``: preprocess/core/formats/stage_summary.py); it never recounts a stage's output:
    ingest_summary.json   entities.items, .properties; triples.triples (import_triples_summary.json alike)
    cycles_stats.json     graph (nodes, edges, self-loops, degree summary and power-of-two histogram derived from
                          the degree distribution, top hubs by degree; the plot's degree and triples-per-entity
                          distributions); cycles (per kind, the flat counts as "stats", entities in cycles, top hubs
                          by cycle membership, entities at the per-entity cap; the plot's membership distributions)
    sentences_summary     samples per variant and language pair ("en-de codeswitch"), mentions per span language
                          ("en-de codeswitch mentions in de")
    reasoning_summary     samples per language and kind ("triangle samples in de")
    xlr_summary           samples per split and language ("dev de")
A summary's totals must agree with its output (rows of the Parquet file, lines of an XLR file), else the output
changed after the stage ran: an error says which stage to re-run.
The report's own analysis (no stage counts it), read from the outputs:
    entities: per language: labelled items/properties, entities with aliases, aliases, described entities, and
        triples whose head, relation and tail all have a label in that language.
    triples: relations (top N with English labels), distinct heads/tails/entities, entity and relation ids
        missing from entities.parquet.
    sentences: triple_index out of range.
    reasoning: distinct cycles rendered; relation combinations, i.e. the sorted multiset of relation ids of a
        sample's spans (the cycle's chosen triples): per kind the number of unique combinations (the paper: 29,819
        triangle / 239,966 diamond) and the top N, counted over distinct cycles (a cycle is rendered in several
        languages) with the samples alongside.
    xlr: answer positions (``label``) per file; distinct cycles and answer relations per split; samples whose
        ``choice_ids[label]`` is not ``relation`` (should be 0).
    examples: a few random rows (chosen under ``--seed``) rendered as text, each sentence ``h <mask> r <mask> t .``

This module counts (report.json and the report dict); preprocess/core/report_render.py draws the plots and writes
report.md from that dict.

Scale: tables are read column by column (nested span fields alone, never the texts), large ones in row batches,
and counted with pyarrow group-bys and numpy, so paper-sized inputs fit in memory.
"""
import argparse
import json
import logging
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.cycles import (
    CYCLES_FILE,
    CYCLES_STATS_FILE,
    TOP_HUBS,
    decode_distribution,
    is_count,
    open_cycles,
    read_cycles_stats,
)
from preprocess.core.formats.reasoning import REASONING_FILE, open_reasoning
from preprocess.core.formats.sentences import SENTENCES_FILE, VARIANTS, open_sentences
from preprocess.core.formats.spans import ROLES
from preprocess.core.formats.stage_summary import read_stage_summary, summary_path
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    TRIPLES_FILE,
    aliases_column,
    description_column,
    entities_schema,
    label_column,
    open_entities,
    open_triples,
)
from preprocess.core.io import write_text
from preprocess.core.json_input import json_objects
from preprocess.core.languages import PIVOT_LANGUAGE
from preprocess.core.report_render import KINDS, in_kind_order, render_markdown, write_plots
from preprocess.core.seeds import rng_for

logger = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
XLR_SPLITS = ("train", "dev", "test")
XLR_KEYS = ("lang", "choice_ids", "label", "relation", "cycle_id")
STAGES = ("sentences", "cycles", "reasoning", "xlr")  # the optional inputs, after --tables
PAPER_UNIQUE_COMBINATIONS = {"triangle": 29819, "diamond": 239966}
BATCH_ROWS = 1 << 20
EXAMPLES_PER_GROUP = 2
DEFAULT_TOP = 20

# The per-group counts of the stage summaries, by name (the stage that writes each is named in the module docstring).
SENTENCE_SAMPLES = rf"(?P<pair>\S+) (?P<variant>{'|'.join(VARIANTS)})"
SENTENCE_MENTIONS = rf"(?P<pair>\S+) (?P<variant>{'|'.join(VARIANTS)}) mentions in (?P<lang>\S+)"
REASONING_SAMPLES = r"(?P<kind>\S+) samples in (?P<lang>\S+)"
XLR_SAMPLES = rf"(?P<split>{'|'.join(XLR_SPLITS)}) (?P<lang>\S+)"
SAMPLES_WRITTEN = "samples written"


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def stage_summary(directory, stage):
    """The stage's summary (a clear error if missing or malformed) and its path, for the messages."""
    summary, path = read_stage_summary(directory, stage), summary_path(directory, stage)
    not_counts = [name for name, n in summary["counts"].items() if not is_count(n)]
    if not_counts:
        raise UserFacingError(f"{path}: count(s) {', '.join(map(repr, not_counts[:3]))} should be non-negative "
                              f"integers; re-run `kmlm-preprocess {stage}`")
    return summary, path


def summary_count(summary, path, name, stage):
    if name not in summary["counts"]:
        raise UserFacingError(f"{path}: no count {name!r}; re-run `kmlm-preprocess {stage}`")
    return summary["counts"][name]


def agree(path, what, counted, actual, stage):
    """A clear error when a summary's count disagrees with its output: the output changed after the stage ran."""
    if counted != actual:
        raise UserFacingError(f"{path} counts {counted:,} {what} but {actual:,} are there (the output changed "
                              f"after the stage ran, or an older version wrote the summary): "
                              f"re-run `kmlm-preprocess {stage}`")


def counts_by(counts, pattern, *fields):
    """``{field0: {field1: n}}`` (nesting as ``fields``; keys sorted) of the counts whose name matches ``pattern``
    (named groups ``fields``); zero counts are left out."""
    out = {}
    for name, n in counts.items():
        match = re.fullmatch(pattern, name)
        if match and n:
            *outer, last = (match[f] for f in fields)
            inner = out
            for key in outer:
                inner = inner.setdefault(key, {})
            inner[last] = n
    return sorted_keys(out)


def sorted_keys(nested):
    return {k: sorted_keys(v) if isinstance(v, dict) else v for k, v in sorted(nested.items())}


def total(nested):
    return sum(total(v) if isinstance(v, dict) else v for v in nested.values())


def batches(parquet, columns, desc):
    """Batches of ``columns`` of a checked Parquet input (``ParquetInput``), with a progress bar."""
    with tqdm(total=parquet.num_rows, desc=desc, unit="rows", leave=False) as progress:
        for batch in parquet.iter_batches(BATCH_ROWS, columns):
            yield batch
            progress.update(batch.num_rows)


# ---------------------------------------------------------------------------------------------------------------
# Counting


class GroupCounter:
    """Row counts per combination of key columns, accumulated over batches (pyarrow group-bys).

    Per-batch counts are merged when they hold twice the rows of the last merge (at least 4 batches' worth), so
    the merging work stays linear in the input even with millions of distinct keys.
    """

    def __init__(self, *keys):
        self.keys = list(keys)
        self.parts = []
        self.rows = 0
        self.merged_rows = 0

    def add(self, table):
        part = pa.table([table[k] for k in self.keys], names=self.keys)
        part = part.group_by(self.keys).aggregate([([], "count_all")])
        self.parts.append(part.rename_columns(self.keys + ["n"]))
        self.rows += part.num_rows
        if self.rows > max(4 * BATCH_ROWS, 2 * self.merged_rows):
            self._compact()

    def _compact(self):
        if len(self.parts) > 1:
            merged = pa.concat_tables(self.parts).group_by(self.keys).aggregate([("n", "sum")])
            self.parts = [merged.rename_columns(self.keys + ["n"])]
        self.rows = self.merged_rows = self.parts[0].num_rows if self.parts else 0

    def table(self):
        """Key columns + ``n``, by count descending, then keys ascending (a deterministic order)."""
        self._compact()
        if not self.parts:
            return pa.table({**{k: pa.array([], pa.string()) for k in self.keys}, "n": pa.array([], pa.int64())})
        order = [("n", "descending")] + [(k, "ascending") for k in self.keys]
        return self.parts[0].sort_by(order)


def inner_totals(nested):
    """``{outer: {inner: n}}`` -> ``{inner: n summed over outer}``."""
    totals = {}
    for per_outer in nested.values():
        for key, n in per_outer.items():
            totals[key] = totals.get(key, 0) + n
    return totals


def count_true(mask):
    return int(pc.sum(pc.fill_null(mask, False)).as_py() or 0)


def power_of_two_histogram(values, counts):
    """``{"0": n, "1": n, "2-3": n, "4-7": n, ...}`` of a distribution (non-negative ``values``, ascending, each
    ``counts`` times), empty buckets left out."""
    out = {}
    if np.any(values == 0):
        out["0"] = int(counts[values == 0].sum())
    positive = values > 0
    if positive.any():
        buckets = np.bincount(np.floor(np.log2(values[positive])).astype(np.int64), weights=counts[positive])
        for b, n in enumerate(buckets):
            if n:
                lo, hi = 1 << b, (1 << (b + 1)) - 1
                out[str(lo) if lo == hi else f"{lo}-{hi}"] = int(n)
    return out


def sorted_unique(values):
    """``np.unique`` for large integer arrays: numpy 2.4's is ~20x slower than one sort here (hash-based)."""
    values = np.sort(np.asarray(values))
    return values[np.concatenate([[True], values[1:] != values[:-1]])] if values.size else values


def distribution_summary(values, counts):
    """Mean, median (as ``np.median`` of the expanded values) and max of a distribution, values ascending."""
    n = int(counts.sum())
    if n == 0:
        return {"mean": None, "median": None, "max": None}
    ends = np.cumsum(counts)
    middle = values[np.searchsorted(ends, [(n - 1) // 2, n // 2], side="right")]
    return {"mean": round(float((values * counts).sum() / n), 3), "median": float(middle.mean()),
            "max": int(values[-1])}


# ---------------------------------------------------------------------------------------------------------------
# Tables: entities, triples, the entity graph


class EnglishLabels:
    """English labels of a few ids at a time (None if unknown or the table has no English columns)."""

    def __init__(self, ids, labels):
        self.ids, self.labels = ids, labels

    def __call__(self, ids):
        if self.labels is None or not ids:
            return [None] * len(ids)
        rows = pc.index_in(pa.array(ids, pa.string()), value_set=self.ids).to_pylist()
        return [None if r is None else self.labels[r].as_py() for r in rows]


def open_report_entities(tables_dir):
    """(entities.parquet checked, its languages): ``id``, ``kind``, every label column, and the aliases and
    description columns it has (the report counts those it finds)."""
    entities, languages = open_entities(tables_dir)
    optional = [column(lang) for lang in languages for column in (aliases_column, description_column)]
    return entities.require(entities_schema(languages), [c for c in optional if entities.has(c)]), languages


def tables_stage(directory):
    """The stage that made the tables in ``directory``: import-triples where its summary is there (and newer than an
    ingest summary a run before it left), else ingest (and merge, which writes ingest's summary)."""
    written = {stage: summary_path(directory, stage) for stage in ("ingest", "import-triples")}
    written = {stage: path.stat().st_mtime_ns for stage, path in written.items() if path.is_file()}
    return max(written, key=written.get) if written else "ingest"


def read_tables(tables_dir):
    """(entities ParquetInput, its languages, triples table, English labels, the counts of the stage that made the
    tables -- ingest_summary.json, or import_triples_summary.json where import-triples made them -- checked against
    the tables)."""
    entities, languages = open_report_entities(tables_dir)
    triples = open_triples(tables_dir).read()
    stage = tables_stage(entities.path.parent)
    summary, path = stage_summary(entities.path.parent, stage)
    counts = {name: summary_count(summary, path, name, stage) for name in ("items", "properties", "triples")}
    agree(path, f"entities ({counts['items']:,} items + {counts['properties']:,} properties) in {ENTITIES_FILE}",
          counts["items"] + counts["properties"], entities.num_rows, stage)
    agree(path, f"triples in {TRIPLES_FILE}", counts["triples"], triples.num_rows, stage)
    ids = entities.read(["id"]).column("id").combine_chunks()
    english = entities.read([label_column(PIVOT_LANGUAGE)]).column(0).combine_chunks() \
        if PIVOT_LANGUAGE in languages else None
    return entities, languages, triples, EnglishLabels(ids, english), counts


def entity_rows(column, ids):
    """Row in entities.parquet of each value (-1 if absent)."""
    return pc.fill_null(pc.index_in(column, value_set=ids), -1).to_numpy().astype(np.int64)


def entities_section(entities, languages, triples, labels, ingest_counts):
    kind = entities.read(["kind"]).column("kind")
    is_item = pc.equal(kind, "item")
    is_property = pc.equal(kind, "property")
    rows = [entity_rows(triples.column(c), labels.ids) for c in ("head", "relation", "tail")]
    coverage = {}
    for lang in languages:
        label = entities.read([label_column(lang)]).column(0)
        labelled = pc.fill_null(pc.greater(pc.utf8_length(label), 0), False)
        stats = {
            "items_labelled": count_true(pc.and_(labelled, is_item)),
            "properties_labelled": count_true(pc.and_(labelled, is_property)),
        }
        if entities.has(aliases_column(lang)):
            lengths = pc.fill_null(pc.list_value_length(entities.read([aliases_column(lang)]).column(0)), 0)
            stats["entities_with_aliases"] = count_true(pc.greater(lengths, 0))
            stats["items_with_aliases"] = count_true(pc.and_(pc.greater(lengths, 0), is_item))
            stats["aliases"] = int(pc.sum(lengths).as_py() or 0)
        if entities.has(description_column(lang)):
            description = entities.read([description_column(lang)]).column(0)
            stats["entities_described"] = count_true(pc.greater(pc.utf8_length(description), 0))
        stats["triples_fully_labelled"] = fully_labelled_triples(labelled.combine_chunks().to_numpy(False), rows)
        coverage[lang] = stats
    return {
        "entities": entities.num_rows,
        "items": ingest_counts["items"],
        "properties": ingest_counts["properties"],
        "languages": list(coverage),
        "coverage": coverage,
    }


def fully_labelled_triples(labelled, rows):
    """Triples whose head, relation and tail rows (-1: not in entities.parquet) are all labelled."""
    if len(labelled) == 0:
        return 0
    ok = np.ones(len(rows[0]), dtype=bool)
    for r in rows:
        ok &= (r >= 0) & labelled[np.maximum(r, 0)]
    return int(ok.sum())


def triples_section(triples, labels, top, ingest_counts):
    relation_counts = GroupCounter("relation")
    relation_counts.add(triples)
    relations = relation_counts.table()
    top_relations = relations.slice(0, top).to_pylist()
    for row, label in zip(top_relations, labels([r["relation"] for r in top_relations])):
        row.update(label=label, triples=row.pop("n"))
    heads, tails = triples.column("head"), triples.column("tail")
    entity_ids = pc.unique(pa.chunked_array(heads.chunks + tails.chunks, heads.type))
    section = {
        "triples": ingest_counts["triples"],
        "relations": relations.num_rows,
        "heads": pc.count_distinct(heads).as_py(),
        "tails": pc.count_distinct(tails).as_py(),
        "entities": len(entity_ids),
        "entities_not_in_entities_table": count_true(pc.invert(pc.is_in(entity_ids, value_set=labels.ids))),
        "relations_not_in_entities_table": count_true(
            pc.invert(pc.is_in(relations.column("relation"), value_set=labels.ids))),
        "top_relations": [{"id": r["relation"], "label": r["label"], "triples": r["triples"]} for r in top_relations],
    }
    return section, relations.column("n").to_numpy()


def labelled_hubs(hubs, labels, top, keys):
    """The first ``top`` hubs of cycles_stats.json with their English label, ``keys`` in this order."""
    hubs = hubs[:top]
    wanted = [k for k in keys if k != "label"]
    if not all(isinstance(hub, dict) and all(k in hub for k in wanted) for hub in hubs):
        raise UserFacingError(f"{CYCLES_STATS_FILE}: a hub lacks one of {', '.join(wanted)}; "
                              f"re-run `kmlm-preprocess cycles`")
    return [{k: (label if k == "label" else hub[k]) for k in keys}
            for hub, label in zip(hubs, labels([h["id"] for h in hubs]))]


def graph_section(stats, labels, top):
    """The entity graph as the cycles stage built it (cycles_stats.json): the section and its distributions."""
    graph = stats["graph"]
    degree = decode_distribution(graph["degree_entities"], f"{CYCLES_STATS_FILE} graph.degree_entities")
    triples = decode_distribution(graph["triples_entities"], f"{CYCLES_STATS_FILE} graph.triples_entities")
    section = {
        "nodes": stats["nodes"],
        "edges": stats["edges"],
        "self_loops": stats["self_loops_dropped"],
        "degree": distribution_summary(*degree),
        "degree_histogram": power_of_two_histogram(*degree),
        "top_hubs_by_degree": labelled_hubs(graph["top_hubs_by_degree"], labels, top,
                                            ("id", "label", "degree", "triples")),
    }
    return section, {"degree": degree, "triples_per_entity": triples}


# ---------------------------------------------------------------------------------------------------------------
# Spans (sentences and reasoning samples)


NULL_TEXT = "<null>"  # how a malformed sample's null span text is shown (binarize drops such a sample, counted)


def render_spans(spans):
    """``h <mask> r <mask> t .`` per sentence of a sample, sentences in order, joined by a space. A malformed sample
    is shown as it is, never an error: null spans as "", a null text as NULL_TEXT, a null sentence number last."""
    sentences = {}
    for span in spans or ():
        sentences.setdefault(span["sentence"], []).append(NULL_TEXT if span["text"] is None else span["text"])
    in_order = sorted(sentences.items(), key=lambda item: (item[0] is None, item[0] or 0))
    return " ".join(" <mask> ".join(texts) + " ." for _, texts in in_order)


def flat_span_field(spans, field):
    """(values of one span field, flattened; the row each came from)."""
    return pc.list_flatten(spans).field(field), pc.list_parent_indices(spans).to_numpy()


def relation_combinations(spans):
    """Per row: its relation ids sorted and joined by spaces (the relation multiset of the sample)."""
    roles, parents = flat_span_field(spans, "role")
    ids, _ = flat_span_field(spans, "id")
    is_relation = pc.fill_null(pc.equal(roles, "relation"), False).to_numpy(zero_copy_only=False)
    by_row = pa.table({"row": parents[is_relation], "id": ids.filter(pa.array(is_relation))})
    by_row = by_row.sort_by([("row", "ascending"), ("id", "ascending")])
    offsets = np.concatenate([[0], np.cumsum(np.bincount(by_row.column("row").to_numpy(), minlength=len(spans)))])
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), by_row.column("id").combine_chunks())
    return pc.binary_join(lists, " ")


def pick_rows(parquet, column, counts, rng_keys, seed, desc):
    """Row numbers of ``EXAMPLES_PER_GROUP`` random rows per value of ``column`` (``counts``: value -> rows).

    Ranks are drawn per value, then one more pass over the (small) column maps them to row numbers.
    """
    wanted = {}
    for value, n in sorted(counts.items()):
        k = min(EXAMPLES_PER_GROUP, n)
        wanted[value] = np.sort(rng_for(seed, "report", *rng_keys, value).choice(n, size=k, replace=False))
    seen = dict.fromkeys(wanted, 0)
    rows, start = [], 0
    for batch in batches(parquet, [column], desc):
        for value, ranks in wanted.items():
            positions = np.flatnonzero(pc.fill_null(pc.equal(batch.column(0), value), False).to_numpy(False))
            inside = ranks[(ranks >= seen[value]) & (ranks < seen[value] + len(positions))]
            rows.extend(int(start + positions[r - seen[value]]) for r in inside)
            seen[value] += len(positions)
        start += batch.num_rows
    return sorted(rows)


def span_examples(parquet, column, counts, fields, seed, stage):
    """``EXAMPLES_PER_GROUP`` random rows per value of ``column``: row number, ``fields`` and the spans as text."""
    rows = pick_rows(parquet, column, counts, [stage], seed, f"{stage} examples")
    return [{"row": row, **{f: r[f] for f in fields}, "text": render_spans(r["spans"])}
            for row, r in zip(rows, read_rows(parquet, rows, fields + ["spans"]))]


def read_rows(parquet, rows, columns):
    """The given row numbers (ascending) of a checked Parquet input as dicts, reading only the row groups that hold
    them."""
    sizes = parquet.row_group_rows()
    starts = np.concatenate([[0], np.cumsum(sizes)])
    groups = np.searchsorted(starts, rows, side="right") - 1
    out = []
    for group in np.unique(groups):
        group = int(group)
        table = pa.Table.from_batches(list(parquet.iter_batches(sizes[group], columns, row_groups=[group])))
        out += table.take(np.asarray(rows)[groups == group] - starts[group]).to_pylist()
    return out


# ---------------------------------------------------------------------------------------------------------------
# Sentences


def sentences_section(directory, num_triples, seed):
    sentences = open_sentences(directory)
    summary, summary_file = stage_summary(sentences.path.parent, "sentences")
    samples = summary_count(summary, summary_file, SAMPLES_WRITTEN, "sentences")
    agree(summary_file, f"samples written to {sentences.path.name}", samples, sentences.num_rows, "sentences")
    pairs = counts_by(summary["counts"], SENTENCE_SAMPLES, "variant", "pair")
    mentions = counts_by(summary["counts"], SENTENCE_MENTIONS, "variant", "pair", "lang")
    agree(summary_file, "samples per language pair (\"en-de codeswitch\")", total(pairs), samples, "sentences")
    agree(summary_file, "mentions per span language (\"en-de codeswitch mentions in de\")", total(mentions),
          len(ROLES) * samples, "sentences")
    out_of_range = 0
    for batch in batches(sentences, ["triple_index"], "sentences: triple_index"):
        index = batch.column("triple_index")
        out_of_range += count_true(pc.or_(pc.less(index, 0), pc.greater_equal(index, num_triples)))
    by_variant = {variant: total(n) for variant, n in pairs.items()}
    examples = span_examples(sentences, "variant", by_variant, ["variant", "lang_pair"], seed, "sentences")
    return {
        "sentences": samples,
        "by_variant": by_variant,
        "by_lang_pair": dict(sorted(inner_totals(pairs).items())),
        "by_variant_and_lang_pair": pairs,
        "mentions_by_language": mentions,
        "triple_index_out_of_range": out_of_range,
    }, examples


# ---------------------------------------------------------------------------------------------------------------
# The graph and its cycles (cycles_stats.json)


def cycles_sections(directory, labels, top):
    """(graph section, cycles section, the distributions the plots draw) from cycles_stats.json."""
    cycles = open_cycles(directory)
    stats = read_cycles_stats(cycles.path.parent)
    stats_file = cycles.path.parent / CYCLES_STATS_FILE
    agree(stats_file, f"cycles written to {cycles.path.name}", stats["cycles"], cycles.num_rows, "cycles")
    graph, data = graph_section(stats, labels, top)
    membership = stats["membership"]
    distributions = {kind: decode_distribution(dist, f"{stats_file} membership.cycles_entities.{kind}")
                     for kind, dist in membership["cycles_entities"].items()}
    kinds = [kind for kind in KINDS if kind in distributions]
    section = {
        "cycles": stats["cycles"],
        "by_kind": {kind: stats[f"{kind}s"] for kind in KINDS},
        "stats": {k: v for k, v in stats.items() if not isinstance(v, dict)},
        "entities_in_cycles": membership["entities_in_cycles"],
        "top_hubs_by_cycles": labelled_hubs(membership["top_hubs_by_cycles"], labels, top,
                                            ("id", *kinds, "cycles", "label", "degree")),
    }
    if "entities_at_cap" in membership:
        section["entities_at_cap"] = membership["entities_at_cap"]
    data["membership"] = {kind: distributions[kind] for kind in (*kinds, "all") if kind in distributions}
    return graph, section, data


# ---------------------------------------------------------------------------------------------------------------
# Reasoning samples


class CombinationCounter:
    """Samples and distinct cycles per (kind, relation combination), exact over batches in any row order.

    Combinations get integer codes (few: the paper has 270k); distinct (combination, cycle) pairs are int64 keys
    ``code << 40 | cycle_id``, deduplicated per batch and once more at the end.
    """

    CYCLE_BITS = 40

    def __init__(self):
        self.codes = {}                      # "kind\tcombination" -> code
        self.kinds, self.combinations = [], []  # per code
        self.samples = np.zeros(0, dtype=np.int64)
        self.keys = []

    def code(self, key):
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = len(self.codes)
            kind, combination = key.split("\t", 1)
            self.kinds.append(kind)
            self.combinations.append(combination)
        return code

    def add(self, kinds, cycle_ids, combinations):
        encoded = pc.binary_join_element_wise(kinds, combinations, "\t").dictionary_encode()
        local = np.array([self.code(key) for key in encoded.dictionary.to_pylist()], dtype=np.int64)
        codes = local[encoded.indices.to_numpy(zero_copy_only=False)]
        self.samples = np.pad(self.samples, (0, len(self.codes) - len(self.samples)))
        self.samples += np.bincount(codes, minlength=len(self.codes))
        cycle_ids = cycle_ids.to_numpy(zero_copy_only=False)
        if len(cycle_ids) and (cycle_ids.min() < 0 or cycle_ids.max() >> self.CYCLE_BITS):
            raise UserFacingError(f"reasoning.parquet: a cycle_id is outside 0..2^{self.CYCLE_BITS} - 1")
        self.keys.append(sorted_unique((codes << self.CYCLE_BITS) | cycle_ids))

    def result(self):
        """(table kind, combination, cycles, samples -- most cycles first; distinct cycles per kind)."""
        keys = sorted_unique(np.concatenate(self.keys)) if self.keys else np.zeros(0, dtype=np.int64)
        codes, cycle_ids = keys >> self.CYCLE_BITS, keys & ((1 << self.CYCLE_BITS) - 1)
        kinds = pa.array(self.kinds, pa.string()).dictionary_encode()
        table = pa.table({
            "kind": kinds.dictionary_decode(),
            "combination": pa.array(self.combinations, pa.string()),
            "cycles": np.bincount(codes, minlength=len(self.codes)),
            "samples": self.samples,
        }).sort_by([("cycles", "descending"), ("samples", "descending"), ("combination", "ascending")])
        kind_of_key = kinds.indices.to_numpy()[codes]
        cycles = {kind: len(sorted_unique(cycle_ids[kind_of_key == i]))
                  for i, kind in enumerate(kinds.dictionary.to_pylist())}
        return table, in_kind_order(cycles)


def reasoning_section(directory, labels, top, seed):
    reasoning = open_reasoning(directory)
    summary, summary_file = stage_summary(reasoning.path.parent, "reasoning")
    samples = summary_count(summary, summary_file, SAMPLES_WRITTEN, "reasoning")
    agree(summary_file, f"samples written to {reasoning.path.name}", samples, reasoning.num_rows, "reasoning")
    by_lang_and_kind = counts_by(summary["counts"], REASONING_SAMPLES, "lang", "kind")
    agree(summary_file, "samples per language and kind (\"triangle samples in de\")", total(by_lang_and_kind),
          samples, "reasoning")
    combinations = CombinationCounter()
    columns = ["cycle_id", "kind", "spans.role", "spans.id"]
    for batch in batches(reasoning, columns, "reasoning"):
        combinations.add(batch.column("kind"), batch.column("cycle_id"), relation_combinations(batch.column("spans")))
    by_kind = in_kind_order(inner_totals(by_lang_and_kind))
    combination_table, cycles_rendered = combinations.result()
    combination_stats, combination_counts = {}, {}
    for kind in by_kind:
        rows = combination_table.filter(pc.equal(combination_table.column("kind"), kind))
        combination_counts[kind] = rows.column("cycles").to_numpy()
        combination_stats[kind] = combination_summary(rows, labels, top, PAPER_UNIQUE_COMBINATIONS.get(kind))
    examples = span_examples(reasoning, "kind", by_kind, ["cycle_id", "kind", "lang"], seed, "reasoning")
    section = {
        "samples": samples,
        "by_kind": by_kind,
        "by_lang_and_kind": by_lang_and_kind,
        "cycles_rendered": cycles_rendered,
        "relation_combinations": combination_stats,
    }
    return section, combination_counts, examples


def combination_summary(rows, labels, top, paper):
    cycles = rows.column("cycles").to_numpy()
    top_rows_ = rows.slice(0, top).to_pylist()
    relation_ids = sorted({r for row in top_rows_ for r in row["combination"].split()})
    label_of = dict(zip(relation_ids, labels(relation_ids)))
    return {
        "unique": rows.num_rows,
        "paper_unique": paper,
        "cycles": int(cycles.sum()),
        "samples": int(pc.sum(rows.column("samples")).as_py() or 0),
        "seen_in_one_cycle": int(np.sum(cycles == 1)),
        "cycles_in_top_1_percent": int(cycles[: max(1, math.ceil(len(cycles) / 100))].sum()) if len(cycles) else 0,
        "top": [{"relations": row["combination"].split(),
                 "labels": [label_of.get(r) for r in row["combination"].split()],
                 "cycles": row["cycles"], "samples": row["samples"]} for row in top_rows_],
    }


# ---------------------------------------------------------------------------------------------------------------
# XLR


def xlr_files(directory, sizes, summary_file):
    """{split: the split's files}: every file the summary counts samples in, and any other ``<split>.*.jsonl``."""
    files = {}
    for split in XLR_SPLITS:
        named = {directory / f"{split}.{lang}.jsonl" for lang in sizes.get(split, {})}
        if split == "train":
            named.add(directory / f"train.{PIVOT_LANGUAGE}.jsonl")  # always written, even when empty
        missing = sorted(p.name for p in named if not p.is_file())
        if missing:
            raise UserFacingError(f"--xlr {directory}: missing {', '.join(missing)}, which {summary_file.name} "
                                  f"counts (run `kmlm-preprocess xlr` to make them)")
        files[split] = sorted(named | set(directory.glob(f"{split}.*.jsonl")))
    return files


def read_jsonl(path):
    """The XLR samples of a JSON Lines file; a line that is not an object with every key of a sample is an error."""
    samples = []
    with open(path, encoding="utf-8") as lines:
        for number, sample in json_objects(lines, path):
            missing = [k for k in XLR_KEYS if k not in sample]
            if missing:
                raise UserFacingError(f"{path}:{number}: missing key(s) {', '.join(missing)}")
            samples.append(sample)
    return samples


def answer_of(sample):
    label, choices = sample["label"], sample["choice_ids"]
    return choices[label] if isinstance(label, int) and 0 <= label < len(choices) else None


def xlr_section(directory, seed):
    directory = Path(directory)
    if not directory.is_dir():
        raise UserFacingError(f"--xlr {directory}: no such directory (expected the output directory of "
                              f"`kmlm-preprocess xlr`)")
    summary, summary_file = stage_summary(directory, "xlr")
    counted = counts_by(summary["counts"], XLR_SAMPLES, "split", "lang")
    sizes = {split: counted.get(split, {}) for split in XLR_SPLITS}
    positions, mismatches, cycles, answers, examples = {}, 0, {}, {}, []
    for split, paths in xlr_files(directory, sizes, summary_file).items():
        split_cycles, split_answers = set(), set()
        for path in paths:
            samples = read_jsonl(path)
            name = path.name[: -len(".jsonl")]
            lang = name.split(".", 1)[1]
            agree(summary_file, f"samples in {path.name}", sizes[split].get(lang, 0), len(samples), "xlr")
            num_choices = max([len(s["choice_ids"]) for s in samples], default=0)
            positions[name] = np.bincount([s["label"] for s in samples if answer_of(s) is not None],
                                          minlength=num_choices).tolist()
            mismatches += sum(answer_of(s) != s["relation"] for s in samples)
            split_cycles.update(s["cycle_id"] for s in samples)
            split_answers.update(s["relation"] for s in samples)
            if samples and path in example_files(paths):
                pick = int(rng_for(seed, "report", "xlr", name).integers(len(samples)))
                examples.append({"file": path.name, "line": pick + 1, "text": render_xlr(samples[pick])})
        cycles[split], answers[split] = len(split_cycles), len(split_answers)
    return {
        "samples": sizes,
        "answer_positions": positions,
        "answer_mismatches": int(mismatches),
        "distinct_cycles": cycles,
        "distinct_answer_relations": answers,
    }, examples


def example_files(paths):
    """The files of a split to show an example of: the English one and the first other language."""
    english = [p for p in paths if p.name.split(".")[1] == PIVOT_LANGUAGE]
    return english[:1] + [p for p in paths if p not in english][:1]


def render_xlr(sample):
    choices = sample.get("choices") or sample["choice_ids"]
    marked = [f"({i}) {c}{' *' if i == sample['label'] else ''}" for i, c in enumerate(choices)]
    context = " ".join(sample.get("context") or [])
    question = sample.get("question") or f"{sample.get('head')} ? {sample.get('tail')}"
    return f"{context} | {question} | {' '.join(marked)}".strip(" |")



# ---------------------------------------------------------------------------------------------------------------
# Stage


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser):
    parser.add_argument("--tables", required=True,
                        help="ingest output directory (entities.parquet, triples.parquet, ingest_summary.json)")
    parser.add_argument("--sentences", help=f"sentences output directory ({SENTENCES_FILE}, sentences_summary.json)")
    parser.add_argument("--cycles", help=f"cycles output directory ({CYCLES_FILE}, {CYCLES_STATS_FILE}); the "
                                         f"graph statistics come from it")
    parser.add_argument("--reasoning", help=f"reasoning output directory ({REASONING_FILE}, reasoning_summary.json)")
    parser.add_argument("--xlr", help="xlr output directory (train.en.jsonl, dev.<lang>.jsonl, test.<lang>.jsonl, "
                                      "xlr_summary.json)")
    parser.add_argument("--output", required=True, help=f"directory to write {REPORT_JSON}, {REPORT_MD} and *.png")
    parser.add_argument("--seed", type=int, default=1, help="seed of the example picks (default: %(default)s)")
    parser.add_argument("--top", type=positive_int, default=DEFAULT_TOP,
                        help=f"length of the top-N lists (relations, hubs, combinations; hubs: at most the "
                             f"{TOP_HUBS} that cycles_stats.json lists; default: %(default)s)")


def build_report(args):
    """(report dict, the arrays the plots need beyond it: see preprocess/core/report_render.py)."""
    entities, languages, triples, labels, ingest_counts = read_tables(args.tables)
    report = {
        "inputs": {k: (str(getattr(args, k)) if getattr(args, k) else None) for k in ("tables",) + STAGES},
        "seed": args.seed,
        "top": args.top,
        "entities": entities_section(entities, languages, triples, labels, ingest_counts),
    }
    report["triples"], relation_counts = triples_section(triples, labels, args.top, ingest_counts)
    data = {"relation_counts": relation_counts, "degree": None, "triples_per_entity": None, "membership": None,
            "combinations": {}}
    if args.cycles:
        report["graph"], cycles, graph_data = cycles_sections(args.cycles, labels, args.top)
        data.update(graph_data)
    examples = {}
    if args.sentences:
        report["sentences"], examples["knowledge sentences"] = sentences_section(
            args.sentences, triples.num_rows, args.seed)
    if args.cycles:
        report["cycles"] = cycles
    if args.reasoning:
        report["reasoning"], data["combinations"], examples["reasoning samples"] = reasoning_section(
            args.reasoning, labels, args.top, args.seed)
    if args.xlr:
        report["xlr"], examples["XLR"] = xlr_section(args.xlr, args.seed)
    report["examples"] = examples
    return report, data


def run(args):
    output = Path(args.output)
    report, data = build_report(args)
    output.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, data, output)
    report["plots"] = plots
    write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", output / REPORT_JSON)
    write_text(render_markdown(report, plots), output / REPORT_MD)
    stages = [k for k in STAGES if k in report]
    logger.info(
        "wrote %s, %s and %d plots to %s: %d entities, %d triples, %d relations%s",
        REPORT_JSON, REPORT_MD, len(plots), output, report["entities"]["entities"], report["triples"]["triples"],
        report["triples"]["relations"], "; stages: " + ", ".join(stages) if stages else "; no later stage given",
    )
    return 0
