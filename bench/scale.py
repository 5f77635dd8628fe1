"""A paper-scale data build, measured: Wikidata5M-shaped synthetic tables through sentences -> cycles -> xlr ->
reasoning -> (spm) -> binarize, each stage a `kmlm-preprocess` subprocess, at 1/10 and at full scale.

    python bench/scale.py                          # 1/10 then full scale (hours on 2 cores; ~50 GB of disk)
    python bench/scale.py --scales 0.1             # 1/10 only (~15 min)
    python bench/scale.py --scales 0.01 --keep DIR # a quick check, outputs kept in DIR

Tables (``make_tables``; the ingest schema, written by ingest's own writer), per scale s:
  - 4.8M x s items (Wikidata5M: ~4.8M entities) with ids Q<n> in a shuffled order, and the 822 relations
    (Wikidata5M's count) taken from the real properties of tests/data/wikibrain_2014_testdump.json.bz2 that have an
    English label, with their real labels in the ten languages;
  - 20M x s triples (Wikidata5M: ~20M): head and tail drawn from power laws over a popularity rank (the tail more
    skewed: p ~ (rank + 1)^-1.0 against ^-0.6 for the head, so a few tails such as "human" collect a million
    triples at full scale), except that half the triples take their tail uniformly in the head's topic (48
    entities of consecutive ids): without that locality a random graph has far fewer cycles than a KG; relations
    Zipf-distributed (p ~ (k + 1)^-1.2, so instance-of-like relations dominate);
  - labels per language, present with a probability that falls linearly with the popularity rank around the
    language's mean coverage (COVERAGE, an assumption of ours shaped like Wikidata's: every entity in English, the
    big European languages most, Korean and Vietnamese least; the most popular entities are labelled almost
    everywhere); label texts are one or two real labels of that language (from the bundled samples) joined, so
    tokenization sees real scripts; aliases: Poisson-distributed counts, more for popular entities, texts alike;
    no descriptions (no stage of this build reads them).
Stages, with the pipeline's defaults (seed 1): ``sentences`` (1 code-switched + 1 alias sample per triple and
language), ``cycles`` (K = 8, M = 1000), ``xlr`` (3,000 / 1,000 / 1,050), ``reasoning --exclude`` the held-out
cycles, ``spm`` (a small tokenizer for the benchmark: real runs bring XLM-R's) and ``binarize``.

Measured per stage: wall time, CPU time and peak RSS of the whole process tree (worker processes included:
/proc is sampled every 0.2 s, the tree's RSS summed; CPU = user + system time of every process of the tree, the
main process's exactly from wait4), the size of what it wrote, and the free disk after it. After the runs: each
stage's peak RSS and time against its input, from the smallest to the largest scale (memory must grow at most
linearly and stay under 12 GB at full scale), and the disk the whole build needs. Before a stage, its output is
estimated from the previous scale (linear in s, with 25% slack); if it does not fit on the disk (leaving
--reserve-gb free), binarize runs only its first ``--part 0/N`` (it still reads and plans every row, so its memory
is the full-scale one; time and output are for that part) and any other stage stops the run; either is said.
Run it under ``nice -n 19`` on a shared machine; the load average is printed with each stage.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from process_tree import TreeSampler  # noqa: E402  (bench/, the script's directory)
from samples import sample_entities  # noqa: E402

from preprocess.core.formats.tables import (  # noqa: E402
    aliases_column,
    description_column,
    entities_schema,
    label_column,
    table_writers,
)
from preprocess.core.languages import DEFAULT_LANGUAGES  # noqa: E402

FULL_ENTITIES, FULL_TRIPLES, RELATIONS = 4_800_000, 20_000_000, 822
HEAD_EXPONENT, TAIL_EXPONENT, RELATION_EXPONENT = 0.6, 1.0, 1.2
CLUSTER_SIZE, LOCAL_SHARE = 48, 0.5  # half the triples link entities of one topic: what makes a KG's cycles
# Mean share of entities labelled per language (assumed; see the module docstring).
COVERAGE = {"en": 0.99, "nl": 0.75, "de": 0.7, "fr": 0.7, "es": 0.6, "it": 0.55, "ja": 0.45, "zh": 0.45,
            "vi": 0.35, "ko": 0.3}
ALIAS_MEAN = 1.5  # aliases per labelled entity, on average (more for popular ones)
ROWS_PER_BATCH = 1 << 20
GB = 1 << 30


# --- The tables -------------------------------------------------------------------------------------------------
def real_terms():
    """{lang: real item labels} and [(property id, {lang: label})] from the bundled samples."""
    labels = {lang: set() for lang in DEFAULT_LANGUAGES}
    properties = []
    for entity in sample_entities():
        terms = {lang: (entity.get("labels") or {}).get(lang, {}).get("value") for lang in DEFAULT_LANGUAGES}
        if entity["type"] == "property" and terms["en"]:
            properties.append((entity["id"], terms))
        elif entity["type"] == "item":
            for lang, text in terms.items():
                if text:
                    labels[lang].add(text)
    return {lang: sorted(texts) for lang, texts in labels.items()}, sorted(properties, key=lambda p: int(p[0][1:]))


def power_law_draws(n_values, exponent, size, rng):
    """``size`` draws from 0..n_values-1 with p(k) ~ (k + 1)^-exponent."""
    cdf = np.cumsum((np.arange(n_values, dtype=np.float64) + 1.0) ** -exponent)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size)), n_values - 1)


def texts(pool, n, rng):
    """n strings: one or two (equal chance) of the pool's strings joined by a space."""
    pool = pa.array(pool, pa.string())
    first = pool.take(pa.array(rng.integers(0, len(pool), n)))
    second = pool.take(pa.array(rng.integers(0, len(pool), n)))
    joined = pc.binary_join_element_wise(first, second, " ")
    return pc.if_else(pa.array(rng.random(n) < 0.5), first, joined)


