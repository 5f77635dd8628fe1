"""Seeded fuzzing of every input the data stages read (issue 13): mutated real inputs end in exit status 0 with
what was left out counted, or in exit status 2 with one error line naming the damaged file; never a traceback.

ingest reads dumps of real entities (the bundled samples) with lines truncated, bytes flipped, values swapped for
values of other JSON types, keys deleted and ids garbled, plain or compressed (then sometimes cut short). Each run
must exit 0 and account for every line (an entity row, a duplicate or a counted skip) and every statement of an
entity (a triple or a named count), with only well-formed ids in the tables; a cut compressed dump must exit 2.

The Parquet-reading stages (sentences, cycles, descriptions, xlr, reasoning, check-leakage, spm, binarize,
import-triples) read real tables, cycles, held-out cycles, held-out triples and samples with a column dropped,
renamed, retyped (string <-> integer, list <-> string, ...), nulled or emptied, or the file's bytes cut, flipped or
zeroed.

Everything is a function of FUZZ_SEED; a failing case prints its number and what was done to the input.
"""
import bz2
import gzip
import json
import logging
import random
import re
import shutil
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from tests.conftest import TEST_DATA, run_stage

FUZZ_SEED = 13
INGEST_CASES = 200
PARQUET_CASES = 200
ID = re.compile(r"[QP][1-9][0-9]{0,17}")
SKIPS = ("invalid JSON", "not UTF-8", "not an entity", "not an item or property")  # per line
NOT_TRIPLES = ("deprecated statements skipped", "triples filtered out")  # and every "statements ..." count


@pytest.fixture(autouse=True)
def quiet(caplog):
    caplog.set_level(logging.WARNING)  # the stages' INFO lines are not looked at: keep the runs fast


def run(argv, caplog):
    """(exit status, error lines, the exception if one escaped) of ``kmlm-preprocess ARGV`` in this process."""
    caplog.clear()
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        status = exit_.code
    except Exception as err:  # a traceback: what the fuzzing looks for
        return None, [], err
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    tracebacks = [r for r in caplog.records if r.exc_info and r.levelno >= logging.WARNING]
    return status, [r.getMessage() for r in errors], tracebacks[0].exc_info[1] if tracebacks else None


def check_outcome(status, errors, escaped, damaged, what):
    """None if the run ended as it must (0, or 2 with one line naming ``damaged``); else what was wrong."""
    if escaped is not None:
        return f"{what}: traceback {type(escaped).__name__}: {escaped}"
    if status == 2 and len(errors) == 1 and str(damaged) in errors[0] and "\n" not in errors[0]:
        return None
    if status == 0 and not errors:
        return None
    return f"{what}: exit status {status}, errors {errors}"


# --- ingest ----------------------------------------------------------------------------------------------------
def real_entity_lines():
    lines = []
    for dump in ("opentapioca_sample_items.json.bz2", "wikibrain_2014_testdump.json.bz2"):
        with bz2.open(TEST_DATA / dump, "rt", encoding="utf-8") as f:
            lines += [line.strip().rstrip(",") for line in f if line.strip() not in ("", "[", "]")]
    return [line for line in lines if len(line) < 40_000]  # small entities keep the runs fast


