"""``kmlm-preprocess binarize``: knowledge sentences and reasoning samples -> fairseq mmap datasets + span tags.

Input: ``--sentences`` ``sentences.parquet`` and/or ``--reasoning`` ``reasoning.parquet`` (files or the directories
holding them; formats in preprocess/core/formats/: a ``spans`` list of (text, role, id, sentence, lang) per sample)
and the tokenizer (preprocess/core/tokenizers/: sentencepiece, or an imported BERT's WordPiece).
Output, under ``-o DATA`` (the layout the plugin reads, kmlm_fairseq/data):
  ``DATA/knowledge/<l'>/{train,valid}[k].{bin,idx}`` + ``.tags.{bin,idx}``  l' = the non-English side of lang_pair
  ``DATA/reasoning/<lang>/{train,valid}[k].{bin,idx}`` + ``.tags.{bin,idx}``
  ``DATA/<kind>/summary.json``  settings, counts per reason, samples/tokens/shards per dataset
  ``DATA/sentencepiece.bpe.model`` (or ``DATA/hf_tokenizer/``), ``DATA/dict.txt``  the tokenizer used

Rendering. Each sentence of a sample is ``h <mask> r <mask> t .``; a cycle's sentences are concatenated in sentence
order; the stored sample is those tokens + ``</s>`` (fairseq's masked_lm prepends ``<s>`` when loading). Every
mention is tokenized on its own (" " + text: sentencepiece's word start "▁"; WordPiece splits at spaces anyway, its
"##" pieces never start a mention) so no subword crosses a span border; the link masks
are the ``<mask>`` id masked_lm adds to the dictionary; the final "." is the tokenization of " .". The tag dataset
holds one ``preprocess.core.span_tags`` tag per stored token (role, sentence, span = mention index in the sample,
entity = index of the distinct Wikidata id in the sample, relations included; ``</s>`` is SPECIAL).

Length (``--max-length``, counting ``<s>`` and ``</s>``). A sample may only be cut at a sentence boundary, never inside
a mention; but every sample kind needs all of its sentences: a knowledge sample is one sentence, a triangle without
one of its 3 sentences is a path, and a diamond cut below its 5 sentences (the diagonal is last) is no longer the
two triangles the reasoning masks are built for (and the plugin tells the kinds apart by their sentence count). So
a cut always destroys the structure, and an over-long sample is dropped, counted per kind.

Other drops, each counted in the summary: malformed spans (not head, relation, tail per sentence with sentence
0..k-1, k = 1 / 3 / 5 for a knowledge sample / triangle / diamond, or a null text), a mention whose text tokenizes
to nothing, no output language (a lang_pair without exactly one non-English side, a null lang), languages outside
``--languages``.

Valid split. Whole groups (a knowledge triple with all its variants; a reasoning cycle) are held out, in every
language alike: the held-out groups are chosen once per kind, and every language's dataset takes its rows of them
(the languages hold different groups and different samples per group: a cycle lacks labels in some language, alias
samples are dropped per language when an item lacks an alias). Groups are ranked by hash(seed, triple_index /
cycle_id); the held-out ones are those of smallest hash, as many as fit every dataset's target,
``round(--valid-fraction x samples)``, at least 1, at most ``--valid-max`` and at most samples - 1. So no language's
valid split exceeds its target; the language whose target binds first reaches it (less the part of a group that
would cross it, but at least one group is held out); the others get a little less where they hold about the same
groups (the usual case: they render the same triples and cycles), and much less, possibly none, where a language is
far smaller than one capped by ``--valid-max`` (the summary lists every split's size). A dataset of one sample sets
no bound. The choice is a first pass over the key and language columns that keeps the ``--valid-max + 1`` smallest
hashes per language (bounded memory). It counts every language of the input, those outside ``--languages`` too,
so languages binarized in separate runs are split alike; it depends only on the seed and the input rows: not on
``--languages``, ``--workers``, ``--chunk-size`` or ``--part``. The summary records the threshold
(``valid_threshold``), so ``preprocess.core.binarized_output.valid_split_members`` tells which groups went to valid
(fact recall leaves them out of its "used" triples).

Scale. Rows are read in chunks of ``--chunk-size``; ``--workers`` processes encode chunks (all mention texts of a
chunk deduplicated and batch-encoded, then assembled with NumPy gathers); the main process writes results in chunk
order, so the files are byte-identical for any worker count. Splits are written as shards ``train``, ``train1``, ...
of ``--shard-size`` samples. ``--part I/N`` binarizes only the I-th of N row ranges (a SLURM array task, see
run/slurm/binarize.sbatch) into ``DATA/<kind>/parts/``; ``--gather`` then numbers all parts' shards contiguously.
"""
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.binarized_output import (
    DatasetWriters,
    HeldOutPlanner,
    add_output_arguments,
    check_scale_arguments,
    log_summary,
    output_root,
    start_output,
)
from preprocess.core.errors import UserFacingError
from preprocess.core.formats import indexed
from preprocess.core.formats.indexed import SUMMARY_FILE, TAGS, TOKENS, TRAIN, VALID
from preprocess.core.formats.reasoning import REASONING_FILE, open_reasoning
from preprocess.core.formats.sentences import SENTENCES_FILE, open_sentences
from preprocess.core.formats.spans import SENTENCE_END
from preprocess.core.io import write_text
from preprocess.core.languages import PIVOT_LANGUAGE, parse_languages
from preprocess.core.seeds import held_out_hash, held_out_salt
from preprocess.core.span_tags import HEAD, LINK, PUNCT, RELATION, SPECIAL, TAG_DTYPE, TAIL, pack_tags
from preprocess.core.tokenizers.install import install_tokenizer
from preprocess.core.workers import map_ordered

