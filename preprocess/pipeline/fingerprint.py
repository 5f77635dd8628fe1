"""A stage's fingerprint: its arguments, its inputs' fingerprints, its external files and its code."""
import functools
import hashlib
import importlib
import json
import os
import re
from pathlib import Path

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.pipeline.plan import NO_MARKER, REPO_ROOT

OUR_PACKAGES = ("preprocess", "kmlm_fairseq", "kmlm_eval")


def module_file(name):
    """The source file of one of our modules or packages (found by path: importing would load torch)."""
    path = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(name, source):
    """Our modules that importing ``name`` runs: its parent packages and what its source imports."""
    parts = name.split(".")
    yield from (".".join(parts[:i]) for i in range(1, len(parts)))
    package = r"((?:%s)(?:\.\w+)*)" % "|".join(OUR_PACKAGES)
    yield from re.findall(rf"^\s*import {package}", source, flags=re.MULTILINE)
    for base, names in re.findall(rf"^\s*from {package} import (\([^)]*\)|.*)", source, flags=re.MULTILINE):
        yield base
        for imported in re.sub(r"#.*", "", names).strip("()").split(","):
            imported = imported.split(" as ")[0].strip()
            if imported and module_file(f"{base}.{imported}"):
                yield f"{base}.{imported}"


def module_sources(*module_names):
    """{module: source} of the given modules and every module of ours they import, transitively."""
    sources, todo = {}, list(module_names)
    while todo:
        name = todo.pop()
        if name in sources or module_file(name) is None:
            continue
        sources[name] = module_file(name).read_text(encoding="utf-8")
        todo.extend(imported_modules(name, sources[name]))
    return sources


@functools.lru_cache(maxsize=None)  # importlib.metadata.packages_distributions() takes ~1 s: once per process
def installed_version(package):
    """The version of the distribution that provides ``import package`` (fairseq comes as fairseq-fixed)."""
    names = importlib.metadata.packages_distributions().get(package, [package])
    try:
        return importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def code_version(step):
    """A hash of the code that makes the step's outputs: our modules, config files, package versions."""
    digest = hashlib.sha256()
    for name, source in sorted(module_sources(*step.modules()).items()):
        digest.update(f"{name}\0{source}\0".encode("utf-8"))
    for pattern in step.code_files:
        for path in sorted(REPO_ROOT.glob(pattern)):
            digest.update(f"{path.relative_to(REPO_ROOT)}\0".encode("utf-8") + path.read_bytes())
    for package in step.code_packages:
        digest.update(f"{package}=={installed_version(package)}\0".encode("utf-8"))
    return digest.hexdigest()[:16]


def file_state(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise UserFacingError(f"input file {path} does not exist") from None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def marker_record(step, input_fingerprints):
    """What a step's marker holds: its fingerprint and the parts it is hashed from (deterministic: no clock)."""
    record = {
        "stage": step.stage,
        "argv": list(step.argv + step.first_launch_argv),
        "inputs": {name: input_fingerprints[name] for name in step.inputs},
        "external": [file_state(path) for path in step.external],
        "code": code_version(step),
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
    if old.get("code") != new["code"]:
        return "code changed"
    return "fingerprint differs"
