"""Every input is a checked contract (issue 13): a bad input ends in a counted skip (a named count in the stage's
summary) or in one error line naming the file, with exit status 2; never a traceback, silent loss or wrong rows.

The README's "Bad inputs" table names these tests. The damaged binarized data of case 6 is tested in
tests/plugin/test_damaged_binarized.py, the fuzzing of every input in tests/test_fuzz_inputs.py.
"""
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.stage_summary import read_stage_summary
from preprocess.core.formats.tables import FirstOccurrence
from preprocess.stages.xlr import split_sizes
from tests.conftest import REPO_ROOT, TEST_DATA, run_stage

# the summary's counts, as a user reads them
MALFORMED_VALUE = "statements skipped: malformed item value"
MALFORMED_RELATION = "statements skipped: malformed relation id"
CLAIMS_NOT_A_MAP = "statements skipped: claims not a map"
NOT_TRIPLES = ("deprecated statements skipped", "triples filtered out")  # and every "statements ..." count
DUMPS = (TEST_DATA / "opentapioca_sample_items.json.bz2", TEST_DATA / "wikibrain_2014_testdump.json.bz2")


def run_cli(*argv):
    """Exit status of ``kmlm-preprocess ARGV`` run in this process (argparse's SystemExit turned into its status)."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


def one_error(caplog):
    """The one ERROR line a failed command logged."""
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    return errors[0]


def claim(value, value_type="wikibase-entityid", snaktype="value", rank="normal"):
    return {"mainsnak": {"snaktype": snaktype, "property": "P31", "datavalue": {"value": value, "type": value_type}},
            "type": "statement", "rank": rank}


def item(qid, claims=None):
    return {"type": "item", "id": qid, "labels": {"en": {"language": "en", "value": f"label of {qid}"}},
            "claims": {} if claims is None else claims}


def ingest_lines(tmp_path, entities, *options):
    """Run ingest on ``entities`` (dicts, or raw lines as str) in JSON-lines layout; (status, summary, triples)."""
    dump = tmp_path / "dump.json"
    dump.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entities), encoding="utf-8")
    status = run_cli("ingest", "-i", dump, "-o", tmp_path / "out", "--languages", "en", "--workers", 1, *options)
    if status != 0:
        return status, None, None
    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    triples = [tuple(row.values()) for row in pq.read_table(tmp_path / "out" / "triples.parquet").to_pylist()]
    return status, summary, triples


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The bundled real dumps through ingest (en, de) and cycles."""
    root = tmp_path_factory.mktemp("real")
    run_stage("ingest", "-i", *DUMPS, "-o", root / "tables", "--languages", "en,de", "--workers", 1)
    run_stage("cycles", "--input", root / "tables", "--output", root / "cycles")
    return root


def tables_copy(real, tmp_path, triples=None, entities=None):
    """A copy of the real tables, ``triples``/``entities`` (functions of the table) rewritten."""
    tables = tmp_path / "tables"
    shutil.copytree(real / "tables", tables)
    for name, change in (("triples.parquet", triples), ("entities.parquet", entities)):
        if change is not None:
            pq.write_table(change(pq.read_table(tables / name)), tables / name)
    return tables


# --- 1. Malformed target ids --------------------------------------------------------------------------------------
MALFORMED_TARGETS = [
    {"entity-type": "item", "id": "Q12abc"}, {"entity-type": "item", "id": "Q-1"}, {"entity-type": "item", "id": "Q"},
    {"entity-type": "item", "id": "L5"}, {"entity-type": "item", "id": "Q 1; DROP"},
    {"entity-type": "item", "numeric-id": -5}, {"entity-type": "item", "numeric-id": 0}, {"id": "Q007"},
    {"entity-type": "item", "id": "Q5", "numeric-id": 6}, {"entity-type": "item"}, {"id": "Q" + "9" * 19},
    {"numeric-id": 5},  # neither an entity-type nor an id: an item or a property?
]


def test_ingest_malformed_target_ids_are_counted_skips_not_triples(tmp_path, caplog):
    good = [claim({"entity-type": "item", "id": "Q2", "numeric-id": 2}),
            claim({"entity-type": "item", "numeric-id": 3}), claim({"id": "Q4"})]
    claims = {"X31": [good[0]], "P1 ": [good[0]], "P31": [claim(value) for value in MALFORMED_TARGETS] + good}
    with caplog.at_level(logging.WARNING):
        status, summary, triples = ingest_lines(tmp_path, [item("Q1", claims)])
    assert status == 0
    assert triples == [("Q1", "P31", "Q2"), ("Q1", "P31", "Q3"), ("Q1", "P31", "Q4")]
    counts = summary["counts"]
    assert counts[MALFORMED_VALUE] == len(MALFORMED_TARGETS) and counts[MALFORMED_RELATION] == 2
    assert "'X31': not a property id" in caplog.text and "'Q12abc'" in caplog.text and "'Q-5'" in caplog.text
    assert "more than 10 malformed statements: the rest are counted, not shown" in caplog.text


