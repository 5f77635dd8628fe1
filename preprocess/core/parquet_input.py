"""A stage's Parquet input, opened and checked against its format before anything is read.

Every Parquet file a stage reads goes through ``ParquetInput`` (each format module in ``preprocess.core.formats``
has its ``open_...`` function that names the file, its schema and the stage that makes it), so no stage can forget
a check. What is checked, each a one-line ``UserFacingError`` naming the file:
  - the file exists (the file itself, or the format's file name in a directory) -- else which stage makes it;
  - it is a Parquet file at all, and every later read of it succeeds (damaged pages, truncated files);
  - it has every column the stage reads, each of a compatible type: string (large_string too), integer (any width,
    cast to the format's), list (of a compatible type; a string where a list belongs, and the other way round, is
    an error), struct (the same field names, each compatible);
  - the columns that must not be null have no null (the first null's row is named).
Columns are returned with the format's types, so a stage never sees ``large_string`` or ``int32`` variants.
Only required columns can be read (a column the stage did not require up front: ``require`` it when it is needed,
as for an optional column, ``has`` then ``require``). A read may take one field of a required column's structs,
``column.field`` (``spans.role``: the role of every span, list levels skipped), to leave the other fields (the
texts) unread; it is found by the file's own Parquet path, whatever its list naming (``list.element``,
``list.item``, ...).
"""
import contextlib
import functools
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from preprocess.core.errors import UserFacingError


def compatible(actual, expected):
    """Whether a column of type ``actual`` can be read as ``expected`` (module docstring)."""
    if actual.equals(expected):
        return True
    if pa.types.is_string(expected) or pa.types.is_large_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and \
            compatible(actual.value_type, expected.value_type)
    if pa.types.is_struct(expected):
        return pa.types.is_struct(actual) and [f.name for f in actual] == [f.name for f in expected] and \
            all(compatible(a.type, e.type) for a, e in zip(actual, expected))
    return False


def _leaves(type_):
    """The field paths of a type's leaves, in Parquet column order; list levels are skipped (spans: ("text",),
    ("role",), ...), a leaf that is not a struct's field is ()."""
    if pa.types.is_struct(type_):
        return [(field.name, *leaf) for field in type_ for leaf in _leaves(field.type)]
    if pa.types.is_map(type_):
        return [("key", *leaf) for leaf in _leaves(type_.key_type)] + \
            [("value", *leaf) for leaf in _leaves(type_.item_type)]
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_fixed_size_list(type_):
        return _leaves(type_.value_type)
    return [()]


def _projected(expected, actual):
    """``expected`` cut down to the struct fields ``actual`` holds (a read of some fields of a column)."""
    if pa.types.is_struct(expected) and pa.types.is_struct(actual):
        names = {field.name for field in actual}
        return pa.struct([field.with_type(_projected(field.type, actual.field(field.name).type))
                          for field in expected if field.name in names])
    if pa.types.is_list(expected) and (pa.types.is_list(actual) or pa.types.is_large_list(actual)):
        return pa.list_(_projected(expected.value_type, actual.value_type))
    return expected


