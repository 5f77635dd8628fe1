"""ingest_summary.json and the shards/ layout of ingest, which merge reads: counts per reason, settings, outputs."""
import logging
from collections import Counter

import pyarrow.compute as pc

from preprocess.core.formats.tables import ENTITIES_FILE, TRIPLES_FILE

logger = logging.getLogger(__name__)


SUMMARY_FILE = "ingest_summary.json"


SHARDS_DIR = "shards"


# Skip reasons (counted per line).
INVALID_JSON, NOT_AN_ENTITY, OTHER_ENTITY_TYPE = "invalid JSON", "not an entity", "not an item or property"


NOT_UTF8 = "not UTF-8"


ITEM, PROPERTY = "item", "property"


DUPLICATES = "duplicate entities skipped"


# Statements (counted per statement of every entity that gets a row): each one is a triple or one of these.
STATEMENTS = "statements"
DEPRECATED, FILTERED = "deprecated statements skipped", "triples filtered out"
NO_VALUE = "statements without a value (somevalue/novalue)"
NOT_AN_ITEM_VALUE = "statements whose value is not an item"
OF_PROPERTIES = "statements of properties (not triples)"
MALFORMED_VALUE = "statements skipped: malformed item value"
MALFORMED_RELATION = "statements skipped: malformed relation id"
CLAIMS_NOT_A_MAP = "statements skipped: claims not a map"
STATEMENT_OUTCOMES = (DEPRECATED, FILTERED, NO_VALUE, NOT_AN_ITEM_VALUE, OF_PROPERTIES, MALFORMED_VALUE,
                      MALFORMED_RELATION, CLAIMS_NOT_A_MAP)
MALFORMED_STATEMENTS = (MALFORMED_VALUE, MALFORMED_RELATION, CLAIMS_NOT_A_MAP)


def kind_counts(entities):
    """Items and properties among entity rows (counted on what is written, after duplicates are dropped)."""
    items = pc.sum(pc.equal(entities.column(1), ITEM)).as_py() or 0
    return Counter({"items": items, "properties": entities.num_rows - items})


def shard_dir_name(index, count):
    return f"{index:05d}-of-{count:05d}"


SKIP_REASONS = (INVALID_JSON, NOT_UTF8, NOT_AN_ENTITY, OTHER_ENTITY_TYPE)


def remove_previous_outputs(out_dir):
    """Delete a previous run's tables and summary, so that a run that fails leaves nothing that looks finished
    (not even an older complete run's tables); returns the summary's path."""
    for name in (SUMMARY_FILE, ENTITIES_FILE, TRIPLES_FILE):
        if (out_dir / name).exists():
            logger.info("removing %s of a previous run", out_dir / name)
            (out_dir / name).unlink()
    return out_dir / SUMMARY_FILE


def log_summary(summary, log=logger):
    counts = Counter(summary["counts"])
    skipped = {r: counts[r] for r in SKIP_REASONS + (DUPLICATES,) if counts[r]}
    filtered = {k: v for k, v in counts.items() if k.endswith("filtered out")}
    seconds = max(summary["seconds"], 1e-9)
    log.info(
        "%s entities (%s items, %s properties) and %s triples; skipped: %s lines%s; %s deprecated statements"
        "%s%s; read %s decompressed bytes, %s lines in %.1f s (%.1f MB/s); wrote %s",
        f"{counts['items'] + counts['properties']:,}", f"{counts['items']:,}", f"{counts['properties']:,}",
        f"{counts['triples']:,}", f"{sum(counts[r] for r in SKIP_REASONS):,}",
        "".join(f", {reason} {n:,}" for reason, n in skipped.items()),
        f"{counts[DEPRECATED]:,}",
        "".join(f"; {k}: {v:,}" for k, v in sorted(filtered.items())),
        "".join(f"; {k}: {counts[k]:,}" for k in MALFORMED_STATEMENTS if counts[k]),
        f"{counts['bytes']:,}", f"{counts['lines']:,}", summary["seconds"], counts["bytes"] / seconds / 1e6,
        " and ".join(summary["outputs"]),
    )
