"""The ingest tables that every later stage reads, and the one way to look labels up in them.

``entities.parquet``: one row per item or property
    ``id`` ("Q42", "P31"), ``kind`` ("item" | "property"), and per language L:
    ``label_L`` (string or null), ``aliases_L`` (list of strings, possibly empty), ``description_L`` (string or null).
``triples.parquet``: one row per entity-valued main-snak statement whose value is an item (deprecated rank skipped)
    ``head`` ("Q42"), ``relation`` ("P31"), ``tail`` ("Q5").
"""
import contextlib
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from preprocess.core.errors import UserFacingError
from preprocess.core.io import FixedGroupWriter, atomic_path
from preprocess.core.languages import parse_languages
from preprocess.core.parquet_input import ParquetInput

ENTITIES_FILE = "entities.parquet"
TRIPLES_FILE = "triples.parquet"
TRIPLE_COLUMNS = ("head", "relation", "tail")
MADE_BY = "ingest"
# The ids the tables hold: Q (item) or P (property), then a number without leading zero below 10^18 (so it fits an
# int64 and each number has one spelling). ingest skips and counts anything else.
ENTITY_ID, ITEM_ID, PROPERTY_ID = (re.compile(rf"{prefix}[1-9][0-9]{{0,17}}") for prefix in ("[QP]", "Q", "P"))


def label_column(lang):
    return f"label_{lang}"


def aliases_column(lang):
    return f"aliases_{lang}"


def description_column(lang):
    return f"description_{lang}"


def entities_schema(languages):
    fields = [pa.field("id", pa.string()), pa.field("kind", pa.string())]
    for lang in languages:
        fields += [
            pa.field(label_column(lang), pa.string()),
            pa.field(aliases_column(lang), pa.list_(pa.string())),
            pa.field(description_column(lang), pa.string()),
        ]
    return pa.schema(fields)


TRIPLES_SCHEMA = pa.schema([pa.field(c, pa.string()) for c in TRIPLE_COLUMNS])


def table_languages(schema):
    """The languages an entities table was made with, in column order."""
    return tuple(name[len("label_"):] for name in schema.names if name.startswith("label_"))


def open_triples(directory, columns=TRIPLE_COLUMNS):
    """triples.parquet (or ``directory/triples.parquet``) checked: ``columns`` present, string-typed, no nulls."""
    triples = ParquetInput.find(directory, TRIPLES_FILE, MADE_BY)
    return triples.require(TRIPLES_SCHEMA, columns, not_null=columns)


def open_entities(directory, languages=None, per_language=(label_column,)):
    """(entities.parquet checked, its languages): ``id``, ``kind`` and the ``per_language`` columns (e.g.
    ``label_column``) of ``languages`` (default: every language the table was made for); a clear error for a
    language the table has no columns for."""
    entities = ParquetInput.find(directory, ENTITIES_FILE, MADE_BY)
    made_for = table_languages(entities.schema)
    languages = made_for if languages is None else tuple(languages)
    missing = [lang for lang in languages if lang not in made_for]
    if missing:
        raise UserFacingError(
            f"{entities.path} has no columns for language(s) {', '.join(missing)}; "
            f"it was made for {', '.join(made_for) or 'no language'}: re-run ingest with --languages or pass "
            "--languages"
        )
    columns = ["id", "kind"] + [column(lang) for lang in languages for column in per_language]
    return entities.require(entities_schema(languages), columns, not_null=("id",)), languages


def read_entity_columns(tables_dir, languages, with_aliases):
    """``id``, ``kind`` and the label (and aliases) columns of ``languages``, checked."""
    per_language = (label_column, aliases_column) if with_aliases else (label_column,)
    entities, _ = open_entities(tables_dir, languages, per_language)
    return entities.read()


class LabelTable:
    """Labels (and with ``with_aliases``, aliases) of entities and relations in the requested languages, looked up
    by id ("Q42", "P31").

    ``ids``: load only these (at Wikidata scale, the rows a stage needs, not millions of Python strings per
    language); ids not in the table have no label.
    """

    def __init__(self, directory, languages, ids=None, with_aliases=False):
        table = read_entity_columns(directory, languages, with_aliases=with_aliases)
        if ids is not None:
            table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(sorted(ids), pa.string())))
        self.languages = tuple(languages)
        self.row = {entity_id: i for i, entity_id in enumerate(table.column("id").to_pylist())}
        self._labels = {lang: table.column(label_column(lang)).to_pylist() for lang in languages}
        self._aliases = {lang: table.column(aliases_column(lang)).to_pylist() for lang in languages} \
            if with_aliases else None

    def __contains__(self, entity_id):
        return entity_id in self.row

    def label(self, entity_id, lang):
        i = self.row.get(entity_id)
        return None if i is None else self._labels[lang][i]

    def aliases(self, entity_id, lang):
        if self._aliases is None:
            raise ValueError("this LabelTable was loaded without aliases (with_aliases=False)")
        i = self.row.get(entity_id)
        return [] if i is None else (self._aliases[lang][i] or [])


LOOKUP_BATCH = 1 << 20  # triples per id lookup: each lookup builds a hash table of all entity ids


