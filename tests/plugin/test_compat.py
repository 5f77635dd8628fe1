"""kmlm_fairseq.compat's fix of fairseq's checkpoint copy: a copy that dies half-way leaves the old file whole."""
import shutil

import pytest
from fairseq import checkpoint_utils

import kmlm_fairseq  # noqa: F401  (applies the fixes)


def test_checkpoint_copy_killed_half_way_leaves_the_previous_checkpoint_last(tmp_path, monkeypatch):
    new, last = tmp_path / "checkpoint_1_20.pt", tmp_path / "checkpoint_last.pt"
    new.write_bytes(b"new checkpoint " * 1000)
    last.write_bytes(b"previous checkpoint")

    def dies_half_way(src, dst):
        with open(src, "rb") as source, open(dst, "wb") as target:
            target.write(source.read(100))
        raise KeyboardInterrupt  # what SIGINT does in the middle of fairseq's copy

    monkeypatch.setattr(shutil, "copyfile", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_utils.PathManager.copy(str(new), str(last), overwrite=True)  # the call save_checkpoint makes
    assert last.read_bytes() == b"previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_1_20.pt", "checkpoint_last.pt"]

    monkeypatch.undo()
    assert checkpoint_utils.PathManager.copy(str(new), str(last), overwrite=True)
    assert last.read_bytes() == new.read_bytes()


def test_a_relaunched_finished_training_takes_no_further_update():
    """fairseq's loop enters an epoch (one update) before it checks max_update; with the guard, a launch whose
    trainer already holds max_update updates stops before the epoch, and one with fewer goes through to fairseq's."""
    from types import SimpleNamespace

    import fairseq_cli.train as train_cli  # loaded after the plugin here, so the guard is installed by hand

    from kmlm_fairseq.compat import stop_a_finished_training_before_another_update

    stop_a_finished_training_before_another_update()
    stop_a_finished_training_before_another_update()  # idempotent: still one wrapper around fairseq's function
    assert not getattr(train_cli.train.__wrapped__, "stops_a_finished_training", False)

    class EpochIterator:  # fairseq's train() starts by asking for the epoch's iterator
        next_epoch_idx = 1

        def next_epoch_itr(self, **kwargs):
            raise RuntimeError("fairseq started an epoch")

    def launch(num_updates, max_update):
        cfg = SimpleNamespace(optimization=SimpleNamespace(max_update=max_update),
                              dataset=SimpleNamespace(curriculum=0),
                              distributed_training=SimpleNamespace(fix_batches_to_gpus=False))
        return train_cli.train(cfg, SimpleNamespace(get_num_updates=lambda: num_updates), None, EpochIterator())

    assert launch(num_updates=24, max_update=24) == ([None], True)
    assert launch(num_updates=30, max_update=24) == ([None], True)
    for num_updates, max_update in ((23, 24), (24, 0)):  # not reached yet; 0: no limit
        with pytest.raises(RuntimeError, match="fairseq started an epoch"):
            launch(num_updates, max_update)
