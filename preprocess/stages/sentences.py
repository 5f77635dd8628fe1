"""``kmlm-preprocess sentences``: Wikidata triples -> code-switched and alias-replaced knowledge sentences.

Input (``--input``, made by ``ingest``; schema in ``preprocess.core.formats.tables``): ``entities.parquet`` +
``triples.parquet``.
Output: ``--output/sentences.parquet``, one row per sample:
  ``spans``         list<struct<text, role, id, sentence, lang>>: head, relation, tail in this order, sentence 0
  ``triple_index``  int64, the triple's row in triples.parquet
  ``variant``       "codeswitch" | "alias"
  ``lang_pair``     "en-L"
Rows are ordered by language pair (in ``--languages`` order), triple_index, variant (code-switched first), then
variant number. The rendering ``h <mask> r <mask> t .`` is left to binarization.

Rules (KMLM, docs/design.md §1; every rule's source: docs/recipe.md), for each kept triple (h, r, t) and each
non-English language L of --languages:
- code-switched (``--variants-per-language`` samples): start from the English labels; each of h, r, t independently
  draws L with p = 0.5 and switches to its L label. An item that draws L but has no L label: ``--missing-label
  english`` (the default, the paper's rule as docs/design.md §1 reads it: "replace by its default label in l' (if
  it has one)") keeps its English label; ``--missing-label drop`` (the official wikidata_tool/dump_by_id.py: a
  KeyError skips the triple's lines) drops the sample, counted "codeswitch: dropped, an item has no label in its
  drawn language".
- alias-replaced (``--alias-variants-per-language`` samples): each item is in L or English as drawn for the
  code-switched sample of the same number (``--alias-draw codeswitch``, the default, as the official code, which
  takes both lines' languages from one draw; with ``--missing-label drop`` the alias sample goes with its dropped
  code-switched sample, counted "alias: dropped with its code-switched sample, ..."), or as drawn anew, p = 0.5 per
  item (``--alias-draw independent``, the rule before this option). ``--alias-missing drop`` (the default, as the
  official code): each item takes a uniformly random alias in its language; a sample where some item has no alias
  in its language is not written (counted "alias: dropped, ..."): it would only repeat labels, and the official
  code writes no alias line then. ``--alias-missing label`` (the rule before issue 14): an item is in L only when
  it drew L and has a label or an alias in L, and an item without an alias in its language takes its label there;
  no sample is dropped. First-half rule (on by default, as the official code): an item with n > 2 aliases draws
  only among the first int(n/2)+1 (Wikidata lists the common aliases first).
- A sample may come out all English (p = 1/8 when all three items have L labels): it is kept, it is what the rule
  draws. A (triple, L) pair where no item has anything in L (a label for code-switched samples; an alias, or with
  ``--alias-missing label`` a label or an alias, for alias samples) is skipped and counted: its sample would be
  English only and the same for every L (ours: the official code writes it when all three items draw English).
- A triple whose head, relation or tail has no English label (or is not in entities.parquet) is skipped and counted:
  every sample starts from the English labels.
- ``--sample-triples F`` keeps each triple with probability F, ``--max-triples N`` exactly N triples (uniformly
  among those with English labels): the paper drew 125M + 125M samples from ~20M triples x 9 languages.
- ``--holdout-triples F`` (default 0) keeps a share F of the usable triples' entity pairs out of the samples, every
  triple between the two entities with it, and writes them to ``--output/heldout_triples.parquet``
  (``preprocess.core.formats.heldout_triples``; written empty without the option): fact recall then compares
  memorised (used) with held-out triples, and ``reasoning --exclude-triples`` keeps their pairs out of the
  reasoning samples. Sampling (``--sample-triples``/``--max-triples``) draws among the triples not held out.

Randomness: every draw for a triple is a pure function of (seed, triple_index, L, variant, variant number), so the
output does not depend on ``--chunk-size`` (an alias sample's language draw is the code-switched variant's, above).
A ``rng_for`` generator per sample would cost ~15 us x 250M samples; so there is one generator per block of
``RNG_BLOCK`` consecutive triple indices (a constant, not the chunk) and a triple takes its row of the block's draws.

Speed/memory: labels and aliases stay in Arrow arrays; the triples become three int32 arrays of entity rows; samples
are built with Arrow/NumPy gathers, chunk by chunk, and written in fixed-size row groups (the bytes of the file
depend only on its rows) to a temporary file renamed at the end.
"""
import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_triples import held_out_pairs, write_heldout_triples
from preprocess.core.formats.sentences import CODESWITCH, SENTENCES_FILE, SENTENCES_SCHEMA, VARIANTS
from preprocess.core.formats.spans import ROLES, spans_array
from preprocess.core.formats.stage_summary import summary_path, write_stage_summary
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    LOOKUP_BATCH,
    TRIPLE_COLUMNS,
    aliases_column,
    label_column,
    open_triples,
    read_entity_columns,
    resolve_languages,
)
from preprocess.core.io import FixedGroupWriter, atomic_path
from preprocess.core.languages import PIVOT_LANGUAGE
from preprocess.core.seeds import rng_for

