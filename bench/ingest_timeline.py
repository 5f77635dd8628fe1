"""Where the wall-clock time of a parallel ingest goes (bench/ingest.py --profile): each worker's parsing (wall and
CPU seconds of every block, recorded in the worker), the reading/writing process's CPU, the wait for the first
block and the tail after the last result (closing the tables). A module of its own: the worker processes import
the parser subclass by name."""
import os
import time

import preprocess.stages.ingest as ingest_stage
from preprocess.core.workers import map_ordered


class TimedBlockParser(ingest_stage.BlockParser):
    """BlockParser that adds (worker pid, start, end, CPU seconds) of its call to the result; start and end on the
    monotonic clock, which all processes share."""

    def __call__(self, block):
        start, cpu = time.monotonic(), time.process_time()
        result = super().__call__(block)
        result.timing = (os.getpid(), start, time.monotonic(), time.process_time() - cpu)
        return result


def parallel_timeline(dump, output, workers):
    """Run ingest on ``workers`` processes with TimedBlockParser; returns a dict of seconds."""
    timings, received = [], []

    def timed_blocks(blocks, config, workers):
        for result in map_ordered(TimedBlockParser, (config,), blocks, workers, preload=[__name__]):
            timings.append(result.timing)
            received.append(time.monotonic())
            yield result

    original, ingest_stage.parse_blocks = ingest_stage.parse_blocks, timed_blocks
    try:
        start, cpu = time.monotonic(), time.process_time()
        ingest_stage.ingest(dump, output, workers=workers)
        end, main_cpu = time.monotonic(), time.process_time() - cpu
    finally:
        ingest_stage.parse_blocks = original
    pids = sorted({pid for pid, *_ in timings})
    return {
        "wall": end - start,
        "parse_cpu": sum(t[3] for t in timings),
        "parse_wall_per_worker": [sum(t[2] - t[1] for t in timings if t[0] == pid) for pid in pids],
        "writer_cpu": main_cpu,
        "first_block_starts": min(t[1] for t in timings) - start,
        "tail_after_last_result": end - received[-1],
        "blocks": len(timings),
    }
