from pathlib import Path

import pytest

from tests.export import tiny

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
XTREME, XFACTR = SHARED / "xtreme", SHARED / "xfactr"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two different random tiny XLM-R directories (HF format, id-exact sentencepiece tokenizers)."""
    root = tmp_path_factory.mktemp("tiny_models")
    return tiny.tiny_xlmr_dir(root / "a", seed=0), tiny.tiny_xlmr_dir(root / "b", seed=1)


@pytest.fixture(scope="session")
def xtreme():
    """../shared/data/xtreme: real slices of XNLI, PAWS-X, UD, XQuAD, MLQA, TyDiQA, SQuAD (see its ATTRIBUTION.md)."""
    if not (XTREME / "ATTRIBUTION.md").is_file():
        pytest.skip(f"the real XTREME sample files are not at {XTREME} (shared data of the project, not in the repo)")
    return XTREME


@pytest.fixture(scope="session")
def xfactr_data():
    """../shared/data/xfactr: X-FACTR's real facts, alias files, prompts, multi-answer file."""
    if not (XFACTR / "TREx_prompts.csv").is_file():
        pytest.skip(f"the real X-FACTR files are not at {XFACTR} (shared data of the project, not in the repo)")
    return XFACTR


def first_lines(source, target, n):
    """The first ``n`` lines of a real file (tests keep runs short)."""
    lines = Path(source).read_text(encoding="utf-8").splitlines(keepends=True)
    Path(target).write_text("".join(lines[:n]), encoding="utf-8")
    return target
