"""``kmlm-preprocess check-leakage``: prove that no XLR dev/test cycle reached the reasoning data.

``kmlm-preprocess check-leakage --xlr OUT --reasoning DIR``

Reads OUT/heldout_cycles.parquet and DIR/reasoning.parquet (``spans`` as in the samples format; each sentence's
head and tail ids give one undirected edge). A reasoning sample leaks when its edge set contains every edge of a
held-out cycle or lies wholly inside one (``shares_cycle`` of preprocess/core/formats/heldout_cycles.py, the rule
the ``reasoning --exclude`` filter applies). Exit 0 with a log line of how many samples and cycles were checked;
exit 1 listing the first offending samples otherwise (2 for unreadable input).
"""
import logging
from collections import Counter

import numpy as np
import pyarrow.compute as pc
from tqdm import tqdm

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE, edge_key
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_cycles import HELDOUT_FILE, HeldOutCycles
from preprocess.core.formats.reasoning import REASONING_FILE, REASONING_SCHEMA, open_reasoning


def add_arguments(parser):
    parser.add_argument("--xlr", required=True, help=f"the xlr output directory (with {HELDOUT_FILE}), or that file")
    parser.add_argument("--reasoning", required=True, help=f"the reasoning output directory (with {REASONING_FILE}), "
                                                           "or that file")
    parser.add_argument("--show", type=int, default=10, help="offending samples to list (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=65536, help="samples read at once (default: %(default)s)")


def sentence_edges(spans, path, first_row):
    """(sample index in batch, head id, tail id) arrays, one per sentence, from a batch's ``spans`` column."""
    parents = pc.list_parent_indices(spans).to_numpy()
    flat = pc.list_flatten(spans)
    role, ids, sentence = (pc.struct_field(flat, name) for name in ("role", "id", "sentence"))
    is_head, is_tail = (pc.fill_null(pc.equal(role, name), False) for name in ("head", "tail"))
    head_parent = parents[is_head.to_numpy(zero_copy_only=False)]
    tail_parent = parents[is_tail.to_numpy(zero_copy_only=False)]
    head_sentence = sentence.filter(is_head).to_numpy(zero_copy_only=False)
    tail_sentence = sentence.filter(is_tail).to_numpy(zero_copy_only=False)
    if not (np.array_equal(head_parent, tail_parent) and np.array_equal(head_sentence, tail_sentence)):
        n = min(len(head_parent), len(tail_parent))
        mismatch = np.flatnonzero((head_parent[:n] != tail_parent[:n]) | (head_sentence[:n] != tail_sentence[:n]))
        at = mismatch[0] if len(mismatch) else n
        row = min(int(p[at]) for p in (head_parent, tail_parent) if at < len(p))
        raise UserFacingError(f"{path}: sample row {first_row + row}: a sentence lacks its head or tail span "
                              "(every sentence needs exactly one of each)")
    heads, tails = ids.filter(is_head), ids.filter(is_tail)
    if heads.null_count or tails.null_count:
        nulls = pc.or_(pc.is_null(heads), pc.is_null(tails)).to_numpy(zero_copy_only=False)
        raise UserFacingError(f"{path}: sample row {first_row + int(head_parent[np.argmax(nulls)])}: "
                              "a head or tail span has no id")
    return head_parent, heads, tails


def leaking_samples(heldout, spans, path, first_row):
    """[(row in the file, [held-out rows it shares])] for one batch of reasoning samples."""
    parents, heads, tails = sentence_edges(spans, path, first_row)
    u = pc.fill_null(pc.index_in(heads, value_set=heldout.entities), -1).to_numpy().astype(np.int64)
    v = pc.fill_null(pc.index_in(tails, value_set=heldout.entities), -1).to_numpy().astype(np.int64)
    codes = np.minimum(u, v) * len(heldout.index) + np.maximum(u, v)
    suspects = np.unique(parents[(u >= 0) & (v >= 0) & np.isin(codes, heldout.edge_codes)])
    leaks = []
    for sample in suspects:
        lo, hi = np.searchsorted(parents, [sample, sample + 1])
        edges = {edge_key(h, t) for h, t in zip(heads[lo:hi].to_pylist(), tails[lo:hi].to_pylist())}
        rows = heldout.shared_with(edges)
        if rows:
            leaks.append((first_row + int(sample), rows))
    return leaks


def check_leakage(xlr, reasoning, batch_size=65536):
    """(samples checked, held-out cycles, reasoning path, [(row, cycle_id or None, [held-out rows])] per leak)."""
    heldout = HeldOutCycles.from_parquet(xlr)
    parquet = open_reasoning(reasoning, ["spans"])
    path = parquet.path
    columns = ["spans"] + (["cycle_id"] if parquet.has("cycle_id") else [])
    parquet.require(REASONING_SCHEMA, columns)
    total, leaks = parquet.num_rows, []
    with tqdm(total=total, desc="check-leakage", unit="sample", mininterval=2) as progress:
        first_row = 0
        for batch in parquet.iter_batches(batch_size, columns=columns):
            for row, rows in leaking_samples(heldout, batch.column(0), path, first_row):
                cycle_id = batch.column(1)[row - first_row].as_py() if len(columns) > 1 else None
                leaks.append((row, cycle_id, rows))
            first_row += batch.num_rows
            progress.update(batch.num_rows)
    return total, heldout, path, leaks


def run(args):
    log = logging.getLogger("kmlm-preprocess check-leakage")
    if args.batch_size < 1 or args.show < 0:
        raise UserFacingError(f"--batch-size must be >= 1 and --show >= 0, got {args.batch_size} and {args.show}")
    total, heldout, path, leaks = check_leakage(args.xlr, args.reasoning, args.batch_size)
    kinds = Counter(heldout.kinds)
    checked = (f"{total} reasoning samples in {path} against {len(heldout)} held-out cycles "
               f"({kinds[TRIANGLE]} triangles, {kinds[DIAMOND]} diamonds) of {heldout.path}")
    if not leaks:
        if not len(heldout):
            log.warning("%s has no cycles: nothing can leak", heldout.path)
        log.info("check-leakage OK: checked %s: no sample shares a held-out cycle", checked)
        return 0
    listed = "\n".join(
        f"  row {row}" + (f" (cycle_id {cycle_id})" if cycle_id is not None else "")
        + " shares " + "; ".join(heldout.describe(r) for r in rows)
        for row, cycle_id, rows in leaks[:args.show])
    log.error("check-leakage FAILED: %d of %s; the first %d:\n%s\nre-run `kmlm-preprocess reasoning` with "
              "--exclude %s", len(leaks), checked, min(len(leaks), args.show), listed, heldout.path)
    return 1
