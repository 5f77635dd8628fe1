"""run/slurm/*.sbatch on a real one-node SLURM cluster (tests/slurm/conftest.py starts it): the ingest array + merge
and the binarize array + gather give what one process gives, and train.sbatch trains tiny_cpu with 2 srun tasks on
gloo and resumes from checkpoint_last.pt after `scontrol requeue`."""
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fairseq.data.indexed_dataset import MMapIndexedDataset

from tests.conftest import REPO_ROOT, TEST_DATA, run_stage, venv_bin

pytestmark = pytest.mark.slurm

SLURM_DIR = REPO_ROOT / "run" / "slurm"
LANGUAGES = ("en", "de", "ja")
SMALL_TASK = ("--cpus-per-task=1", "--mem=1G", "--time=5")  # the scripts ask for cluster-sized tasks
JOB_SECONDS = 120
BASE_ENV = {"KMLM_ROOT": str(REPO_ROOT), "KMLM_VENV": str(Path(sys.executable).parents[1]), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """Knowledge sentences (en-de, en-ja), a tokenizer trained on them and one plain text file per language."""
    root = tmp_path_factory.mktemp("samples")
    run_stage("ingest", "-i", *sorted(TEST_DATA.glob("*.json.bz2")), "-o", root / "tables",
              "--languages", ",".join(LANGUAGES), "--workers", 1)
    run_stage("sentences", "--input", root / "tables", "--output", root / "sentences", "--seed", 1)
    run_stage("spm", "-o", root / "tokenizer", "--sentences", root / "sentences", "--vocab-size", 2000,
              "--character-coverage", 1.0)
    rows = pq.read_table(root / "sentences" / "sentences.parquet").to_pylist()
    for lang in LANGUAGES:
        words = (" ".join(span["text"] for span in row["spans"] if span["lang"] in (lang, "en")) for row in rows)
        (root / f"{lang}.txt").write_text("".join(f"{line} .\n" for line in words))
    return root


def binarize_env(samples, data):
    return {**BASE_ENV, "DATA": str(data), "SENTENCES": str(samples / "sentences"),
            "TOKENIZER": str(samples / "tokenizer"),
            "PLAIN": " ".join(f"{lang}={samples / f'{lang}.txt'}" for lang in LANGUAGES)}


@pytest.fixture(scope="module")
def single_data(samples):
    """binarize.sbatch run without SLURM: everything in one process."""
    data = samples / "single"
    result = subprocess.run(["bash", str(SLURM_DIR / "binarize.sbatch")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, **binarize_env(samples, data)})
    assert result.returncode == 0, result.stderr[-3000:]
    return data


@pytest.mark.parametrize("dump", sorted(path.name for path in TEST_DATA.glob("*.json.bz2")))
def test_ingest_array_of_3_plus_merge_equals_one_process(slurm, tmp_path, dump):
    run_stage("ingest", "-i", TEST_DATA / dump, "-o", tmp_path / "single", "--workers", 1)
    out = tmp_path / "sharded"
    env = {**BASE_ENV, "DUMP": str(TEST_DATA / dump), "OUT": str(out)}
    array = slurm.sbatch("--array=0-2", *SMALL_TASK, SLURM_DIR / "ingest.sbatch", env=env)
    slurm.sbatch(f"--dependency=afterok:{array}", "--job-name=kmlm-merge", *SMALL_TASK, "--output=merge.log",
                 "--wrap", f"{venv_bin('kmlm-preprocess')} merge -o {out}", wait=True, timeout=JOB_SECONDS)
    assert sorted(path.name for path in (out / "shards").iterdir()) == [f"0000{i}-of-00003" for i in range(3)]
    for table in ("entities.parquet", "triples.parquet"):
        assert (out / table).read_bytes() == (tmp_path / "single" / table).read_bytes(), table
    assert pq.read_metadata(out / "triples.parquet").num_rows > 0


def shard_prefixes(directory, split):
    """DIR/split, DIR/split1, ... in fairseq's order."""
    numbers = sorted(int(match.group(1) or 0) for path in directory.glob(f"{split}*.idx")
                     if (match := re.fullmatch(rf"{split}(\d*)\.idx", path.name)))
    return [directory / f"{split}{number or ''}" for number in numbers]


def read_items(prefixes, suffix=""):
    return [np.asarray(item) for prefix in prefixes for item in MMapIndexedDataset(f"{prefix}{suffix}")]


def assert_same_items(single, gathered, suffix=""):
    expected, actual = read_items(single, suffix), read_items(gathered, suffix)
    assert len(actual) == len(expected) > 0
    assert all(np.array_equal(a, b) for a, b in zip(actual, expected))


def test_binarize_array_of_3_plus_gather_equals_one_process(slurm, samples, single_data, tmp_path):
    data = tmp_path / "data"
    env = binarize_env(samples, data)
    array = slurm.sbatch("--array=0-2", *SMALL_TASK, SLURM_DIR / "binarize.sbatch", env=env)
    slurm.sbatch(f"--dependency=afterok:{array}", "--array=0", *SMALL_TASK, SLURM_DIR / "binarize.sbatch",
                 env={**env, "STEP": "gather"}, wait=True, timeout=JOB_SECONDS)
    compared, split_shards = 0, 0
    for kind, languages in (("knowledge", ("de", "ja")), ("plain", LANGUAGES)):
        assert sorted(path.name for path in (data / kind).iterdir() if path.is_dir() and path.name != "parts") \
            == sorted(languages), kind
        for lang in languages:
            for split in ("train", "valid"):
                single, gathered = (shard_prefixes(root / kind / lang, split) for root in (single_data, data))
                assert_same_items(single, gathered)
                if kind == "knowledge":
                    assert_same_items(single, gathered, ".tags")
                compared += 1
                split_shards += len(gathered) > 1
    assert compared == 10 and split_shards > 0  # the parts really split the data
    for name in ("dict.txt", "sentencepiece.bpe.model"):
        assert (data / name).read_bytes() == (single_data / name).read_bytes()


def wait_for(condition, seconds, what, slurm):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.3)
    pytest.fail(f"timed out after {seconds} s waiting for {what}\n{slurm.logs()}")


