"""``kmlm-preprocess reasoning``: cycles of the entity graph -> monolingual reasoning samples.

Input:
  ``--input``   the ingest tables (``preprocess.core.formats.tables``): ``entities.parquet`` (labels),
                ``triples.parquet``.
  ``--cycles``  ``cycles.parquet`` or its directory (``cycle_id`` int64, ``kind`` "triangle" | "diamond", ``nodes``
                list<string>; see ``preprocess.core.cycle_triples``).
  ``--exclude`` optional Parquet file with columns ``kind``, ``nodes``: cycles held out of pretraining (the XLR
                dev/test cycles, written by the ``xlr`` stage).
  ``--exclude-triples``  optional ``heldout_triples.parquet`` (``sentences --holdout-triples``): triples held out
                of pretraining for fact recall.
Output: ``--output/reasoning.parquet``, one row per (cycle, language):
  ``spans``     list<struct<text, role, id, sentence, lang>>: head, relation, tail of each sentence in reading order
  ``cycle_id``  int64 (from cycles.parquet), ``kind`` "triangle" | "diamond", ``lang`` the sample's language
Rows are ordered as the cycles in cycles.parquet, then by language in ``--languages`` order.

Rules (KMLM, docs/design.md §1):
- One triple per edge of the cycle, chosen once per cycle with ``EdgeTriples.choose`` and
  ``rng_for(seed, "reasoning", cycle_id)``, and shared by all languages; each sentence is that triple in its real
  direction: a triangle gives 3 sentences, a diamond 5 with the diagonal last (``preprocess.core.cycle_triples``).
- The sample is rendered monolingually with default labels in every language of ``--languages`` in which every
  entity and relation of the chosen triples has a label; the other languages are skipped and counted.
- ``--exclude``: a cycle that shares a held-out cycle (``shares_cycle``: one's undirected edges include all edges of
  the other — the same cycle, a diamond around a held-out triangle, or a triangle inside a held-out diamond) is dropped
  and counted. That drops the held-out cycle itself and any diamond built around a held-out triangle. The test is
  on entity edges, whatever relations get chosen.
- ``--exclude-triples``: a cycle with a held-out triple's entity pair as an edge is dropped and counted, whatever
  relation that edge would get: no sample links the two entities.
- A cycle with an edge that no triple links (cycles mined from other tables) is skipped and counted.

Memory: only the triples on cycle edges and the entities of the cycles are loaded; cycles are processed in chunks
and written in fixed-size row groups (the file's bytes depend only on its rows) to a temporary file renamed at the
end.
"""
import logging
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE, EdgeTriples, cycle_edges
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.cycles import CYCLE_SIZES, CYCLES_FILE, read_cycles
from preprocess.core.formats.heldout_cycles import HeldOutCycles
from preprocess.core.formats.heldout_triples import HeldOutPairs, read_heldout_triples
from preprocess.core.formats.reasoning import REASONING_FILE, REASONING_SCHEMA
from preprocess.core.formats.spans import ROLES, spans_array
from preprocess.core.formats.stage_summary import summary_path, write_stage_summary
from preprocess.core.formats.tables import (
    LOOKUP_BATCH,
    TRIPLES_SCHEMA,
    label_column,
    open_triples,
    read_entity_columns,
    resolve_languages,
)
from preprocess.core.io import FixedGroupWriter, atomic_path
from preprocess.core.seeds import rng_for

logger = logging.getLogger("kmlm-preprocess reasoning")

LOGGED_PROBLEMS = 5


def pair_keys(u, v):
    """One string per undirected pair (u, v), the same for (v, u)."""
    first = pc.less_equal(u, v)
    return pc.binary_join_element_wise(pc.if_else(first, u, v), pc.if_else(first, v, u), "\x1f")


def cycle_pair_keys(cycles):
    keys = []
    for kind, size in CYCLE_SIZES.items():
        nodes = cycles.filter(pc.equal(cycles.column("kind"), kind)).column("nodes")
        for i, j in cycle_edges(kind, list(range(size))):
            keys.append(pair_keys(pc.list_element(nodes, i), pc.list_element(nodes, j)))
    return pc.unique(pa.chunked_array(keys, pa.string()).combine_chunks())


