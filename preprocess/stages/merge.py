"""``kmlm-preprocess merge -o OUT``: join the shards of ``kmlm-preprocess ingest --shard I/N -o OUT``.

Input: ``OUT/shards/IIIII-of-NNNNN/{entities,triples}.parquet`` and ``ingest_summary.json`` for every I in 0..N-1,
all made from the same inputs with the same languages, filters and byte split (checked). A shard without its
summary is unfinished and stops the merge with an error naming it.

Output: ``OUT/entities.parquet`` and ``OUT/triples.parquet``: the shards' rows in shard order, an entity id seen in
an earlier shard dropped with its triples (as a single run keeps first occurrences), written in the same
fixed-size row groups as a single run, so the files are byte-identical to ``ingest`` without ``--shard``; and
``OUT/ingest_summary.json`` (the shards' counts added up). The shards are left in place.
"""
import json
import logging
import re
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.ingest_summary import (
    DUPLICATES,
    SHARDS_DIR,
    SUMMARY_FILE,
    kind_counts,
    log_summary,
    remove_previous_outputs,
    shard_dir_name,
)
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    TRIPLES_FILE,
    TRIPLES_SCHEMA,
    FirstOccurrence,
    drop_heads,
    entities_schema,
    table_writers,
)
from preprocess.core.io import write_text
from preprocess.core.json_input import read_json
from preprocess.core.parquet_input import ParquetInput

logger = logging.getLogger("kmlm-preprocess merge")

# What must be the same in every shard for their union to be one run's output.
SAME_IN_EVERY_SHARD = ("inputs", "input_bytes", "languages", "entity_list", "relation_list")
READ_BATCH_ROWS = 1 << 16


def find_shards(output):
    """The shard directories under ``output/shards`` in order, checked complete and consistent; and their summaries."""
    shards_dir = Path(output) / SHARDS_DIR
    names = sorted(p.name for p in shards_dir.glob("*-of-*") if p.is_dir()) if shards_dir.is_dir() else []
    counts = {int(m[2]) for m in (re.fullmatch(r"(\d+)-of-(\d+)", n) for n in names) if m}
    if not counts:
        raise UserFacingError(f"{shards_dir} holds no shard directories: run `kmlm-preprocess ingest --shard I/N "
                              f"-o {output}` for every I first")
    if len(counts) != 1:
        raise UserFacingError(f"{shards_dir} mixes splits into {sorted(counts)} shards: remove the stale ones")
    count = counts.pop()
    dirs = [shards_dir / shard_dir_name(i, count) for i in range(count)]
    unfinished = [d.name for d in dirs if not (d / SUMMARY_FILE).is_file()]
    if unfinished:
        raise UserFacingError(f"{len(unfinished)} of {count} shards are missing or unfinished in {shards_dir}: "
                              f"{', '.join(unfinished[:10])}{' ...' if len(unfinished) > 10 else ''}")
    summaries = [read_json(d / SUMMARY_FILE, f"{d / SUMMARY_FILE} disappeared while merging",
                           lambda err, d=d: f"{d / SUMMARY_FILE}: not a JSON summary ({err}); re-run this shard")
                 for d in dirs]
    _check_consistent(dirs, summaries)
    return dirs, summaries


def _check_consistent(dirs, summaries):
    first = summaries[0]
    for d, summary in zip(dirs, summaries):
        for key in SAME_IN_EVERY_SHARD:
            if summary.get(key) != first.get(key):
                raise UserFacingError(f"{d} was made with {key} = {summary.get(key)!r} but {dirs[0]} with "
                                      f"{first.get(key)!r}: re-run the shards with the same settings")
        if summary["shard"]["split_sizes"] != first["shard"]["split_sizes"]:
            raise UserFacingError(f"{d} split the input as {summary['shard']['split_sizes']} bytes but {dirs[0]} as "
                                  f"{first['shard']['split_sizes']}: its byte ranges do not join the others'; run "
                                  "every shard with the same --decompressed-size (or none)")


def merge(output):
    output = Path(output)
    started = time.perf_counter()
    dirs, summaries = find_shards(output)
    languages = summaries[0]["languages"]
    schemas = {ENTITIES_FILE: entities_schema(languages), TRIPLES_FILE: TRIPLES_SCHEMA}
    remove_previous_outputs(output)
    counts, first = sum((Counter(s["counts"]) for s in summaries), Counter()), FirstOccurrence()
    written = Counter()
    with table_writers(output, languages) as (entities_out, triples_out):
        for d in dirs:
            duplicate_ids = []
            for batch in _batches(d / ENTITIES_FILE, schemas[ENTITIES_FILE]):
                entities, duplicates = first.drop_seen(batch)
                duplicate_ids += [] if duplicates is None else duplicates.to_pylist()
                written += kind_counts(entities)
                entities_out.write(entities)
            for batch in _batches(d / TRIPLES_FILE, schemas[TRIPLES_FILE]):
                triples = drop_heads(batch, pa.array(duplicate_ids, pa.string()) if duplicate_ids else None)
                written["triples"] += triples.num_rows
                triples_out.write(triples)
    for key in ("items", "properties", "triples"):
        counts[key] = written[key]  # after dropping entities seen in an earlier shard
    counts[DUPLICATES] += first.duplicates
    summary = {key: summaries[0][key] for key in SAME_IN_EVERY_SHARD}
    summary.update({
        "shards": len(dirs),
        "seconds": round(sum(s["seconds"] for s in summaries), 3),  # the shards' reading time, added up
        "merge_seconds": round(time.perf_counter() - started, 3),
        "counts": dict(sorted(counts.items())),
        "outputs": [str(output / ENTITIES_FILE), str(output / TRIPLES_FILE)],
    })
    write_text(json.dumps(summary, indent=2) + "\n", output / SUMMARY_FILE)
    logger.info("merged %d shards in %.1f s", len(dirs), summary["merge_seconds"])
    log_summary(summary, logger)
    return summary


def _batches(path, schema):
    shard = ParquetInput.find(path, path.name, "ingest --shard I/N").require(schema)
    return shard.iter_batches(READ_BATCH_ROWS)


def add_arguments(parser):
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="the -o directory given to the shards (they are in OUT/shards/)")


def run(args):
    merge(args.output)
    return 0
