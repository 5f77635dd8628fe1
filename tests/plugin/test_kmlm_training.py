"""fairseq-hydra-train with the plugin on CPU (config tiny_cpu) on a tiny learnable binarized corpus made here:
training, exact resume across epochs, a 2-process gloo run, initialisation from a checkpoint (the checks around
initialisation run in-process: test_model_init.py)."""
import os
import re
import shutil
import socket
import struct
import subprocess

import numpy as np
import pytest

from kmlm_fairseq.data.toy_corpus import write_toy_corpus
from tests.conftest import REPO_ROOT, venv_bin

pytestmark = pytest.mark.slow

STREAMS = ("plain", "knowledge", "reasoning")
# knowledge 64 sentences = 8 batches of 8: the epoch; plain and reasoning are cycled to it
SIZES = {("plain", "train"): 40, ("knowledge", "train"): 64, ("reasoning", "train"): 24,
         ("plain", "valid"): 4, ("knowledge", "valid"): 8, ("reasoning", "valid"): 4}
UPDATE_LINE = re.compile(r"^epoch \d+: .*num_updates=(\d+),", re.MULTILINE)
NO_DROPOUT = ("+model.dropout=0", "+model.attention_dropout=0")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy")
    write_toy_corpus(str(path), languages=("en", "de"), sizes=SIZES)
    return path


def train_command(data, save_dir, *overrides):
    return [venv_bin("fairseq-hydra-train"), "--config-dir", "configs", "--config-name", "tiny_cpu",
            f"task.data={data}", f"checkpoint.save_dir={save_dir}", *overrides]


def environment():
    # one thread per process: the tiny model gains nothing from more, and 2 cores are shared by the test processes
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def hydra_train(data, save_dir, *overrides, check=True):
    result = subprocess.run(train_command(data, save_dir, *overrides), cwd=REPO_ROOT, capture_output=True,
                            text=True, env=environment())
    log = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, log[-4000:]
    return log if check else (result.returncode, log)


