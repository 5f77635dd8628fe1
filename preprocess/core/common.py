"""What every stage shares: the language set, user-facing errors, seeded RNGs and atomic outputs."""
import contextlib
import errno
import logging
import multiprocessing
import os
import zlib
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# The paper's ten languages (DESIGN.md §1); English is the pivot of code-switching.
DEFAULT_LANGUAGES = ("en", "vi", "nl", "de", "fr", "it", "es", "ja", "ko", "zh")
PIVOT_LANGUAGE = "en"


class UserFacingError(Exception):
    """Bad input or settings: the CLI prints the message alone (no traceback) and exits with status 2."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def configure_logging(verbose=False):
    """Our log format at INFO (DEBUG with ``verbose``). Importing ``fairseq.tasks`` already calls
    ``logging.basicConfig`` with fairseq's format, so existing root handlers get our formatter instead."""
    root = logging.getLogger()
    if root.handlers:
        for handler in root.handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        logging.basicConfig(format=LOG_FORMAT)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_command(run, args, name, verbose=False):
    """What every console script does with its parsed ``args``: configure logging and return ``run(args)``;
    a UserFacingError or a full disk is one logged line (no traceback) and exit status 2."""
    configure_logging(verbose)
    log = logging.getLogger(name)
    try:
        return run(args) or 0
    except UserFacingError as err:
        log.error("%s", err)
        return 2
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        # outputs are written through atomic_path / atomic_directory, so nothing that looks complete was left
        log.error("disk full or quota exceeded while writing %s (%s); no partial output was kept: free space or "
                  "choose another output directory",
                  err.filename or getattr(args, "output", None) or "the outputs", err)
        return 2


def parse_languages(text):
    """``"en,de fr"`` -> ``("en", "de", "fr")``; an empty set is an error, duplicates are dropped."""
    langs = tuple(dict.fromkeys(t for t in text.replace(",", " ").split() if t))
    if not langs:
        raise UserFacingError("the language set is empty: pass e.g. --languages en,de,fr")
    return langs


def stable_hash(text):
    """A hash that is the same in every process (Python's ``hash(str)`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def rng_for(seed, *keys):
    """A NumPy generator that depends only on ``seed`` and ``keys`` (ints or strings), never on global state."""
    entropy = [int(seed)] + [k if isinstance(k, (int, np.integer)) else stable_hash(str(k)) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block finishes.

    A killed or failing stage therefore never leaves a file at ``path`` that looks complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_parquet(table, path, **kwargs):
    """Write a pyarrow table to ``path`` atomically."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def write_text(text, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


_worker = None  # this process's worker object, built once by map_ordered's pool initializer


def _build_worker(make_worker, worker_args):
    global _worker
    _worker = make_worker(*worker_args)


def _run_worker(item):
    return _worker(item)


def map_ordered(make_worker, worker_args, items, workers, preload=()):
    """``worker(item)`` for each item, results in item order, where ``worker = make_worker(*worker_args)`` is built
    once per process: inline for one worker, else in a process pool with at most 2 x workers items in flight
    (bounded memory). ``preload``: modules the forkserver imports once, so workers start fast. forkserver, not
    fork: the parent holds threads (tqdm, Arrow)."""
    if workers <= 1:
        yield from map(make_worker(*worker_args), items)
        return
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_build_worker,
                             initargs=(make_worker, worker_args)) as pool:
        in_flight = deque()
        try:
            for item in items:
                in_flight.append(pool.submit(_run_worker, item))
                if len(in_flight) > 2 * workers:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()
        finally:
            for future in in_flight:
                future.cancel()
