"""``kmlm-preprocess ingest -i DUMP -o OUT``: a Wikidata JSON dump -> ``entities.parquet`` + ``triples.parquet``.

Input: one or more Wikidata JSON dumps (read one after the other), uncompressed, gzip or bzip2 (told by the first
bytes), in the real layout (``[``, one entity per line ending with a comma, ``]``) or any of its variants: the
last entity line with a comma, no closing ``]`` (the head of a dump), plain JSON lines without brackets, blank
lines, ``\\r\\n`` line ends. Both claim formats are read: today's (the datavalue carries ``"id": "Q5"``) and 2014's
(only ``"numeric-id": 5`` with ``"entity-type": "item"``). An id seen again (overlapping inputs) keeps its first
row and triples only; the later occurrences are counted as duplicates.

Output (schema: ``preprocess.core.formats.tables``; rows in dump order, so the bytes do not depend on ``--workers``):
  ``OUT/entities.parquet``  one row per item or property: ``id``, ``kind`` ("item" | "property"), and per
                            language L ``label_L``, ``aliases_L`` (list, possibly empty), ``description_L``.
  ``OUT/triples.parquet``   ``head``, ``relation``, ``tail``: one row per statement of an *item* whose main snak
                            has an item as its value (property, lexeme, string... values are not triples;
                            statements of properties describe the property, not the world, and are left out);
                            deprecated-rank statements are skipped; duplicate statements give duplicate rows.
  ``OUT/ingest_summary.json`` the counts below, written last: its presence marks a finished run (a run first
                            deletes these three files if a previous run left them).

Languages (``--languages``): a language with variants falls back through them, each of label, aliases and
description independently taking the first variant that has one (aliases: the first non-empty list). Only
``zh`` has variants: zh, zh-hans, zh-cn, zh-sg, zh-my, zh-hant, zh-tw, zh-hk, zh-mo (generic Chinese, then the
simplified-script variants, then the traditional-script ones: XLM-R's Chinese data is mostly simplified).

Filters (Wikidata5M/KEPLER style lists, one id per line): a line's first whitespace-separated token is the id,
so the Wikidata5M ``wikidata5m_entity.txt`` / ``wikidata5m_relation.txt`` files (id TAB aliases...) work as they
are; blank lines and ``#`` comments are ignored; a full URI (``http://www.wikidata.org/entity/Q42``) is reduced
to its id; anything else is an error naming the file and line.
  ``--entity-list``: triples whose head AND tail are both listed; item rows that are listed.
  ``--relation-list``: triples whose relation is listed; property rows that are listed (or in --entity-list).
  Property rows are kept whole when no --relation-list is given, so relations keep their labels.

Bad input: a line that is not valid JSON, not an entity object, or an entity other than an item or property
(e.g. a lexeme), or whose id is not Q/P and a number without leading zero of at most 18 digits
(``preprocess.core.formats.tables.ENTITY_ID``), is skipped and counted by reason; the first few are logged with
their line number and byte offset, and the final log line gives the counts. Every statement of an entity that gets
a row is a triple or a named count (``preprocess.core.formats.ingest_summary``: ``statements`` = ``triples`` +
deprecated, filtered, without a value, value not an item, statements of properties, and the skips of malformed
statements: an item value whose id is malformed or disagrees with its numeric-id, a claim key that is not a
property id, claims given as a list; the first few logged with entity and relation). A truncated or corrupt
compressed file stops the run with an error naming the file and how far it got; the tables are written to temporary
files and renamed only when complete, so a failed run leaves no table that looks complete.

Speed: the reading process cuts the input into blocks of whole lines; ``--workers`` parser processes decode them
with msgspec typed Structs that name only the used fields (unused ones are skipped without building Python
objects; docs/design.md §4), with the cyclic garbage collector paused, and build the table columns with C-level loops;
the reading process writes the results in block order. An uncompressed dump's blocks are handed over by position
and each parser reads its own (``text_blocks.iter_block_refs``): the reading process then only plans and writes,
so the parsers can use every core. A compressed dump is decompressed by the reading process (isal for gzip,
lbzip2 for bzip2), whose bytes then go to the parsers through pipes: one decompression stream is the limit there.
bench/ingest.py measures it (and says where the time goes).

Sharding (SLURM arrays, ``run/slurm/ingest.sbatch``): ``--shard I/N`` reads only the lines whose first byte lies
in the I-th of N byte ranges of the decompressed stream (see ``preprocess.core.text_blocks`` for how compressed input
is split) and writes ``OUT/shards/IIIII-of-NNNNN/``; ``kmlm-preprocess merge -o OUT`` then concatenates the
shards in order into tables byte-identical to a single run.
"""
import argparse
import contextlib
import gc
import itertools
import json
import logging
import operator
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from msgspec.structs import astuple
from tqdm import tqdm

