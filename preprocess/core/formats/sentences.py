"""sentences.parquet: the knowledge samples of the sentences stage."""
import pyarrow as pa

from preprocess.core.formats.spans import SPANS_TYPE

SENTENCES_FILE = "sentences.parquet"


CODESWITCH, ALIAS = "codeswitch", "alias"


VARIANTS = (CODESWITCH, ALIAS)


SENTENCES_SCHEMA = pa.schema([
    pa.field("spans", SPANS_TYPE),
    pa.field("triple_index", pa.int64()),
    pa.field("variant", pa.string()),
    pa.field("lang_pair", pa.string()),
])
