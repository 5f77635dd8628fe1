"""Stable per-purpose seeds: the run's seed combined with a crc32 of names.

Python's hash(str) differs between processes, so it cannot key random streams that distributed workers and resumed
runs must reproduce. A derived seed is one non-negative int, fit for np.random.SeedSequence([seed, epoch, ...]).
"""
import zlib

import numpy as np


def derive_seed(seed, *names):
    return (int(seed) << 32) | zlib.crc32("/".join(names).encode("utf-8"))


def stable_hash(text):
    """A hash that is the same in every process (Python's ``hash(str)`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def rng_for(seed, *keys):
    """A NumPy generator that depends only on ``seed`` and ``keys`` (ints or strings), never on global state."""
    entropy = [int(seed)] + [k if isinstance(k, (int, np.integer)) else stable_hash(str(k)) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))
