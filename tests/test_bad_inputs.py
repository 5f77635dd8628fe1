"""Bad inputs that no stage's own test file covers (README "Bad inputs" table; issue 7 item 3).

Each one must end in a clear error or a counted skip: never a traceback without a message, never silent loss.
The others are tested next to their stage; the table in the README names those tests.
"""
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.tables import ENTITIES_FILE, entities_schema
from preprocess.core.io import write_parquet

ROOT = Path(__file__).resolve().parent.parent


def run_cli(argv):
    """Exit status of ``kmlm-preprocess ARGV``; argparse errors (SystemExit) are turned into their status."""
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


def item(number, label, more=""):
    return (f'{{"type": "item", "id": "Q{number}", "labels": {{"en": {{"language": "en", "value": "{label}"}}}},'
            f' "claims": {{}}{more}}}').encode("utf-8")


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*") if p.is_file())


# --- Empty language set -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage, inputs", [
    ("ingest", ["--input", "dump.json", "--output", "out"]),
    ("sentences", ["--input", "tables", "--output", "out"]),
    ("xlr", ["--input", "tables", "--cycles", "cycles", "--output", "out"]),  # argparse type=parse_languages
    ("reasoning", ["--input", "tables", "--cycles", "cycles", "--output", "out"]),
    ("descriptions", ["--input", "tables", "--output", "out"]),  # argparse type=parse_languages
    ("binarize", ["--sentences", "sentences", "-o", "out"]),  # "" used to mean "every language"
])
@pytest.mark.parametrize("languages", ["", " , "])
def test_empty_language_set_is_a_clear_error_in_every_stage(tmp_path, monkeypatch, stage, inputs, languages, caplog,
                                                             capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli([stage, *inputs, "--languages", languages]) == 2
    assert "the language set is empty" in caplog.text + capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- A language the tables were not made for ---------------------------------------------------------------------
def test_descriptions_language_missing_from_tables_is_a_clear_error(tmp_path, caplog):
    table = pa.Table.from_pylist([], schema=entities_schema(("en", "de")))
    write_parquet(table, tmp_path / "tables" / ENTITIES_FILE)
    assert run_cli(["descriptions", "--input", tmp_path / "tables", "--output", tmp_path / "out",
                    "--languages", "en,fr"]) == 2
    assert "no columns for language(s) fr; it was made for en, de" in caplog.text
    assert not (tmp_path / "out").exists()


# --- Non-UTF-8 text in a dump -------------------------------------------------------------------------------------
def test_ingest_line_not_utf8_is_a_counted_skip_with_its_line(tmp_path, caplog):
    dump = tmp_path / "dump.json"
    lines = [item(1, "one"), item(2, "bad BYTES").replace(b"BYTES", b"\xff\xfe"), item(3, "three")]
    dump.write_bytes(b"[\n" + b",\n".join(lines) + b"\n]\n")
    with caplog.at_level(logging.WARNING):
        assert run_cli(["ingest", "--input", dump, "--output", tmp_path / "out", "--languages", "en",
                        "--workers", "1"]) == 0
    ids = pq.read_table(tmp_path / "out" / ENTITIES_FILE, columns=["id"]).column("id").to_pylist()
    assert ids == ["Q1", "Q3"]
    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert summary["counts"]["not UTF-8"] == 1
    assert "line 3 " in caplog.text and "not UTF-8" in caplog.text


# --- A full disk ----------------------------------------------------------------------------------------------------
def fail_as_a_full_disk(writer, *args, **kwargs):
    raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")


def test_full_disk_is_a_clear_error_and_leaves_no_half_written_table(tmp_path, monkeypatch, caplog):
    dump = tmp_path / "dump.json"
    dump.write_bytes(b"\n".join([item(1, "one"), item(2, "two")]))
    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail_as_a_full_disk)  # the file is already open
    assert run_cli(["ingest", "--input", dump, "--output", tmp_path / "out", "--workers", "1"]) == 2
    assert "disk full or quota exceeded while writing" in caplog.text and "No space left" in caplog.text
    assert files_under(tmp_path / "out") == []  # not even the temporary file


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs root and mount; skipped elsewhere: the monkeypatched test above still runs)."""
    disk = tmp_path / "tiny"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: a failed writer may hold a file


def test_full_real_disk_is_a_clear_error_and_leaves_no_half_written_table(tiny_disk, caplog):
    dump = ROOT / "tests" / "data" / "opentapioca_sample_items.json.bz2"  # its triples table is > 64 KiB
    assert run_cli(["ingest", "--input", dump, "--output", tiny_disk / "out", "--workers", "1"]) == 2
    assert "disk full or quota exceeded while writing" in caplog.text
    assert not (tiny_disk / "out" / "triples.parquet").exists()
    assert not any(name.startswith(".") for name in files_under(tiny_disk))  # no temporary file left


@pytest.mark.parametrize("command", [["kmlm-preprocess", "binarize", "--sentences", "nope.parquet", "--output", "out"],
                                     ["kmlm-export", "hf", "nope.pt", "out"],
                                     ["kmlm-eval", "compare", "nope", "--output", "out"]])
def test_console_script_error_is_one_line_in_our_log_format(tmp_path, command):
    """Importing fairseq.tasks configures logging with fairseq's format first; our format must still win."""
    script = Path(sys.executable).parent / command[0]
    result = subprocess.run([script, *command[1:]], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert result.returncode == 2 and "Traceback" not in result.stderr and "tensorboardX" not in result.stderr
    assert len(errors) == 1 and f" | ERROR | {command[0]} {command[1]} | " in errors[0] and "nope" in errors[0]


# --- Empty splits --------------------------------------------------------------------------------------------------
def test_eval_xlr_empty_split_is_a_clear_error(tmp_path):
    from kmlm_eval.xlr import read_split

    empty = tmp_path / "test.en.jsonl"
    for content in (b"", b"\n"):  # what `kmlm-preprocess xlr --test-size 0` writes (for English), blank lines
        empty.write_bytes(content)
        with pytest.raises(UserFacingError, match="test.en.jsonl has no samples"):
            read_split(empty)


def test_training_data_without_valid_split_is_a_warning_per_stream_then_a_clear_error(tmp_path, caplog):
    from kmlm_fairseq.data.toy_corpus import write_toy_corpus
    from tests.plugin.test_multi_stream_batches import SIZES, make_task

    write_toy_corpus(str(tmp_path), languages=("en", "de"), sizes=SIZES)
    for path in (tmp_path / "plain").rglob("valid*"):  # e.g. plain text binarized with --valid-fraction 0
        path.unlink()
    with caplog.at_level(logging.WARNING):
        make_task(tmp_path).load_dataset("valid")
    assert "plain: no valid data in" in caplog.text and "not evaluated" in caplog.text
    for path in tmp_path.rglob("valid*"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no valid data for any of the streams"):
        make_task(tmp_path).load_dataset("valid")


# --- Unknown config key ---------------------------------------------------------------------------------------------
def test_unknown_config_key_is_hydras_clear_message(tmp_path):
    command = [Path(sys.executable).parent / "fairseq-hydra-train", "--config-dir", "configs",
               "--config-name", "tiny_cpu", f"task.data={tmp_path}", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
               "task.no_such_key=1"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "Could not override 'task.no_such_key'" in result.stderr
    assert "To append to your config use +task.no_such_key=1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize("task", ["ner", "relx"])
def test_eval_input_not_utf8_is_an_error_with_file_and_line(tmp_path, task):
    from kmlm_eval import ner, relx

    bad = tmp_path / "train.txt"
    bad.write_bytes("Paris\tB-LOC\n\n".encode() + b"caf\xe9\tO\n" if task == "ner"
                    else '1\t"<e1> Paris </e1> in <e2> France </e2>"\n'.encode() + b"loc:in(e1,e2)\xff\n")
    reader = ner.read_sentences if task == "ner" else relx.read_examples
    with pytest.raises(UserFacingError, match=rf"{bad}:{3 if task == 'ner' else 2}: not UTF-8"):
        reader(bad)