from preprocess.core import text_blocks
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.ingest_summary import (
    CLAIMS_NOT_A_MAP,
    DEPRECATED,
    DUPLICATES,
    FILTERED,
    INVALID_JSON,
    ITEM,
    MALFORMED_RELATION,
    MALFORMED_STATEMENTS,
    MALFORMED_VALUE,
    NO_VALUE,
    NOT_AN_ENTITY,
    NOT_AN_ITEM_VALUE,
    NOT_UTF8,
    OF_PROPERTIES,
    OTHER_ENTITY_TYPE,
    PROPERTY,
    SHARDS_DIR,
    SKIP_REASONS,
    STATEMENTS,
    SUMMARY_FILE,
    kind_counts,
    log_summary,
    remove_previous_outputs,
    shard_dir_name,
)
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    ENTITY_ID,
    ITEM_ID,
    PROPERTY_ID,
    TRIPLES_FILE,
    TRIPLES_SCHEMA,
    FirstOccurrence,
    drop_heads,
    entities_schema,
    table_writers,
)
from preprocess.core.io import write_text
from preprocess.core.languages import DEFAULT_LANGUAGES, parse_languages
from preprocess.core.workers import default_workers, map_ordered, usable_cpus

logger = logging.getLogger("kmlm-preprocess ingest")

# A language with variants takes, per field, the first variant that has a value (module docstring).
LANGUAGE_FALLBACKS = {"zh": ("zh", "zh-hans", "zh-cn", "zh-sg", "zh-my", "zh-hant", "zh-tw", "zh-hk", "zh-mo")}

LOGGED_BAD_LINES = 10

ID_PREFIXES = {ITEM: "Q", PROPERTY: "P"}
IS_ITEM_ID, IS_PROPERTY_ID = ITEM_ID.fullmatch, PROPERTY_ID.fullmatch  # bound once: called per statement
LOGGED_BAD_STATEMENTS = 10
WHITESPACE, COMMA, BRACKETS = b" \t\r", ord(","), b"[]"


# --- The part of a dump entity that is read; every other field is skipped by the decoder. -----------------------
class Term(msgspec.Struct, gc=False, frozen=True):
    value: str


NO_TERM = Term(None)  # the default of an absent language: its value reads as None without a test per entity
VALUE = operator.attrgetter("value")


class EntityValue(msgspec.Struct, gc=False, rename={"numeric_id": "numeric-id", "entity_type": "entity-type"}):
    id: str | None = None  # today's format: "Q5"
    numeric_id: int | None = None  # 2014 format: 5 (with entity_type "item")
    entity_type: str | None = None


class DataValue(msgspec.Struct, gc=False):
    type: str
    # Every JSON type is allowed so that no value can fail the entity; any object decodes as an EntityValue,
    # skipping its fields cheaply (a quantity or a time gives one with only None fields).
    value: EntityValue | str | int | float | bool | list | None


class MainSnak(msgspec.Struct, gc=False):
    snaktype: str
    datavalue: DataValue | None = None


class Statement(msgspec.Struct, gc=False):
    mainsnak: MainSnak
    rank: str = "normal"


def language_codes(languages):
    """The Wikidata language codes to read, and for each language the indexes of its variants among them."""
    codes, variant_indexes = [], []
    for lang in languages:
        variants = LANGUAGE_FALLBACKS.get(lang, (lang,))
        for code in variants:
            if code not in codes:
                codes.append(code)
        variant_indexes.append(tuple(codes.index(code) for code in variants))
    return codes, variant_indexes