def _first_line(err):
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class ParquetInput:
    """One Parquet input file: ``require`` checks it against a format, ``read``/``iter_batches`` read it checked."""

    def __init__(self, path, made_by):
        self.path, self.made_by = Path(path), made_by
        with self._reading("is not a readable Parquet file"):
            self.file = pq.ParquetFile(self.path)
            self.schema = self.file.schema_arrow
        self.expected, self.not_null = {}, ()

    @classmethod
    def find(cls, path, name, made_by):
        """Open ``path``, or ``path/name`` when ``path`` is a directory; a clear error naming the stage that makes
        it when there is no such file."""
        path = Path(path)
        if path.is_dir() or (not path.exists() and path.suffix != ".parquet"):
            path = path / name
        if not path.is_file():
            raise UserFacingError(f"{path} does not exist: run `kmlm-preprocess {made_by}` first "
                                  f"(pass {name} or the directory holding it)")
        return cls(path, made_by)

    def require(self, schema, columns=None, not_null=()):
        """Check that the columns ``columns`` (default: all of ``schema``) exist with types compatible with
        ``schema``; remember them (and the columns that must not hold nulls) for the reads. Returns self."""
        columns = list(schema.names if columns is None else columns)
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise UserFacingError(
                f"{self.path} has no column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
                f"(its columns: {', '.join(self.schema.names) or 'none'}): is it the file `kmlm-preprocess "
                f"{self.made_by}` writes?")
        for name in columns:
            actual, expected = self.schema.field(name).type, schema.field(name).type
            if not compatible(actual, expected):
                raise UserFacingError(f"{self.path}: column {name!r} is {actual}, expected {expected}")
            self.expected[name] = expected
        self.not_null = tuple(dict.fromkeys(self.not_null + tuple(not_null)))
        return self

    def has(self, column):
        return column in self.schema.names

    @property
    def num_rows(self):
        return self.file.metadata.num_rows

    @property
    def num_row_groups(self):
        return self.file.num_row_groups

    def row_group_rows(self):
        return [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]

    def read(self, columns=None):
        """The whole file's ``columns`` (default: every required column) as a Table of the format's types."""
        columns = self._columns(columns)
        with self._reading("cannot be read"):
            table = self.file.read(columns=columns)
        return self._checked(table, 0)

    def iter_batches(self, batch_size, columns=None, row_groups=None):
        """Record batches of at most ``batch_size`` rows (of ``row_groups`` only, if given), checked and cast."""
        columns = self._columns(columns)
        sizes = self.row_group_rows()
        row = sum(sizes[:row_groups[0]]) if row_groups else 0
        with self._reading("cannot be read"):
            batches = self.file.iter_batches(batch_size=batch_size, columns=columns, row_groups=row_groups)
        while True:
            with self._reading("cannot be read"):
                batch = next(batches, None)
            if batch is None:
                return
            yield self._checked(batch, row)
            row += batch.num_rows

    def _columns(self, columns):
        """The Parquet paths to read for ``columns`` (default: every required column), each a required column or
        ``column.field`` of one (module docstring)."""
        columns = list(self.expected if columns is None else columns)
        unchecked = [c for c in columns if c not in self.expected and c.partition(".")[0] not in self.expected]
        if unchecked:
            raise ValueError(f"{self.path}: column(s) {unchecked} read without require()")  # a bug, not bad input
        return [column if column in self.expected else self._field_path(column) for column in columns]

    def _field_path(self, column):
        name, _, field = column.partition(".")
        path = self._leaf_paths.get((name, *field.split(".")))
        if path is None:
            raise ValueError(f"{self.path}: column {name!r} has no field {field!r}")  # a bug: formats name fields
        return path

    @functools.cached_property
    def _leaf_paths(self):
        """{(column, *fields): the Parquet path of that leaf}, e.g. ("spans", "role"): "spans.list.element.role"."""
        physical = [self.file.schema.column(i).path for i in range(len(self.file.schema))]
        logical = [(field.name, *leaf) for field in self.schema for leaf in _leaves(field.type)]
        return dict(zip(logical, physical)) if len(logical) == len(physical) else {}

    def _checked(self, data, first_row):
        """``data`` (Table or RecordBatch) with the format's types; a clear error for a null where none may be."""
        for name in self.not_null:
            if name in data.schema.names and data.column(name).null_count:
                row = pc.index(pc.is_null(data.column(name)), True).as_py()
                raise UserFacingError(f"{self.path}: {data.column(name).null_count} null value(s) in column "
                                      f"{name!r}, first at row {first_row + row}")
        target = pa.schema([pa.field(field.name, _projected(self.expected[field.name], field.type))
                            for field in data.schema])
        if data.schema.equals(target):
            return data
        with self._reading("cannot be read as its format"):
            return data.cast(target)

    @contextlib.contextmanager
    def _reading(self, what):
        """Damaged bytes surface as Arrow errors or OSErrors from anywhere in a read: one line naming the file."""
        try:
            yield
        except (OSError, pa.ArrowException) as err:
            raise UserFacingError(f"{self.path} {what} ({_first_line(err)})") from None
