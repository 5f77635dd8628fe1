"""Benchmark ``kmlm-preprocess ingest`` against a straightforward ``ujson.loads`` line loop.

Builds an uncompressed dump of ``--size-mb`` MB in a temporary directory by replicating the bundled real entities
(tests/data/*.json.bz2) under new ids, then times on it, in this process:
  - our ingest with 1 worker (parsing in the reading process) and with ``--workers`` parser processes, each
    writing both Parquet tables;
  - a ujson loop extracting the same fields (labels/aliases/descriptions in 10 languages with the zh fallback,
    non-deprecated item-valued statements of items) into Python lists, writing nothing.
Prints MB/s of dump JSON and the ratios (target: >= 3x the ujson loop on one worker; docs/design.md §4), by wall
clock and, for the single-process runs, by this process's CPU time (robust to other load on the machine).

    python bench/ingest.py                  # 200 MB
    python bench/ingest.py --size-mb 20     # a quick check
"""
import argparse
import bz2
import itertools
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import ujson

from preprocess.core.languages import DEFAULT_LANGUAGES
from preprocess.stages.ingest import ID_PREFIXES, LANGUAGE_FALLBACKS, ingest

SAMPLES = [Path(__file__).resolve().parents[1] / "tests" / "data" / name
           for name in ("opentapioca_sample_items.json.bz2", "wikibrain_2014_testdump.json.bz2")]


def build_dump(path, size_mb):
    """Real entities over and over with fresh ids (items Q100000000+, properties P100000+), in dump layout."""
    templates = []
    for sample in SAMPLES:
        with bz2.open(sample, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip() in ("", "[", "]"):
                    continue
                entity = json.loads(line.rstrip().rstrip(","))
                entity["id"] = "__ID__"
                templates.append((entity["type"], json.dumps(entity)))
    next_id, written = {"item": 100_000_000, "property": 100_000}, 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for kind, template in itertools.cycle(templates):
            line = template.replace('"__ID__"', f'"{ID_PREFIXES[kind]}{next_id[kind]}"', 1)
            next_id[kind] += 1
            written += f.write(line)
            if written >= size_mb * 1e6:
                break
            f.write(",\n")
        f.write("\n]\n")
    return os.path.getsize(path)


def ujson_loop(path, languages=DEFAULT_LANGUAGES):
    """The straightforward way: ujson.loads each line, pick the same fields into lists."""
    variants = [LANGUAGE_FALLBACKS.get(lang, (lang,)) for lang in languages]
    rows, heads, relations, tails = [], [], [], []

    def first(terms, codes):
        for code in codes:
            if terms.get(code):
                return terms[code]
        return None

    with open(path, "rb") as f:
        for line in f:
            line = line.strip().rstrip(b",")
            if not line or line in (b"[", b"]"):
                continue
            entity = ujson.loads(line)
            labels, aliases = entity.get("labels") or {}, entity.get("aliases") or {}
            descriptions = entity.get("descriptions") or {}
            row = [entity["id"], entity["type"]]
            for codes in variants:
                label, alias_list, description = first(labels, codes), first(aliases, codes), first(descriptions, codes)
                row += [label and label["value"], [a["value"] for a in alias_list or []],
                        description and description["value"]]
            rows.append(row)
            if entity["type"] != "item":
                continue
            for relation, statements in (entity.get("claims") or {}).items():
                for statement in statements:
                    snak = statement["mainsnak"]
                    value = snak.get("datavalue", {}).get("value") if snak["snaktype"] == "value" else None
                    if statement.get("rank") == "deprecated" or not isinstance(value, dict):
                        continue
                    if value.get("entity-type") == "item":
                        heads.append(entity["id"])
                        relations.append(relation)
                        tails.append(value.get("id") or f"Q{value['numeric-id']}")
    return len(rows), len(heads)


def timed(fn):
    """(wall seconds, CPU seconds of this process, fn's result); the CPU time is what other load on the machine
    disturbs least, for the single-process runs."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=200, help="dump size in MB (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parser processes (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        dump = Path(tmp) / "dump.json"
        size = build_dump(dump, args.size_mb)
        print(f"dump: {size / 1e6:.0f} MB of replicated real entities, uncompressed ({dump})")
        baseline, baseline_cpu, (n_rows, n_triples) = timed(lambda: ujson_loop(dump))
        ours_1, ours_1_cpu, summary = timed(lambda: ingest(dump, Path(tmp) / "w1", workers=1))
        ours_n, _, _ = timed(lambda: ingest(dump, Path(tmp) / "wn", workers=args.workers))
        counts = summary["counts"]
        assert (n_rows, n_triples) == (counts["items"] + counts["properties"], counts["triples"])
    mbps = lambda seconds: size / seconds / 1e6  # noqa: E731
    print(f"entities: {n_rows:,}, triples: {n_triples:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("                                        wall MB/s  (x ujson)   CPU MB/s  (x ujson)")
    print(f"ujson.loads line loop, 1 process, no output {mbps(baseline):7.1f}             {mbps(baseline_cpu):7.1f}")
    print(f"ingest, 1 worker, writes both tables        {mbps(ours_1):7.1f}  ({baseline / ours_1:4.2f}x)     "
          f"{mbps(ours_1_cpu):7.1f}  ({baseline_cpu / ours_1_cpu:4.2f}x)")
    print(f"ingest, reader + {args.workers} worker processes      {mbps(ours_n):7.1f}  ({baseline / ours_n:4.2f}x)")


if __name__ == "__main__":
    main()