# --- Shared with the reasoning stage ------------------------------------------------------------------------------
def resolve_languages(text, tables_dir):
    """``--languages`` if given, else every language the entities table was made with."""
    if text is not None:
        return parse_languages(text)
    return open_entities(tables_dir, per_language=())[1]


# Row groups of a fixed size make a table's bytes depend only on its rows, not on how they were batched
# (blocks, workers, shards): this is what makes a merge of shards byte-identical to a single run.
ENTITY_ROWS_PER_GROUP = 100_000


TRIPLE_ROWS_PER_GROUP = 1_000_000


# --- Writing --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def table_writers(directory, languages):
    """(entities, triples) FixedGroupWriters on temporary files, renamed onto ``directory/ENTITIES_FILE`` and
    ``directory/TRIPLES_FILE`` only if the block finishes without error."""
    directory = Path(directory)
    with ExitStack() as stack:
        entities_tmp = stack.enter_context(atomic_path(directory / ENTITIES_FILE))
        triples_tmp = stack.enter_context(atomic_path(directory / TRIPLES_FILE))
        entities = FixedGroupWriter(entities_tmp, entities_schema(languages), ENTITY_ROWS_PER_GROUP)
        triples = FixedGroupWriter(triples_tmp, TRIPLES_SCHEMA, TRIPLE_ROWS_PER_GROUP)
        stack.callback(close_side_by_side, entities, triples)  # callbacks run before the renames above
        yield entities, triples


def close_side_by_side(*writers):
    """Close the writers in threads of their own: Arrow encodes and compresses the last row groups without the
    GIL, so closing takes the time of the slowest one, not of all. It is the one part of a parallel ingest that
    no worker overlaps (bench/ingest.py --profile)."""
    with ThreadPoolExecutor(len(writers), thread_name_prefix="close-table") as pool:
        for closing in [pool.submit(writer.close) for writer in writers]:
            closing.result()


class FirstOccurrence:
    """Keeps only the first row of each entity id over a run (blocks, inputs, shards), and drops the triples of
    the later occurrences.

    Memory grows with the number of ids seen, never with an id's value: a well-formed id (``ENTITY_ID``) whose
    number is below ``DENSE_IDS`` takes one bit of a per-prefix bitmap (~16 MB for all of Wikidata's ~130M items,
    at most DENSE_IDS / 8 = 32 MiB per prefix); any other id (a larger number from another Wikibase, a string that
    is no id at all) is kept in a set.
    """

    DENSE_IDS = 1 << 28

    def __init__(self):
        self.bits = {"Q": np.zeros(0, dtype=np.uint8), "P": np.zeros(0, dtype=np.uint8)}
        self.other_ids = set()
        self.duplicates = 0

    def drop_seen(self, entities):
        """(the rows of ``entities`` whose id was not seen before, the ids that were or None); marks the ids seen.
        The ids within one batch are distinct (the parser drops repeats within a block)."""
        ids = entities.column(0)
        numbers = np.full(len(ids), self.DENSE_IDS, dtype=np.int64)  # DENSE_IDS: not in a bitmap
        well_formed = pc.fill_null(pc.match_substring_regex(ids, f"^{ENTITY_ID.pattern}$"), False)
        well_formed = well_formed.to_numpy(zero_copy_only=False)
        numbers[well_formed] = pc.cast(pc.utf8_slice_codeunits(ids.filter(well_formed), 1), pa.int64()).to_numpy()
        dense = numbers < self.DENSE_IDS
        is_item = pc.fill_null(pc.starts_with(ids, "Q"), False).to_numpy(zero_copy_only=False)
        duplicate = np.zeros(len(ids), dtype=bool)
        for prefix, rows in (("Q", dense & is_item), ("P", dense & ~is_item)):
            byte, bit = numbers[rows] >> 3, (1 << (numbers[rows] & 7)).astype(np.uint8)
            bits = self._grown(prefix, byte.max(initial=-1) + 1)
            duplicate[rows] = (bits[byte] & bit) != 0
            np.bitwise_or.at(bits, byte, bit)
        other_rows = np.flatnonzero(~dense)
        for row, entity_id in zip(other_rows, ids.take(pa.array(other_rows, pa.int64())).to_pylist()):
            duplicate[row] = entity_id in self.other_ids
            self.other_ids.add(entity_id)
        if not duplicate.any():
            return entities, None
        self.duplicates += int(duplicate.sum())
        return entities.filter(pa.array(~duplicate)), ids.filter(pa.array(duplicate))

    def _grown(self, prefix, size):
        if len(self.bits[prefix]) < size:
            grown = np.zeros(min(max(size, 2 * len(self.bits[prefix])), self.DENSE_IDS >> 3), dtype=np.uint8)
            grown[:len(self.bits[prefix])] = self.bits[prefix]
            self.bits[prefix] = grown
        return self.bits[prefix]


def drop_heads(triples, heads):
    """``triples`` without the rows whose head is in ``heads`` (None: no change)."""
    if heads is None:
        return triples
    return triples.filter(pc.invert(pc.is_in(triples.column(0), value_set=heads)))
