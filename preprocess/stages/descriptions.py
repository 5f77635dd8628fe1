"""``kmlm-preprocess descriptions``: entity descriptions -> plain text per language (the demo's MLM stream).

Input: ``entities.parquet`` of the ingest stage (``description_<lang>`` columns, preprocess/core/formats/tables.py).
Output: ``OUT/<lang>.txt``, one non-empty description per line in table order, written atomically, ready for
``kmlm-preprocess plain OUT/*.txt``. Real runs use CC100 (XLM-R) or Wikipedia (mBERT) text instead.
"""
import logging
from pathlib import Path

import pyarrow.compute as pc

from preprocess.core.formats.tables import description_column, open_entities
from preprocess.core.io import write_text
from preprocess.core.languages import parse_languages

logger = logging.getLogger(__name__)


def one_line(text):
    return " ".join(text.split())


def write_descriptions(tables_dir, output_dir, languages=None):
    """Write one text file per language; return {lang: lines written}."""
    entities, languages = open_entities(tables_dir, languages or None, per_language=(description_column,))
    table = entities.read([description_column(lang) for lang in languages])
    written = {}
    for lang in languages:
        column = table.column(description_column(lang))
        lines = [one_line(text) for text in column.filter(pc.is_valid(column)).to_pylist()]
        lines = [line for line in lines if line]
        write_text("".join(f"{line}\n" for line in lines), Path(output_dir) / f"{lang}.txt")
        written[lang] = len(lines)
    return written


def add_arguments(parser):
    parser.add_argument("--input", required=True, type=Path, help="directory with entities.parquet")
    parser.add_argument("--output", required=True, type=Path, help="directory for <lang>.txt")
    parser.add_argument("--languages", type=parse_languages, default=None,
                        help="comma-separated; default: every language of the table")


def run(args):
    written = write_descriptions(args.input, args.output, args.languages)
    logger.info("descriptions: wrote %d lines in %d languages to %s (%s)", sum(written.values()), len(written),
                args.output, ", ".join(f"{lang} {n}" for lang, n in written.items()))
    return 0