def logged_updates(text):
    return [int(n) for n in re.findall(r"^epoch \d+:.*num_updates=(\d+)", text, re.MULTILINE)]


def test_train_with_2_srun_tasks_resumes_after_requeue(slurm, single_data, tmp_path):
    save = tmp_path / "ckpt"
    job = slurm.sbatch(
        "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--time=10",
        SLURM_DIR / "train.sbatch", "tiny_cpu", single_data, save, "-", "task.streams='plain,knowledge'",
        "optimization.max_update=100", "checkpoint.save_interval_updates=25",
        "dataset.validate_interval_updates=25", "common.log_interval=5",
        env={**BASE_ENV, "KMLM_RUN": "cpu"})
    log = slurm.cwd / f"kmlm-{job}.out"
    text = lambda: log.read_text() if log.exists() else ""  # noqa: E731
    # requeue right after the first checkpoint (update 25 of 100): the next save is 25 updates away
    wait_for(lambda: "Saved checkpoint" in text(), JOB_SECONDS, "the first checkpoint", slurm)
    slurm.run("scontrol", "requeue", job)
    requeued = time.time()
    wait_for(lambda: slurm.state(job) == "PENDING", 60, "the requeued job to be pending", slurm)
    wait_for(lambda: slurm.run("sinfo", "-h", "-o", "%T").stdout.split() == ["idle"], 60, "the node to be idle", slurm)
    # slurmd revokes the old run's credential with a timestamp in whole seconds: a restart within the same second
    # is killed ("Job credential revoked"); BeginTime (~120 s) normally guarantees the gap
    time.sleep(max(0.0, requeued + 2.0 - time.time()))
    slurm.run("scontrol", "update", f"JobId={job}", "StartTime=now")
    wait_for(lambda: slurm.state(job) in (None, "COMPLETED", "FAILED", "CANCELLED") and "done training" in text()
             or slurm.state(job) in ("FAILED", "CANCELLED"), JOB_SECONDS, "the resumed run to finish", slurm)

    first, _, second = text().partition(f"resuming from {save}/checkpoint_last.pt (restart 1)")
    assert second, text()[-3000:]
    assert first.count("train.sbatch: 2 tasks on 1 node(s)") == 1 and second.count("2 tasks on 1 node(s)") == 1
    assert all(f"distributed init (rank {rank})" in part for rank in (0, 1) for part in (first, second))
    loaded = re.search(r"Loaded checkpoint \S+checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)", second)
    assert loaded, second[-3000:]
    resumed_at = int(loaded.group(1))
    first_updates, second_updates = logged_updates(first), logged_updates(second)
    assert 25 <= resumed_at <= max(first_updates) < 100 and "done training" not in first
    assert second_updates == list(range(resumed_at + 5, 101, 5))
    assert "done training" in second and (save / "checkpoint_last.pt").exists()
