"""Benchmark ``kmlm-preprocess ingest`` against a straightforward ``ujson.loads`` line loop, on 1 and on N workers.

The dump (``build_dump``): ``--size-mb`` MB (default 1 GB) in the real dump layout, uncompressed, made of the 100
real current-format items of tests/data/opentapioca_sample_items.json.bz2 (claims with qualifiers and references,
labels and sitelinks in hundreds of languages) over and over, each copy with a fresh id (Q100000000+), each main
snak given the ``hash`` current dumps carry, alternately in two entity shapes: the one of Special:EntityData and
the 2021 examples (``pageid``, ``ns``, ``title``, ``lastrevid``, ``modified`` first) and the one of the dump lines
(``type``, ``id``, ..., ``sitelinks``, then ``lastrevid``); compact separators and \\u escapes as in the real 2014
dump of tests/data. The samples are famous items (~100 kB each); a real dump averages ~14 kB (1.5 TB / ~110M
entities), so most copies keep only a random share of the statement groups, sitelinks and other-language terms
(KEEP_FRACTIONS; the ten languages' terms are always kept): mean ~14.4 kB per entity.

Timed, in this process, ``--rounds`` times in turn (the best of each counts):
  - a ujson loop extracting the same fields (labels/aliases/descriptions in 10 languages with the zh fallback,
    non-deprecated item-valued statements of items) into Python lists, writing nothing (its lists grow with the
    dump, and the garbage collector's passes over them with it: ~73 MB/s on 100 MB, 35-57 MB/s on 1 GB here);
  - the same loop with the garbage collector off (as our parser has it while parsing): 106-129 MB/s on 1 GB, and
    one worker 1.9-2.1x it: about half of our ~4x over the plain loop is that loop's collector;
  - our ingest with 1 worker (parsing in the reading process), writing both Parquet tables;
  - our ingest with ``--workers`` parser processes (the forkserver that starts them is started once per process,
    in the first round).
Prints MB/s of dump JSON, the ratios (targets: >= 3x the ujson loop on one worker; 2 workers >= 1.8x one worker
on 2 cores; docs/design.md §4), by wall clock and by CPU time (steadier on a shared machine; for N workers, of
every process, from /proc), and checks that the tables of 1 and N workers are byte-identical. The
wall-clock ratio of N workers needs N free cores; their CPU time says what the parallel path costs whatever else
runs: N x CPU(1) / CPU(N) is the speed-up N idle cores would give if the work spread evenly.

Where the time goes (``--profile``; CPU seconds for the 1 GB dump, best of 3, on the quiet 2-core VM, load ~1):
  reading 8 MB blocks in the reading process (``iter_blocks``)            0.87 s
  handing them to a worker: pickle + pipe + unpickle of the bytes         0.61 s
  planning by position + reading in the worker (``iter_block_refs``)      0.50 s
  msgspec decoding alone                                                  2.00 s
  parsing: decoding + triples + entity columns (BlockParser)             4.44 s
  results back to the writer: pickle + unpickle                           0.08 s
  writing both Parquet tables (zstd)                                      0.16 s
Reading and handing over bytes in the reading process once cost ~1.5 s per GB, a third of the parsing work, in
the process that also writes: with 2 workers it was the bottleneck (1.11x one worker, issue 17). The parsers now
read their own blocks of an uncompressed dump. In the parser, decoding is half; the rest was the cyclic garbage
collector rescanning the decoded entities (~20%: paused while parsing), a Python loop per entity and term when
building the columns (now map/zip and Arrow's coalesce/if_else) and a call per statement (now only for
entity-valued ones).

The wall time of 2 workers (``--profile`` times a run with each block's wall and CPU time recorded in its worker,
bench/ingest_timeline.py; same run): 2.28 s = the workers' parsing, 3.75 s of CPU (2.0 s of wall each; the parse
line above, timed in this process while it holds the whole dump's blocks, reads higher: a 1-worker run's whole CPU
time, writing included, was 4.39 s), and the reading/writing process's 0.44 s of CPU (receiving results in the
pool's threads 0.08-0.15 s, the duplicate-id check 0.03-0.06 s, Parquet 0.16 s, bookkeeping), shared by the 2
cores: (3.75 + 0.44) / 2 = 2.10 s; + 0.02 s until the first block starts;
+ 0.12 s after the last result, closing the tables, which no worker overlaps (with fewer than 100,000 entities
every row group is encoded then). That tail was 0.13-0.14 s before the two tables were closed side by side
(tables.close_side_by_side; now 0.09-0.12 s); the rest of the gap to 2x is the writer's CPU. Counted exactly
(``timed_tree``: the forkserver's CPU includes the workers it reaped), all processes of a 2-worker run take
1.02-1.07x one worker's CPU (bound 1.87-1.97x). Two things tried and dropped: handing results over through Arrow
files in /dev/shm instead of the pool's pipe (writer CPU -0.06 s, total and wall unchanged), and parsing in two
processes at once, which costs no more CPU per block than in one (no contention for caches here). The wall ratio
of a whole run moves with the VM: best-of-3 ratios of 1.75-2.00x on the same day, same code.

    python bench/ingest.py                          # 1 GB, 3 rounds
    python bench/ingest.py --size-mb 100 --rounds 1 # a quick check
    python bench/ingest.py --profile                # and where the time goes
"""
import argparse
import gc
import hashlib
import json
import logging
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import ujson