logger = logging.getLogger("kmlm-preprocess sentences")

SWITCH_PROBABILITY = 0.5
RNG_BLOCK = 1024
ALIAS_MISSING_DROP, ALIAS_MISSING_LABEL = "drop", "label"
ALIAS_DRAW_CODESWITCH, ALIAS_DRAW_INDEPENDENT = "codeswitch", "independent"
MISSING_LABEL_ENGLISH, MISSING_LABEL_DROP = "english", "drop"


def block_uniforms(seed, stream, index, width):
    """Uniform [0, 1) draws of shape (len(index), width): row i depends only on (seed, stream, index[i]).

    ``index`` must be sorted. One generator per block of RNG_BLOCK consecutive indices (module docstring).
    """
    out = np.empty((len(index), width))
    if not len(index):
        return out
    blocks = index // RNG_BLOCK
    bounds = np.flatnonzero(np.diff(blocks)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(index)]):
        block = int(blocks[lo])
        draws = rng_for(seed, *stream, block).random((RNG_BLOCK, width))
        out[lo:hi] = draws[index[lo:hi] - block * RNG_BLOCK]
    return out


# --- Labels and aliases of one language, indexed by entity row ----------------------------------------------------
@dataclass
class LanguageTerms:
    lang: str
    label: pa.Array  # string or null, per entity row
    has_label: np.ndarray
    alias_values: pa.Array  # every entity's aliases, entity after entity
    alias_start: np.ndarray
    alias_count: np.ndarray

    @classmethod
    def from_table(cls, entities, lang):
        label = entities.column(label_column(lang)).combine_chunks()
        aliases = entities.column(aliases_column(lang)).combine_chunks()
        count = pc.fill_null(pc.list_value_length(aliases), 0).to_numpy().astype(np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        return cls(lang, label, label.is_valid().to_numpy(zero_copy_only=False), pc.list_flatten(aliases), start, count)

    def labels(self, rows):
        return self.label.take(pa.array(rows))

    def has_terms(self, rows):
        """Whether each entity row has a label or an alias in this language."""
        return self.has_label[rows] | (self.alias_count[rows] > 0)


def draw_alias(terms, rows, pick_uniform, first_half):
    """Per row, one alias of ``terms`` drawn with ``pick_uniform``, or null when the entity has none."""
    n = terms.alias_count[rows]
    choices = np.where(first_half & (n > 2), n // 2 + 1, n)
    pick = np.minimum((pick_uniform * choices).astype(np.int64), np.maximum(choices - 1, 0))
    position = pa.array(terms.alias_start[rows] + pick, mask=n == 0)
    return terms.alias_values.take(position)


def codeswitch_item(english, target, rows, u):
    switch = (u < SWITCH_PROBABILITY) & target.has_label[rows]
    text = pc.if_else(pa.array(switch), target.labels(rows), english.labels(rows))
    return text, switch


def alias_item(english, target, rows, u_lang, u_pick, config):
    """(text, switched to L, has an alias in its language) of one item per row; with ``alias_missing`` "label" the
    text falls back to the label and every row counts as having one."""
    if config.alias_missing == ALIAS_MISSING_LABEL:
        switch = (u_lang < SWITCH_PROBABILITY) & target.has_terms(rows)
        target_text = pc.coalesce(draw_alias(target, rows, u_pick, config.first_half), target.labels(rows))
        english_text = pc.coalesce(draw_alias(english, rows, u_pick, config.first_half), english.labels(rows))
        return pc.if_else(pa.array(switch), target_text, english_text), switch, np.ones(len(rows), bool)
    switch = u_lang < SWITCH_PROBABILITY
    text = pc.if_else(pa.array(switch), draw_alias(target, rows, u_pick, config.first_half),
                      draw_alias(english, rows, u_pick, config.first_half))
    has_alias = np.where(switch, target.alias_count[rows] > 0, english.alias_count[rows] > 0)
    return text, switch, has_alias


# --- The stage ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SentenceConfig:
    seed: int
    variants: int
    alias_variants: int
    first_half: bool
    alias_missing: str = ALIAS_MISSING_DROP
    alias_draw: str = ALIAS_DRAW_CODESWITCH
    missing_label: str = MISSING_LABEL_ENGLISH


def triple_entity_rows(tables_dir, entity_ids):
    """(3, n_triples) int32: the entities-table row of each triple's head, relation and tail (-1: not in the table)."""
    triples = open_triples(tables_dir)
    rows = np.empty((3, triples.num_rows), np.int32)
    start = 0
    bar = tqdm(total=triples.num_rows, unit="triple", desc="sentences: look up ids", mininterval=2)
    for batch in triples.iter_batches(LOOKUP_BATCH):
        ids = pa.concat_arrays([batch.column(c) for c in TRIPLE_COLUMNS])
        found = pc.fill_null(pc.index_in(ids, value_set=entity_ids), -1).to_numpy()
        rows[:, start:start + batch.num_rows] = found.reshape(3, batch.num_rows)
        start += batch.num_rows
        bar.update(batch.num_rows)
    bar.close()
    return rows


def english_skip_reasons(rows, has_english_label):
    """Per triple, the reason it cannot be used (the first failing role wins), or "" when it can."""
    reasons = np.full(rows.shape[1], "", dtype=object)
    for i in reversed(range(len(ROLES))):
        missing = rows[i] < 0
        unlabelled = ~missing & ~has_english_label[np.maximum(rows[i], 0)]
        reasons[unlabelled] = f"{ROLES[i]} has no English label"
        reasons[missing] = f"{ROLES[i]} not in {ENTITIES_FILE}"
    return reasons


def select_triples(usable, seed, sample_fraction=None, max_triples=None):
    """Sorted indices of the triples to render: the usable ones, optionally subsampled under the seed."""
    if sample_fraction is None and max_triples is None:
        return np.flatnonzero(usable)
    keys = block_uniforms(seed, ("sample-triples",), np.arange(len(usable)), 1)[:, 0]
    if sample_fraction is not None:
        return np.flatnonzero(usable & (keys < sample_fraction))
    candidates = np.flatnonzero(usable)
    if max_triples >= len(candidates):
        return candidates
    return np.sort(candidates[np.argpartition(keys[candidates], max_triples)[:max_triples]])


def has_anything(kind, target, config):
    """Per entity row, whether it can put language L into a sample of this kind."""
    if kind == CODESWITCH:
        return target.has_label
    if config.alias_missing == ALIAS_MISSING_DROP:
        return target.alias_count > 0
    return target.has_label | (target.alias_count > 0)


def draw_variant(kind, number, index, rows, english, target, config, counts):
    """(rows kept, [(text, switched)] per role of the kept rows) of sample ``number`` of ``kind``; drops counted.

    Each item's language: L where its uniform is < 0.5. An alias sample reuses the uniforms of the code-switched
    sample of the same number (``alias_draw`` "codeswitch", as the official code), whether or not that sample is
    written, or draws its own ("independent"); its alias pick has its own uniforms either way."""
    pair = f"{PIVOT_LANGUAGE}-{target.lang}"
    own = block_uniforms(config.seed, (kind, target.lang, number), index, 6)
    reuses_codeswitch_draw = kind == CODESWITCH or config.alias_draw == ALIAS_DRAW_CODESWITCH
    if kind != CODESWITCH and reuses_codeswitch_draw:
        u_lang = block_uniforms(config.seed, (CODESWITCH, target.lang, number), index, 6)[:, :len(ROLES)]
    else:
        u_lang = own[:, :len(ROLES)]
    keep = np.ones(len(index), bool)
    if config.missing_label == MISSING_LABEL_DROP and reuses_codeswitch_draw:
        keep = ~((u_lang < SWITCH_PROBABILITY) & ~target.has_label[rows].T).any(axis=1)
        if not keep.all():
            what = "dropped" if kind == CODESWITCH else "dropped with its code-switched sample"
            counts[f"{pair} {kind}: {what}, an item has no label in its drawn language"] += int((~keep).sum())
    if kind == CODESWITCH:
        items = [codeswitch_item(english, target, rows[i], u_lang[:, i]) for i in range(len(ROLES))]
    else:
        drawn = [alias_item(english, target, rows[i], u_lang[:, i], own[:, len(ROLES) + i], config)
                 for i in range(len(ROLES))]
        has_alias = np.logical_and.reduce([has for _, _, has in drawn])
        if not has_alias[keep].all():
            counts[f"{pair} {kind}: dropped, an item has no alias in its language"] += int((~has_alias[keep]).sum())
        keep &= has_alias
        items = [(text, switch) for text, switch, _ in drawn]
    if keep.all():
        return keep, items
    return keep, [(text.filter(pa.array(keep)), switch[keep]) for text, switch in items]


def render_chunk(index, rows, english, target, entity_ids, config, counts):
    """The samples of one chunk of triples for the pair (en, target.lang), in output order."""
    pair = f"{PIVOT_LANGUAGE}-{target.lang}"
    parts = []
    for kind_code, kind in enumerate(VARIANTS):
        n_variants = config.variants if kind == CODESWITCH else config.alias_variants
        if not n_variants:
            continue
        present = has_anything(kind, target, config)[rows].any(axis=0)
        if not present.all():
            counts[f"{pair} {kind}: skipped, no item has anything in {target.lang}"] += int((~present).sum())
        kind_index, kind_rows = index[present], rows[:, present]
        for number in range(n_variants):
            keep, items = draw_variant(kind, number, kind_index, kind_rows, english, target, config, counts)
            parts.append((kind_index[keep], kind_code, number, kind_rows[:, keep], items))
            counts[f"{pair} {kind}"] += int(keep.sum())
    if not parts:
        return SENTENCES_SCHEMA.empty_table()
    count_mentions(parts, pair, target.lang, counts)
    triple_index = np.concatenate([p[0] for p in parts])
    kind_codes = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    numbers = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    order = np.lexsort((numbers, kind_codes, triple_index))
    n = len(order)
    # span j of sample k sits at position k*3 + j; its source is role j's array at position order[k]
    source = (np.arange(len(ROLES))[None, :] * n + order[:, None]).ravel()

    def flat(per_role):
        return pa.concat_arrays(per_role).take(pa.array(source))

    text = flat([pa.concat_arrays([p[4][i][0] for p in parts]) for i in range(len(ROLES))])
    switched = np.concatenate([np.concatenate([p[4][i][1] for p in parts]) for i in range(len(ROLES))])[source]
    lang = pc.if_else(pa.array(switched), target.lang, PIVOT_LANGUAGE)
    all_rows = np.concatenate([p[3] for p in parts], axis=1)
    entity = entity_ids.take(pa.array(all_rows[:, order].T.ravel()))
    role = pa.array(ROLES).take(pa.array(np.tile(np.arange(len(ROLES)), n)))
    spans = spans_array(np.arange(0, 3 * n + 1, 3), text, role, entity, np.zeros(3 * n, np.int32), lang)
    return pa.Table.from_arrays(
        [spans, pa.array(triple_index[order]), pa.array(VARIANTS).take(pa.array(kind_codes[order])),
         pa.array([pair] * n, pa.string())],
        schema=SENTENCES_SCHEMA,
    )


def count_mentions(parts, pair, lang, counts):
    """Spans per variant and span language ("en-de codeswitch mentions in de"; the report reads them): a span is in
    ``lang`` where its item switched, in English otherwise."""
    for kind_index, kind_code, _, _, items in parts:
        switched = sum(int(np.count_nonzero(switch)) for _, switch in items)
        prefix = f"{pair} {VARIANTS[kind_code]} mentions in"
        counts[f"{prefix} {lang}"] += switched
        counts[f"{prefix} {PIVOT_LANGUAGE}"] += len(items) * len(kind_index) - switched


def hold_out(tables_dir, rows, usable, fraction, seed, output_dir, counts):
    """Write the held-out triples (module docstring); return the per-triple mask of those held out."""
    held = usable & held_out_pairs(rows[0], rows[2], fraction, seed)
    triples = open_triples(tables_dir).read()
    index = np.flatnonzero(held)
    table = triples.take(pa.array(index)).append_column("triple_index", pa.array(index, pa.int64()))
    write_heldout_triples(table, output_dir)
    counts["triples held out (their entity pair)"] = len(index)
    return held


def build_sentences(tables_dir, output_path, languages, config, sample_fraction=None, max_triples=None,
                    chunk_size=1 << 16, holdout_fraction=0.0):
    """Write ``output_path``; return the Counter of what was read, skipped and produced."""
    if PIVOT_LANGUAGE not in languages:
        raise UserFacingError(f"--languages must include {PIVOT_LANGUAGE!r}: code-switching starts from it")
    targets = [lang for lang in languages if lang != PIVOT_LANGUAGE]
    if not targets:
        raise UserFacingError("--languages has no language besides English to code-switch into")
    entities = read_entity_columns(tables_dir, languages, with_aliases=True)
    entity_ids = entities.column("id").combine_chunks()
    english = LanguageTerms.from_table(entities, PIVOT_LANGUAGE)
    rows = triple_entity_rows(tables_dir, entity_ids)

    counts = Counter({"triples read": rows.shape[1]})
    reasons = english_skip_reasons(rows, english.has_label)
    counts.update(f"triples skipped: {r}" for r in reasons[reasons != ""])
    usable = reasons == ""
    usable &= ~hold_out(tables_dir, rows, usable, holdout_fraction, config.seed, Path(output_path).parent, counts)
    selected = select_triples(usable, config.seed, sample_fraction, max_triples)
    counts["triples not sampled"] = int(usable.sum()) - len(selected)
    counts["triples used"] = len(selected)

    with atomic_path(output_path) as tmp:
        writer = FixedGroupWriter(tmp, SENTENCES_SCHEMA)
        bar = tqdm(total=len(selected) * len(targets), unit="triple", desc="sentences", mininterval=2)
        for lang in targets:
            target = LanguageTerms.from_table(entities, lang)
            for start in range(0, len(selected), chunk_size):
                index = selected[start:start + chunk_size]
                writer.write(render_chunk(index, rows[:, index], english, target, entity_ids, config, counts))
                bar.update(len(index))
        bar.close()
        writer.close()
    counts["samples written"] = writer.rows
    return counts


def add_arguments(parser):
    parser.add_argument("--input", required=True, help="directory with entities.parquet and triples.parquet (ingest)")
    parser.add_argument("--output", required=True, help=f"directory to write {SENTENCES_FILE} to")
    parser.add_argument("--languages", default=None,
                        help="languages, English plus the ones to code-switch into (default: all of the entities "
                             "table), e.g. en,de,fr")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--variants-per-language", type=int, default=1, metavar="N",
                        help="code-switched samples per triple and non-English language (default: 1)")
    parser.add_argument("--alias-variants-per-language", type=int, default=1, metavar="N",
                        help="alias-replaced samples per triple and non-English language (default: 1)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument("--sample-triples", type=float, default=None, metavar="FRACTION",
                          help="keep each triple with this probability (default: all)")
    sampling.add_argument("--max-triples", type=int, default=None, metavar="N",
                          help="keep exactly N triples, drawn uniformly under the seed (default: all)")
    parser.add_argument("--holdout-triples", type=float, default=0.0, metavar="FRACTION",
                        help="keep this share of the triples' entity pairs out of the samples and write them to "
                             "heldout_triples.parquet, for fact recall on unseen triples (default: 0)")
    parser.add_argument("--alias-first-half", action=argparse.BooleanOptionalAction, default=True,
                        help="draw aliases only among the first int(n/2)+1 of an item's n > 2 aliases, as the "
                             "reference code (default: on)")
    parser.add_argument("--alias-missing", choices=(ALIAS_MISSING_DROP, ALIAS_MISSING_LABEL),
                        default=ALIAS_MISSING_DROP,
                        help="an item without an alias in its drawn language: drop the alias sample (default, as "
                             "the official code; counted) or take the item's label (before issue 14)")
    parser.add_argument("--alias-draw", choices=(ALIAS_DRAW_CODESWITCH, ALIAS_DRAW_INDEPENDENT),
                        default=ALIAS_DRAW_CODESWITCH,
                        help="the items' languages of an alias sample: those drawn for the code-switched sample of "
                             "the same number (default, as the official code) or drawn anew (before this option: "
                             "decorrelates a triple's two samples)")
    parser.add_argument("--missing-label", choices=(MISSING_LABEL_ENGLISH, MISSING_LABEL_DROP),
                        default=MISSING_LABEL_ENGLISH,
                        help="an item drawn into L without a label in L: keep its English label (default, the "
                             "paper's rule as read in docs/design.md §1) or drop the code-switched sample, and with "
                             "--alias-draw codeswitch its alias sample (the official code; counted per pair)")
    parser.add_argument("--chunk-size", type=int, default=1 << 16,
                        help="triples rendered at once (memory only: the output does not depend on it)")


def run(args):
    if args.variants_per_language < 0 or args.alias_variants_per_language < 0:
        raise UserFacingError("--variants-per-language and --alias-variants-per-language must be >= 0")
    if args.variants_per_language == 0 and args.alias_variants_per_language == 0:
        raise UserFacingError("both --variants-per-language and --alias-variants-per-language are 0: nothing to do")
    if args.sample_triples is not None and not 0 < args.sample_triples <= 1:
        raise UserFacingError(f"--sample-triples must be in (0, 1], got {args.sample_triples}")
    if not 0 <= args.holdout_triples < 1:
        raise UserFacingError(f"--holdout-triples must be in [0, 1), got {args.holdout_triples}")
    if args.max_triples is not None and args.max_triples < 0:
        raise UserFacingError(f"--max-triples must be >= 0, got {args.max_triples}")
    if args.chunk_size < 1:
        raise UserFacingError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    config = SentenceConfig(args.seed, args.variants_per_language, args.alias_variants_per_language,
                            args.alias_first_half, args.alias_missing, args.alias_draw, args.missing_label)
    output_path = f"{args.output}/{SENTENCES_FILE}"
    summary_path(args.output, "sentences").unlink(missing_ok=True)
    counts = build_sentences(args.input, output_path, resolve_languages(args.languages, args.input), config,
                             args.sample_triples, args.max_triples, args.chunk_size, args.holdout_triples)
    write_stage_summary(args.output, "sentences", counts)
    logger.info("wrote %s: %s", output_path, "; ".join(f"{k}: {v:,}" for k, v in counts.items()))
    return 0