def entity_columns(rank, n_entities, lang, pool, rng):
    """Label and aliases columns of one language for entities of popularity ``rank`` (0: most popular)."""
    n = len(rank)
    mean = COVERAGE[lang]
    spread = min(mean, 1 - mean)
    coverage = np.clip(mean + spread * (1 - 2 * rank / n_entities), 0, 1)  # linear in rank, mean `mean`
    labelled = rng.random(n) < coverage
    label = pc.if_else(pa.array(labelled), texts(pool, n, rng), pa.nulls(n, pa.string()))
    counts = rng.poisson(ALIAS_MEAN * 2 * (1 - rank / n_entities)) * labelled
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    aliases = pa.ListArray.from_arrays(pa.array(offsets), texts(pool, int(offsets[-1]), rng))
    return label, aliases


def make_tables(out, scale, seed=0):
    """Write entities.parquet and triples.parquet under ``out``; returns counts."""
    rng = np.random.default_rng(seed)
    n_entities, n_triples = round(FULL_ENTITIES * scale), round(FULL_TRIPLES * scale)
    pools, properties = real_terms()
    if len(properties) < RELATIONS:
        raise SystemExit(f"only {len(properties)} labelled properties in the samples, {RELATIONS} needed")
    properties = [properties[i] for i in np.sort(rng.choice(len(properties), RELATIONS, replace=False))]
    numbers = rng.permutation(n_entities) + 1  # numbers[r]: the id number (Q<n>) of popularity rank r
    rank_of = np.empty(n_entities, dtype=np.int64)
    rank_of[numbers - 1] = np.arange(n_entities)
    schema = entities_schema(DEFAULT_LANGUAGES)
    with table_writers(out, DEFAULT_LANGUAGES) as (entities_out, triples_out):
        for start in range(0, n_entities, ROWS_PER_BATCH):  # items in id order, as a dump lists them
            ids = np.arange(start, min(start + ROWS_PER_BATCH, n_entities)) + 1
            rank = rank_of[ids - 1]
            columns = {"id": pc.binary_join_element_wise("Q", pa.array(ids).cast(pa.string()), ""),
                       "kind": pa.array(["item"] * len(ids), pa.string())}
            for lang in DEFAULT_LANGUAGES:
                columns[label_column(lang)], columns[aliases_column(lang)] = entity_columns(
                    rank, n_entities, lang, pools[lang], rng)
                columns[description_column(lang)] = pa.nulls(len(ids), pa.string())
            entities_out.write(pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema))
        relation_columns = {"id": pa.array([p for p, _ in properties]), "kind": pa.array(["property"] * RELATIONS)}
        for lang in DEFAULT_LANGUAGES:
            relation_columns[label_column(lang)] = pa.array([terms[lang] for _, terms in properties], pa.string())
            relation_columns[aliases_column(lang)] = pa.array([[] for _ in properties], pa.list_(pa.string()))
            relation_columns[description_column(lang)] = pa.nulls(RELATIONS, pa.string())
        entities_out.write(pa.RecordBatch.from_arrays([relation_columns[f.name] for f in schema], schema=schema))
        relation_ids = pa.array([p for p, _ in properties], pa.string())
        for start in range(0, n_triples, ROWS_PER_BATCH):
            size = min(ROWS_PER_BATCH, n_triples - start)
            head = numbers[power_law_draws(n_entities, HEAD_EXPONENT, size, rng)]
            tail = numbers[power_law_draws(n_entities, TAIL_EXPONENT, size, rng)]
            local = (head - 1) // CLUSTER_SIZE * CLUSTER_SIZE + rng.integers(1, CLUSTER_SIZE + 1, size)
            tail = np.where((rng.random(size) < LOCAL_SHARE) & (local <= n_entities), local, tail)
            relation = relation_ids.take(pa.array(power_law_draws(RELATIONS, RELATION_EXPONENT, size, rng)))
            triples_out.write(pa.RecordBatch.from_arrays(
                [pc.binary_join_element_wise("Q", pa.array(head).cast(pa.string()), ""), relation,
                 pc.binary_join_element_wise("Q", pa.array(tail).cast(pa.string()), "")],
                names=["head", "relation", "tail"]))
    return {"entities": n_entities + RELATIONS, "triples": n_triples}



