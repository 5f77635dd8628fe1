"""Stable per-purpose seeds: the run's seed combined with a crc32 of names.

Python's hash(str) differs between processes, so it cannot key random streams that distributed workers and resumed
runs must reproduce. A derived seed is one non-negative int, fit for np.random.SeedSequence([seed, epoch, ...]).
``held_out_hash`` under a ``held_out_salt`` decides seeded held-out groups (binarize's valid split, the held-out
triples of sentences): a pure function of the seed and an integer key.
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


def mix64(x):
    """splitmix64's finaliser on uint64 arrays: a well-mixed hash of integer keys (wrapping arithmetic)."""
    x = np.asarray(x).astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def held_out_salt(seed, what):
    return np.uint64(rng_for(seed, "valid split", what).integers(1 << 63))


def held_out_hash(keys, salt):
    """uint64 hash of int64 group keys; a group is held out when its hash is below its dataset's threshold."""
    return mix64(np.asarray(keys, dtype=np.int64).view(np.uint64) ^ salt)
