"""The architecture the README's "Architecture" section describes, checked: dependencies point one way, one module
per stage, one stage order, nothing loaded by file path, no dangling reference to a document."""
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from preprocess.stages import STAGES

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("preprocess", "kmlm_fairseq", "kmlm_eval")


def python_files(*packages):
    return sorted(p for package in packages for p in (REPO_ROOT / package).rglob("*.py"))


def module_name(path):
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def loaded_after_importing(*modules):
    """The top-level packages (and our subpackages) in sys.modules of a fresh interpreter after importing modules."""
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def roots(modules):
    return {name.split(".")[0] for name in modules}


def test_the_data_side_never_loads_torch_fairseq_the_plugin_or_the_evaluation():
    loaded = loaded_after_importing(*map(module_name, python_files("preprocess")))
    assert not roots(loaded) & {"torch", "fairseq", "fairseq_cli", "kmlm_fairseq", "kmlm_eval", "transformers"}


def test_the_evaluation_never_loads_fairseq_or_the_plugin():
    loaded = loaded_after_importing(*map(module_name, python_files("kmlm_eval")))
    assert "torch" in roots(loaded)  # it did import the models' side: the check below means something
    assert not roots(loaded) & {"fairseq", "fairseq_cli", "kmlm_fairseq"}


def test_the_plugin_uses_only_the_shared_core_of_the_data_side():
    loaded = loaded_after_importing(*map(module_name, python_files("kmlm_fairseq")))
    ours = {name for name in loaded if name.split(".")[0] == "preprocess"}
    assert "preprocess.core.span_tags" in ours
    assert not {name for name in ours if not name.startswith("preprocess.core") and name != "preprocess"}
    assert "kmlm_eval" not in roots(loaded)


def imports_of(path):
    """The modules a file imports (absolute names), at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", python_files("preprocess"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_dependencies_point_one_way_on_the_data_side(path):
    """core imports only core; a stage imports core (never another stage); only the CLI and the driver see the
    stage registry; nothing of the data side imports the plugin or the evaluation."""
    own = module_name(path)
    imported = {name for name in imports_of(path) if name.split(".")[0] in PACKAGES}
    assert not {name for name in imported if name.split(".")[0] in ("kmlm_fairseq", "kmlm_eval")}
    if own.startswith("preprocess.core"):
        assert all(name.startswith("preprocess.core") for name in imported), imported
    if own.startswith("preprocess.stages."):
        assert all(name.startswith("preprocess.core") for name in imported), imported


def test_nothing_is_loaded_by_file_path():
    """A module loaded by path is invisible to the import graph (it hid span_tags from the fingerprint once)."""
    by_path = re.compile(r"spec_from_file_location|SourceFileLoader|machinery\.SourceFileLoader|runpy\.run_path")
    offenders = [str(p.relative_to(REPO_ROOT)) for p in python_files(*PACKAGES) if by_path.search(p.read_text())]
    assert offenders == []


def test_one_module_per_subcommand_named_after_it():
    modules = {p.stem for p in (REPO_ROOT / "preprocess" / "stages").glob("*.py") if p.stem != "__init__"}
    assert {name.replace("-", "_") for name in STAGES} == modules
    assert all(module == f"preprocess.stages.{name.replace('-', '_')}" for name, (module, _) in STAGES.items())


def test_readme_stage_table_follows_the_stage_order():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| stage | reads | writes |"):]
    table = table[:table.index("\n\n")]
    assert re.findall(r"^\| `([\w-]+)` \|", table, flags=re.MULTILINE) == list(STAGES)


def test_cli_lists_the_stages_in_order():
    from preprocess.cli import COMMANDS

    assert list(COMMANDS)[:len(STAGES)] == list(STAGES)


DOCUMENT_REFERENCE = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*(?:[A-Z][A-Z_]*|docs/[\w.-]+|notes/[\w.-]+)\.md)\b")


def referring_files():
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    kinds = (".py", ".sh", ".sbatch", ".yaml", ".md", ".txt", ".ini", ".cfg")
    return [REPO_ROOT / name for name in listed if name.endswith(kinds) and (REPO_ROOT / name).is_file()]


def test_every_referenced_document_exists():
    """The design notes and notes/*.md once lived outside the repository: every document a file names (docs/*.md,
    notes/*.md, an upper-case name such as README.md) must be in it, at that path from the repository or from the
    referring file. The shared data folders' ATTRIBUTION.md is named for the user to read there."""
    files = referring_files()
    assert len(files) > 50
    missing = []
    for path in files:
        for reference in DOCUMENT_REFERENCE.findall(path.read_text(encoding="utf-8", errors="replace")):
            if reference.endswith("ATTRIBUTION.md") and "tests/data/" not in reference:
                continue
            if not ((REPO_ROOT / reference).is_file() or (path.parent / reference).is_file()):
                missing.append(f"{path.relative_to(REPO_ROOT)}: {reference}")
    assert missing == []
