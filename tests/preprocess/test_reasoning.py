import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from preprocess import cli
from preprocess.core import io
from preprocess.core.cycle_triples import EdgeTriples, cycle_edges, edge_key
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.heldout_cycles import HeldOutCycles, covers_cycle, cycle_edge_set, shares_cycle
from preprocess.core.formats.tables import TRIPLES_SCHEMA, entities_schema
from preprocess.core.seeds import rng_for
from preprocess.stages import reasoning
from preprocess.stages.reasoning import build_reasoning

LANGS = ("en", "de", "fr")
# Two triangles A-B-C and B-D-C sharing B-C: together the diamond A-B-D-C with diagonal B-C.
# Several edges have alternative triples (in both directions) so the choice matters.
TRIPLES = [("A", "P1", "B"), ("B", "P4", "A"), ("C", "P2", "B"), ("B", "P3", "C"), ("C", "P3", "A"),
           ("D", "P1", "B"), ("C", "P1", "D"), ("D", "P2", "C"), ("E", "P1", "F"), ("F", "P5", "G"), ("G", "P3", "E")]
TRIANGLE_ABC = ("triangle", ["A", "B", "C"])
TRIANGLE_BDC = ("triangle", ["B", "D", "C"])
DIAMOND = ("diamond", ["A", "B", "D", "C"])
TRIANGLE_EFG = ("triangle", ["E", "F", "G"])


def entity(entity_id, langs=LANGS):
    row = {"id": entity_id, "kind": "property" if entity_id.startswith("P") else "item"}
    for lang in LANGS:
        row.update({f"label_{lang}": f"{entity_id}-{lang}" if lang in langs else None, f"aliases_{lang}": [],
                    f"description_{lang}": None})
    return row


def write_inputs(directory, cycles, triples=TRIPLES, unlabelled=None):
    """Tables and cycles.parquet in ``directory``; ``unlabelled`` maps an id to the languages it has labels in."""
    directory.mkdir(parents=True, exist_ok=True)
    unlabelled = unlabelled or {}
    ids = sorted({x for t in triples for x in t} | {n for _, nodes in cycles for n in nodes})
    entities = [entity(i, unlabelled.get(i, LANGS)) for i in ids]
    pq.write_table(pa.Table.from_pylist(entities, schema=entities_schema(LANGS)), directory / "entities.parquet")
    rows = [dict(zip(("head", "relation", "tail"), t)) for t in triples]
    pq.write_table(pa.Table.from_pylist(rows, schema=TRIPLES_SCHEMA), directory / "triples.parquet")
    write_cycles(directory / "cycles.parquet", cycles, with_ids=True)
    return directory


def write_cycles(path, cycles, with_ids=False):
    columns = {"kind": [k for k, _ in cycles], "nodes": pa.array([n for _, n in cycles], pa.list_(pa.string()))}
    if with_ids:
        columns = {"cycle_id": pa.array(range(len(cycles)), pa.int64()), **columns}
    pq.write_table(pa.table(columns), path)
    return path


def run_reasoning(directory, languages=LANGS, seed=1, exclude=None, chunk_size=1 << 16, name="out"):
    path = directory / name / "reasoning.parquet"
    counts = build_reasoning(directory, directory, path, languages, seed, exclude, chunk_size)
    return pq.read_table(path).to_pylist(), counts, path


def sentences_of(row):
    """[(head, relation, tail)] ids per sentence, checking the spans' roles and sentence indexes on the way."""
    spans = row["spans"]
    assert [s["role"] for s in spans] == ["head", "relation", "tail"] * (len(spans) // 3)
    assert [s["sentence"] for s in spans] == [i // 3 for i in range(len(spans))]
    return [tuple(s["id"] for s in spans[i:i + 3]) for i in range(0, len(spans), 3)]


def test_reasoning_triangle_3_and_diamond_5_sentences_in_real_direction(tmp_path):
    rows, counts, _ = run_reasoning(write_inputs(tmp_path, [TRIANGLE_ABC, DIAMOND]), languages=("en",))
    assert [(r["cycle_id"], r["kind"]) for r in rows] == [(0, "triangle"), (1, "diamond")]
    for row, (kind, nodes) in zip(rows, [TRIANGLE_ABC, DIAMOND]):
        chosen = sentences_of(row)
        assert len(chosen) == {"triangle": 3, "diamond": 5}[kind]
        assert all(triple in TRIPLES for triple in chosen)  # each sentence is a real triple, real direction
        assert [edge_key(h, t) for h, _, t in chosen] == [edge_key(u, v) for u, v in cycle_edges(kind, nodes)]
    assert edge_key(*sentences_of(rows[1])[4][::2]) == ("B", "C")  # the diagonal is last
    assert counts["triangles read"] == 1 and counts["diamonds read"] == 1 and counts["samples written"] == 2


def test_reasoning_one_choice_per_cycle_shared_by_languages(tmp_path):
    rows, _, path = run_reasoning(write_inputs(tmp_path, [TRIANGLE_ABC, DIAMOND, TRIANGLE_BDC]), seed=5)
    edge_triples = EdgeTriples(*zip(*TRIPLES))
    for cycle_id, (kind, nodes) in enumerate([TRIANGLE_ABC, DIAMOND, TRIANGLE_BDC]):
        samples = [r for r in rows if r["cycle_id"] == cycle_id]
        assert [r["lang"] for r in samples] == list(LANGS)
        expected = edge_triples.choose(kind, nodes, rng_for(5, "reasoning", cycle_id))
        for r in samples:
            assert sentences_of(r) == expected
            assert all(s["lang"] == r["lang"] and s["text"] == f"{s['id']}-{r['lang']}" for s in r["spans"])
    # the alternatives of an edge are all reachable under some seed
    choices = {tuple(sentences_of(run_reasoning(tmp_path, ("en",), seed, name=f"s{seed}")[0][0])[0])
               for seed in range(12)}
    assert choices == {("A", "P1", "B"), ("B", "P4", "A")}
    assert run_reasoning(tmp_path, seed=5, name="again")[2].read_bytes() == path.read_bytes()


def test_reasoning_skip_languages_with_missing_labels(tmp_path):
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, TRIANGLE_EFG], unlabelled={"B": ("en", "fr"), "P5": ("en",)})
    rows, counts, _ = run_reasoning(directory)
    assert [(r["cycle_id"], r["lang"]) for r in rows] == [(0, "en"), (0, "fr"), (1, "en")]
    assert counts["triangles skipped in de: missing label"] == 2  # B, then P5 (relation of F-G)
    assert counts["triangles skipped in fr: missing label"] == 1
    assert counts["triangle samples in en"] == 2