def triples_on_edges(tables_dir, edge_keys):
    """An EdgeTriples of the triples linking two entities that are adjacent in some cycle."""
    kept = []
    for batch in open_triples(tables_dir).iter_batches(LOOKUP_BATCH):
        kept.append(batch.filter(pc.is_in(pair_keys(batch.column("head"), batch.column("tail")), value_set=edge_keys)))
    table = pa.Table.from_batches(kept, schema=TRIPLES_SCHEMA)
    return EdgeTriples.from_table(table), table


class CycleLabels:
    """Default labels of the entities and relations the cycles use, per language, indexed by entity row."""

    def __init__(self, tables_dir, languages, needed_ids):
        entities = read_entity_columns(tables_dir, languages, with_aliases=False)
        entities = entities.filter(pc.is_in(entities.column("id"), value_set=needed_ids))
        self.languages = tuple(languages)
        self.row = {entity_id: i for i, entity_id in enumerate(entities.column("id").to_pylist())}
        self.missing_row = len(self.row)  # one extra null label for ids not in the table
        self.labels = [
            pa.concat_arrays([entities.column(label_column(lang)).combine_chunks(),
                              pa.nulls(1, pa.string())])
            for lang in languages
        ]

    def rows(self, ids):
        return np.fromiter((self.row.get(i, self.missing_row) for i in ids), np.int64, len(ids))


# --- Choosing and rendering ---------------------------------------------------------------------------------------
def choose_triples(cycles, edge_triples, held_out, seed, counts, held_pairs=None):
    """For each usable cycle of a chunk: (position in chunk, its triples in sentence order)."""
    chosen = []
    for position, (cycle_id, kind, nodes) in enumerate(zip(*(cycles.column(c).to_pylist()
                                                             for c in ("cycle_id", "kind", "nodes")))):
        counts[f"{kind}s read"] += 1
        if held_out is not None and held_out.shared_by(kind, nodes):
            counts[f"{kind}s excluded: share a held-out cycle"] += 1
            continue
        if held_pairs and held_pairs.touched_by(cycle_edges(kind, nodes)):
            counts[f"{kind}s excluded: link a held-out triple's entities"] += 1
            continue
        try:
            chosen.append((position, edge_triples.choose(kind, nodes, rng_for(seed, "reasoning", cycle_id))))
        except KeyError as err:
            counts[f"{kind}s skipped: an edge has no triple"] += 1
            if counts[f"{kind}s skipped: an edge has no triple"] <= LOGGED_PROBLEMS:
                logger.warning("cycle %d: %s (were the cycles mined from these tables?)", cycle_id, err.args[0])
    return chosen