logger = logging.getLogger("kmlm-preprocess binarize")


KNOWLEDGE, REASONING = "knowledge", "reasoning"
ROLE_NAMES = ("head", "relation", "tail")
ROLE_CODES = np.array([HEAD, RELATION, TAIL], dtype=np.int64)
SENTENCES_PER_KIND = {"triangle": 3, "diamond": 5}
LOGGED_BAD_SAMPLES = 10

MALFORMED = "dropped: malformed spans"
EMPTY_MENTION = "dropped: a mention tokenizes to nothing"
BAD_LANGUAGE = "dropped: no output language"
NOT_SELECTED = "skipped: language not in --languages"


def too_long(what):
    return f"dropped: too long ({what})"


# --- Knowledge and reasoning samples --------------------------------------------------------------------------
@dataclass(frozen=True)
class SampleKind:
    name: str  # KNOWLEDGE | REASONING: the output directory
    open_input: Callable  # the format's reader: (path, columns) -> ParquetInput
    key_column: str  # the held-out group
    lang_column: str
    columns: tuple


KINDS = {
    KNOWLEDGE: SampleKind(KNOWLEDGE, open_sentences, "triple_index", "lang_pair",
                          ("spans", "triple_index", "lang_pair")),
    REASONING: SampleKind(REASONING, open_reasoning, "cycle_id", "lang", ("spans", "cycle_id", "kind", "lang")),
}


def dataset_language(kind, value):
    """The output language of a row: l' of "en-l'" for knowledge, the lang itself for reasoning; None if bad."""
    if value is None or not value:
        return None
    if kind == REASONING:
        return value
    sides = value.split("-")
    others = [s for s in sides if s != PIVOT_LANGUAGE]
    return others[0] if len(sides) == 2 and len(others) == 1 and others[0] else None


def row_languages(kind, column, selected):
    """Per row: an index into the returned names (-1: no language); and counts of bad / unselected rows."""
    encoded = pc.dictionary_encode(column)
    names = [dataset_language(kind, v) for v in encoded.dictionary.to_pylist()]
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    bad = np.array([n is None for n in names] + [True], dtype=bool)[codes]
    unselected = np.array([n is not None and selected is not None and n not in selected for n in names] + [False],
                          dtype=bool)[codes]
    codes = np.where(bad | unselected, -1, codes)
    return codes, names, int(bad.sum()), int(unselected.sum())