# --- Running and measuring a stage --------------------------------------------------------------------------------
# The stage runs in a child that writes its own CPU time and peak RSS when it ends (its workers are sampled).
STAGE_WRAPPER = """
import json, resource, sys
from preprocess import cli
try:
    status = cli.main(sys.argv[2:])
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(sys.argv[1], "w") as f:
        json.dump({"cpu": usage.ru_utime + usage.ru_stime, "max_rss": usage.ru_maxrss * 1024}, f)
sys.exit(status)
"""
def directory_bytes(path):
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_stage(argv, log_path):
    """Run ``kmlm-preprocess ARGV`` as a child; returns wall s, CPU s (tree), peak RSS bytes (tree)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file, open(log_path, "a") as log:
        started = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-c", STAGE_WRAPPER, usage_file.name, *map(str, argv)],
                                 stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        sampler = TreeSampler(child.pid)
        sampler.start()
        status = child.wait()
        wall = time.perf_counter() - started
        sampler.stopped.set()
        sampler.join()
        if status != 0:
            raise SystemExit(f"kmlm-preprocess {argv[0]} failed (status {status}); its log: {log_path}")
        usage = json.loads(Path(usage_file.name).read_text())
    cpu = usage["cpu"] + sum(sampler.descendant_cpu.values())
    return wall, cpu, max(usage["max_rss"], sampler.peak_rss)


# --- The build ----------------------------------------------------------------------------------------------------
def stage_plan(work, workers):
    """(name, argv, input directories, output directory) of each stage, in order."""
    tables, sentences, cycles, xlr, reasoning, data = (work / d for d in ("tables", "sentences", "cycles", "xlr",
                                                                          "reasoning", "data"))
    binarize_workers = [] if workers is None else ["--workers", workers]
    return [
        ("sentences", ["sentences", "--input", tables, "--output", sentences, "--seed", 1], [tables], sentences),
        ("cycles", ["cycles", "--input", tables, "--output", cycles, "--seed", 1], [tables], cycles),
        ("xlr", ["xlr", "--input", tables, "--cycles", cycles, "--output", xlr, "--seed", 1], [tables, cycles], xlr),
        ("reasoning", ["reasoning", "--input", tables, "--cycles", cycles, "--output", reasoning, "--seed", 1,
                       "--exclude", xlr / "heldout_cycles.parquet"], [tables, cycles, xlr], reasoning),
        ("spm", ["spm", "-o", data, "--sentences", sentences, "--reasoning", reasoning,
                 "--max-samples-per-input", 200_000], [sentences, reasoning], data),
        ("binarize", ["binarize", "--sentences", sentences, "--reasoning", reasoning, "-o", data, *binarize_workers],
         [sentences, reasoning], data),
    ]


def what_was_made(work):
    """A few counts from the stages' summaries, so the scale of each run is visible."""
    def counts(path):
        path = work / path
        return json.loads(path.read_text()).get("counts", {}) if path.exists() else {}

    made = {}
    cycles_stats = work / "cycles" / "cycles_stats.json"
    if cycles_stats.exists():
        stats = json.loads(cycles_stats.read_text())
        made["cycles"] = f"{stats['triangles']:,} triangles, {stats['diamonds']:,} diamonds"
    if counts("sentences/sentences_summary.json"):
        made["sentences"] = f"{counts('sentences/sentences_summary.json')['samples written']:,} samples"
    if counts("reasoning/reasoning_summary.json"):
        made["reasoning"] = f"{counts('reasoning/reasoning_summary.json')['samples written']:,} samples"
    for kind in ("knowledge", "reasoning"):
        for summary in sorted((work / "data" / kind).glob("**/summary.json")):
            datasets = json.loads(summary.read_text())["datasets"].values()
            made[f"binarize {summary.parent.relative_to(work / 'data')}"] = (
                f"{sum(d['samples'] for d in datasets):,} samples, {sum(d['tokens'] for d in datasets):,} tokens")
    return made


