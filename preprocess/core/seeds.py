"""Stable per-purpose seeds: the run's seed combined with a crc32 of names.

Python's hash(str) differs between processes, so it cannot key random streams that distributed workers and resumed
runs must reproduce. A derived seed is one non-negative int, fit for np.random.SeedSequence([seed, epoch, ...]).
"""
import zlib


def derive_seed(seed, *names):
    return (int(seed) << 32) | zlib.crc32("/".join(names).encode("utf-8"))
