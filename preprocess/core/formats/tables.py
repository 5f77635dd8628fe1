"""The ingest tables that every later stage reads, and the one way to look labels up in them.

``entities.parquet``: one row per item or property
    ``id`` ("Q42", "P31"), ``kind`` ("item" | "property"), and per language L:
    ``label_L`` (string or null), ``aliases_L`` (list of strings, possibly empty), ``description_L`` (string or null).
``triples.parquet``: one row per entity-valued main-snak statement whose value is an item (deprecated rank skipped)
    ``head`` ("Q42"), ``relation`` ("P31"), ``tail`` ("Q5").
"""
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from preprocess.core.common import UserFacingError

ENTITIES_FILE = "entities.parquet"
TRIPLES_FILE = "triples.parquet"
TRIPLE_COLUMNS = ("head", "relation", "tail")


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


def existing_table(directory, name):
    """The path of a table a previous stage made, or a clear error saying which stage to run."""
    path = Path(directory) / name
    if not path.exists():
        raise UserFacingError(f"{path} does not exist: run `kmlm-preprocess ingest` (or the stage that makes it) first")
    return path


def read_table(directory, name, columns=None):
    return pq.read_table(existing_table(directory, name), columns=columns)


def read_entity_columns(tables_dir, languages, with_aliases):
    """``id``, ``kind`` and the label (and aliases) columns of ``languages``; a clear error for a missing one."""
    path = existing_table(tables_dir, ENTITIES_FILE)
    made_for = table_languages(pq.read_schema(path))
    missing = [lang for lang in languages if lang not in made_for]
    if missing:
        raise UserFacingError(
            f"{path} has no columns for language(s) {', '.join(missing)}; "
            f"it was made for {', '.join(made_for)}: re-run ingest with --languages or pass --languages"
        )
    columns = ["id", "kind"] + [label_column(lang) for lang in languages]
    if with_aliases:
        columns += [aliases_column(lang) for lang in languages]
    return pq.read_table(path, columns=columns)


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