def entity_struct(codes):
    """An Entity Struct whose labels/descriptions/aliases have one field per wanted language code only.

    Field names are placeholders renamed to the codes, so codes that are Python keywords ("is", "as") work.
    An empty term map may appear as ``[]`` in old dumps, hence the ``| list``.
    """
    names = [f"v{i}" for i in range(len(codes))]
    rename = dict(zip(names, codes))
    terms = msgspec.defstruct("Terms", [(n, Term | None, NO_TERM) for n in names], rename=rename, gc=False)
    term_lists = msgspec.defstruct("TermLists", [(n, list[Term] | None, ()) for n in names], rename=rename,
                                   gc=False)
    return msgspec.defstruct("Entity", [
        ("id", str),
        ("type", str),
        ("labels", terms | list, []),
        ("descriptions", terms | list, []),
        ("aliases", term_lists | list, []),
        ("claims", dict[str, list[Statement]] | list, {}),
    ])


# --- Parsing blocks of lines (in worker processes) -------------------------------------------------------------
@dataclass(frozen=True)
class ParseConfig:
    languages: tuple
    entity_ids: frozenset | None = None
    relation_ids: frozenset | None = None


@dataclass
class BadLine:
    path: str
    index: int  # 0-based, in its block; the reading process sets ``line`` (it knows the blocks before)
    offset: int
    reason: str
    detail: str
    text: str
    line: int | None = None

    def __str__(self):
        where = f"line {self.line:,} (byte {self.offset:,})" if self.line is not None else f"byte {self.offset:,}"
        return f"{self.path} {where}: {self.reason}: {self.detail}: {self.text!r}"


@dataclass
class BlockResult:
    entities: pa.RecordBatch
    triples: pa.RecordBatch
    counts: Counter
    first_line: int | None  # the block's (text_blocks.Block.first_line)
    bad_lines: list = field(default_factory=list)
    bad_statements: list = field(default_factory=list)  # the first few malformed statements, described