# This checkout's code, here and in the parser processes, not the copy the environment has installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))

from ingest_timeline import parallel_timeline  # noqa: E402  (bench/, the script's directory)
from process_tree import children_cpu, reaped_children_cpu  # noqa: E402
from samples import ITEMS_SAMPLE, sample_entities  # noqa: E402

from preprocess.core import text_blocks  # noqa: E402
from preprocess.core.formats.tables import ENTITIES_FILE, TRIPLES_FILE, table_writers  # noqa: E402
from preprocess.core.languages import DEFAULT_LANGUAGES  # noqa: E402
from preprocess.stages.ingest import LANGUAGE_FALLBACKS, BlockParser, ParseConfig, ingest  # noqa: E402

# Share of statement groups, sitelinks and other-language terms each copy keeps, cycled: a few whole famous items,
# mostly thinned ones, so that the mean entity is near the real dump's (~1.5 TB / ~110M entities ~ 14 KB).
COMPACT = (",", ":")  # the real dumps' separators (and \u escapes: json.dumps' default)
KEEP_FRACTIONS = (1.0, 1 / 16, 1 / 32, 1 / 32, 1 / 64, 1 / 64, 1 / 64, 1 / 64, 1 / 64, 1 / 64)


def _fragments(terms):
    return [f"{json.dumps(key)}:{json.dumps(value, separators=COMPACT)}" for key, value in terms.items()]


def entity_templates():
    """The bundled real items cut into JSON fragments: (the ten languages' terms, the other languages' terms,
    statement groups, sitelinks), each main snak given the ``hash`` current dumps carry."""
    wanted = set(DEFAULT_LANGUAGES) | set(LANGUAGE_FALLBACKS["zh"])
    templates = []
    for entity in sample_entities([ITEMS_SAMPLE]):
        for statements in entity["claims"].values():
            for statement in statements:
                snak = statement["mainsnak"]
                digest = hashlib.sha1(json.dumps(snak, sort_keys=True).encode()).hexdigest()
                statement["mainsnak"] = {"snaktype": snak.pop("snaktype"), "property": snak.pop("property"),
                                         "hash": digest, **snak}
        kept_terms, other_terms = {}, {}
        for field in ("labels", "descriptions", "aliases"):
            kept_terms[field] = {code: v for code, v in entity[field].items() if code in wanted}
            other_terms[field] = _fragments({code: v for code, v in entity[field].items() if code not in wanted})
        templates.append((kept_terms, other_terms, _fragments(entity["claims"]),
                          _fragments(entity["sitelinks"])))
    return templates


def entity_line(template, number, keep, rng, shape):
    """One dump line: template's real content thinned to ``keep``, id Q<number>, in the 2021 or 2024 shape."""
    kept_terms, other_terms, claims, sitelinks = template
    thin = lambda fragments: [x for x, k in zip(fragments, rng.random(len(fragments)) < keep) if k]  # noqa: E731
    qid = f"Q{number}"
    head = (f'"pageid":{number},"ns":0,"title":"{qid}","lastrevid":{2_000_000_000 - number},'
            f'"modified":"2021-05-01T12:00:00Z","type":"item","id":"{qid}",' if shape == 2021 else
            f'"type":"item","id":"{qid}",')
    body = []
    for field in ("labels", "descriptions", "aliases"):
        body.append(f'"{field}":{{' + ",".join(_fragments(kept_terms[field]) + thin(other_terms[field])) + "}")
    body.append('"claims":{' + ",".join(thin(claims) or claims[:1]) + "}")
    body.append('"sitelinks":{' + ",".join(thin(sitelinks)) + "}")
    tail = "" if shape == 2021 else f',"lastrevid":{2_000_000_000 - number}'
    return "{" + head + ",".join(body) + tail + "}"


