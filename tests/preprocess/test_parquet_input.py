"""ParquetInput's reads of one field of a column's structs (``spans.role``), and its refusal to read a column that
was not required (checked). The stages' checks of wrong columns are tested with each stage and in
tests/test_input_contracts.py."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess.core.formats.reasoning import REASONING_SCHEMA, open_reasoning

SAMPLES = [
    {"spans": [{"text": f"t{i}{j}", "role": role, "id": f"Q{i}{j}", "sentence": j, "lang": "en"}
               for j, role in enumerate(("head", "relation", "tail")[: i % 4])],
     "cycle_id": i, "kind": "triangle" if i % 2 else "diamond", "lang": "en"}
    for i in range(11)
]


def write_samples(path, list_name):
    """SAMPLES as reasoning.parquet, the spans list's Parquet level named ``list_name`` (pyarrow's own: element)."""
    spans_type = pa.list_(pa.field(list_name, REASONING_SCHEMA.field("spans").type.value_type))
    schema = REASONING_SCHEMA.set(0, pa.field("spans", spans_type))
    pq.write_table(pa.Table.from_pylist(SAMPLES, schema), path, row_group_size=4, use_compliant_nested_type=False)
    return path


@pytest.mark.parametrize("list_name", ["element", "item", "span"])
def test_a_field_of_a_struct_column_is_read_alone_whatever_the_list_naming(tmp_path, list_name):
    path = write_samples(tmp_path / "reasoning.parquet", list_name)
    assert f"spans.list.{list_name}.role" in [column.path for column in pq.ParquetFile(path).schema]
    batches = list(open_reasoning(path).iter_batches(3, ["kind", "spans.role", "spans.id"]))
    assert batches[0].schema.field("spans").type == pa.list_(pa.struct([("role", pa.string()), ("id", pa.string())]))
    rows = pa.Table.from_batches(batches).to_pylist()
    assert rows == [{"kind": s["kind"], "spans": [{"role": x["role"], "id": x["id"]} for x in s["spans"]]}
                    for s in SAMPLES]


def test_only_required_columns_and_fields_of_the_format_can_be_read(tmp_path):
    path = write_samples(tmp_path / "reasoning.parquet", "element")
    samples = open_reasoning(path, ["kind"])
    assert samples.read()["kind"].to_pylist() == [s["kind"] for s in SAMPLES]
    for unchecked in (["cycle_id"], ["spans.role"], ["spans"]):
        with pytest.raises(ValueError, match="read without require"):
            samples.read(unchecked)
    with pytest.raises(ValueError, match="'spans' has no field 'speaker'"):
        open_reasoning(path).read(["spans.speaker"])
