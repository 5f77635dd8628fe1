"""reasoning.parquet: the reasoning samples of the reasoning stage."""
import pyarrow as pa

from preprocess.core.formats.spans import SPANS_TYPE
from preprocess.core.parquet_input import ParquetInput

REASONING_FILE = "reasoning.parquet"


REASONING_SCHEMA = pa.schema([
    pa.field("spans", SPANS_TYPE),
    pa.field("cycle_id", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("lang", pa.string()),
])


# A sample's cycle: the reasoning stage never writes a null here (a null lang is a counted drop in binarize).
NOT_NULL = ("cycle_id", "kind")


def open_reasoning(path, columns=tuple(REASONING_SCHEMA.names)):
    """reasoning.parquet (``path`` or ``path/reasoning.parquet``) checked: ``columns`` present and typed, no null
    cycle_id or kind."""
    return ParquetInput.find(path, REASONING_FILE, "reasoning").require(
        REASONING_SCHEMA, columns, not_null=[c for c in NOT_NULL if c in columns])
