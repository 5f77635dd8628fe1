"""Worker processes: ordered results from a bounded pool, the same output for any number of workers."""
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor

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


# --- Shared with the plain-text stage: workers, held-out hashing, writers, options ---------------------------
def usable_cpus():
    """The CPUs this process may run on, and no more than a SLURM task was given (SLURM_CPUS_PER_TASK), for a
    cluster that allocates CPUs without binding the task to them."""
    cpus = len(os.sched_getaffinity(0))
    allocated = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(allocated)) if allocated.isdigit() and int(allocated) > 0 else cpus


def default_workers():
    """One process per usable CPU but one, left to the process that reads and writes."""
    return max(1, usable_cpus() - 1)
