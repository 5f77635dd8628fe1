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


# A sample's triple and variant: the sentences stage never writes a null here (a null lang_pair is a counted drop in
# binarize).
NOT_NULL = ("triple_index", "variant")


def open_sentences(path, columns=tuple(SENTENCES_SCHEMA.names)):
    """sentences.parquet (``path`` or ``path/sentences.parquet``) checked: ``columns`` present and typed, no null
    triple_index or variant."""
    return ParquetInput.find(path, SENTENCES_FILE, "sentences").require(
        SENTENCES_SCHEMA, columns, not_null=[c for c in NOT_NULL if c in columns])