def input_files(paths, kind):
    """The sample files of ``kind`` (files or their directories), opened and checked."""
    return [KINDS[kind].open_input(path, KINDS[kind].columns) for path in paths]


def iter_row_batches(inputs, columns, chunk_rows, start=0, end=None):
    """(record batch, global row number of its first row) over the rows [start, end) of the files taken as one
    table, at most ``chunk_rows`` rows per batch; only the row groups overlapping the range are read."""
    base = 0
    for parquet in inputs:
        n = parquet.num_rows
        lo, hi = max(start - base, 0), min((n + base if end is None else end) - base, n)
        if lo < hi:
            sizes = parquet.row_group_rows()
            group_starts = np.concatenate([[0], np.cumsum(sizes)])
            groups = [i for i in range(len(sizes)) if group_starts[i] < hi and group_starts[i + 1] > lo]
            row = int(group_starts[groups[0]])
            for batch in parquet.iter_batches(chunk_rows, row_groups=groups, columns=list(columns)):
                b_lo, b_hi = max(lo - row, 0), min(hi - row, batch.num_rows)
                if b_lo < b_hi:
                    yield batch.slice(b_lo, b_hi - b_lo), base + row + b_lo
                row += batch.num_rows
        base += n


def total_rows(inputs):
    return sum(parquet.num_rows for parquet in inputs)


def plan_held_out(kind, inputs, seed, fraction, valid_max, chunk_rows):
    """First pass over the key and language columns of all rows: the kind's valid threshold, one for all languages,
    those outside --languages included (module docstring)."""
    spec, salt = KINDS[kind], held_out_salt(seed, kind)
    planner = HeldOutPlanner(fraction, valid_max)
    for batch, _ in iter_row_batches(inputs, (spec.key_column, spec.lang_column), chunk_rows):
        codes, names, _, _ = row_languages(kind, batch.column(spec.lang_column), None)
        hashes = held_out_hash(batch.column(spec.key_column).fill_null(-1).to_numpy(), salt)
        for code in np.unique(codes[codes >= 0]):
            planner.add(names[code], hashes[codes == code])
    return planner.shared_threshold()


@dataclass
class ChunkResult:
    rows: int
    counts: Counter
    datasets: dict  # (lang, split) -> (sizes, {TOKENS: ids, TAGS: tags})
    bad_samples: list = field(default_factory=list)