def updates(log):
    """num_updates -> {loss, plain_loss, ...} of every logged update."""
    logged = {}
    for line in log.splitlines():
        match = UPDATE_LINE.match(line)
        if match:
            fields = dict(re.findall(r"(\w+)=([0-9.e+-]+)", line))
            logged[int(match.group(1))] = {key: value for key, value in fields.items() if key.endswith("loss")}
    return logged


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def straight_run(data, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("straight")
    log = hydra_train(data, save_dir, "optimization.max_update=24", "lr_scheduler.total_num_update=24",
                      f"common.tensorboard_logdir={save_dir / 'tensorboard'}")
    return save_dir, log


def tensorboard_scalars(directory):
    """{tag: [(step, value)]} of the TFRecord event files under ``directory`` (length, crc, event, crc records)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = event_pb2.Event.FromString(data[offset + 12: offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tiny_cpu_trains_all_three_streams_with_falling_losses(straight_run):
    _, log = straight_run
    logged = updates(log)
    assert sorted(logged) == list(range(1, 25))
    assert all({"loss", *(f"{stream}_loss" for stream in STREAMS)} <= set(values) for values in logged.values())
    for stream in STREAMS:
        curve = np.array([float(logged[update][f"{stream}_loss"]) for update in range(1, 25)])
        assert curve[-6:].mean() < curve[:6].mean() - 0.2, f"{stream} loss did not fall: {curve.round(2)}"
    validation = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert validation and all(f"{stream}_loss" in validation[-1] for stream in STREAMS)
    assert "epoch 003" in log  # 8 updates per epoch: the run crossed two epoch boundaries


def test_tensorboard_logdir_records_every_stream_loss(straight_run):
    """common.tensorboard_logdir works out of the box (tensorboardX is installed): per-update curves of the three
    losses and their combination, equal to the logged values."""
    save_dir, log = straight_run
    inner = tensorboard_scalars(save_dir / "tensorboard" / "train_inner")
    assert {"loss", "plain_loss", "knowledge_loss", "reasoning_loss"} <= set(inner)
    logged = updates(log)
    for key in ("loss", "reasoning_loss"):
        assert [step for step, _ in inner[key]] == list(range(1, 25))
        assert [round(value, 3) for _, value in inner[key]] == [float(logged[step][key]) for step in range(1, 25)]
    assert "loss" in tensorboard_scalars(save_dir / "tensorboard" / "valid")
    assert "Please install tensorboardX" not in log


def training_state(checkpoint):
    """What a resumed run must share with an uninterrupted one, from a checkpoint: update count, data position, lr,
    weights, Adam's state, and the meters fairseq keeps per epoch (train), per log interval (train_inner) and per
    validation (valid; the task resets them at each validation). Left out (fairseq's bookkeeping, docs/design.md §7):
    timings; the whole-run ``default`` meters, which a resume cannot carry on (metrics.load_state_dict installs new
    aggregator objects while logging goes on into the old ones, and no meter is restored from an epoch's last
    checkpoint); the lr scheduler's record of the best validation loss (an epoch's last validation reaches it only
    after that epoch's checkpoint is saved; polynomial decay never reads it)."""
    import torch

    import kmlm_fairseq  # noqa: F401  (fairseq's checkpoints load under torch's safe loader)
    state = torch.load(checkpoint, map_location="cpu")
    optimizer = state["last_optimizer_state"]
    meters = {(aggregator, name): meter for aggregator, items in state["extra_state"]["metrics"].items()
              if aggregator != "default" for _, name, kind, meter in items if kind == "AverageMeter"}
    return {
        "num_updates": state["optimizer_history"][-1]["num_updates"],
        "iterator": state["extra_state"]["train_iterator"],
        "lr": [group["lr"] for group in optimizer["param_groups"]],
        "meters": meters,
        "weights": {name: tensor.numpy().tobytes() for name, tensor in state["model"].items()},
        "adam": {(index, name): value.numpy().tobytes() if torch.is_tensor(value) else value
                 for index, entries in optimizer["state"].items() for name, value in entries.items()},
    }


@pytest.mark.parametrize("stop", [12, 10], ids=["mid-epoch", "end-of-epoch"])
def test_resume_from_checkpoint_last_continues_exactly(data, straight_run, tmp_path, stop):
    """Stopped after update 12 (fairseq restores the meters) or 10, the last of epoch 1 (fairseq restores none), then
    resumed to 24: the same losses at every update and, in the end, the uninterrupted run's training state."""
    straight_dir, straight = straight_run
    first = hydra_train(data, tmp_path, f"optimization.max_update={stop}", "lr_scheduler.total_num_update=24")
    at_stop = training_state(tmp_path / "checkpoint_last.pt")["iterator"]
    assert at_stop["epoch"] == 2 and (at_stop["iterations_in_epoch"] == 0) == (stop == 10)
    second = hydra_train(data, tmp_path, "optimization.max_update=24", "lr_scheduler.total_num_update=24")
    assert "Loaded checkpoint" in second and f"(epoch 2 @ {stop} updates)" in second
    assert sorted(updates(second)) == list(range(stop + 1, 25))
    assert {**updates(first), **updates(second)} == updates(straight)
    resumed, uninterrupted = training_state(tmp_path / "checkpoint_last.pt"), training_state(
        straight_dir / "checkpoint_last.pt")
    assert resumed["meters"] and {key for key, _ in resumed["meters"]} == {"train", "train_inner", "valid"}
    for part in uninterrupted:
        assert resumed[part] == uninterrupted[part], part


def test_relaunching_a_finished_training_leaves_its_checkpoint_as_it_is(data, straight_run, tmp_path):
    """fairseq alone would train update 25 (lr 0: the same weights, but another update count, Adam state, data
    position and meters), validate and save; kmlm_fairseq.compat stops it before that update."""
    straight_dir, _ = straight_run
    save_dir = tmp_path / "finished"
    shutil.copytree(straight_dir, save_dir, ignore=shutil.ignore_patterns("tensorboard"))
    before = {path.name: path.read_bytes() for path in save_dir.iterdir()}
    log = hydra_train(data, save_dir, "optimization.max_update=24", "lr_scheduler.total_num_update=24")
    assert "(epoch 3 @ 24 updates)" in log and "the training is complete, nothing to train" in log
    assert not updates(log) and "Saved checkpoint" not in log
    assert {path.name: path.read_bytes() for path in save_dir.iterdir()} == before


def run_two_gloo_processes(data, save_dir, max_update):
    port = free_port()
    distributed = [f"optimization.max_update={max_update}", "lr_scheduler.total_num_update=6", *NO_DROPOUT,
                   "checkpoint.save_interval_updates=3", "distributed_training.distributed_world_size=2",
                   f"distributed_training.distributed_init_method=tcp://127.0.0.1:{port}",
                   "distributed_training.distributed_no_spawn=true"]
    ranks = [subprocess.Popen(train_command(data, save_dir, *distributed,
                                            f"distributed_training.distributed_rank={rank}"),
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment())
             for rank in (0, 1)]
    logs = [rank.communicate(timeout=300)[0] for rank in ranks]
    # (unequal numbers of batches per rank would hang or crash the gradient all-reduce)
    assert [rank.returncode for rank in ranks] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    return logs[0]


def test_two_gloo_processes_resume_and_equal_one_process_accumulating_two_batches(data, tmp_path):
    first = run_two_gloo_processes(data, tmp_path / "ddp", max_update=3)
    second = run_two_gloo_processes(data, tmp_path / "ddp", max_update=6)  # both ranks load checkpoint_last.pt
    assert "(epoch 1 @ 3 updates)" in second
    single = hydra_train(data, tmp_path / "single", "optimization.max_update=6", "lr_scheduler.total_num_update=6",
                         *NO_DROPOUT, "optimization.update_freq=[2]")
    assert sorted(updates(first)) == [1, 2, 3] and sorted(updates(second)) == [4, 5, 6]
    assert {**updates(first), **updates(second)} == updates(single)


def test_restore_file_initialises_weights_with_reset_flags(data, straight_run, tmp_path):
    save_dir, straight = straight_run
    log = hydra_train(data, tmp_path, "optimization.max_update=2", "+init=pretrained",
                      f"checkpoint.restore_file={save_dir / 'checkpoint_last.pt'}")
    assert f"Loaded checkpoint {save_dir / 'checkpoint_last.pt'}" in log
    assert sorted(updates(log)) == [1, 2]  # update count, lr schedule and data position start over
    trained, fresh = float(updates(log)[1]["loss"]), float(updates(straight)[1]["loss"])
    assert trained < fresh - 0.5
