"""``python -m preprocess.pipeline.traced MANIFEST MODULE [ARGS...]``: run MODULE as ``python -m MODULE ARGS``, then
write to MANIFEST the source files of our packages that the run executed.

The list is what was loaded, lazily or not, so a stage's code fingerprint cannot miss a module: a function-level
import, a tokenizer chosen at run time or the plugin fairseq loads through ``common.user_dir`` are all in it. The
pipeline driver hashes these files into the stage's completion marker (preprocess/pipeline/fingerprint.py).
"""
import importlib.util
import json
import os
import runpy
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
OUR_PACKAGES = ("preprocess", "kmlm_fairseq", "kmlm_eval")


def loaded_files(entry):
    """Paths (relative to the repository) of the loaded modules of our packages and of ``entry`` (the module run as
    ``__main__``, which runpy takes out of sys.modules again), sorted."""
    files = set()
    paths = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    for path in paths + [importlib.util.find_spec(entry).origin]:
        if not path:
            continue
        resolved = Path(path).resolve()
        if resolved.is_relative_to(REPO_ROOT) and resolved.relative_to(REPO_ROOT).parts[0] in OUR_PACKAGES:
            files.add(str(resolved.relative_to(REPO_ROOT)))
    return sorted(files)


def write_manifest(path, entry):
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # a stage that failed early may not have made it
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(loaded_files(entry), f, indent=1)
    os.replace(tmp, path)


def main():
    manifest, module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        write_manifest(manifest, module)


if __name__ == "__main__":
    main()