@dataclass
class Mentions:
    """The spans of a chunk's rows, flattened: one entry per mention, rows in order."""
    per_row: np.ndarray  # number of spans of each row
    row: np.ndarray  # the row of each span
    local: np.ndarray  # the span's index in its row (its tag's span field)
    role: np.ndarray  # HEAD / RELATION / TAIL, -1 for anything else
    sentence: np.ndarray  # -1 when null
    text: pa.Array
    id: pa.Array

    @classmethod
    def of(cls, batch):
        spans = batch.column("spans")
        per_row = pc.list_value_length(spans).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
        flat = spans.flatten()
        row = np.repeat(np.arange(batch.num_rows), per_row)
        local = np.arange(len(row)) - (np.cumsum(per_row) - per_row)[row]
        role_index = pc.index_in(pc.struct_field(flat, "role"), value_set=pa.array(ROLE_NAMES)).fill_null(-1)
        role_index = role_index.to_numpy(zero_copy_only=False)
        role = np.where(role_index >= 0, ROLE_CODES[role_index], -1)
        sentence = pc.struct_field(flat, "sentence").fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(per_row, row, local, role, sentence, pc.struct_field(flat, "text"), pc.struct_field(flat, "id"))

    def well_formed(self, sentences):
        """Per row: head, relation, tail per sentence, sentence = 0..k-1 in order, k = ``sentences``; no null text."""
        ok = (self.role == ROLE_CODES[self.local % 3]) & (self.sentence == self.local // 3) & \
            self.text.is_valid().to_numpy(zero_copy_only=False)
        n_rows = len(self.per_row)
        return (np.bincount(self.row, weights=~ok, minlength=n_rows) == 0) & (self.per_row == 3 * sentences)

    def per_row_sum(self, values):
        return np.bincount(self.row, weights=values, minlength=len(self.per_row)).astype(np.int64)


class ChunkEncoder:
    """Turns a chunk of sample rows into token and tag arrays per (language, split); runs in the workers."""

    def __init__(self, kind, tokenizer, max_length, languages, threshold, seed):
        self.kind, self.tokenizer, self.max_length = kind, tokenizer, max_length
        self.languages, self.threshold, self.salt = languages, np.uint64(threshold), held_out_salt(seed, kind)
        self.punct = tokenizer.encode([SENTENCE_END])[0]

    def __call__(self, item):
        batch, first_row = item
        spec = KINDS[self.kind]
        counts = Counter({"samples read": batch.num_rows})
        codes, names, bad_lang, unselected = row_languages(self.kind, batch.column(spec.lang_column), self.languages)
        counts.update({BAD_LANGUAGE: bad_lang, NOT_SELECTED: unselected})
        mentions = Mentions.of(batch)
        well_formed = mentions.well_formed(self.expected_sentences(batch))
        bad_rows = np.flatnonzero(~well_formed & (codes >= 0))
        counts[MALFORMED] += len(bad_rows)
        live = well_formed & (codes >= 0)

        pool, pool_len, span_text, span_len = self.tokenize(mentions, live)
        empty = live & (mentions.per_row_sum(live[mentions.row] & (span_len == 0)) > 0)
        counts[EMPTY_MENTION] += int(empty.sum())
        live &= ~empty
        sizes = mentions.per_row_sum(span_len) + mentions.per_row // 3 * (2 + len(self.punct)) + 1
        over = live & (sizes + 1 > self.max_length)  # + 1: the <s> masked_lm prepends
        for what, count in self.kinds_of(batch, over).items():
            counts[too_long(what)] += count
        live &= ~over

        keys = batch.column(spec.key_column).fill_null(-1).to_numpy(zero_copy_only=False)
        valid = held_out_hash(keys, self.salt) < self.threshold
        entity = entity_indices(mentions.id, mentions.row, batch.num_rows)
        datasets = {}
        for code in np.unique(codes[live]):
            for split, in_split in ((TRAIN, ~valid), (VALID, valid)):
                rows = live & (codes == code) & in_split
                if rows.any():
                    datasets[(names[code], split)] = self.assemble(rows, mentions, entity, span_text, pool, pool_len,
                                                                   sizes)
                    counts[f"written {split}"] += int(rows.sum())
        return ChunkResult(batch.num_rows, counts, datasets, [self.describe(batch, first_row, i) for i in bad_rows[:3]])

    def tokenize(self, mentions, live):
        """Encode the mentions of the live rows, each distinct text once: (token pool, tokens per pool entry,
        pool entry of each mention, tokens of each mention; -1 and 0 outside the live rows)."""
        live_span = live[mentions.row]
        encoded = pc.dictionary_encode(mentions.text.filter(pa.array(live_span)))
        pool, pool_len = self.tokenizer.encode([" " + t for t in encoded.dictionary.to_pylist()])
        span_text = np.full(len(mentions.row), -1, dtype=np.int64)
        span_text[live_span] = encoded.indices.to_numpy(zero_copy_only=False)
        span_len = np.zeros(len(mentions.row), dtype=np.int64)
        span_len[live_span] = pool_len[span_text[live_span]]
        return pool, pool_len, span_text, span_len

    def expected_sentences(self, batch):
        if self.kind == KNOWLEDGE:
            return np.ones(batch.num_rows, dtype=np.int64)
        kinds = batch.column("kind").fill_null("").to_pylist()
        return np.array([SENTENCES_PER_KIND.get(k, -1) for k in kinds], dtype=np.int64)

    def kinds_of(self, batch, rows):
        if self.kind == KNOWLEDGE:
            return Counter({"knowledge sentence": int(rows.sum())}) if rows.any() else Counter()
        return Counter(batch.column("kind").filter(pa.array(rows)).to_pylist())

    @staticmethod
    def describe(batch, first_row, i):
        spans = batch.column("spans")[int(i)].as_py() or []
        layout = [(s.get("role"), s.get("sentence")) for s in spans]
        return f"row {first_row + int(i):,}: (role, sentence) of its spans: {layout}"

    def assemble(self, rows, mentions, entity, span_text, pool, pool_len, sizes):
        """Token and tag arrays of the samples ``rows``: per span its tokens then a link mask (head, relation) or
        the final "." (tail); ``</s>`` after each sample. Built as one gather from a pool of token sequences."""
        spans = np.flatnonzero(rows[mentions.row])
        n_rows, n_spans = int(rows.sum()), len(spans)
        span_row = (np.cumsum(rows) - 1)[mentions.row[spans]]
        span_pos = 2 * np.arange(n_spans) + span_row  # element positions: span, its suffix, ..., </s>, next row
        eos_pos = 2 * np.cumsum(np.bincount(span_row, minlength=n_rows)) + np.arange(n_rows)

        # the pool: distinct mention texts, then <mask>, " .", </s>
        n_texts = len(pool_len)
        pool = np.concatenate([pool, [self.tokenizer.mask], self.punct, [self.tokenizer.eos]])
        pool_len = np.concatenate([pool_len, [1, len(self.punct), 1]])
        pool_start = np.cumsum(pool_len) - pool_len
        mask_ref, punct_ref, eos_ref = n_texts, n_texts + 1, n_texts + 2

        source = np.empty(2 * n_spans + n_rows, dtype=np.int64)
        tags = np.empty(2 * n_spans + n_rows, dtype=TAG_DTYPE)
        role = mentions.role[spans]
        source[span_pos] = span_text[spans]
        tags[span_pos] = pack_tags(role, mentions.sentence[spans], mentions.local[spans], entity[spans])
        source[span_pos + 1] = np.where(role == TAIL, punct_ref, mask_ref)
        tags[span_pos + 1] = pack_tags(np.where(role == TAIL, PUNCT, LINK))
        source[eos_pos] = eos_ref
        tags[eos_pos] = pack_tags(SPECIAL)

        length = pool_len[source]
        gather = np.repeat(pool_start[source] - (np.cumsum(length) - length), length) + np.arange(int(length.sum()))
        assert int(sizes[rows].sum()) == len(gather)
        return sizes[rows], {TOKENS: pool[gather], TAGS: np.repeat(tags, length)}


def entity_indices(ids, row_of_span, n_rows):
    """Per span: the index of its Wikidata id among the distinct ids of its row, in order of first mention
    (a null id counts as distinct)."""
    encoded = pc.dictionary_encode(ids)
    n_ids = len(encoded.dictionary)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    codes = np.where(codes < 0, n_ids + np.arange(len(codes)), codes)
    width = n_ids + len(codes) + 1
    _, first, inverse = np.unique(row_of_span * width + codes, return_index=True, return_inverse=True)
    order_rank = np.empty(len(first), dtype=np.int64)
    order_rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    first_row = row_of_span[first]
    per_row = np.bincount(first_row, minlength=n_rows)
    return (order_rank - (np.cumsum(per_row) - per_row)[first_row])[inverse.ravel()]


def binarize_kind(kind, inputs, data_dir, tokenizer, max_length=128, languages=None, seed=1, valid_fraction=0.01,
                  valid_max=1000, workers=1, chunk_rows=100_000, shard_size=10_000_000, part=None):
    """Binarize one kind's sample files (``input_files``) into ``data_dir/kind`` (or its part); returns the summary
    it writes."""
    started = time.perf_counter()
    root = output_root(data_dir, kind, part)
    start_output(root)
    threshold = plan_held_out(kind, inputs, seed, valid_fraction, valid_max, chunk_rows)
    n = total_rows(inputs)
    start, end = (0, n) if part is None else (n * part[0] // part[1], n * (part[0] + 1) // part[1])
    streams = {TOKENS: indexed.best_fitting_int_dtype(max(len(tokenizer), tokenizer.mask + 1)),
               TAGS: np.dtype(TAG_DTYPE)}
    writers, counts, bad_logged = DatasetWriters(root, streams, shard_size), Counter(), 0
    chunks = iter_row_batches(inputs, KINDS[kind].columns, chunk_rows, start, end)
    init_args = (kind, tokenizer, max_length, languages, threshold, seed)
    try:
        with tqdm(total=end - start, unit="sample", desc=f"binarize {kind}", mininterval=1) as bar:
            for result in map_ordered(ChunkEncoder, init_args, chunks, workers):
                for line in result.bad_samples[:max(0, LOGGED_BAD_SAMPLES - bad_logged)]:
                    logger.warning("%s: malformed sample, dropped: %s", kind, line)
                bad_logged += len(result.bad_samples)
                counts.update(result.counts)
                for (lang, split), (sizes, arrays) in sorted(result.datasets.items()):
                    writers.add(lang, split, sizes, arrays)
                bar.update(result.rows)
    except BaseException:
        writers.abort()
        raise
    summary = {
        "kind": kind,
        "inputs": [str(parquet.path.resolve()) for parquet in inputs],
        "part": None if part is None else {"index": part[0], "count": part[1], "rows": [start, end]},
        "settings": {"max_length": max_length, "languages": list(languages) if languages else None, "seed": seed,
                     "valid_fraction": valid_fraction, "valid_max": valid_max, "shard_size": shard_size,
                     "tokenizer": [tokenizer.model_path, tokenizer.dict_path], "mask_index": tokenizer.mask},
        "seconds": round(time.perf_counter() - started, 3),
        "counts": dict(sorted(counts.items())),
        "datasets": writers.close(),
        "valid_threshold": int(threshold),
    }
    write_text(json.dumps(summary, indent=2) + "\n", root / SUMMARY_FILE)
    log_summary(kind, summary, root)
    return summary


def add_arguments(parser):
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    parser.epilog = "Details: the module docstring of preprocess/stages/binarize.py."
    parser.add_argument("--sentences", nargs="+", default=[], metavar="PATH",
                        help=f"knowledge sentences: {SENTENCES_FILE} file(s) or their directories")
    parser.add_argument("--reasoning", nargs="+", default=[], metavar="PATH",
                        help=f"reasoning samples: {REASONING_FILE} file(s) or their directories")
    parser.add_argument("--languages", default=None,
                        help="binarize only these output languages (comma/space separated; default: all found)")
    parser.add_argument("--max-length", type=int, default=128,
                        help="longest sample kept, in tokens including <s> and </s> (default: %(default)s)")
    parser.add_argument("--chunk-size", type=int, default=100_000, metavar="ROWS",
                        help="rows per work item (default: %(default)s)")
    add_output_arguments(parser, "row")


def run(args):
    if args.gather:
        for kind in (KNOWLEDGE, REASONING):
            if (args.output / kind / indexed.PARTS_DIR).is_dir():
                summary = indexed.gather_parts(args.output / kind)
                logger.info("gathered %d parts of %s: %s", summary["parts"], kind, summary["shards"])
        return 0
    check_scale_arguments(args)
    if not (args.sentences or args.reasoning):
        raise UserFacingError("nothing to binarize: pass --sentences and/or --reasoning (or --gather)")
    if args.max_length < 8:
        raise UserFacingError(f"--max-length {args.max_length} is too short for any sample")
    languages = parse_languages(args.languages) if args.languages is not None else None  # "" is an error, not all
    inputs = {KNOWLEDGE: input_files(args.sentences, KNOWLEDGE), REASONING: input_files(args.reasoning, REASONING)}
    tokenizer = install_tokenizer(args, args.output)
    for kind, files in inputs.items():
        if files:
            binarize_kind(kind, files, args.output, tokenizer, args.max_length, languages, args.seed,
                          args.valid_fraction, args.valid_max, args.workers, args.chunk_size, args.shard_size,
                          args.part)
    return 0