def paths_of(value, prefix=()):
    """Every path (tuple of keys / indexes) inside a JSON value."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, prefix + (key,))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from paths_of(child, prefix + (i,))


OTHER_VALUES = ["Q42", "Q12abc", "Q-1", "Q", "L5", "P31", "Q007", "Q999999999999", "Q" + "9" * 25, "", "\u00e9\u4e2d",
                -5, 0, 2**63, 3.5, True, None, [], [1, "x"], {}, {"id": "Q5"}, {"entity-type": "item"}]
INTERESTING = ("id", "type", "claims", "mainsnak", "datavalue", "value", "numeric-id", "entity-type", "rank",
               "snaktype", "labels", "aliases", "descriptions", "en", "de")


def mutate_entity(text, rng):
    """(mutated line, what was done)."""
    choice = rng.random()
    if choice < 0.15:
        cut = rng.randrange(len(text))
        return text[:cut], f"line cut at {cut}"
    if choice < 0.3:
        data = bytearray(text.encode("utf-8"))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return data.decode("utf-8", "surrogateescape"), "bytes flipped"
    entity = json.loads(text)
    paths = [p for p in paths_of(entity) if p]
    preferred = [p for p in paths if str(p[-1]) in INTERESTING]
    path = rng.choice(preferred if preferred and rng.random() < 0.8 else paths)
    parent = entity
    for key in path[:-1]:
        parent = parent[key]
    if choice < 0.5 and isinstance(parent, dict):
        del parent[path[-1]]
        return json.dumps(entity, ensure_ascii=rng.random() < 0.5), f"deleted {path}"
    value = rng.choice(OTHER_VALUES)
    parent[path[-1]] = value
    return json.dumps(entity, ensure_ascii=rng.random() < 0.5), f"{path} = {value!r}"


def write_dump(path, lines, rng):
    """The lines in the real dump layout, plain or compressed (sometimes cut short); whether it was cut."""
    text = ("[\n" + ",\n".join(lines) + "\n]\n").encode("utf-8", "surrogateescape")
    kind = rng.choice(["json", "json", "gz", "bz2"])
    if kind == "gz":
        text = gzip.compress(text, compresslevel=1)
    elif kind == "bz2":
        text = bz2.compress(text, compresslevel=1)
    cut = kind != "json" and rng.random() < 0.3
    path = path.with_suffix(f".{kind}")
    path.write_bytes(text[:rng.randrange(10, len(text) - 10)] if cut else text)
    return path, cut


def ingest_problems(out, counts):
    """What the summary and tables of a finished ingest run fail to account for (empty when all is well)."""
    problems = []
    rows = counts["items"] + counts["properties"] + counts["duplicate entities skipped"]
    if counts["lines"] != counts["layout lines"] + rows + sum(counts[s] for s in SKIPS):
        problems.append(f"lines not accounted for: {dict(counts)}")
    outcomes = sum(n for name, n in counts.items() if name.startswith("statements ") or name in NOT_TRIPLES)
    if counts["statements"] != counts["triples"] + outcomes:
        problems.append(f"statements not accounted for: {dict(counts)}")
    ids = pq.read_table(out / "entities.parquet", columns=["id"]).column("id").to_pylist()
    triples = pq.read_table(out / "triples.parquet")
    if len(ids) != counts["items"] + counts["properties"] or len(set(ids)) != len(ids):
        problems.append("entity rows do not match the counts, or repeat an id")
    bad = [x for x in ids + [x for c in triples.columns for x in c.to_pylist()] if not ID.fullmatch(x)]
    if bad:
        problems.append(f"malformed ids in the tables: {bad[:5]}")
    return problems


def test_fuzz_ingest(tmp_path, caplog):
    entities = real_entity_lines()
    failures = []
    for case in range(INGEST_CASES):
        rng = random.Random(f"{FUZZ_SEED}-ingest-{case}")
        picked = rng.sample(entities, 5)
        done = []
        for i in range(rng.randint(1, 4)):
            picked[i], what = mutate_entity(picked[i], rng)
            done.append(what)
        if rng.random() < 0.1:
            picked.append(picked[-1])  # a repeated entity
        dump, cut = write_dump(tmp_path / f"dump{case}", picked, rng)
        out = tmp_path / f"out{case}"
        status, errors, escaped = run(["ingest", "-i", dump, "-o", out, "--languages", "en,de", "--workers", 1],
                                      caplog)
        what = f"ingest case {case} ({dump.suffix}{', cut' if cut else ''}; {'; '.join(done)})"
        problem = check_outcome(status, errors, escaped, dump, what)
        if problem is None and cut and status != 2:
            problem = f"{what}: a cut compressed dump exited {status}"
        if problem is None and status == 0:
            counts = Counter(json.loads((out / "ingest_summary.json").read_text())["counts"])
            problem = "; ".join(f"{what}: {p}" for p in ingest_problems(out, counts)) or None
        if problem:
            failures.append(problem)
        shutil.rmtree(out, ignore_errors=True)
        dump.unlink()
    assert not failures, f"{len(failures)} of {INGEST_CASES} cases:\n" + "\n".join(failures[:20])


# --- Parquet-reading stages ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Every Parquet file of the data side, from the bundled real dumps (the first 300 cycles only: fast stages)."""
    root = tmp_path_factory.mktemp("fuzz-real")
    run_stage("ingest", "-i", TEST_DATA / "opentapioca_sample_items.json.bz2",
              TEST_DATA / "wikibrain_2014_testdump.json.bz2", "-o", root / "tables", "--languages", "en,de",
              "--workers", 1)
    run_stage("cycles", "--input", root / "tables", "--output", root / "cycles")
    cycles = root / "cycles" / "cycles.parquet"
    pq.write_table(pq.read_table(cycles).slice(0, 300), cycles)
    run_stage("sentences", "--input", root / "tables", "--output", root / "sentences", "--max-triples", 300,
              "--holdout-triples", 0.2)
    run_stage("xlr", "--input", root / "tables", "--cycles", root / "cycles", "--output", root / "xlr",
              "--languages", "en,de", "--train-size", 6, "--dev-size", 3, "--test-size", 3)
    run_stage("reasoning", "--input", root / "tables", "--cycles", root / "cycles", "--output", root / "reasoning",
              "--exclude", root / "xlr" / "heldout_cycles.parquet", "--exclude-triples", root / "sentences")
    (root / "import").mkdir()
    (root / "import" / "triples.txt").write_text("".join(  # import-triples reads the tables' relation labels
        "\t".join(row.values()) + "\n" for row in pq.read_table(root / "tables" / "triples.parquet").to_pylist()[:100]))
    run_stage("spm", "-o", root / "data", "--sentences", root / "sentences", "--reasoning", root / "reasoning",
              "--vocab-size", 1000, "--character-coverage", 1.0)
    return root


