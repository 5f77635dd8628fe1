"""``kmlm-preprocess import-triples``: triple lists + per-language name files -> ``entities.parquet`` +
``triples.parquet``, the tables ``ingest`` writes, for a user who has Wikidata5M or X-FACTR's facts but not the dump.

Input
  ``--triples PATH ...``  files, or directories of them (their ``*.jsonl``, ``*.tsv`` and ``*.txt``, by name), read
      in the order given. A ``.jsonl`` file holds one fact a line, a JSON object with ``sub_uri``, ``predicate_id``,
      ``obj_uri`` (X-FACTR's ``mTRExf/sub/P*.jsonl``; ``head``/``relation``/``tail`` are read too) and optionally
      ``sub_label``/``obj_label``, the entities' ENGLISH labels. Any other file holds one triple a line,
      ``HEAD<TAB>RELATION<TAB>TAIL`` (Wikidata5M's ``wikidata5m_transductive_train.txt`` etc.); blank lines are
      skipped. Ids are Wikidata's (``Q42``, ``P31``).
  ``--names LANG=FILE ...``  lines ``ID<TAB>NAME<TAB>NAME...``: the names of entities (``Q``) or relations (``P``) in
      LANG (Wikidata5M's ``wikidata5m_entity.txt`` and ``wikidata5m_relation.txt`` are English; X-FACTR's
      ``alias/mTRExf/<lang>.txt``). Several files of one language are read in turn; an id listed again keeps its
      first line (counted). Ids in no triple are not kept (counted).
  ``--relation-labels TABLES``  optional: the ``entities.parquet`` of an ingest run (e.g. of the bundled samples,
      whose 1,304 properties carry labels in ten languages): a relation that has a label there in a language takes
      that label and those aliases; the name files fill in the rest.

The label. Wikidata's tables mark one name per language as the label; a name file does not. Which name is taken:
  - English: the triple files' own English labels (X-FACTR's ``sub_label``/``obj_label``) when they give one.
  - otherwise ``--label-rule``:
      ``first`` (default): the first name of the line, as in Wikidata5M's files (label, then aliases).
      ``closest-to-english``: for lists in another order, such as X-FACTR's SORTED alias lists (Q90 Paris: English
      "City of Light" first, French "7.5"): the name most similar to the entity's English label (difflib ratio on
      case-folded text; ties: the earlier name), among the names left after dropping one that is another listed
      name without its accents (``Belgica`` beside ``Bélgica``) and ASCII names of at most 3 characters (codes
      such as ``FR``, ``FRA``, ``75``) unless nothing else is left. Without an English label: the first of those.
      Measured against the Wikidata labels of the 200 entities the bundled samples share with X-FACTR (their 2014
      labels; X-FACTR's lists are from 2020, so no rule can reach 100%): 1,225 of 1,473 (entity, language) labels
      in es fr ja ko nl vi zh (83.2%), against 1,054 (71.6%) for ``first``. The two exclusions were chosen by
      looking at this same set, so 83.2% flatters the rule somewhat (tests/preprocess/test_import_triples.py).
  The other names of the line are the aliases, in file order, without repeats.

Output (schema: ``preprocess.core.formats.tables``): ``entities.parquet``, one row per entity in a kept triple
(``kind`` item, by numeric id) then per relation (``kind`` property), with ``label_L``/``aliases_L`` per language and
no descriptions (null); ``triples.parquet`` in input order; ``import_triples_summary.json`` (counts, written last).

Bad input: a line that is not a triple (field count, an id that is not Wikidata's, JSON that is not an object with
the three ids) or a name line without an id and a name is an error naming FILE:LINE; nothing is written. Skipped
and counted: a triple listed again (the tables hold a set), names of ids in no triple, ids named twice.
"""
import difflib
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from tqdm import tqdm

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.stage_summary import summary_path, write_stage_summary
from preprocess.core.formats.tables import (
    ENTITIES_FILE,
    LOOKUP_BATCH,
    TRIPLE_COLUMNS,
    TRIPLES_FILE,
    aliases_column,
    description_column,
    entities_schema,
    label_column,
    open_entities,
    table_writers,
)
from preprocess.core.json_input import json_objects
from preprocess.core.languages import PIVOT_LANGUAGE, parse_languages

