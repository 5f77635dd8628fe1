"""sentences.parquet: the knowledge samples of the sentences stage."""
import pyarrow as pa

from preprocess.core.formats.spans import SPANS_TYPE
from preprocess.core.parquet_input import ParquetInput

SENTENCES_FILE = "sentences.parquet"


CODESWITCH, ALIAS = "codeswitch", "alias"


VARIANTS = (CODESWITCH, ALIAS)


SENTENCES_SCHEMA = pa.schema([
    pa.field("spans", SPANS_TYPE),
    pa.field("triple_index", pa.int64()),
    pa.field("variant", pa.string()),
    pa.field("lang_pair", pa.string()),
])


def open_sentences(path, columns=tuple(SENTENCES_SCHEMA.names)):
    """sentences.parquet (``path`` or ``path/sentences.parquet``) checked: ``columns`` present and typed."""
    return ParquetInput.find(path, SENTENCES_FILE, "sentences").require(SENTENCES_SCHEMA, columns)
