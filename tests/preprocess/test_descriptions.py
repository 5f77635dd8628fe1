import pyarrow as pa
import pyarrow.parquet as pq

from preprocess import cli
from preprocess.core.formats.tables import ENTITIES_FILE, entities_schema


def test_descriptions_writes_one_line_per_description_and_skips_missing(tmp_path):
    rows = [
        {"id": "Q1", "kind": "item", "description_en": "capital\nof France", "description_de": None},
        {"id": "Q2", "kind": "item", "description_en": "  ", "description_de": "Stadt"},
        {"id": "P1", "kind": "property", "description_en": "located in", "description_de": "liegt in"},
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=entities_schema(["en", "de"])), tmp_path / ENTITIES_FILE)

    assert cli.main(["descriptions", "--input", str(tmp_path), "--output", str(tmp_path / "plain")]) == 0

    assert (tmp_path / "plain" / "en.txt").read_text() == "capital of France\nlocated in\n"
    assert (tmp_path / "plain" / "de.txt").read_text() == "Stadt\nliegt in\n"