logger = logging.getLogger("kmlm-preprocess import-triples")

STAGE = "import-triples"
TRIPLE_SUFFIXES = (".jsonl", ".tsv", ".txt")
JSON_KEYS = (("sub_uri", "head"), ("predicate_id", "relation"), ("obj_uri", "tail"))
ENTITY_ID, RELATION_ID, ANY_ID = r"Q[1-9][0-9]*", r"P[1-9][0-9]*", r"[QP][1-9][0-9]*"
LABEL_RULES = ("first", "closest-to-english")
LINE_BLOCK_BYTES = 16 << 20


# --- Reading tab-separated line files, vectorised ------------------------------------------------------------------
def read_tab_lines(path):
    """Every line of ``path`` split at tabs: a list<string> array, element i = line i + 1 (blank lines included as
    ``[""]``). Reading and splitting are Arrow's (millions of lines per second)."""
    try:
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(column_names=["line"], block_size=LINE_BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}, strings_can_be_null=False))
    except pa.ArrowInvalid as err:
        raise UserFacingError(f"{path}:{bad_line_number(path)}: cannot read the line ({err})") from None
    except FileNotFoundError:
        raise UserFacingError(f"{path}: no such file") from None
    lines = pc.utf8_rtrim(table.column("line").combine_chunks(), characters="\r")
    return pc.split_pattern(lines, "\t")


