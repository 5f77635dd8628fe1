"""The paper's published numbers (Liu et al., EMNLP 2022), to print beside ours (``--paper ROW``).

They live in one data file, ``kmlm_eval/paper_results.csv``: one number a line with the table it comes from, the
task, metric and language in our results' names, the paper's row (model) name and where it was read. Only numbers
that were actually read are there; a task, language or row the paper has but the file lacks shows as ``–``.
"""
import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from kmlm_eval.common import data_error, open_utf8
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
PAPER_FILE = Path(__file__).with_name("paper_results.csv")
COLUMNS = ("table", "task", "metric", "lang", "model", "value", "source")


@dataclass(frozen=True)
class PaperRow:
    """One model row of the paper: ``numbers[(task, metric, lang)] -> value`` and the tables they come from."""
    name: str
    numbers: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)

    def value(self, task, metric, lang):
        return self.numbers.get((task, metric, lang))


def load(path=PAPER_FILE):
    """``{row name: PaperRow}`` of the data file; a malformed line is an error naming the file and line."""
    rows = {}
    reader = csv.DictReader(open_utf8(path, newline=""))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise UserFacingError(f"{path}: expected the columns {','.join(COLUMNS)}")
    for number, line in enumerate(reader, 2):
        try:
            value = float(line["value"])
        except (TypeError, ValueError):
            raise data_error(path, number, f"value {line['value']!r} is not a number") from None
        if not all(line[c] for c in COLUMNS):
            raise data_error(path, number, "every column needs a value")
        row = rows.setdefault(line["model"], PaperRow(line["model"]))
        key = (line["task"], line["metric"], line["lang"])
        if key in row.numbers:
            raise data_error(path, number, f"{line['model']} has a second number for {key}")
        row.numbers[key] = value
        row.tables[key] = line["table"]
    return rows


def paper_row(name, path=PAPER_FILE):
    """The PaperRow called ``name`` (the type of ``--paper``); an unknown name is an error listing the known ones."""
    known = load(path)
    if name not in known:
        raise UserFacingError(f"--paper {name!r}: the paper data file {path} has the rows {', '.join(sorted(known))}")
    return known[name]


def warn_missing(rows, results):
    """Log which of our (task, metric) have no published number in a requested paper row."""
    ours = {(r.task, r.metric) for r in results}
    for row in rows:
        missing = sorted(k for k in ours if not any(key[:2] == k for key in row.numbers))
        for task, metric in missing:
            logger.warning("the paper data file has no %s %s number of %r (not read from the paper; see the "
                           "README's evaluation section)", task, metric, row.name)


def add_paper_argument(parser):
    parser.add_argument("--paper", action="append", default=[], metavar="ROW", type=paper_row,
                        help="print the paper's published row ROW (e.g. 'XLM-R base', 'KMLM_R base') beside ours, "
                             "with our difference to it (repeat for several rows)")
