"""The real Wikidata entities bundled in tests/data (a current-format items sample and a 2014 dump with properties),
as the benchmarks' source of real labels, descriptions and statements (bench/binarize.py, bench/scale.py,
bench/ingest.py)."""
import bz2
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ITEMS_SAMPLE = DATA / "opentapioca_sample_items.json.bz2"
SAMPLES = [ITEMS_SAMPLE, DATA / "wikibrain_2014_testdump.json.bz2"]


def sample_entities(paths=SAMPLES):
    """Yield each entity (a dict) of the dump files, in file order: one JSON object per line inside a JSON array."""
    for path in paths:
        with bz2.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                line = line.strip().rstrip(",")
                if line.startswith("{"):
                    yield json.loads(line)