def build(scale, work, workers, previous, reserve):
    """Tables + every stage at one scale; returns {stage: measurements}; stops early when the disk is short."""
    results = {}
    work.mkdir(parents=True, exist_ok=True)
    log = work / "stages.log"
    started, cpu = time.perf_counter(), time.process_time()
    counts = make_tables(work / "tables", scale)
    results["tables"] = {"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu, "rss": None,
                         "out": directory_bytes(work / "tables"), "in": 0}
    print(f"scale {scale:g}: tables of {counts['entities']:,} entities and {counts['triples']:,} triples "
          f"({results['tables']['out'] / GB:.2f} GB, {results['tables']['wall']:.0f} s to make)", flush=True)
    for name, argv, inputs, output in stage_plan(work, workers):
        usable = shutil.disk_usage(work).free - reserve * GB
        parts, need = 1, (previous[name]["out_per_scale"] * scale * 1.25 if previous and name in previous else 0)
        if need > usable and name == "binarize":  # its --part I/N reads every row but writes 1/N of them
            parts = math.ceil(need / max(usable, GB))
            argv = [*argv, "--part", f"0/{parts}"]
            print(f"  {name}: would write about {need / GB:.1f} GB (from the smaller scale), {usable / GB:.1f} GB "
                  f"usable: runs part 0 of {parts} (--part 0/{parts})", flush=True)
        elif need > usable:
            print(f"  {name}: STOPPED: it would write about {need / GB:.1f} GB (from the smaller scale), "
                  f"{usable / GB:.1f} GB usable ({reserve} GB must stay free)", flush=True)
            results["stopped"] = name
            return results
        before = directory_bytes(output)
        wall, cpu, rss = run_stage(argv, log)
        written = directory_bytes(output) - before
        results[name] = {"wall": wall, "cpu": cpu, "rss": rss, "out": written, "parts": parts,
                         "in": sum(directory_bytes(d) for d in inputs), "out_per_scale": written * parts / scale}
        print(f"  {name:10s} {wall:8.1f} s wall {cpu:8.1f} s CPU  peak RSS {rss / GB:6.2f} GB  wrote "
              f"{written / GB:7.2f} GB" + (f" (part 1 of {parts})" if parts > 1 else "")
              + f"  (free disk {shutil.disk_usage(work).free / GB:.0f} GB, load {os.getloadavg()[0]:.1f})",
              flush=True)
    results["made"] = what_was_made(work)
    return results