def render_chunk(cycles, chosen, labels, counts):
    """The samples of one chunk of cycles: every cycle in every language where all its labels exist."""
    if not chosen:
        return REASONING_SCHEMA.empty_table()
    n_sentences = np.array([len(triples) for _, triples in chosen])
    first_sentence = np.concatenate([[0], np.cumsum(n_sentences)[:-1]])
    span_ids = [entity for _, triples in chosen for triple in triples for entity in triple]
    rows = labels.rows(span_ids)
    n_spans = len(span_ids)

    per_lang_text = [label.take(pa.array(rows)) for label in labels.labels]
    labelled = np.stack([text.is_valid().to_numpy(zero_copy_only=False) for text in per_lang_text])
    # a cycle renders in a language when all of its spans (3 per sentence) have a label there
    renders = np.logical_and.reduceat(labelled, 3 * first_sentence, axis=1).T  # (cycles, languages)

    kinds = cycles.column("kind").to_pylist()
    chunk_kinds = np.array([kinds[position] for position, _ in chosen])
    for li, lang in enumerate(labels.languages):
        for kind in (TRIANGLE, DIAMOND):
            of_kind = chunk_kinds == kind
            if (of_kind & ~renders[:, li]).any():
                counts[f"{kind}s skipped in {lang}: missing label"] += int((of_kind & ~renders[:, li]).sum())
            if (of_kind & renders[:, li]).any():
                counts[f"{kind} samples in {lang}"] += int((of_kind & renders[:, li]).sum())

    cycle_of_row, lang_of_row = np.nonzero(renders)  # row-major: cycle order, then language order
    spans_per_row = 3 * n_sentences[cycle_of_row]
    offsets = np.concatenate([[0], np.cumsum(spans_per_row)])
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], spans_per_row)
    span_position = np.repeat(3 * first_sentence[cycle_of_row], spans_per_row) + within
    span_lang = np.repeat(lang_of_row, spans_per_row)

    text = pa.concat_arrays(per_lang_text).take(pa.array(span_lang * n_spans + span_position))
    role = pa.array(ROLES).take(pa.array(span_position % 3))
    entity = pa.array(span_ids, pa.string()).take(pa.array(span_position))
    lang = pa.array(labels.languages, pa.string()).take(pa.array(span_lang))
    spans = spans_array(offsets, text, role, entity, (within // 3).astype(np.int32), lang)

    positions = np.array([position for position, _ in chosen])[cycle_of_row]
    return pa.Table.from_arrays(
        [spans, cycles.column("cycle_id").take(pa.array(positions)), cycles.column("kind").take(pa.array(positions)),
         pa.array(labels.languages, pa.string()).take(pa.array(lang_of_row))],
        schema=REASONING_SCHEMA,
    )


def build_reasoning(tables_dir, cycles_dir, output_path, languages, seed, exclude=None, chunk_size=1 << 16,
                    exclude_triples=None):
    """Write ``output_path``; return the Counter of what was read, skipped and produced."""
    cycles = read_cycles(cycles_dir)
    held_out = HeldOutCycles.from_parquet(exclude) if exclude is not None else None
    held_pairs = HeldOutPairs(read_heldout_triples(exclude_triples)) if exclude_triples is not None else None
    edge_triples, triples = triples_on_edges(tables_dir, cycle_pair_keys(cycles))
    needed_ids = pc.unique(pa.chunked_array(
        [pc.list_flatten(cycles.column("nodes")), triples.column("relation")],
        pa.string(),
    ).combine_chunks())
    labels = CycleLabels(tables_dir, languages, needed_ids)

    counts = Counter()
    if held_out is not None:
        counts["held-out cycles"] = len(held_out)
    if held_pairs is not None:
        counts["held-out triples' entity pairs"] = len(held_pairs)
    with atomic_path(output_path) as tmp:
        writer = FixedGroupWriter(tmp, REASONING_SCHEMA)
        bar = tqdm(total=cycles.num_rows, unit="cycle", desc="reasoning", mininterval=2)
        for start in range(0, cycles.num_rows, chunk_size):
            chunk = cycles.slice(start, chunk_size)
            chosen = choose_triples(chunk, edge_triples, held_out, seed, counts, held_pairs)
            writer.write(render_chunk(chunk, chosen, labels, counts))
            bar.update(chunk.num_rows)
        bar.close()
        writer.close()
    counts["samples written"] = writer.rows
    return counts


def add_arguments(parser):
    parser.add_argument("--input", required=True, help="directory with entities.parquet and triples.parquet (ingest)")
    parser.add_argument("--cycles", required=True, help=f"{CYCLES_FILE} or its directory (kmlm-preprocess cycles)")
    parser.add_argument("--output", required=True, help=f"directory to write {REASONING_FILE} to")
    parser.add_argument("--languages", default=None,
                        help="languages to render the samples in (default: all of the entities table), e.g. en,de")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the choice of triples (default: 1)")
    parser.add_argument("--exclude", default=None, metavar="PATH",
                        help="Parquet file of held-out cycles (columns kind, nodes; e.g. the XLR dev/test cycles): "
                             "cycles covering one of them are dropped")
    parser.add_argument("--exclude-triples", default=None, metavar="PATH",
                        help="heldout_triples.parquet of `sentences --holdout-triples` (or its directory): cycles "
                             "with a held-out triple's entity pair as an edge are dropped")
    parser.add_argument("--chunk-size", type=int, default=1 << 16,
                        help="cycles rendered at once (memory only: the output does not depend on it)")


def run(args):
    if args.chunk_size < 1:
        raise UserFacingError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    output_path = f"{args.output}/{REASONING_FILE}"
    summary_path(args.output, "reasoning").unlink(missing_ok=True)
    counts = build_reasoning(args.input, args.cycles, output_path, resolve_languages(args.languages, args.input),
                             args.seed, args.exclude, args.chunk_size, args.exclude_triples)
    write_stage_summary(args.output, "reasoning", counts)
    logger.info("wrote %s: %s", output_path, "; ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())))
    return 0