class BlockParser:
    """Turns a block of dump lines into entity and triple rows. One entity's way: ``parse_line`` decodes it,
    ``extract_entity`` decides whether it gets a row and collects its triples (``add_triples``), and
    ``entity_batch`` turns the kept entities of the block into the entities table's columns."""

    def __init__(self, config):
        self.config = config
        codes, self.variant_indexes = language_codes(config.languages)
        self.no_terms = (NO_TERM,) * len(codes)  # an empty term map may be [] in old dumps
        self.no_term_lists = ((),) * len(codes)
        self.entity_decoder = msgspec.json.Decoder(entity_struct(codes))
        self.entities_schema = entities_schema(config.languages)

    def __call__(self, block):
        """A ``text_blocks.Block`` or ``BlockRef`` (read here) -> BlockResult."""
        block = block.load()
        # The decoded entities hold no reference cycles: the cyclic collector, triggered by their many lists
        # and dicts, would only rescan them (about a fifth of the parsing time). They are freed before it is
        # back on, so it never sees them.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self.parse_block(block)
        finally:
            self.kept = self.ids_in_block = self.triple_columns = None
            if collecting:
                gc.enable()

    def parse_block(self, block):
        counts, bad_lines = Counter(), []
        self.kept, self.ids_in_block, self.triple_columns = [], set(), ([], [], [])
        self.bad_statements = []
        data, view, index, pos = block.data, memoryview(block.data), 0, 0
        while pos < len(data):
            newline = data.find(b"\n", pos)
            newline = len(data) if newline < 0 else newline
            reason = self.parse_line(view[pos:newline], counts)  # a view: no copy of the line
            if reason is not None:
                counts[reason[0]] += 1
                if len(bad_lines) < LOGGED_BAD_LINES:
                    text = data[pos:pos + 100].split(b"\n")[0].decode("utf-8", "replace")
                    bad_lines.append(BadLine(block.path, index, block.offset + pos, reason[0], reason[1], text))
            index += 1
            pos = newline + 1
        counts["lines"] += index
        counts["bytes"] += len(data)
        triples = pa.RecordBatch.from_arrays([pa.array(col, pa.string()) for col in self.triple_columns],
                                             schema=TRIPLES_SCHEMA)
        return BlockResult(self.entity_batch(self.kept), triples, counts, block.first_line, bad_lines,
                           self.bad_statements)

    def parse_line(self, line, counts):
        """Decode one line (without its newline) and extract it; None, or (skip reason, detail) if it is bad."""
        start, end = 0, len(line)
        while end > start and line[end - 1] in WHITESPACE:
            end -= 1
        while start < end and line[start] in WHITESPACE:
            start += 1
        if end > start and line[end - 1] == COMMA:  # dump layout: every entity line but the last ends with ","
            end -= 1
        if end == start or (end - start == 1 and line[start] in BRACKETS):
            counts["layout lines"] += 1
            return None
        try:
            entity = self.entity_decoder.decode(line[start:end])
        except msgspec.ValidationError as err:  # valid JSON of the wrong shape
            return NOT_AN_ENTITY, str(err)
        except msgspec.DecodeError as err:
            return INVALID_JSON, str(err)
        except UnicodeDecodeError as err:  # raised by msgspec for bytes that are not UTF-8 inside a string
            return NOT_UTF8, str(err)
        if entity.type not in (ITEM, PROPERTY):
            return OTHER_ENTITY_TYPE, f"type {entity.type!r}"
        if entity.id[:1] != ID_PREFIXES[entity.type] or not ENTITY_ID.fullmatch(entity.id):
            return NOT_AN_ENTITY, f"{entity.type} with id {entity.id!r}"
        self.extract_entity(entity, counts)
        return None

    def extract_entity(self, entity, counts):
        """Keep an entity for a row (filters: module docstring) and collect its triples, or count why not.

        A second occurrence of an id gives nothing (here within the block; ``FirstOccurrence`` across blocks
        and shards).
        """
        entity_ids, relation_ids = self.config.entity_ids, self.config.relation_ids
        if entity.type == ITEM:
            keep = entity_ids is None or entity.id in entity_ids
        else:
            listed = entity.id in relation_ids if relation_ids is not None else True
            keep = listed or (entity_ids is not None and entity.id in entity_ids)
        if not keep:
            counts[f"{entity.type} rows filtered out"] += 1
            return
        if entity.id in self.ids_in_block:
            counts[DUPLICATES] += 1
            return
        self.ids_in_block.add(entity.id)
        self.kept.append(entity)
        claims = entity.claims
        statements = len(claims) if isinstance(claims, list) else sum(map(len, claims.values()))
        if not statements:  # (no zero counts: summaries of shards add up to a single run's)
            return
        counts[STATEMENTS] += statements
        if isinstance(claims, list):  # an empty claim map may be [] in old dumps; anything else is malformed
            counts[CLAIMS_NOT_A_MAP] += statements
            self.note_bad_statement(entity.id, None, f"claims is a list of {statements}, not a map")
        elif entity.type != ITEM:
            counts[OF_PROPERTIES] += statements
        else:
            self.add_triples(entity.id, claims, counts)

    def entity_batch(self, entities):
        """The entities table rows of ``entities``: id, kind, then per language its label, aliases, description,
        each from the first variant of the language that has one. Built column by column, each with C-level
        loops (map, zip, Arrow kernels) rather than a Python loop per entity."""
        labels = self.by_code(entities, "labels", self.no_terms)
        descriptions = self.by_code(entities, "descriptions", self.no_terms)
        aliases = self.by_code(entities, "aliases", self.no_term_lists)
        columns = [pa.array(list(map(GET_ID, entities)), pa.string()),
                   pa.array(list(map(GET_TYPE, entities)), pa.string())]
        for variants in self.variant_indexes:
            columns.append(_first_present([_term_array(labels[i]) for i in variants]))
            columns.append(_first_nonempty([_term_list_array(aliases[i]) for i in variants]))
            columns.append(_first_present([_term_array(descriptions[i]) for i in variants]))
        return pa.RecordBatch.from_arrays(columns, schema=self.entities_schema)

    def by_code(self, entities, field, empty):
        """Per language code, the tuple of the entities' terms (or term lists) in that code."""
        if not entities:
            return [()] * len(empty)
        maps = list(map(operator.attrgetter(field), entities))
        try:
            rows = list(map(astuple, maps))
        except TypeError:  # some map is [] (old dumps)
            rows = [empty if type(terms) is list else astuple(terms) for terms in maps]
        return list(zip(*rows))

    def add_triples(self, head, claims, counts):
        """Append the triples of an item's statements; count every other statement by reason."""
        entity_ids, relation_ids = self.config.entity_ids, self.config.relation_ids
        heads, relations, tails = self.triple_columns
        no_value = not_an_item = 0  # counted in locals, cheaper than a Counter update per statement
        for relation, statements in claims.items():
            if not IS_PROPERTY_ID(relation) and statements:
                counts[MALFORMED_RELATION] += len(statements)
                self.note_bad_statement(head, relation, "not a property id")
                continue
            relation_kept = relation_ids is None or relation in relation_ids
            for statement in statements:
                snak = statement.mainsnak
                value = snak.datavalue
                if value is None or snak.snaktype != "value":
                    no_value += 1
                    continue
                if value.type != ENTITY_VALUE:  # most statements that are not triples end here, without a call
                    not_an_item += 1
                    continue
                tail = self.item_value(value.value, counts, head, relation)
                if tail is None:
                    continue
                if statement.rank == "deprecated":
                    counts[DEPRECATED] += 1
                elif not relation_kept or (entity_ids is not None and tail not in entity_ids):
                    counts[FILTERED] += 1
                else:
                    heads.append(head)
                    relations.append(relation)
                    tails.append(tail)
        if no_value:  # (no zero counts: summaries of shards add up to a single run's)
            counts[NO_VALUE] += no_value
        if not_an_item:
            counts[NOT_AN_ITEM_VALUE] += not_an_item

    def item_value(self, target, counts, head, relation):
        """The item id ("Q5") an entity value (the main snak's ``datavalue.value``) of statement ``head relation
        ...`` points to; None for a value that is not an item, counted by reason."""
        if type(target) is not EntityValue:
            return self.malformed_value(counts, head, relation, "an entity value that is not an object")
        if target.entity_type is None:  # today's format may name the type by the id's prefix alone: Q5, P31, L5
            if target.id is None:
                return self.malformed_value(counts, head, relation, "neither an entity-type nor an id")
            if target.id[:1] != "Q":
                counts[NOT_AN_ITEM_VALUE] += 1
                return None
        elif target.entity_type != ITEM:
            counts[NOT_AN_ITEM_VALUE] += 1
            return None
        tail = target.id
        if target.numeric_id is not None:
            numbered = f"Q{target.numeric_id}"
            if tail is not None and tail != numbered:
                return self.malformed_value(counts, head, relation,
                                            f"id {tail!r} but numeric-id {target.numeric_id}")
            tail = numbered
        if tail is None or not IS_ITEM_ID(tail):
            return self.malformed_value(counts, head, relation,
                                        "no item id" if tail is None else f"item id {tail!r}")
        return tail

    def malformed_value(self, counts, head, relation, what):
        counts[MALFORMED_VALUE] += 1
        self.note_bad_statement(head, relation, f"malformed item value: {what}")
        return None

    def note_bad_statement(self, entity_id, relation, what):
        if len(self.bad_statements) < LOGGED_BAD_STATEMENTS:
            self.bad_statements.append(f"{entity_id}{'' if relation is None else f' {relation!r}'}: {what}")


