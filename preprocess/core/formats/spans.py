"""The spans column shared by sentences.parquet and reasoning.parquet: one struct per mention, in reading order."""
import pyarrow as pa

SENTENCE_END = " ."  # closes each rendered sentence `h <mask> r <mask> t .`


ROLES = ("head", "relation", "tail")


SPAN_TYPE = pa.struct([
    pa.field("text", pa.string()),
    pa.field("role", pa.string()),
    pa.field("id", pa.string()),
    pa.field("sentence", pa.int32()),
    pa.field("lang", pa.string()),
])


SPANS_TYPE = pa.list_(SPAN_TYPE)


def spans_array(offsets, text, role, entity_id, sentence, lang):
    """``list<struct<text, role, id, sentence, lang>>`` from flat span columns; row i holds spans
    offsets[i]:offsets[i+1]."""
    struct = pa.StructArray.from_arrays(
        [text, role, entity_id, pa.array(sentence, pa.int32()), lang], fields=list(SPAN_TYPE)
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct, type=SPANS_TYPE)
