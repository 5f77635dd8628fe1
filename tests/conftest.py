import logging
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"


@pytest.fixture
def repo_root():
    return REPO_ROOT


@pytest.fixture
def test_data():
    return TEST_DATA


def venv_bin(name):
    """A console script of the running interpreter's environment (the tests may run without an activated venv)."""
    return str(Path(sys.executable).parent / name)


@pytest.fixture
def subprocess_env():
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_stage(*argv):
    """One `kmlm-preprocess` stage in-process; the test fails with the argv if it does not exit 0."""
    from preprocess import cli

    assert cli.main([str(arg) for arg in argv]) == 0, argv


def build_real_binarized(root, languages):
    """The bundled Wikidata dumps through ingest, sentences, cycles, reasoning, spm and binarize (defaults, except a
    valid fraction large enough for every language to have a valid split); returns the DATA directory."""
    root = Path(root)
    run_stage("ingest", "-i", TEST_DATA / "opentapioca_sample_items.json.bz2",
              TEST_DATA / "wikibrain_2014_testdump.json.bz2", "-o", root / "tables", "--languages",
              ",".join(languages), "--workers", 1)
    run_stage("sentences", "--input", root / "tables", "--output", root / "sentences", "--seed", 1)
    run_stage("cycles", "--input", root / "tables", "--output", root / "cycles", "--seed", 1)
    run_stage("reasoning", "--input", root / "tables", "--cycles", root / "cycles", "--output", root / "reasoning",
              "--seed", 1)
    data = root / "DATA"
    run_stage("spm", "-o", data, "--sentences", root / "sentences", "--reasoning", root / "reasoning",
              "--vocab-size", 4000, "--character-coverage", 1.0)
    run_stage("binarize", "--sentences", root / "sentences", "--reasoning", root / "reasoning", "-o", data,
              "--workers", 1, "--valid-fraction", 0.05)
    return data


def build_training_data(root, languages):
    """``build_real_binarized`` plus the plain-text stream (the reasoning samples' words, one sample a line, per
    language): all three streams of the training, from the bundled samples only; returns the DATA directory."""
    import pyarrow.parquet as pq

    root = Path(root)
    data = build_real_binarized(root, languages)
    lines = {lang: [] for lang in languages}
    for row in pq.read_table(root / "reasoning" / "reasoning.parquet").to_pylist():
        lines[row["lang"]].append(" ".join(span["text"] for span in row["spans"]) + " .")
    for lang, text in lines.items():
        (root / f"{lang}.txt").write_text("\n".join(text) + "\n")
    run_stage("plain", *(f"{lang}={root / f'{lang}.txt'}" for lang in languages), "-o", data, "--workers", 1)
    return data


@pytest.fixture(scope="session")
def bundled_training_data(tmp_path_factory):
    """``build_training_data`` in en, de, ja, made once per test session (the plugin tests on real data share it)."""
    return build_training_data(tmp_path_factory.mktemp("bundled-training-data"), ("en", "de", "ja"))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, with the reason, where torch sees no CUDA device."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        reason = pytest.mark.skip(reason=f"needs a CUDA GPU: torch {torch.__version__} ({build}) sees none")
        for item in gpu_tests:
            item.add_marker(reason)


@pytest.fixture(autouse=True)
def drop_log_handlers_of_closed_streams():
    """A CLI main() called in-process points the root logger at the test's captured stderr; once that is closed,
    later tests would print "--- Logging error ---" for every log line."""
    yield
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(getattr(handler, "stream", None), "closed", False):
            root.removeHandler(handler)
