"""Training on GPUs, as run/gpu_check.sh runs it: the tiny and the base-size KMLM_R (models built from the configs,
no pretrained weights) for a few updates in fp16 and in bf16 on one GPU, a resume from checkpoint_last.pt, two
processes with NCCL when two GPUs are present, and an export of the GPU-trained checkpoint. Data: the bundled
Wikidata samples through the preprocessing stages (no download), or $KMLM_GPU_CHECK_DATA when run/gpu_check.sh
built it already.

The tests marked ``gpu`` are skipped without CUDA (tests/conftest.py). The same command lines also run here on
CPU for the one precision a CPU trains in (bf16, tiny model): that checks that the overrides compose and train.
"""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, venv_bin

pytestmark = pytest.mark.slow

MODELS = {"tiny": "tiny", "base": "xlmr_base"}
PRECISIONS = {"fp16": ("common.fp16=true", "common.bf16=false"), "bf16": ("common.fp16=false", "common.bf16=true")}
UPDATE_LINE = re.compile(r"^epoch \d+: .*num_updates=(\d+),.*$", re.MULTILINE)


@pytest.fixture(scope="module")
def data(request):
    given = os.environ.get("KMLM_GPU_CHECK_DATA")
    return Path(given) if given else request.getfixturevalue("bundled_training_data")


def train_command(data, save_dir, model, precision, max_update, device="cuda", world_size=1):
    """fairseq-hydra-train of KMLM_R (config kmlm_r_base: run/gpu, fp16) made small enough to check in seconds."""
    return [venv_bin("fairseq-hydra-train"), "--config-dir", "configs", "--config-name", "kmlm_r_base",
            f"task.data={data}", f"checkpoint.save_dir={save_dir}", f"model={MODELS[model]}",
            *PRECISIONS[precision], f"common.cpu={device == 'cpu'}",
            f"distributed_training.distributed_world_size={world_size}",
            *(["distributed_training.distributed_backend=gloo", "distributed_training.ddp_backend=legacy_ddp",
               "dataset.num_workers=0"] if device == "cpu" else []),
            "dataset.batch_size=8", "optimization.update_freq=[1]", f"optimization.max_update={max_update}",
            "lr_scheduler.total_num_update=100", "lr_scheduler.warmup_updates=2", "optimization.max_epoch=0",
            "task.epoch_stream=longest", "common.log_interval=1", "checkpoint.save_interval_updates=3",
            "dataset.validate_interval_updates=3"]


def train(data, save_dir, model, precision, max_update, **kwargs):
    """Run a training; returns (its log, {update: loss})."""
    result = subprocess.run(train_command(data, save_dir, model, precision, max_update, **kwargs), cwd=REPO_ROOT,
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    losses = {int(match.group(1)): float(dict(re.findall(r"(\w+)=([0-9.e+-]+|inf|nan)", match.group(0)))["loss"])
              for match in UPDATE_LINE.finditer(log)}
    return log, losses


def test_the_gpu_commands_compose_and_train_on_cpu_in_bf16(data, tmp_path):
    """The harness of the GPU tests, where a CPU can run it: same overrides, tiny model, bf16, then a resume."""
    _, losses = train(data, tmp_path, "tiny", "bf16", 3, device="cpu")
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(loss) for loss in losses.values())
    log, losses = train(data, tmp_path, "tiny", "bf16", 4, device="cpu")
    assert "(epoch 1 @ 3 updates)" in log and sorted(losses) == [4]


@pytest.fixture(scope="module")
def tiny_fp16_run(data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("tiny-fp16")
    log, losses = train(data, save_dir, "tiny", "fp16", 3)
    return save_dir, log, losses


@pytest.mark.gpu
def test_tiny_trains_in_fp16_on_one_gpu(tiny_fp16_run):
    save_dir, log, losses = tiny_fp16_run
    assert "training on 1 devices (GPUs/TPUs)" in log
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(loss) for loss in losses.values())
    assert (save_dir / "checkpoint_last.pt").exists()