GET_ID, GET_TYPE, ENTITY_VALUE = operator.attrgetter("id"), operator.attrgetter("type"), "wikibase-entityid"


def _term_array(terms):
    """The values of a tuple of Terms (``NO_TERM`` or None: null) as an Arrow string array."""
    try:
        values = list(map(VALUE, terms))
    except AttributeError:  # an explicit null in the dump
        values = [None if term is None else term.value for term in terms]
    return pa.array(values, pa.string())


def _term_list_array(term_lists):
    """A tuple of lists of Terms (None: empty) as an Arrow list-of-strings array."""
    try:
        lengths = np.fromiter(map(len, term_lists), dtype=np.int32, count=len(term_lists))
    except TypeError:  # an explicit null in the dump
        term_lists = [() if terms is None else terms for terms in term_lists]
        lengths = np.fromiter(map(len, term_lists), dtype=np.int32, count=len(term_lists))
    offsets = np.zeros(len(term_lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = pa.array(list(map(VALUE, itertools.chain.from_iterable(term_lists))), pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _first_present(arrays):
    """Per row, the first of ``arrays`` (one per language variant) that is not null."""
    return arrays[0] if len(arrays) == 1 else pc.coalesce(*arrays)


def _first_nonempty(arrays):
    """Per row, the first of ``arrays`` (lists, one per language variant) that is not empty."""
    chosen = arrays[-1]
    for array in reversed(arrays[:-1]):
        chosen = pc.if_else(pc.greater(pc.list_value_length(array), 0), array, chosen)
    return chosen


def parse_blocks(blocks, config, workers):
    """BlockResults in block order: inline for one worker, else from a pool with a bounded number in flight."""
    return map_ordered(BlockParser, (config,), blocks, workers, preload=[__name__])


# --- Settings -------------------------------------------------------------------------------------------------
ID_PATTERNS = {"entity": ENTITY_ID, "relation": PROPERTY_ID}


def read_id_list(path, what):
    """The ids of an --entity-list / --relation-list file (accepted format: module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"--{what}-list {path}: no such file")
    ids = set()
    with open(path, "rb") as f:
        for line_no, data in enumerate(f, 1):
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError as err:
                raise UserFacingError(f"{path}:{line_no}: not UTF-8 (byte 0x{data[err.start]:02x} at offset "
                                      f"{err.start}): is it a list of ids, one per line?") from None
            if not text or text.startswith("#"):
                continue
            token = text.split(None, 1)[0].rsplit("/", 1)[-1]
            if not ID_PATTERNS[what].fullmatch(token):
                example = "P31" if what == "relation" else "Q42"
                raise UserFacingError(
                    f"{path}:{line_no}: {token!r} is not a Wikidata {what} id (expected e.g. {example})")
            ids.add(token)
    if not ids:
        raise UserFacingError(f"--{what}-list {path} holds no ids: every triple would be filtered out")
    return frozenset(ids)


def parse_shard(text):
    """``"3/8"`` -> (3, 8); shards are numbered from 0 like SLURM_ARRAY_TASK_ID."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not int(match[1]) < int(match[2]):
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N (e.g. 0/8), got {text!r}")
    return int(match[1]), int(match[2])


def plan_reads(inputs, shard, decompressed_sizes):
    """The ``text_blocks.Read``s of this run, and the shard's description for the summary (None if unsharded)."""
    if shard is None:
        return [text_blocks.Read(path) for path in inputs], None
    if decompressed_sizes and len(decompressed_sizes) != len(inputs):
        raise UserFacingError(f"--decompressed-size needs one value per input ({len(inputs)}), "
                              f"got {len(decompressed_sizes)}")
    sizes = [text_blocks.split_size(path, given)
             for path, given in zip(inputs, decompressed_sizes or [None] * len(inputs))]
    index, count = shard
    reads = text_blocks.shard_reads(inputs, sizes, index, count)
    logger.info("shard %d/%d of %s decompressed bytes%s: %s", index, count, f"{sum(sizes):,}",
                "" if decompressed_sizes else " (compressed inputs: estimated; --decompressed-size evens the shards)",
                "; ".join(f"{r.path} [{r.start:,}, {'end' if r.end is None else f'{r.end:,}'})" for r in reads)
                or "nothing")
    return reads, {"index": index, "count": count, "split_sizes": sizes}


# --- The stage ------------------------------------------------------------------------------------------------
def ingest(inputs, output, languages=DEFAULT_LANGUAGES, workers=1, shard=None, entity_list=None, relation_list=None,
           decompressed_sizes=None, chunk_bytes=8 << 20):
    """Run the stage on one or more dumps (read one after the other); returns the summary it writes.

    ``shard``: (index, count) or None; ``decompressed_sizes``: one per input, or None.
    """
    inputs = [Path(p) for p in ([inputs] if isinstance(inputs, (str, Path)) else inputs)]
    for path in inputs:
        if path.is_dir():
            raise UserFacingError(f"{path} is a directory: pass the dump file(s) in it (e.g. {path}/*.json.bz2)")
        if not path.is_file():
            raise UserFacingError(f"{path}: no such dump file")
    config = ParseConfig(
        tuple(languages),
        read_id_list(entity_list, "entity") if entity_list else None,
        read_id_list(relation_list, "relation") if relation_list else None,
    )
    reads, shard_info = plan_reads(inputs, shard, decompressed_sizes)
    out_dir = Path(output) if shard is None else Path(output) / SHARDS_DIR / shard_dir_name(*shard)
    summary_path = remove_previous_outputs(out_dir)

    started, counts, first, next_line = time.perf_counter(), Counter(), FirstOccurrence(), None
    with table_writers(out_dir, config.languages) as (entities_out, triples_out), _progress_bar(reads) as on_read:
        blocks = (b for r in reads for b in text_blocks.iter_block_refs(r.path, chunk_bytes, r.start, r.end, on_read))
        for result in parse_blocks(blocks, config, workers):
            _log_bad_statements(result, seen_before=sum(counts[r] for r in MALFORMED_STATEMENTS))
            first_line = next_line if result.first_line == text_blocks.FOLLOWS else result.first_line
            next_line = None if first_line is None else first_line + result.counts["lines"]
            _log_bad_lines(result, first_line, seen_before=sum(counts[r] for r in SKIP_REASONS))
            counts.update(result.counts)
            entities, duplicate_ids = first.drop_seen(result.entities)
            triples = drop_heads(result.triples, duplicate_ids)
            counts.update(kind_counts(entities))
            counts["triples"] += triples.num_rows
            entities_out.write(entities)
            triples_out.write(triples)
            on_read(0, entities=counts["items"] + counts["properties"])
    counts[DUPLICATES] += first.duplicates
    summary = {
        "inputs": [str(p.resolve()) for p in inputs],
        "input_bytes": [p.stat().st_size for p in inputs],
        "languages": list(config.languages),
        "entity_list": _list_info(entity_list, config.entity_ids),
        "relation_list": _list_info(relation_list, config.relation_ids),
        "shard": shard_info,
        "seconds": round(time.perf_counter() - started, 3),
        "counts": dict(sorted(counts.items())),
        "outputs": [str(out_dir / ENTITIES_FILE), str(out_dir / TRIPLES_FILE)],
    }
    write_text(json.dumps(summary, indent=2) + "\n", summary_path)
    log_summary(summary)
    return summary


def _log_bad_lines(result, first_line, seen_before):
    """Log the first LOGGED_BAD_LINES bad lines of the run (the rest are only counted), with their line numbers
    when the block's first line is known."""
    for bad in result.bad_lines[:max(0, LOGGED_BAD_LINES - seen_before)]:
        bad.line = None if first_line is None else first_line + bad.index
        logger.warning("skipped %s", bad)
    if seen_before <= LOGGED_BAD_LINES < seen_before + sum(result.counts[r] for r in SKIP_REASONS):
        logger.warning("more than %d bad lines: the rest are counted, not shown", LOGGED_BAD_LINES)


def _log_bad_statements(result, seen_before):
    """Log the first LOGGED_BAD_STATEMENTS malformed statements of the run (the rest are only counted)."""
    for text in result.bad_statements[:max(0, LOGGED_BAD_STATEMENTS - seen_before)]:
        logger.warning("skipped statement of %s", text)
    if seen_before <= LOGGED_BAD_STATEMENTS < seen_before + sum(result.counts[r] for r in MALFORMED_STATEMENTS):
        logger.warning("more than %d malformed statements: the rest are counted, not shown", LOGGED_BAD_STATEMENTS)


def _list_info(path, ids):
    return None if path is None else {"path": str(Path(path).resolve()), "ids": len(ids)}


@contextlib.contextmanager
def _progress_bar(reads):
    """Yield ``on_read(n_bytes, **postfix)``: a tqdm bar of decompressed bytes (MB/s) with the entities so far.
    Its total is known when every input is uncompressed."""
    plain = all(text_blocks.detect_format(r.path) == text_blocks.PLAIN for r in reads)
    total = sum((r.end or r.path.stat().st_size) - r.start for r in reads) if plain else None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="ingest", mininterval=1 if sys.stderr.isatty() else 30)
    postfix = {}

    def on_read(n_bytes, **values):
        if values:
            postfix.update(values)
            bar.set_postfix(postfix, refresh=False)
        bar.update(n_bytes)

    with bar:
        yield on_read


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Languages: the zh columns take, for each of label, aliases and description, the first of\n  "
        + ", ".join(LANGUAGE_FALLBACKS["zh"]) + " that has one.\n"
        "Id lists: one id per line, its first whitespace-separated token (Wikidata5M's files work as they are);\n"
        "  blank lines and # comments are ignored; a URI .../entity/Q42 counts as Q42.\n"
        "  --entity-list keeps triples whose head AND tail are listed, and the listed items' rows;\n"
        "  --relation-list keeps triples whose relation is listed, and the listed properties' rows.\n"
        "Sharding: --shard I/N reads the lines starting in the I-th of N byte ranges of the decompressed input\n"
        "  into OUT/shards/IIIII-of-NNNNN/; every shard of a compressed dump decompresses it from the start and\n"
        "  skips to its range. Then `kmlm-preprocess merge -o OUT` gives the tables of a single run.\n"
        "Bad lines are skipped and counted (the first few logged); a truncated compressed file is an error."
    )
    parser.add_argument("-i", "--input", type=Path, nargs="+", required=True, metavar="DUMP",
                        help="Wikidata JSON dump(s): .json, .json.gz or .json.bz2; several are read one after the "
                             "other, and an entity seen again keeps its first row only")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help=f"output directory for {ENTITIES_FILE}, {TRIPLES_FILE} and {SUMMARY_FILE}")
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES),
                        help="languages of the label/aliases/description columns, comma or space separated "
                             f"(default: %(default)s); zh falls back through {', '.join(LANGUAGE_FALLBACKS['zh'])}")
    parser.add_argument("--workers", type=int, default=None,
                        help="parser processes beside the reading process; 1 parses in the reading process "
                             f"(default: every usable CPU, {usable_cpus()}, for uncompressed dumps, whose reading "
                             f"process is nearly idle; one fewer, {default_workers()}, for compressed ones, whose "
                             "reading process decompresses)")
    parser.add_argument("--entity-list", type=Path, metavar="FILE",
                        help="keep only triples whose head and tail are listed, and only the listed items")
    parser.add_argument("--relation-list", type=Path, metavar="FILE",
                        help="keep only triples whose relation is listed, and only the listed properties")
    parser.add_argument("--shard", type=parse_shard, metavar="I/N",
                        help="read only the I-th (from 0) of N byte ranges of the input into OUT/shards/")
    parser.add_argument("--decompressed-size", type=int, nargs="+", metavar="BYTES",
                        help="decompressed size of each compressed input (e.g. from `zcat DUMP | wc -c`), for "
                             "even --shard ranges; default: estimated from the first 8 MiB")
    parser.add_argument("--chunk-mb", type=float, default=8.0,
                        help="MB of dump lines per block handed to a parser (default: %(default)s)")


def default_ingest_workers(inputs):
    """Every usable CPU when every input is an uncompressed dump (its parsers read their own blocks, so the
    reading process only plans and writes); one fewer when the reading process decompresses."""
    paths = [Path(p) for p in inputs]
    if all(p.is_file() and text_blocks.detect_format(p) == text_blocks.PLAIN for p in paths):
        logger.info("--workers %d (default): every usable CPU, as the input is uncompressed", usable_cpus())
        return usable_cpus()
    logger.info("--workers %d (default): the usable CPUs but one, which decompresses", default_workers())
    return default_workers()


def run(args):
    if args.workers is None:
        args.workers = default_ingest_workers(args.input)
    if args.workers < 1:
        raise UserFacingError(f"--workers must be at least 1, got {args.workers}")
    if args.chunk_mb <= 0:
        raise UserFacingError(f"--chunk-mb must be positive, got {args.chunk_mb}")
    ingest(
        args.input, args.output, languages=parse_languages(args.languages), workers=args.workers, shard=args.shard,
        entity_list=args.entity_list, relation_list=args.relation_list, decompressed_sizes=args.decompressed_size,
        chunk_bytes=max(1, int(args.chunk_mb * (1 << 20))),
    )
    return 0
