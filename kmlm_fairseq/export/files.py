"""Output directories that appear whole or not at all."""
import contextlib
import os
import shutil
from pathlib import Path

from preprocess.core.errors import UserFacingError


@contextlib.contextmanager
def atomic_directory(path, overwrite=False):
    """Yield a temporary directory next to ``path``; it becomes ``path`` only if the block finishes.

    An existing ``path`` is an error unless ``overwrite`` (then it is replaced only after the new one is complete).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserFacingError(f"{path} already exists: choose another output directory or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
