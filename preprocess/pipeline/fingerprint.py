"""A stage's fingerprint: its arguments, its inputs' fingerprints, its external files and its code."""
import functools
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.pipeline.plan import NO_MARKER, REPO_ROOT


@functools.lru_cache(maxsize=None)  # importlib.metadata.packages_distributions() takes ~1 s: once per process
def installed_version(package):
    """The version of the distribution that provides ``import package`` (fairseq comes as fairseq-fixed)."""
    names = importlib.metadata.packages_distributions().get(package, [package])
    try:
        return importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def tool_version(step):
    """A hash of what the step runs that is not our Python code: config files and installed package versions."""
    digest = hashlib.sha256()
    for pattern in step.code_files:
        for path in sorted(REPO_ROOT.glob(pattern)):
            digest.update(f"{path.relative_to(REPO_ROOT)}\0".encode("utf-8") + path.read_bytes())
    for package in step.code_packages:
        digest.update(f"{package}=={installed_version(package)}\0".encode("utf-8"))
    return digest.hexdigest()[:16]


def code_state(paths):
    """{path relative to the repository: hash of its bytes} ("missing" for a file that is gone)."""
    state = {}
    for relative in sorted(paths):
        path = REPO_ROOT / relative
        state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "missing"
    return state


def package_files(step):
    """Every source file the step could load, by the one-directional package graph (for the started marker of a
    resumable step, before its run has said what it loaded)."""
    return [str(p.relative_to(REPO_ROOT)) for pattern in step.code_tree for p in REPO_ROOT.glob(pattern)]


def read_manifest(path):
    """The files a traced run loaded (preprocess/pipeline/traced.py), or None if it wrote none."""
    try:
        files = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return files if isinstance(files, list) else None


def file_state(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise UserFacingError(f"input file {path} does not exist") from None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def marker_record(step, input_fingerprints):
    """What a step's marker holds: its fingerprint and the parts it is hashed from (deterministic: no clock). The
    completion marker adds ``code``, the hashes of the files its run loaded; a step whose settings, inputs and tools
    match is still re-run when one of those files changed (``code_change``)."""
    record = {
        "stage": step.stage,
        "argv": list(step.argv + step.first_launch_argv),
        "inputs": {name: input_fingerprints[name] for name in step.inputs},
        "external": [file_state(path) for path in step.external],
        "tools": tool_version(step),
    }
    text = json.dumps(record, sort_keys=True, ensure_ascii=False)
    return {"fingerprint": hashlib.sha256(text.encode("utf-8")).hexdigest(), **record}


def write_marker(record, path):
    write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n", path)


def read_marker(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}  # unreadable: treated as out of date


def stale_reason(step, record, workdir):
    """Why a step must run (None: it is up to date)."""
    old = read_marker(step.marker(workdir))
    if old is None:
        return NO_MARKER
    if old.get("fingerprint") != record["fingerprint"]:
        return changed_part(old, record)
    changed_code = code_change(old)
    if changed_code:
        return changed_code
    missing = [out for out in step.outputs if not (Path(workdir) / out).exists()]
    if missing:
        return f"output {missing[0]} is missing"
    return None


def changed_part(old, new):
    if old.get("argv") != new["argv"]:
        return "settings changed"
    for name, fingerprint in new["inputs"].items():
        if old.get("inputs", {}).get(name) != fingerprint:
            return f"input stage {name} changed"
    if old.get("external") != new["external"]:
        changed = [s["path"] for s in new["external"] if s not in old.get("external", [])]
        return f"input file {changed[0] if changed else 'list'} changed"
    if old.get("tools") != new["tools"]:
        return "configs or package versions changed"
    return "fingerprint differs"


def code_change(marker):
    """Why the code a marker's run executed is not the code there now (None: unchanged, or nothing recorded)."""
    code = marker.get("code")
    if not isinstance(code, dict) or not code:
        return "no code recorded"
    now = code_state(code)
    changed = [path for path in code if now[path] != code[path]]
    return f"code changed ({changed[0]}{f' and {len(changed) - 1} more' if len(changed) > 1 else ''})" if changed \
        else None
