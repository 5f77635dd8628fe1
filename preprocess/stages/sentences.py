"""``kmlm-preprocess sentences``: Wikidata triples -> code-switched and alias-replaced knowledge sentences.

Input (``--input``, made by ``ingest``; schema in ``preprocess.core.formats.tables``): ``entities.parquet`` + ``triples.parquet``.
Output: ``--output/sentences.parquet``, one row per sample:
  ``spans``         list<struct<text, role, id, sentence, lang>>: head, relation, tail in this order, sentence 0
  ``triple_index``  int64, the triple's row in triples.parquet
  ``variant``       "codeswitch" | "alias"
  ``lang_pair``     "en-L"
Rows are ordered by language pair (in ``--languages`` order), triple_index, variant (code-switched first), then
variant number. The rendering ``h <mask> r <mask> t .`` is left to binarization.

Rules (KMLM, DESIGN.md section 1), for each kept triple (h, r, t) and each non-English language L of --languages:
- code-switched (``--variants-per-language`` samples): start from the English labels; each of h, r, t independently
  switches to its L label with p = 0.5 when it has one.
- alias-replaced (``--alias-variants-per-language`` samples): each item independently picks L with p = 0.5 when it
  has a label or an alias in L (English otherwise), then takes a uniformly random alias in the picked language.
  First-half rule (on by default, as the reference code): an item with n > 2 aliases draws only among the first
  int(n/2)+1 (Wikidata lists the common aliases first). An item with no alias in the picked language takes its
  label in that language instead.
- A sample may come out all English (p = 1/8 when all three items have L labels): it is kept, it is what the rule
  draws. A (triple, L) pair where no item has anything in L is skipped and counted: its sample would be English
  only and the same for every L.
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
output does not depend on ``--chunk-size``. A ``rng_for`` generator per sample would cost ~15 us x 250M samples; so
there is one generator per block of ``RNG_BLOCK`` consecutive triple indices (a constant, not the chunk) and a
triple takes its row of the block's draws.

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
import pyarrow.parquet as pq
from tqdm import tqdm

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_triples import held_out_pairs, write_heldout_triples
from preprocess.core.formats.sentences import (
    CODESWITCH,
    SENTENCES_FILE,
    SENTENCES_SCHEMA,
    VARIANTS,
)
from preprocess.core.formats.spans import ROLES, spans_array
from preprocess.core.formats.stage_summary import summary_path, write_stage_summary
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    LOOKUP_BATCH,
    TRIPLE_COLUMNS,
    TRIPLES_FILE,
    aliases_column,
    existing_table,
    label_column,
    read_entity_columns,
    resolve_languages,
)
from preprocess.core.io import FixedGroupWriter, atomic_path
from preprocess.core.languages import PIVOT_LANGUAGE
from preprocess.core.seeds import rng_for

logger = logging.getLogger("kmlm-preprocess sentences")

SWITCH_PROBABILITY = 0.5
RNG_BLOCK = 1024


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


def alias_item(english, target, rows, u_lang, u_pick, first_half):
    switch = (u_lang < SWITCH_PROBABILITY) & target.has_terms(rows)
    switch_arr = pa.array(switch)
    target_text = pc.coalesce(draw_alias(target, rows, u_pick, first_half), target.labels(rows))
    english_text = pc.coalesce(draw_alias(english, rows, u_pick, first_half), english.labels(rows))
    return pc.if_else(switch_arr, target_text, english_text), switch


# --- The stage ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SentenceConfig:
    seed: int
    variants: int
    alias_variants: int
    first_half: bool


def triple_entity_rows(triples_path, entity_ids):
    """(3, n_triples) int32: the entities-table row of each triple's head, relation and tail (-1: not in the table)."""
    file = pq.ParquetFile(triples_path)
    rows = np.empty((3, file.metadata.num_rows), np.int32)
    start = 0
    bar = tqdm(total=file.metadata.num_rows, unit="triple", desc="sentences: look up ids", mininterval=2)
    for batch in file.iter_batches(batch_size=LOOKUP_BATCH, columns=list(TRIPLE_COLUMNS)):
        ids = pa.concat_arrays([batch.column(c).cast(pa.string()) for c in TRIPLE_COLUMNS])
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


def render_chunk(index, rows, english, target, entity_ids, config, counts):
    """The samples of one chunk of triples for the pair (en, target.lang), in output order."""
    pair = f"{PIVOT_LANGUAGE}-{target.lang}"
    parts = []
    for kind_code, kind in enumerate(VARIANTS):
        n_variants = config.variants if kind == CODESWITCH else config.alias_variants
        if not n_variants:
            continue
        has = target.has_label if kind == CODESWITCH else (target.has_label | (target.alias_count > 0))
        present = has[rows].any(axis=0)
        if not present.all():
            counts[f"{pair} {kind}: skipped, no item has anything in {target.lang}"] += int((~present).sum())
        kind_index, kind_rows = index[present], rows[:, present]
        for number in range(n_variants):
            u = block_uniforms(config.seed, (kind, target.lang, number), kind_index, 6)
            items = []
            for i in range(len(ROLES)):
                if kind == CODESWITCH:
                    items.append(codeswitch_item(english, target, kind_rows[i], u[:, i]))
                else:
                    items.append(alias_item(english, target, kind_rows[i], u[:, i], u[:, 3 + i], config.first_half))
            parts.append((kind_index, kind_code, number, kind_rows, items))
            counts[f"{pair} {kind}"] += len(kind_index)
    if not parts:
        return SENTENCES_SCHEMA.empty_table()
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


def hold_out(tables_dir, rows, usable, fraction, seed, output_dir, counts):
    """Write the held-out triples (module docstring); return the per-triple mask of those held out."""
    held = usable & held_out_pairs(rows[0], rows[2], fraction, seed)
    triples = pq.read_table(existing_table(tables_dir, TRIPLES_FILE), columns=list(TRIPLE_COLUMNS))
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
    entity_ids = entities.column("id").combine_chunks().cast(pa.string())
    english = LanguageTerms.from_table(entities, PIVOT_LANGUAGE)
    rows = triple_entity_rows(existing_table(tables_dir, TRIPLES_FILE), entity_ids)

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
                            args.alias_first_half)
    output_path = f"{args.output}/{SENTENCES_FILE}"
    summary_path(args.output, "sentences").unlink(missing_ok=True)
    counts = build_sentences(args.input, output_path, resolve_languages(args.languages, args.input), config,
                             args.sample_triples, args.max_triples, args.chunk_size, args.holdout_triples)
    write_stage_summary(args.output, "sentences", counts)
    logger.info("wrote %s: %s", output_path, "; ".join(f"{k}: {v:,}" for k, v in counts.items()))
    return 0