FILES = {  # file -> its directory under the fixture, and the stages that read it
    "triples.parquet": ("tables", ("sentences", "cycles", "reasoning", "xlr")),
    "entities.parquet": ("tables", ("sentences", "descriptions", "reasoning", "xlr", "import-triples")),
    "cycles.parquet": ("cycles", ("reasoning", "xlr")),
    "heldout_cycles.parquet": ("xlr", ("reasoning", "check-leakage")),
    "heldout_triples.parquet": ("sentences", ("reasoning",)),
    "sentences.parquet": ("sentences", ("binarize", "spm")),
    "reasoning.parquet": ("reasoning", ("binarize", "check-leakage", "spm")),
}


def stage_argv(stage, inputs, real, out):
    """The command line of ``stage`` reading ``inputs`` ({directory name: directory}) and writing ``out``."""
    tables, cycles, xlr = inputs["tables"], inputs["cycles"], inputs["xlr"]
    return {
        "sentences": ["sentences", "--input", tables, "--output", out],
        "cycles": ["cycles", "--input", tables, "--output", out],
        "descriptions": ["descriptions", "--input", tables, "--output", out],
        "reasoning": ["reasoning", "--input", tables, "--cycles", cycles, "--exclude", xlr / "heldout_cycles.parquet",
                      "--exclude-triples", inputs["sentences"] / "heldout_triples.parquet", "--output", out],
        "import-triples": ["import-triples", "--triples", real / "import" / "triples.txt", "--languages", "en,de",
                           "--relation-labels", tables, "-o", out],
        "xlr": ["xlr", "--input", tables, "--cycles", cycles, "--output", out, "--languages", "en,de",
                "--train-size", 6, "--dev-size", 3, "--test-size", 3],
        "check-leakage": ["check-leakage", "--xlr", xlr, "--reasoning", inputs["reasoning"]],
        "spm": ["spm", "-o", out, "--sentences", inputs["sentences"], "--reasoning", inputs["reasoning"],
                "--vocab-size", 1000, "--character-coverage", 1.0],
        "binarize": ["binarize", "--sentences", inputs["sentences"], "--reasoning", inputs["reasoning"], "-o", out,
                     "--spm-model", real / "data" / "sentencepiece.bpe.model", "--dict", real / "data" / "dict.txt",
                     "--workers", 1],
    }[stage]


