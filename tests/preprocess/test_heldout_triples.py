"""sentences --holdout-triples and reasoning --exclude-triples: held-out triples never reach pretraining."""
import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest

from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_triples import read_heldout_triples
from preprocess.core.formats.stage_summary import read_stage_summary
from preprocess.core.seeds import held_out_hash, held_out_salt
from tests.conftest import run_stage
from tests.preprocess.test_sentences import binomial_tolerance, labelled, write_tables


def pair(a, b):
    return tuple(sorted((a, b)))


@pytest.fixture
def graph(tmp_path):
    """A complete graph on 12 labelled entities (66 pairs, 220 triangles), some pairs linked twice (both
    directions, or two relations)."""
    nodes = [f"Q{i}" for i in range(1, 13)]
    triples = [(a, "P1", b) for a, b in itertools.combinations(nodes, 2)]
    triples += [(b, "P2", a) for a, b in itertools.combinations(nodes[:5], 2)]  # reversed twins
    entities = [labelled(n) for n in nodes] + [labelled("P1"), labelled("P2")]
    return write_tables(tmp_path / "tables", entities, triples), triples


def sentence_pairs(path):
    return {pair(row["spans"][0]["id"], row["spans"][2]["id"]) for row in pq.read_table(path).to_pylist()}


def reasoning_pairs(path):
    pairs = set()
    for row in pq.read_table(path).to_pylist():
        spans = row["spans"]
        pairs |= {pair(spans[i]["id"], spans[i + 2]["id"]) for i in range(0, len(spans), 3)}
    return pairs


def test_held_out_pairs_reach_neither_sentences_nor_reasoning(graph, tmp_path):
    tables, triples = graph
    run_stage("sentences", "--input", tables, "--output", tmp_path / "s", "--holdout-triples", 0.3, "--seed", 5)
    held = read_heldout_triples(tmp_path / "s")
    held_pairs = {pair(h, t) for h, t in zip(held.column("head").to_pylist(), held.column("tail").to_pylist())}
    assert 0 < len(held_pairs) < 66
    # every triple of a held-out pair is held out (twins included), with its row in triples.parquet
    expected = [i for i, (h, _, t) in enumerate(triples) if pair(h, t) in held_pairs]
    assert held.column("triple_index").to_pylist() == expected
    assert [tuple(triples[i]) for i in expected] == list(zip(*(held.column(c).to_pylist()
                                                                for c in ("head", "relation", "tail"))))
    used = sentence_pairs(tmp_path / "s" / "sentences.parquet")
    assert used and not used & held_pairs and used | held_pairs == {pair(h, t) for h, _, t in triples}
    counts = read_stage_summary(tmp_path / "s", "sentences")["counts"]
    assert counts["triples held out (their entity pair)"] == len(expected)

    run_stage("cycles", "--input", tables, "--output", tmp_path / "c")
    run_stage("reasoning", "--input", tables, "--cycles", tmp_path / "c", "--output", tmp_path / "r",
              "--exclude-triples", tmp_path / "s")
    linked = reasoning_pairs(tmp_path / "r" / "reasoning.parquet")
    assert linked and not linked & held_pairs
    counts = read_stage_summary(tmp_path / "r", "reasoning")["counts"]
    assert counts["triangles excluded: link a held-out triple's entities"] > 0


def test_holdout_is_seeded_by_pair_and_hits_its_share(tmp_path):
    nodes = [f"Q{i}" for i in range(1, 71)]  # 2,415 pairs
    triples = [(a, "P1", b) for a, b in itertools.combinations(nodes, 2)]
    tables = write_tables(tmp_path / "tables", [labelled(n) for n in nodes] + [labelled("P1")], triples)
    held = {}
    for seed in (1, 1, 2):
        out = tmp_path / f"s{seed}"
        run_stage("sentences", "--input", tables, "--output", out, "--holdout-triples", 0.2, "--seed", seed,
                  "--languages", "en,de", "--alias-variants-per-language", 0)
        held.setdefault(seed, []).append(read_heldout_triples(out).column("triple_index").to_pylist())
    assert held[1][0] == held[1][1] and held[1][0] != held[2][0]
    share = len(held[1][0]) / len(triples)
    assert abs(share - 0.2) < binomial_tolerance(len(triples), 0.2)
    # independently: the pair (by entity row) hashed under the seed, below 20% of the hash range
    rows = {n: i for i, n in enumerate(nodes)}
    keys = np.array([(min(rows[h], rows[t]) << 31) | max(rows[h], rows[t]) for h, _, t in triples], np.int64)
    expected = np.flatnonzero(held_out_hash(keys, held_out_salt(1, "heldout triples")) < np.uint64(0.2 * 2.0**64))
    assert held[1][0] == expected.tolist()


def test_without_holdout_the_file_is_written_empty_and_bad_shares_are_refused(graph, tmp_path, caplog):
    tables, _ = graph
    run_stage("sentences", "--input", tables, "--output", tmp_path / "s")
    assert read_heldout_triples(tmp_path / "s").num_rows == 0
    from preprocess import cli

    assert cli.main(["sentences", "--input", str(tables), "--output", str(tmp_path / "x"),
                     "--holdout-triples", "1.5"]) == 2
    assert "--holdout-triples must be in [0, 1)" in caplog.text
    with pytest.raises(UserFacingError, match="run `kmlm-preprocess sentences`"):
        read_heldout_triples(tmp_path / "nothing")