# --- 2. Statements of a malformed entity ----------------------------------------------------------------------
def test_ingest_statements_lost_to_a_malformed_entity_are_counted(tmp_path):
    entities = [item("Q1", [claim({"id": "Q2"}), claim({"id": "Q3"})]),  # claims a list: its statements are lost
                item("Q2", {"P31": [claim("Q3"), claim({"id": "Q3"})]}),  # an entity value that is a string
                item("Q3", [])]  # an empty claim map written as [] (old dumps): nothing lost
    status, summary, triples = ingest_lines(tmp_path, entities)
    assert status == 0 and triples == [("Q2", "P31", "Q3")]
    counts = summary["counts"]
    assert (counts["items"], counts[CLAIMS_NOT_A_MAP], counts[MALFORMED_VALUE], counts["statements"]) == (3, 2, 1, 4)


@pytest.mark.parametrize("dump", DUMPS, ids=["current", "2014"])
def test_ingest_every_statement_is_a_triple_or_a_named_count(tmp_path, dump):
    import bz2

    with bz2.open(dump, "rt", encoding="utf-8") as f:  # counted here with the json module
        entities = [json.loads(line.strip().rstrip(",")) for line in f if line.strip() not in ("", "[", "]")]
    statements = sum(len(s) for e in entities for s in (e.get("claims") or {}).values())
    counts = run_and_read_counts(tmp_path, dump)
    assert counts["statements"] == statements > 10_000
    outcomes = {name: n for name, n in counts.items() if name.startswith("statements ") or name in NOT_TRIPLES}
    assert counts["triples"] + sum(outcomes.values()) == statements


def run_and_read_counts(tmp_path, dump):
    run_stage("ingest", "-i", dump, "-o", tmp_path / "out", "--languages", "en", "--workers", 1)
    return json.loads((tmp_path / "out" / "ingest_summary.json").read_text())["counts"]


# --- 3 and 7. Parquet columns of the wrong type or name ---------------------------------------------------------
def integer_ids(table):
    return pa.table({c: pc.cast(pc.utf8_slice_codeunits(table.column(c), 1), pa.int64()) for c in table.column_names})


def renamed(table):
    return table.rename_columns(["h", "r", "t"])


def aliases_as_text(table):
    column = table.column_names.index("aliases_en")
    return table.set_column(column, "aliases_en", pc.binary_join(table.column("aliases_en"), "|"))


STAGE_ARGS = {
    "sentences": lambda real, tables: ["--input", tables],
    "reasoning": lambda real, tables: ["--input", tables, "--cycles", real / "cycles"],
    "xlr": lambda real, tables: ["--input", tables, "--cycles", real / "cycles", "--languages", "en,de"],
    "cycles": lambda real, tables: ["--input", tables],
}


@pytest.mark.parametrize("stage", list(STAGE_ARGS))
@pytest.mark.parametrize("damage, message", [
    (dict(triples=integer_ids), "triples.parquet: column 'head' is int64, expected string"),
    (dict(triples=renamed), "triples.parquet has no columns 'head', "),
    (dict(entities=aliases_as_text), "entities.parquet: column 'aliases_en' is string, expected list<item: string>"),
], ids=["integer ids", "columns h r t", "aliases as a string"])
def test_wrong_column_types_or_names_are_one_line_errors_in_every_stage(real, tmp_path, caplog, stage, damage, message):
    if stage != "sentences" and "entities" in damage:
        pytest.skip("only sentences reads the aliases")
    tables = tables_copy(real, tmp_path, **damage)
    assert run_cli(stage, *STAGE_ARGS[stage](real, tables), "--output", tmp_path / "out") == 2
    assert message in one_error(caplog) and str(tables) in one_error(caplog)
    assert not (tmp_path / "out").exists()


