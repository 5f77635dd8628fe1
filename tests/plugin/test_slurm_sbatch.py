"""run/slurm/train.sbatch under a fake SLURM: fake srun/scontrol and a fake fairseq-hydra-train that records its
arguments, so the test checks what every task is told (rank, device, world size, rendezvous, init or resume) and
the requeue on USR1, without a cluster."""
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import REPO_ROOT

SBATCH = REPO_ROOT / "run" / "slurm" / "train.sbatch"

FAKE_SRUN = """#!/usr/bin/env bash
# one process per task, as srun does: SLURM_PROCID global, SLURM_LOCALID within the node
while [[ $1 == --* ]]; do shift; done
pids=()
for ((rank = 0; rank < SLURM_NTASKS; rank++)); do
    SLURM_PROCID=$rank SLURM_LOCALID=$((rank % SLURM_NTASKS_PER_NODE)) "$@" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
if [[ $1 == show && $2 == hostnames ]]; then printf 'gpu-node-1\\ngpu-node-2\\n'
else echo "$*" >> "$FAKE_LOG/scontrol"; fi
"""
FAKE_TRAIN = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_LOG/rank$SLURM_PROCID"
sleep "${FAKE_TRAIN_SECONDS:-0}"
"""


@pytest.fixture
def fake_slurm(tmp_path):
    bin_dir, venv_bin, log = tmp_path / "bin", tmp_path / "venv" / "bin", tmp_path / "log"
    for directory in (bin_dir, venv_bin, log):
        directory.mkdir(parents=True)
    for path, text in ((bin_dir / "srun", FAKE_SRUN), (bin_dir / "scontrol", FAKE_SCONTROL),
                       (venv_bin / "fairseq-hydra-train", FAKE_TRAIN)):
        path.write_text(text)
        path.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log),
           "KMLM_ROOT": str(REPO_ROOT), "KMLM_VENV": str(tmp_path / "venv"),
           "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "gpu-node-[1-2]", "SLURM_JOB_NUM_NODES": "2",
           "SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2"}
    return env, log


def run_sbatch(env, *args, **kwargs):
    return subprocess.run(["bash", str(SBATCH), *args], env=env, capture_output=True, text=True, timeout=60,
                          **kwargs)


def task_arguments(log, rank):
    return (log / f"rank{rank}").read_text().split("\n")[:-1]


def test_every_task_gets_its_rank_device_and_the_first_node_rendezvous(fake_slurm, tmp_path):
    env, log = fake_slurm
    result = run_sbatch(env, "kmlm_r_base", "/data", str(tmp_path / "ckpt"), "/xlmr/model.pt",
                        "optimization.lr=[1e-5]")
    assert result.returncode == 0, result.stderr
    for rank in range(4):
        args = task_arguments(log, rank)
        assert args[:4] == ["--config-dir", "configs", "--config-name", "kmlm_r_base"]
        assert {"run=slurm", "task.data=/data", f"checkpoint.save_dir={tmp_path / 'ckpt'}",
                "distributed_training.distributed_world_size=4",
                "distributed_training.distributed_init_method=tcp://gpu-node-1:24242",
                "distributed_training.distributed_no_spawn=true",
                f"distributed_training.distributed_rank={rank}", f"distributed_training.device_id={rank % 2}",
                "+init=pretrained", "checkpoint.restore_file=/xlmr/model.pt", "optimization.lr=[1e-5]"} <= set(args)


def test_requeued_job_resumes_from_checkpoint_last_instead_of_the_initial_checkpoint(fake_slurm, tmp_path):
    env, log = fake_slurm
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint_last.pt").write_bytes(b"")
    result = run_sbatch(env, "kmlm_r_base", "/data", str(tmp_path / "ckpt"), "/xlmr/model.pt")
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout
    assert not any(arg.startswith(("+init", "checkpoint.restore_file")) for arg in task_arguments(log, 0))


def test_batch_size_sets_the_update_freq_for_9600_sequences_per_stream(fake_slurm, tmp_path):
    env, log = fake_slurm
    result = run_sbatch({**env, "KMLM_BATCH_SIZE": "100"}, "kmlm_r_base", "/data", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert {"dataset.batch_size=100", "optimization.update_freq=[24]"} <= set(task_arguments(log, 3))  # 4x100x24
    refused = run_sbatch({**env, "KMLM_BATCH_SIZE": "7"}, "kmlm_r_base", "/data", str(tmp_path))
    assert refused.returncode == 2 and "not a multiple" in refused.stderr


def test_usr1_before_the_time_limit_requeues_the_job(fake_slurm, tmp_path):
    env, log = fake_slurm
    job = subprocess.Popen(["bash", str(SBATCH), "kmlm_r_base", "/data", str(tmp_path)],
                           env={**env, "FAKE_TRAIN_SECONDS": "3"}, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not (log / "rank0").exists() and time.time() < deadline:
        time.sleep(0.1)
    job.send_signal(signal.SIGUSR1)
    output = job.communicate(timeout=60)[0]
    assert (log / "scontrol").read_text().split() == ["requeue", "4242"]
    assert "requeueing job 4242" in output


def test_missing_arguments_print_the_usage(fake_slurm):
    env, _ = fake_slurm
    result = run_sbatch(env, "kmlm_r_base")
    assert result.returncode == 2 and "usage: sbatch" in result.stderr