def build_dump(path, size_mb, seed=0):
    """A dump of ``size_mb`` MB in the real layout: the bundled real current-format items over and over, each copy
    with a fresh id (Q100000000+), thinned by the next of KEEP_FRACTIONS, alternately in the 2021 and 2024 shapes.
    Returns (bytes, entities)."""
    templates, rng = entity_templates(), np.random.default_rng(seed)
    written, count = 0, 0
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        while written < size_mb * 1e6:
            template = templates[count % len(templates)]
            keep = KEEP_FRACTIONS[(count // len(templates) + count) % len(KEEP_FRACTIONS)]
            line = entity_line(template, 100_000_000 + count, keep, rng, (2021, 2024)[count % 2])
            written += f.write(line if count == 0 else ",\n" + line)
            count += 1
        f.write("\n]\n")
    return os.path.getsize(path), count


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


def without_gc(fn, *args):
    collecting = gc.isenabled()
    gc.disable()
    try:
        return fn(*args)
    finally:
        if collecting:
            gc.enable()


def timed(fn):
    """(wall seconds, CPU seconds of this process, fn's result); the CPU time is what other load on the machine
    disturbs least, for the single-process runs."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def timed_tree(fn):
    """``timed``, the CPU time including every descendant process: of this process's children and the processes
    they waited for (the forkserver reaps the pool's workers), and of the children this process waited for; read
    before and after the run, exact: the workers have exited and been reaped when ingest returns."""
    children, reaped = children_cpu(os.getpid()), reaped_children_cpu()
    wall, cpu, result = timed(fn)
    descendants = sum(seconds - children.get(pid, 0.0) for pid, seconds in children_cpu(os.getpid()).items())
    return wall, cpu + descendants + reaped_children_cpu() - reaped, result


def profile(dump, workers, languages=DEFAULT_LANGUAGES):
    """CPU seconds of each part of ingest, each on the whole dump in this process (best of 3); then where the wall
    time of a run on ``workers`` processes goes."""
    def best(fn):
        return min(timed(fn)[1] for _ in range(3))

    blocks = list(text_blocks.iter_blocks(dump, 8 << 20))
    refs = list(text_blocks.iter_block_refs(dump, 8 << 20))
    parser = BlockParser(ParseConfig(tuple(languages)))
    decoder = parser.entity_decoder
    results = [parser(ref) for ref in refs]

    def decode_only():
        for block in blocks:
            for line in block.data.split(b"\n"):
                line = line.rstrip().rstrip(b",")
                if len(line) > 1:
                    decoder.decode(line)

    def write():
        with tempfile.TemporaryDirectory() as out, table_writers(Path(out), languages) as (entities, triples):
            for result in results:
                entities.write(result.entities)
                triples.write(result.triples)

    parts = [
        ("read the blocks in the reading process (text_blocks.iter_blocks)", lambda: list(
            text_blocks.iter_blocks(dump, 8 << 20))),
        ("  hand them to a worker: pickle + unpickle the bytes", lambda: [pickle.loads(pickle.dumps(b))
                                                                          for b in blocks]),
        ("plan the blocks by position (iter_block_refs), read them in the worker",
         lambda: [ref.load() for ref in text_blocks.iter_block_refs(dump, 8 << 20)]),
        ("msgspec decode of every line alone", decode_only),
        ("parse (decode + triples + entity columns), BlockParser", lambda: [parser(ref) for ref in refs]),
        ("results back to the writer: pickle + unpickle", lambda: [pickle.loads(pickle.dumps(r)) for r in results]),
        ("write both Parquet tables", write),
    ]
    print("where the CPU time goes (this process, whole dump, best of 3):")
    for name, fn in parts:
        print(f"  {name:72s} {best(fn):6.3f} s")
    with tempfile.TemporaryDirectory() as out:
        run = min((parallel_timeline(dump, Path(out) / str(i), workers) for i in range(3)), key=lambda r: r["wall"])
    print(f"where the wall time of {workers} worker processes goes (the fastest of 3 runs):")
    print(f"  {'wall':72s} {run['wall']:6.3f} s")
    print(f"  {'parsing, CPU of all workers (one process: the parse line above)':72s} {run['parse_cpu']:6.3f} s")
    print(f"  {'parsing, wall of each worker (includes waiting for a core)':72s}"
          + "".join(f" {w:6.3f}" for w in run["parse_wall_per_worker"]) + " s")
    print(f"  {'the reading/writing process, CPU (results, duplicate ids, Parquet)':72s} {run['writer_cpu']:6.3f} s")
    print(f"  {'until the first block starts':72s} {run['first_block_starts']:6.3f} s")
    print(f"  {'after the last result: closing the tables (no worker left to overlap)':72s} "
          f"{run['tail_after_last_result']:6.3f} s")
    ideal = (run["parse_cpu"] + run["writer_cpu"]) / workers + run["tail_after_last_result"]
    print(f"  {f'(parsing + reading/writing CPU) / {workers} + the tail':72s} {ideal:6.3f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=1000, help="dump size in MB (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parser processes (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the three runs, alternating; the best of each counts (default: %(default)s)")
    parser.add_argument("--profile", action="store_true", help="also print where the CPU time goes")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        dump = Path(tmp) / "dump.json"
        size, n_entities = build_dump(dump, args.size_mb)
        print(f"dump: {size / 1e6:.0f} MB, {n_entities:,} current-format entities (mean {size / n_entities / 1e3:.1f} "
              f"kB), uncompressed ({dump})")
        runs = {"ujson": lambda: ujson_loop(dump), "ujson_no_gc": lambda: without_gc(ujson_loop, dump),
                "1": lambda: ingest(dump, Path(tmp) / "w1", workers=1),
                "n": lambda: ingest(dump, Path(tmp) / "wn", workers=args.workers)}
        times = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                wall, cpu, result = (timed_tree if name == "n" else timed)(run)
                times[name].append((wall, cpu))
                if name == "ujson":
                    n_rows, n_triples = result
                elif name == "1":
                    counts = result["counts"]
        assert (n_rows, n_triples) == (counts["items"] + counts["properties"], counts["triples"])
        identical = all((Path(tmp) / "w1" / name).read_bytes() == (Path(tmp) / "wn" / name).read_bytes()
                        for name in (ENTITIES_FILE, TRIPLES_FILE))
        if args.profile:
            profile(dump, args.workers)
    wall = {name: min(w for w, _ in values) for name, values in times.items()}
    cpu = {name: min(c for _, c in values) for name, values in times.items()}
    mbps = lambda seconds: size / seconds / 1e6  # noqa: E731
    print(f"entities: {n_rows:,}, triples: {n_triples:,}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs; best of {args.rounds} rounds")
    print("                                             wall MB/s  (x ujson)   CPU MB/s  (x ujson)")
    print(f"ujson.loads line loop, 1 process, no output {mbps(wall['ujson']):7.1f}              "
          f"{mbps(cpu['ujson']):7.1f}")
    print(f"  the same, garbage collector off           {mbps(wall['ujson_no_gc']):7.1f}              "
          f"{mbps(cpu['ujson_no_gc']):7.1f}")
    print(f"ingest, 1 worker, writes both tables        {mbps(wall['1']):7.1f}  ({wall['ujson'] / wall['1']:4.2f}x)"
          f"      {mbps(cpu['1']):7.1f}  ({cpu['ujson'] / cpu['1']:4.2f}x)   target >= 3x")
    print(f"  against the loop with the collector off                ({wall['ujson_no_gc'] / wall['1']:4.2f}x)"
          f"                ({cpu['ujson_no_gc'] / cpu['1']:4.2f}x)")
    print(f"ingest, {args.workers} worker processes                {mbps(wall['n']):7.1f}  "
          f"({wall['ujson'] / wall['n']:4.2f}x)")
    print(f"{args.workers} workers / 1 worker (wall): {wall['1'] / wall['n']:.2f}x (target >= 1.8x with 2 workers on 2 "
          f"cores); tables byte-identical: {identical}")
    print(f"CPU time of all processes: 1 worker {cpu['1']:.2f} s, {args.workers} workers {cpu['n']:.2f} s: with "
          f"{args.workers} idle cores at most {args.workers * cpu['1'] / cpu['n']:.2f}x one worker (what the "
          f"parallel path adds, whatever the load; the wall-clock ratio above needs the cores free)")


if __name__ == "__main__":
    main()