def test_covers_cycle():
    assert covers_cycle(*TRIANGLE_ABC, *TRIANGLE_ABC)
    assert covers_cycle("triangle", ["C", "A", "B"], "triangle", ["B", "A", "C"])  # any rotation or direction
    assert covers_cycle(*DIAMOND, *TRIANGLE_ABC) and covers_cycle(*DIAMOND, *TRIANGLE_BDC)
    assert not covers_cycle(*TRIANGLE_ABC, *DIAMOND)
    assert not covers_cycle("diamond", ["B", "A", "C", "D"], *TRIANGLE_BDC)  # diagonal A-C: B-D is no edge
    held_out = HeldOutCycles([TRIANGLE_BDC])
    assert held_out.shared_by(*DIAMOND) and not held_out.shared_by(*TRIANGLE_ABC)


def test_shares_cycle_both_ways_but_not_one_edge():
    diamond, abc = cycle_edge_set(*DIAMOND), cycle_edge_set(*TRIANGLE_ABC)
    assert shares_cycle(diamond, abc) and shares_cycle(abc, diamond)
    assert not shares_cycle(cycle_edge_set(*TRIANGLE_BDC), abc)  # they share only the diagonal B-C
    held_out_diamond = HeldOutCycles([DIAMOND])
    assert held_out_diamond.shared_by(*TRIANGLE_ABC) and held_out_diamond.shared_by(*TRIANGLE_BDC)


def test_reasoning_exclude_held_out_cycles_and_diamonds_around_them(tmp_path):
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, DIAMOND, TRIANGLE_BDC, TRIANGLE_EFG])
    exclude = write_cycles(tmp_path / "heldout.parquet", [("triangle", ["C", "B", "D"])])
    rows, counts, _ = run_reasoning(directory, languages=("en",), exclude=exclude)
    assert [r["cycle_id"] for r in rows] == [0, 3]
    assert counts["triangles excluded: share a held-out cycle"] == 1
    assert counts["diamonds excluded: share a held-out cycle"] == 1
    assert counts["held-out cycles"] == 1


def test_reasoning_same_output_for_any_chunking(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "ROWS_PER_GROUP", 4)
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, DIAMOND, TRIANGLE_BDC, TRIANGLE_EFG] * 3)
    reference = run_reasoning(directory, name="big")[2].read_bytes()
    for chunk_size in (1, 5):
        assert run_reasoning(directory, chunk_size=chunk_size, name=f"c{chunk_size}")[2].read_bytes() == reference


def test_reasoning_skip_cycle_with_an_edge_without_triple(tmp_path):
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, ("triangle", ["A", "B", "D"])])
    rows, counts, _ = run_reasoning(directory, languages=("en",))
    assert [r["cycle_id"] for r in rows] == [0]
    assert counts["triangles skipped: an edge has no triple"] == 1


def test_reasoning_bad_cycles_file_is_a_clear_error(tmp_path):
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, ("triangle", ["A", "B", "C", "D"])])
    with pytest.raises(UserFacingError, match=r"cycles.parquet row 1: kind 'triangle'.*expected"):
        run_reasoning(directory)
    directory = write_inputs(tmp_path / "ok", [TRIANGLE_ABC])
    with pytest.raises(UserFacingError, match="does not exist"):
        run_reasoning(directory, exclude=tmp_path / "missing.parquet")
    with pytest.raises(UserFacingError, match="has no column"):
        run_reasoning(directory, exclude=directory / "triples.parquet")


def test_reasoning_cli(tmp_path):
    directory = write_inputs(tmp_path, [TRIANGLE_ABC, DIAMOND])
    exclude = write_cycles(tmp_path / "heldout.parquet", [TRIANGLE_ABC])
    out = tmp_path / "cli"
    assert cli.main(["reasoning", "--input", str(directory), "--cycles", str(directory), "--output", str(out),
                     "--languages", "en,de", "--exclude", str(exclude)]) == 0
    table = pq.read_table(out / "reasoning.parquet")
    assert table.schema == reasoning.REASONING_SCHEMA and table.num_rows == 0  # the diamond covers the triangle
    assert cli.main(["reasoning", "--input", str(directory), "--cycles", str(tmp_path / "nowhere"),
                     "--output", str(out)]) == 2