@pytest.mark.gpu
@pytest.mark.parametrize("model, precision", [("tiny", "bf16"), ("base", "fp16"), ("base", "bf16")])
def test_trains_on_one_gpu(data, tmp_path, model, precision):
    log, losses = train(data, tmp_path, model, precision, 3)
    assert "training on 1 devices (GPUs/TPUs)" in log
    assert sorted(losses) == [1, 2, 3] and all(math.isfinite(loss) for loss in losses.values())


@pytest.mark.gpu
def test_resumes_from_checkpoint_last_on_gpu(data, tiny_fp16_run):
    save_dir, _, _ = tiny_fp16_run
    log, losses = train(data, save_dir, "tiny", "fp16", 6)
    assert f"Loaded checkpoint {save_dir / 'checkpoint_last.pt'}" in log and "(epoch 1 @ 3 updates)" in log
    assert sorted(losses) == [4, 5, 6]


@pytest.mark.gpu
def test_two_processes_with_nccl(data, tmp_path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip(f"needs 2 GPUs, {torch.cuda.device_count()} present: NCCL refuses two ranks on one GPU")
    log, losses = train(data, tmp_path, "tiny", "fp16", 3, world_size=2)
    assert "distributed init (rank 1)" in log and "training on 2 devices (GPUs/TPUs)" in log
    assert sorted(losses) == [1, 2, 3]
    log, losses = train(data, tmp_path, "tiny", "fp16", 4, world_size=2)  # both ranks resume
    assert "(epoch 1 @ 3 updates)" in log and sorted(losses) == [4]


@pytest.mark.gpu
def test_exports_the_gpu_trained_checkpoint(data, tiny_fp16_run, tmp_path):
    save_dir, _, _ = tiny_fp16_run
    result = subprocess.run([venv_bin("kmlm-export"), "hf", str(save_dir / "checkpoint_last.pt"), str(tmp_path / "hf")],
                            cwd=REPO_ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (tmp_path / "hf" / "config.json").exists() and (tmp_path / "hf" / "model.safetensors").exists()


def test_the_gpu_checks_benchmark_runs_on_cpu_with_its_data_and_dictionary(data):
    """Step 3 of run/gpu_check.sh (bench/train_step.py on the bundled data with XLM-R's 250,002 symbols), where a CPU
    can run it: tiny model, bf16, two updates. Both tasks train and the ratio is printed; its value means nothing
    here."""
    command = [sys.executable, "bench/train_step.py", "--device", "cpu", "--model", "tiny", "--precision", "bf16",
               "--data", str(data), "--vocab-size", "250002", "--batch-size", "4", "--tokens-per-sample", "128",
               "--updates", "2", "--rounds", "1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "250,002 symbols" in result.stdout and ", bf16, " in result.stdout
    for task in ("kmlm_reasoning  3 streams", "masked_lm       1 stream "):
        assert re.search(rf"^  {task} x +\d+ +[\d.]+ ms .* [\d,]+ tokens/s$", result.stdout, re.MULTILINE), task
    assert re.search(r"^ratio kmlm_reasoning / masked_lm step time: [\d.]+x", result.stdout, re.MULTILINE)


def run_gpu_check(venv):
    return subprocess.run(["bash", "run/gpu_check.sh"], cwd=REPO_ROOT, env={**os.environ, "KMLM_VENV": str(venv)},
                          capture_output=True, text=True, timeout=300)


def test_gpu_check_without_a_gpu_says_it_skipped_and_why_and_exits_0():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: run/gpu_check.sh would run everything")
    result = run_gpu_check(Path(sys.executable).parents[1])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("run/gpu_check.sh: SKIPPED: torch ") and "sees no CUDA GPU" in result.stdout
    assert "====" not in result.stdout  # no step started


def test_gpu_check_without_the_venv_fails_clearly(tmp_path):
    result = run_gpu_check(tmp_path / "no-venv")
    assert result.returncode == 1 and f"{tmp_path / 'no-venv'}/bin/python does not exist" in result.stderr
