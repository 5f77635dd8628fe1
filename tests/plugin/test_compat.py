"""kmlm_fairseq.compat's fix of fairseq's checkpoint copy: a copy that dies half-way leaves the old file whole."""
import shutil

import pytest

import kmlm_fairseq  # noqa: F401  (applies the fixes)
from fairseq import checkpoint_utils


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