STAGES = ("tables", "sentences", "cycles", "xlr", "reasoning", "spm", "binarize")


def report(all_results, rss_limit_gb):
    scales = sorted(all_results)
    print("\n== per stage: wall s, CPU s, peak RSS GB, output GB ==")
    print("stage       " + "".join(f"{'scale ' + format(s, 'g'):>40s}" for s in scales))
    for name in STAGES:
        cells = []
        for s in scales:
            r = all_results[s].get(name)
            if r is None:
                cells.append(f"{'(not run)':>40s}")
                continue
            rss = "-" if r["rss"] is None else f"{r['rss'] / GB:.2f}"
            cells.append(f"{r['wall']:10.0f} {r['cpu']:10.0f} {rss:>8s} {r['out'] / GB:9.2f} ")
        print(f"{name:12s}" + "".join(cells))
    for s in scales:
        done = [r for k, r in all_results[s].items() if isinstance(r, dict) and "wall" in r]
        stopped = all_results[s].get("stopped")
        partial = [k for k, r in all_results[s].items() if isinstance(r, dict) and r.get("parts", 1) > 1]
        print(f"scale {s:g}: total {sum(r['wall'] for r in done):.0f} s wall, {sum(r['cpu'] for r in done):.0f} s CPU, "
              f"{sum(r['out'] for r in done) / GB:.1f} GB written; the whole build needs "
              f"{sum(r['out'] * r.get('parts', 1) for r in done) / GB:.1f} GB of disk"
              + "".join(f"; {k} ran part 1 of {all_results[s][k]['parts']} (disk): its time and output are for "
                        f"that part" for k in partial)
              + (f"; STOPPED before {stopped} (disk)" if stopped else "")
              + "; " + "; ".join(f"{k}: {v}" for k, v in all_results[s].get("made", {}).items()))
    if len(scales) > 1:
        small, large = scales[0], scales[-1]
        print(f"\n== growth from scale {small:g} to {large:g} (x{large / small:g} the tables) ==")
        for name in STAGES[1:]:
            a, b = all_results[small].get(name), all_results[large].get(name)
            if not (a and b):
                continue
            verdict = "OK" if b["rss"] <= a["rss"] * b["in"] / max(a["in"], 1) * 1.1 + 0.2 * GB \
                and b["rss"] < rss_limit_gb * GB else "NOT OK"
            print(f"  {name:10s} input x{b['in'] / max(a['in'], 1):5.1f}  peak RSS x{b['rss'] / a['rss']:5.1f} "
                  f"({b['rss'] / GB:.2f} GB; limit {rss_limit_gb} GB)  wall x{b['wall'] / a['wall']:5.1f}  "
                  f"output x{b['out'] / max(a['out'], 1):5.1f}  memory {verdict}"
                  + (f"  (at {large:g}: part 1 of {b['parts']}, every row read, 1/{b['parts']} written)"
                     if b.get("parts", 1) > 1 else ""))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.1,1", help="fractions of Wikidata5M, in order (default: %(default)s)")
    parser.add_argument("--workdir", type=Path, help="where the outputs go (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep every scale's outputs (default: delete each "
                        "scale's outputs after it is measured, to leave the disk to the next)")
    parser.add_argument("--workers", type=int, help="binarize --workers (default: the stage's default)")
    parser.add_argument("--reserve-gb", type=float, default=10, help="disk to leave free (default: %(default)s)")
    parser.add_argument("--rss-limit-gb", type=float, default=12, help="peak RSS allowed at full scale")
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"bench/scale.py: scales {scales}, outputs under {root}, {os.cpu_count()} CPUs, "
          f"{shutil.disk_usage(root.parent if not root.exists() else root).free / GB:.0f} GB free", flush=True)
    all_results, previous = {}, None
    for scale in scales:
        work = root / f"scale-{scale:g}"
        results = build(scale, work, args.workers, previous, args.reserve_gb)
        all_results[scale] = results
        previous = {k: v for k, v in results.items() if isinstance(v, dict) and "out_per_scale" in v}
        if not args.keep:
            shutil.rmtree(work)
        if results.get("stopped"):
            break
    report(all_results, args.rss_limit_gb)
    if not args.workdir and not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
