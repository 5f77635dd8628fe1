"""reasoning.parquet: the reasoning samples of the reasoning stage."""
import pyarrow as pa

from preprocess.core.formats.spans import SPANS_TYPE

REASONING_FILE = "reasoning.parquet"


REASONING_SCHEMA = pa.schema([
    pa.field("spans", SPANS_TYPE),
    pa.field("cycle_id", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("lang", pa.string()),
])