# --- 4. A huge split beside small ones ----------------------------------------------------------------------------
def test_xlr_small_splits_keep_their_size_beside_a_huge_one(real, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert run_cli("xlr", "--input", real / "tables", "--cycles", real / "cycles", "--output", tmp_path / "out",
                       "--languages", "en,de", "--train-size", 1_000_000, "--dev-size", 5, "--test-size", 5) == 0
    counts = read_stage_summary(tmp_path / "out", "xlr")["counts"]
    assert (counts["dev en"], counts["test en"]) == (5, 5)
    assert counts["train en"] == counts["usable cycles"] - 10 > 100
    assert "has every label" not in caplog.text


def test_xlr_split_sizes_rule():
    assert split_sizes({"train": 10**6, "dev": 5, "test": 5}, 303) == {"train": 293, "dev": 5, "test": 5}
    paper = {"train": 3000, "dev": 1000, "test": 1050}
    assert split_sizes(paper, 5050) == paper
    assert split_sizes(paper, 2000) == {"train": 1188, "dev": 396, "test": 415}  # one factor: the proportions kept
    assert split_sizes(paper, 4000) == {"train": 1950, "dev": 1000, "test": 1050}  # dev, test <= a third: kept
    assert split_sizes({"train": 100, "dev": 0, "test": 0}, 7) == {"train": 7, "dev": 0, "test": 0}


def test_xlr_empty_split_is_not_blamed_on_labels(real, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert run_cli("xlr", "--input", real / "tables", "--cycles", real / "cycles", "--output", tmp_path / "out",
                       "--languages", "en,de", "--train-size", 5, "--dev-size", 0, "--test-size", 5) == 0
    assert "the dev split is empty: dev.de.jsonl not written" in caplog.text
    assert "has every label" not in caplog.text


# --- 5. Ids of any size ---------------------------------------------------------------------------------------------
def test_ingest_absurd_id_numbers_allocate_nothing_by_their_number(tmp_path):
    huge, huger = "Q999999999999", "Q999999999999999999"  # 12 digits; 18 digits, the most an id may have
    entities = [item(huge), item("P7" + "0" * 16) | {"type": "property"}, item("Q5"), item(huger), item(huge),
                item("Q9" * 10)]  # "Q9Q9...": not an id
    status, summary, _ = ingest_lines(tmp_path, entities, "--chunk-mb", 0.0001)  # one block per line
    assert status == 0
    ids = pq.read_table(tmp_path / "out" / "entities.parquet").column("id").to_pylist()
    assert ids == [huge, "P7" + "0" * 16, "Q5", huger]
    assert summary["counts"]["duplicate entities skipped"] == 1 and summary["counts"]["not an entity"] == 1


def test_first_occurrence_memory_does_not_grow_with_id_numbers():
    first = FirstOccurrence()
    ids = pa.array(["Q999999999999", "P99999999999999999", "Q5", "Q007", "Q268435457", None])
    kept, duplicates = first.drop_seen(pa.record_batch([ids], names=["id"]))
    assert kept.num_rows == 6 and duplicates is None
    assert first.bits["Q"].nbytes <= 1 and first.bits["P"].nbytes == 0
    kept, duplicates = first.drop_seen(pa.record_batch([pa.array(["Q999999999999", "Q5", "Q6", "Q007"])],
                                                       names=["id"]))
    assert kept.column(0).to_pylist() == ["Q6"] and duplicates.to_pylist() == ["Q999999999999", "Q5", "Q007"]


# --- 7. Outputs that cannot be written, inputs that cannot be read -------------------------------------------------
@pytest.mark.parametrize("output", ["/proc/kmlm-no-such-dir", "a-file", "a-file/below"])
@pytest.mark.parametrize("stage", ["ingest", "sentences", "pipeline"])
def test_output_that_cannot_be_a_directory_is_a_one_line_error(real, tmp_path, monkeypatch, caplog, stage, output):
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("not a directory\n")
    args = {"ingest": ["-i", DUMPS[0], "--workers", 1], "sentences": ["--input", real / "tables"],
            "pipeline": ["--dump", DUMPS[0]]}[stage]
    assert run_cli(stage, *args, "--output", output) == 2
    assert output in one_error(caplog)
    assert Path("a-file").read_text() == "not a directory\n"


def test_ingest_binary_entity_list_is_an_error_with_its_line(tmp_path, caplog):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"Q1\nQ2\n\x89PNG\r\n\x1a\n")
    assert run_cli("ingest", "-i", DUMPS[0], "-o", tmp_path / "out", "--entity-list", ids) == 2
    assert f"{ids}:3: not UTF-8 (byte 0x89 at offset 0)" in one_error(caplog)


def test_reasoning_exclude_that_is_not_held_out_cycles_is_a_one_line_error(real, tmp_path, caplog):
    not_parquet = tmp_path / "held.json"
    not_parquet.write_text("{}\n")
    nodes_as_text = tmp_path / "held.parquet"
    pq.write_table(pa.table({"kind": ["triangle"], "nodes": ["Q1 Q2 Q3"]}), nodes_as_text)
    for exclude, message in ((not_parquet, "held.json is not a readable Parquet file"),
                             (nodes_as_text, "held.parquet: column 'nodes' is string, expected list<item: string>")):
        caplog.clear()
        assert run_cli("reasoning", "--input", real / "tables", "--cycles", real / "cycles", "--output",
                       tmp_path / "out", "--exclude", exclude) == 2
        assert message in one_error(caplog)


def test_held_out_triples_and_relation_labels_of_the_wrong_shape_are_one_line_errors(real, tmp_path, caplog):
    """The Parquet inputs of the triple holdout (reasoning --exclude-triples, fact-recall) and of import-triples
    --relation-labels go through their format readers as every other input does."""
    held = tmp_path / "heldout_triples.parquet"
    pq.write_table(pa.table({"head": [1], "relation": ["P31"], "tail": ["Q2"], "triple_index": [0]}), held)
    reasoning = ("reasoning", "--input", real / "tables", "--cycles", real / "cycles", "--output", tmp_path / "out")
    for exclude, message in ((held, f"{held}: column 'head' is int64, expected string"),
                             (tmp_path / "none", "heldout_triples.parquet does not exist: run `kmlm-preprocess "
                                                 "sentences` first")):
        caplog.clear()
        assert run_cli(*reasoning, "--exclude-triples", exclude) == 2
        assert message in one_error(caplog)
    caplog.clear()
    triples = tmp_path / "t.txt"
    triples.write_text("Q1\tP31\tQ2\n", encoding="utf-8")
    tables = tables_copy(real, tmp_path, entities=aliases_as_text)
    assert run_cli("import-triples", "--triples", triples, "--languages", "en", "--relation-labels", tables,
                   "-o", tmp_path / "imported") == 2
    assert f"{tables / 'entities.parquet'}: column 'aliases_en' is string, expected list<item: string>" in \
        one_error(caplog)


# --- 8. Unclear messages ----------------------------------------------------------------------------------------
def test_ingest_input_directory_says_so(tmp_path, caplog):
    assert run_cli("ingest", "-i", tmp_path, "-o", tmp_path / "out") == 2
    assert f"{tmp_path} is a directory: pass the dump file(s) in it" in one_error(caplog)


def test_reasoning_takes_the_cycles_file_or_its_directory_and_names_the_right_stage(real, tmp_path, caplog):
    for cycles in (real / "cycles", real / "cycles" / "cycles.parquet"):
        assert run_cli("reasoning", "--input", real / "tables", "--cycles", cycles, "--output", tmp_path / "out",
                       "--languages", "en") == 0
    assert run_cli("reasoning", "--input", real / "tables", "--cycles", tmp_path / "none" / "cycles.parquet",
                   "--output", tmp_path / "out") == 2
    assert "cycles.parquet does not exist: run `kmlm-preprocess cycles` first" in one_error(caplog)


@pytest.mark.parametrize("content, message", [
    (b"hello\n", "is not a PyTorch checkpoint"),
    ("dict", "is a PyTorch file but not a fairseq training checkpoint: it holds a dict with keys best_score"),
    ("list", "is a PyTorch file but not a fairseq training checkpoint: it holds a list"),
])
def test_export_of_a_file_that_is_not_a_checkpoint_says_what_it_is(tmp_path, content, message):
    import torch

    from kmlm_fairseq.export.fairseq_checkpoint import read_checkpoint

    path = tmp_path / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save({"best_score": 1.0} if content == "dict" else [1, 2], path)
    with pytest.raises(UserFacingError, match=message) as error:
        read_checkpoint(path)
    assert "\n" not in str(error.value) and "Please file an issue" not in str(error.value)


def test_hydra_train_with_a_config_name_that_does_not_exist_falls_back_to_fairseqs_defaults(tmp_path):
    """What fairseq-hydra-train does (fairseq registers its own config under any name): documented in the README's
    Troubleshooting; the pipeline and run/slurm/train.sbatch check the name before they call it."""
    command = [Path(sys.executable).parent / "fairseq-hydra-train", "--config-dir", "configs", "--config-name",
               "no_such_cfg", f"task.data={tmp_path}"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Key 'data' is not in struct" in result.stderr


def test_slurm_training_with_a_config_that_does_not_exist_stops_before_fairseq(tmp_path):
    result = subprocess.run(["bash", REPO_ROOT / "run" / "slurm" / "train.sbatch", "no_such_cfg", tmp_path, tmp_path],
                            env={"PATH": "/usr/bin:/bin", "KMLM_ROOT": str(REPO_ROOT)}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "train.sbatch: no configs/no_such_cfg.yaml (configs: " in result.stderr and "kmlm_r_base" in result.stderr
