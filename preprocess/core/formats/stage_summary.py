"""``<stage>_summary.json``: what a stage read, wrote and left out, written next to its outputs.

One JSON object: ``stage`` (the subcommand), ``counts`` ({name: int}: what was read, written, and every reason rows
were left out, e.g. "triples skipped: no English label"), and whatever else the stage records (settings, sizes).
The stage's last log line says the same; ``kmlm-preprocess report`` and the tests read the file instead of
recounting the outputs. ``ingest_summary.json`` (ingest, merge) follows the same shape.
"""
import json
from pathlib import Path

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.core.json_input import read_json


def summary_path(directory, stage):
    return Path(directory) / f"{stage.replace('-', '_')}_summary.json"


def write_stage_summary(directory, stage, counts, **extra):
    """Write and return the summary: ``counts`` as plain ints, keys sorted, so equal runs give equal files."""
    summary = {"stage": stage, "counts": {name: int(n) for name, n in sorted(counts.items())}, **extra}
    write_text(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n", summary_path(directory, stage))
    return summary


def read_stage_summary(directory, stage):
    """The summary a stage wrote, or a clear error naming the file and the stage to run."""
    path = summary_path(directory, stage)
    summary = read_json(path, f"{path} does not exist: run `kmlm-preprocess {stage}` (it writes it)",
                        lambda err: f"{path}: not a JSON summary ({err}); re-run `kmlm-preprocess {stage}`")
    if not isinstance(summary, dict) or not isinstance(summary.get("counts"), dict):
        raise UserFacingError(f"{path}: no 'counts' object; re-run `kmlm-preprocess {stage}`")
    return summary