def retyped(column, rng):
    """A column of another type: what a hand-made or foreign file may hold."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return rng.choice([
            lambda: pc.utf8_length(column),  # integers
            lambda: pa.array([[x] for x in column.to_pylist()], pa.list_(pa.string())),  # lists
            lambda: column.cast(pa.large_string()),  # the same strings, another width: must be read
            lambda: column.cast(pa.binary()),
        ])()
    if pa.types.is_integer(kind):
        return rng.choice([lambda: column.cast(pa.string()), lambda: column.cast(pa.int32()),
                           lambda: column.cast(pa.float64()), lambda: column.cast(pa.uint64())])()
    if pa.types.is_list(kind) and pa.types.is_string(kind.value_type):
        return rng.choice([lambda: pc.binary_join(column, " "), lambda: column.cast(pa.large_list(pa.string()))])()
    if pa.types.is_list(kind):  # spans: list<struct>
        flat = pc.list_flatten(column)
        fields = [flat.field(i) for i in range(flat.type.num_fields)]
        names = [f.name for f in flat.type]
        i = rng.randrange(len(fields))
        if rng.random() < 0.5:
            names[i] = names[i] + "_renamed"
        else:
            fields[i] = pc.utf8_length(fields[i]) if pa.types.is_string(fields[i].type) else fields[i].cast(pa.string())
        return pa.ListArray.from_arrays(column.offsets, pa.StructArray.from_arrays(fields, names=names))
    return pa.array([None] * len(column), pa.string())


def mutate_table(table, rng):
    """(mutated table, what was done)."""
    name = rng.choice(table.column_names)
    i = table.column_names.index(name)
    column = table.column(name).combine_chunks()
    choice = rng.randrange(7)
    if choice == 0:
        return table.remove_column(i), f"column {name!r} dropped"
    if choice == 1:
        return table.rename_columns([n + "_x" if n == name else n for n in table.column_names]), f"{name!r} renamed"
    if choice == 2:
        return table.set_column(i, name, retyped(column, rng)), f"{name!r} retyped"
    if choice == 3:
        mask = pa.array([rng.random() < 0.3 for _ in range(len(column))])
        return table.set_column(i, name, pc.if_else(mask, pa.nulls(len(column), column.type), column)), \
            f"{name!r} partly null"
    if choice == 4:
        return table.slice(0, 0), "no rows"
    if choice == 5 and (pa.types.is_string(column.type)):
        garbled = pa.array([rng.choice(["", "Q1", "Q12abc", "square", "P31", None, "\u00e9"]) for _ in column],
                           pa.string())
        return table.set_column(i, name, garbled), f"{name!r} garbled values"
    rows = [rng.randrange(table.num_rows) for _ in range(table.num_rows)] if table.num_rows else []
    return table.take(pa.array(rows, pa.int64())), "rows repeated and reordered"


def damage_bytes(path, rng):
    data = bytearray(path.read_bytes())
    choice = rng.randrange(3)
    if choice == 0:
        cut = rng.randrange(len(data))
        path.write_bytes(bytes(data[:cut]))
        return f"cut at byte {cut} of {len(data)}"
    if choice == 1:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        return "bytes flipped"
    start = rng.randrange(len(data))
    data[start:start + 64] = bytes(len(data[start:start + 64]))
    path.write_bytes(bytes(data))
    return f"64 bytes zeroed at {start}"


def test_fuzz_parquet_stages(real, tmp_path, caplog):
    failures, outcomes = [], Counter()
    for case in range(PARQUET_CASES):
        rng = random.Random(f"{FUZZ_SEED}-parquet-{case}")
        name = rng.choice(sorted(FILES))
        directory, stages = FILES[name]
        stage = rng.choice(stages)
        work = tmp_path / f"case{case}"
        inputs = {d: real / d for d in ("tables", "cycles", "xlr", "sentences", "reasoning")}
        inputs[directory] = work / directory
        shutil.copytree(real / directory, inputs[directory])
        damaged = inputs[directory] / name
        if rng.random() < 0.6:
            table, what = mutate_table(pq.read_table(damaged), rng)
            pq.write_table(table, damaged, compression=rng.choice(["zstd", "snappy", "none"]))
        else:
            what = damage_bytes(damaged, rng)
        status, errors, escaped = run(stage_argv(stage, inputs, real, work / "out"), caplog)
        outcomes[status] += 1
        problem = check_outcome(status, errors, escaped, damaged, f"case {case}: {stage} reading {name} ({what})")
        if problem:
            failures.append(problem)
        shutil.rmtree(work, ignore_errors=True)
    assert not failures, f"{len(failures)} of {PARQUET_CASES} cases:\n" + "\n".join(failures[:20])
    assert outcomes[0] > 10 and outcomes[2] > PARQUET_CASES / 3, outcomes  # both outcomes are exercised