def bad_line_number(path):
    """The first line Arrow cannot take as text (not UTF-8, or holding the 0x1f separator); on the error path only."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
            if b"\x1f" in line:
                return number
    return "?"


def first_failure(ok):
    """Index of the first False in a boolean Arrow/NumPy array, or None."""
    bad = np.flatnonzero(~np.asarray(ok, dtype=bool))
    return int(bad[0]) if len(bad) else None


def matches(ids, pattern):
    return pc.fill_null(pc.match_substring_regex(ids, f"^{pattern}$"), False).to_numpy(zero_copy_only=False)


def read_tsv_triples(path):
    """(head, relation, tail) string arrays of a ``HEAD<TAB>RELATION<TAB>TAIL`` file; blank lines skipped."""
    fields = read_tab_lines(path)
    blank = pc.equal(pc.utf8_trim_whitespace(pc.list_element(fields, 0)), "").to_numpy(zero_copy_only=False) & \
        (pc.list_value_length(fields).to_numpy() == 1)
    keep = np.flatnonzero(~blank)
    fields = fields.take(pa.array(keep))
    bad = first_failure(pc.equal(pc.list_value_length(fields), 3).to_numpy(zero_copy_only=False))
    if bad is not None:
        raise UserFacingError(f"{path}:{keep[bad] + 1}: expected HEAD<TAB>RELATION<TAB>TAIL, got "
                              f"{'<TAB>'.join(fields[bad].as_py())!r}")
    columns = [pc.utf8_trim_whitespace(pc.list_element(fields, i)) for i in range(3)]
    for column, pattern, what in zip(columns, (ENTITY_ID, RELATION_ID, ENTITY_ID), TRIPLE_COLUMNS):
        bad = first_failure(matches(column, pattern))
        if bad is not None:
            raise UserFacingError(f"{path}:{keep[bad] + 1}: {what} {column[bad].as_py()!r} is not a Wikidata "
                                  f"{'property' if what == 'relation' else 'item'} id")
    return columns, None


def read_jsonl_triples(path):
    """(head, relation, tail) string arrays of an X-FACTR fact file, and {entity id: English label} it gives."""
    columns, labels = ([], [], []), {}
    with open(path, encoding="utf-8", errors="strict") as f:
        for number, fact in json_objects(f, path):
            triple = [next((fact[k] for k in keys if k in fact), None) for keys in JSON_KEYS]
            for value, pattern, (key, _) in zip(triple, (ENTITY_ID, RELATION_ID, ENTITY_ID), JSON_KEYS):
                if not isinstance(value, str) or not re.fullmatch(pattern, value):
                    raise UserFacingError(f"{path}:{number}: {key} {value!r} is not a Wikidata "
                                          f"{'property' if key == 'predicate_id' else 'item'} id")
            for column, value in zip(columns, triple):
                column.append(value)
            for key, entity in (("sub_label", triple[0]), ("obj_label", triple[2])):
                label = fact.get(key)
                if isinstance(label, str) and label.strip():
                    labels.setdefault(entity, label.strip())
    return [pa.array(c, pa.string()) for c in columns], labels


def triple_files(paths):
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in TRIPLE_SUFFIXES)
            if not found:
                raise UserFacingError(f"--triples {path}: no {', '.join(TRIPLE_SUFFIXES)} file in the directory")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserFacingError(f"--triples {path}: no such file or directory")
    return files


def read_triples(paths, counts):
    """One table of the distinct triples in input order, and the English labels the files give."""
    parts, english = [], {}
    for path in tqdm(triple_files(paths), unit="file", desc="import-triples: triples", mininterval=2):
        try:
            columns, labels = (read_jsonl_triples if path.suffix == ".jsonl" else read_tsv_triples)(path)
        except UnicodeDecodeError as err:
            raise UserFacingError(f"{path}:{bad_line_number(path)}: not UTF-8 ({err.reason})") from None
        parts.append(pa.table(dict(zip(TRIPLE_COLUMNS, columns))))
        for entity, label in (labels or {}).items():
            english.setdefault(entity, label)
        counts["triples read"] += len(columns[0])
    triples = pa.concat_tables(parts) if parts else pa.table({c: pa.array([], pa.string()) for c in TRIPLE_COLUMNS})
    keys = pc.binary_join_element_wise(*[triples.column(c) for c in TRIPLE_COLUMNS], "\t")
    _, first = np.unique(pc.dictionary_encode(keys).combine_chunks().indices.to_numpy(), return_index=True)
    counts["triples skipped: listed again"] += triples.num_rows - len(first)
    return triples.take(pa.array(np.sort(first))), english


# --- Names ----------------------------------------------------------------------------------------------------------
def parse_names_option(specs):
    """``["en=FILE", ...]`` -> {lang: [Path, ...]} in the order given."""
    files = {}
    for spec in specs:
        lang, sep, path = spec.partition("=")
        if not sep or not lang or not path:
            raise UserFacingError(f"--names {spec}: expected LANG=FILE, e.g. en=wikidata5m_entity.txt")
        files.setdefault(parse_languages(lang)[0], []).append(Path(path))
    return files


def read_name_file(path, wanted, counts, lang):
    """(ids, names as list<string>) of the ids in ``wanted``, first line of an id only."""
    fields = read_tab_lines(path)
    ids = pc.utf8_trim_whitespace(pc.list_element(fields, 0))
    names = pc.list_slice(fields, 1)
    blank = pc.equal(ids, "").to_numpy(zero_copy_only=False) & (pc.list_value_length(names).to_numpy() == 0)
    ok = matches(ids, ANY_ID) & (pc.list_value_length(names).to_numpy() > 0)
    bad = first_failure(ok | blank)
    if bad is not None:
        raise UserFacingError(f"{path}:{bad + 1}: expected 'ID<TAB>NAME[<TAB>NAME...]' with a Wikidata id "
                              f"(Q42, P31), got {'<TAB>'.join(fields[bad].as_py())!r}")
    keep = ~blank & pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False)
    counts[f"names {lang}: ids in no triple (not kept)"] += int((~blank & ~keep).sum())
    rows = pa.array(np.flatnonzero(keep))
    return ids.take(rows), names.take(rows)


def read_names(files, wanted, counts, lang):
    """{id: [names]} of one language, from its files in order (an id's first line wins)."""
    named = {}
    for path in files:
        ids, names = read_name_file(path, wanted, counts, lang)
        for entity, entity_names in zip(ids.to_pylist(), names.to_pylist()):
            if entity in named:
                counts[f"names {lang}: id listed again (first line kept)"] += 1
                continue
            cleaned = list(dict.fromkeys(n.strip() for n in entity_names if n.strip()))
            if cleaned:
                named[entity] = cleaned
    return named


def without_accents(text):
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def closest_to_english(names, english):
    """The name most similar to the English label (module docstring); the first candidate without one."""
    candidates = [n for n in names if not any(o != n and without_accents(o) == n for o in names)] or names
    candidates = [n for n in candidates if not (n.isascii() and len(n) <= 3)] or candidates
    if not english:
        return candidates[0]
    target = english.casefold()
    scores = [difflib.SequenceMatcher(None, n.casefold(), target).ratio() for n in candidates]
    return candidates[int(np.argmax(scores))]


def choose_label(names, rule, english):
    return names[0] if rule == "first" else closest_to_english(names, english)


# --- Relation labels of an ingest run --------------------------------------------------------------------------------
def read_relation_labels(tables_dir, relations, languages):
    """{lang: {relation: (label, aliases)}} of the properties in ``tables_dir``'s entities.parquet (checked by its
    format reader), in the languages of ``languages`` it has columns for."""
    _, made_for = open_entities(tables_dir, per_language=())
    available = [lang for lang in languages if lang in made_for]
    entities, _ = open_entities(tables_dir, available, (label_column, aliases_column))
    wanted = pa.array(sorted(relations), pa.string())
    batches = [batch.filter(pc.is_in(batch.column("id"), value_set=wanted))
               for batch in entities.iter_batches(LOOKUP_BATCH)]
    if not batches:
        return {}
    table = pa.Table.from_batches(batches)
    ids = table.column("id").to_pylist()
    found = {}
    for lang in available:
        labels, aliases = table.column(label_column(lang)).to_pylist(), table.column(aliases_column(lang)).to_pylist()
        found[lang] = {r: (label, list(a or [])) for r, label, a in zip(ids, labels, aliases) if label}
    return found


# --- The stage -------------------------------------------------------------------------------------------------------
def sorted_ids(ids, prefix):
    return sorted(ids, key=lambda i: int(i[len(prefix):]))


def entity_columns(ids, lang, names, english, relation_labels, rule, counts):
    """label_L and aliases_L of ``ids`` (items then relations)."""
    labels, aliases = [], []
    for entity in ids:
        marked = relation_labels.get(entity)
        if marked:
            label, others = marked[0], [a for a in dict.fromkeys(marked[1]) if a != marked[0]]
            counts[f"{lang}: relations labelled from --relation-labels"] += 1
        elif entity in names or (lang == PIVOT_LANGUAGE and entity in english):
            listed = names.get(entity, [])
            label = english.get(entity) if lang == PIVOT_LANGUAGE and entity in english else None
            label = label or choose_label(listed, rule, english.get(entity))
            others = [n for n in listed if n != label]
        else:
            labels.append(None)
            aliases.append([])
            continue
        counts[f"{lang}: {'relations' if entity.startswith('P') else 'entities'} with a label"] += 1
        labels.append(label)
        aliases.append(others)
    return pa.array(labels, pa.string()), pa.array(aliases, pa.list_(pa.string()))


def import_triples(triple_paths, name_files, output, languages=None, rule="first", relation_tables=None):
    """Write the tables and the summary; return the summary."""
    output = Path(output)
    for previous in (summary_path(output, STAGE), output / ENTITIES_FILE, output / TRIPLES_FILE):
        previous.unlink(missing_ok=True)  # a failed run must not leave an older run's tables looking complete
    counts = Counter()
    triples, english = read_triples(triple_paths, counts)
    if languages is None:
        languages = tuple(dict.fromkeys(([PIVOT_LANGUAGE] if english else []) + list(name_files)))
    if not languages:
        raise UserFacingError("no language: pass --names LANG=FILE (or --languages)")
    unknown = [lang for lang in name_files if lang not in languages]
    if unknown:
        raise UserFacingError(f"--names {unknown[0]}=...: {unknown[0]} is not in --languages {','.join(languages)}")
    items = set(triples.column("head").to_pylist()) | set(triples.column("tail").to_pylist())
    relations = set(triples.column("relation").to_pylist())
    ids = sorted_ids(items, "Q") + sorted_ids(relations, "P")
    wanted = pa.array(ids, pa.string())
    marked = read_relation_labels(relation_tables, relations, languages) if relation_tables else {}
    columns = {"id": wanted, "kind": pa.array(["item"] * len(items) + ["property"] * len(relations), pa.string())}
    named_somewhere = set()
    for lang in tqdm(languages, unit="language", desc="import-triples: names", mininterval=2):
        names = read_names(name_files.get(lang, []), wanted, counts, lang)
        named_somewhere.update(names)
        columns[label_column(lang)], columns[aliases_column(lang)] = entity_columns(
            ids, lang, names, english, marked.get(lang, {}), rule, counts)
        columns[description_column(lang)] = pa.nulls(len(ids), pa.string())
    named_somewhere.update(english)
    for lang_marked in marked.values():
        named_somewhere.update(lang_marked)
    counts["entities without a name in any language"] = len(items - named_somewhere)
    counts["relations without a label in any language"] = len(relations - named_somewhere)
    entities = pa.table(columns, schema=entities_schema(languages))
    with table_writers(output, languages) as (entity_writer, triple_writer):
        for batch in entities.to_batches():
            entity_writer.write(batch)
        for batch in triples.to_batches():
            triple_writer.write(batch)
    # named as ingest_summary.json names them: the report checks the tables against "items", "properties", "triples"
    counts.update({"triples": triples.num_rows, "items": len(items), "properties": len(relations)})
    summary = write_stage_summary(output, STAGE, counts, languages=list(languages), label_rule=rule,
                                  outputs=[str(output / ENTITIES_FILE), str(output / TRIPLES_FILE)])
    logger.info("wrote %s and %s: %s", output / ENTITIES_FILE, output / TRIPLES_FILE,
                "; ".join(f"{k}: {v:,}" for k, v in summary["counts"].items()))
    return summary


def add_arguments(parser):
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    parser.epilog = "Formats and the label rule: the module docstring of preprocess/stages/import_triples.py."
    parser.add_argument("--triples", nargs="+", required=True, metavar="PATH",
                        help="triple files (HEAD<TAB>RELATION<TAB>TAIL, or X-FACTR *.jsonl facts) or directories "
                             "of them")
    parser.add_argument("--names", nargs="+", default=[], metavar="LANG=FILE",
                        help="name files ID<TAB>NAME<TAB>NAME... per language (repeat a language for several files)")
    parser.add_argument("--relation-labels", metavar="TABLES",
                        help="an ingest output directory whose properties' labels the relations take first")
    parser.add_argument("--label-rule", choices=LABEL_RULES, default="first",
                        help="which name of a name-file line is the label: first (Wikidata5M) or "
                             "closest-to-english (sorted lists such as X-FACTR's); default: %(default)s")
    parser.add_argument("--languages", type=parse_languages, default=None,
                        help="the tables' languages (default: English if the triple files carry labels, then the "
                             "languages of --names)")
    parser.add_argument("-o", "--output", required=True, type=Path,
                        help=f"directory for {ENTITIES_FILE}, {TRIPLES_FILE} and the summary")


def run(args):
    import_triples(args.triples, parse_names_option(args.names), args.output, args.languages, args.label_rule,
                   args.relation_labels)
    return 0
