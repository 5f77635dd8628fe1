"""Damaged binarized data stops the task while it loads, naming the file (issue 13, case 6): an index that does not
describe its data file (sizes or pointers beyond the .bin, a truncated .bin or .idx, extra bytes, a broken header,
a wrong or non-integer dtype) and tags not aligned token for token with their tokens. Before, a corrupted .idx
trained 90 updates and then failed with `buffer is smaller than requested size`, or read garbage and exited 0."""
import os
import re
import subprocess

import numpy as np
import pytest

from kmlm_fairseq.data.toy_corpus import write_toy_corpus
from tests.conftest import REPO_ROOT, venv_bin
from tests.plugin.test_multi_stream_batches import SIZES, make_task

DTYPE_CODE_AT = 17  # magic (9 bytes), version (8), then the dtype code
HEADER_BYTES = 26  # ... and the sample count (8): fairseq.data.indexed_dataset.MMapIndexedDataset.Index


def index_arrays(path):
    """(header bytes, sizes, pointers) of a .idx file, as writable copies."""
    data = path.read_bytes()
    count = int(np.frombuffer(data, np.uint64, 1, HEADER_BYTES - 8)[0])
    sizes = np.frombuffer(data, np.int32, count, HEADER_BYTES).copy()
    pointers = np.frombuffer(data, np.int64, count, HEADER_BYTES + 4 * count).copy()
    return bytearray(data[:HEADER_BYTES]), sizes, pointers


def write_index(path, header, sizes, pointers):
    path.write_bytes(bytes(header) + sizes.astype(np.int32).tobytes() + pointers.astype(np.int64).tobytes())


def grow_last_sample(prefix):
    header, sizes, pointers = index_arrays(prefix.with_suffix(".idx"))
    sizes[-1] += 100
    write_index(prefix.with_suffix(".idx"), header, sizes, pointers)


def shift_a_pointer(prefix):
    header, sizes, pointers = index_arrays(prefix.with_suffix(".idx"))
    pointers[3] += 2
    write_index(prefix.with_suffix(".idx"), header, sizes, pointers)


def truncate(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


def set_dtype_code(path, code):
    data = bytearray(path.read_bytes())
    data[DTYPE_CODE_AT] = code
    path.write_bytes(bytes(data))


def move_a_tag(prefix):
    """Tags still consistent with their own .bin, but samples 0 and 1 one tag off from their tokens."""
    path = prefix.with_name(prefix.name + ".tags.idx")
    header, sizes, _ = index_arrays(path)
    sizes[0] += 1
    sizes[1] -= 1
    pointers = np.concatenate([[0], np.cumsum(sizes[:-1], dtype=np.int64)]) * 4
    write_index(path, header, sizes, pointers)


TRAIN = "knowledge/de/train"
DAMAGES = {
    "sizes beyond the .bin": (TRAIN, grow_last_sample, r"train\.bin holds \d[\d,]* bytes but its index train\.idx "
                                                       r"describes \d[\d,]* .*: truncated"),
    "a pointer off": (TRAIN, shift_a_pointer, r"train\.idx: sample 3 has size \d+ at byte \d+, but the samples "
                                              r"before it end at byte \d+"),
    "truncated .bin": (TRAIN, lambda p: truncate(p.with_suffix(".bin"), lambda n: n - 7), r"train\.bin .*truncated"),
    "extra bytes in .bin": (TRAIN, lambda p: p.with_suffix(".bin").write_bytes(p.with_suffix(".bin").read_bytes()
                                                                                 + b"\0\0"), r"train\.bin .*extra"),
    "truncated .idx": (TRAIN, lambda p: truncate(p.with_suffix(".idx"), lambda n: n // 2),
                       r"train\.idx is truncated: \d+ bytes, but 64 samples need \d+"),
    "no header": (TRAIN, lambda p: truncate(p.with_suffix(".idx"), lambda n: 0), r"train\.idx is not a fairseq mmap"),
    "float dtype": ("plain/en/train", lambda p: set_dtype_code(p.with_suffix(".idx"), 6),
                    r"train\.idx: dtype code 6 is not an integer type"),
    "tags of another dtype": (TRAIN, lambda p: set_dtype_code(p.with_name("train.tags.idx"), 8),
                              r"train\.tags\.idx: samples of uint16, expected int32"),
    "tags misaligned": (TRAIN, move_a_tag, r"train\.bin/\.idx and .*train\.tags\.bin/\.idx: sample 0 has \d+ tokens "
                                           r"but \d+ tags \(2 samples differ\)"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_binarized_data_stops_the_task_naming_the_file(tmp_path, damage):
    write_toy_corpus(str(tmp_path), languages=("en", "de"), sizes=SIZES)
    make_task(tmp_path).load_dataset("train")  # intact: loads
    name, apply, message = DAMAGES[damage]
    apply(tmp_path / name)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / name.rsplit("/", 1)[0])) + ".*" + message):
        make_task(tmp_path).load_dataset("train")


@pytest.mark.slow
def test_training_on_a_damaged_index_stops_before_the_first_update(tmp_path):
    data, save_dir = tmp_path / "data", tmp_path / "ckpt"
    write_toy_corpus(str(data), languages=("en", "de"), sizes=SIZES)
    grow_last_sample(data / "reasoning" / "de" / "train")
    result = subprocess.run([venv_bin("fairseq-hydra-train"), "--config-dir", "configs", "--config-name", "tiny_cpu",
                             f"task.data={data}", f"checkpoint.save_dir={save_dir}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 1
    *_, error, _, hydra_hint = output.strip().splitlines()  # Hydra's "Set ... HYDRA_FULL_ERROR" hint comes last
    assert error.startswith(f"ValueError: {data}/reasoning/de/train.bin holds") and "truncated" in error, output[-3000:]
    assert "HYDRA_FULL_ERROR" in hydra_hint
    assert "num_updates" not in output and not list(save_dir.glob("*.pt"))
