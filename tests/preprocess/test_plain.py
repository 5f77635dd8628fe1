"""`kmlm-preprocess plain`: text lines -> fairseq mmap datasets; the direct writer equals fairseq-preprocess."""
import bz2
import gzip
import json
import unicodedata
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from preprocess import cli
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.indexed import (
    best_fitting_int_dtype,
    gather_parts,
    read_indexed_dataset,
    write_indexed_dataset,
)
from preprocess.core.tokenizers.dictionary import DICT_FILE
from preprocess.core.tokenizers.sentencepiece import SPM_FILE
from preprocess.stages.plain import is_utf8, parse_inputs
from preprocess.stages.spm import dict_text, train_model
from tests.conftest import TEST_DATA

LANGS = ("en", "de", "ja")


def wikidata_lines():
    """Real multilingual text: "label: description" of the bundled Wikidata items, per language."""
    lines = defaultdict(list)
    with bz2.open(TEST_DATA / "opentapioca_sample_items.json.bz2", "rt", encoding="utf-8") as f:
        for line in f:
            line = line.strip().rstrip(",")
            if line.startswith("{"):
                item = json.loads(line)
                for lang in LANGS:
                    label = item.get("labels", {}).get(lang, {}).get("value")
                    description = item.get("descriptions", {}).get(lang, {}).get("value")
                    if label and description:
                        lines[lang].append(f"{label}: {description}")
    return lines


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Text files per language with the awkward cases, and a tokenizer trained on the clean lines."""
    root = tmp_path_factory.mktemp("plain")
    lines = wikidata_lines()
    data = root / "DATA"
    data.mkdir()
    clean = [line for lang in LANGS for line in lines[lang]]
    model = train_model(clean, vocab_size=1000, character_coverage=1.0)
    (data / SPM_FILE).write_bytes(model)
    (data / DICT_FILE).write_text(dict_text(model, clean), encoding="utf-8")
    for lang in LANGS:
        body = "\n".join(lines[lang]).encode("utf-8")
        if lang == "en":  # blank and whitespace-only lines, a line that is not UTF-8, CRLF, unseen characters
            body += b"\n\n   \t\nbad \xff\xfe bytes\nWindows line\r\nemoji \xf0\x9f\x98\x80 and \xe2\x82\xac"
        (root / f"{lang}.txt").write_bytes(body)  # no final newline
    return root


def prepared(corpus, name):
    data = corpus / name
    data.mkdir()
    for file in (SPM_FILE, DICT_FILE):
        (data / file).write_bytes((corpus / "DATA" / file).read_bytes())
    return data


def plain(corpus, name, *options, inputs=None):
    data = prepared(corpus, name)
    inputs = inputs or [str(corpus / f"{lang}.txt") for lang in LANGS]
    assert cli.main(["plain", *inputs, "-o", str(data), "--workers", "1", *map(str, options)]) == 0
    return data


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(Path(root).rglob("*"))
            if p.is_file() and p.name != "summary.json" and p.suffix in (".bin", ".idx")}


def test_plain_direct_writer_is_byte_identical_to_fairseq_preprocess(corpus):
    options = ["--valid-fraction", "0", "--shard-size", "60"]
    inputs = [f"en={corpus / 'en.txt'}"]
    direct = plain(corpus, "direct", *options, inputs=inputs)
    reference = plain(corpus, "fairseq", *options, "--backend", "fairseq", inputs=inputs)
    files = tree_bytes(direct)
    assert sorted(files) == ["plain/en/train.bin", "plain/en/train.idx", "plain/en/train1.bin", "plain/en/train1.idx"]
    assert files == tree_bytes(reference)
    summaries = [json.loads((d / "plain" / "summary.json").read_text()) for d in (direct, reference)]
    assert summaries[0]["counts"] == summaries[1]["counts"] and summaries[0]["datasets"] == summaries[1]["datasets"]


def test_plain_round_trip_counts_and_valid_split(corpus, caplog):
    from fairseq.data import Dictionary, data_utils
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    data = plain(corpus, "round-trip", "--valid-fraction", "0.2", "--valid-max", "5")
    dictionary = Dictionary.load(str(data / DICT_FILE))
    bpe = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(data / SPM_FILE)))
    summary = json.loads((data / "plain" / "summary.json").read_text())
    assert summary["counts"]["skipped: blank line"] == 2 and summary["counts"]["skipped: not UTF-8"] == 1
    assert "skipped a line that is not UTF-8: line " in caplog.text
    for lang in LANGS:
        lines = [line.decode("utf-8") for line in (corpus / f"{lang}.txt").read_bytes().split(b"\n")
                 if line.strip() and b"\xff" not in line]
        samples = {}
        for split in ("train", "valid"):
            dataset = data_utils.load_indexed_dataset(str(data / "plain" / lang / split), dictionary)
            samples[split] = [dataset[i].tolist() for i in range(len(dataset))]
        # 20% of the lines is more than --valid-max; a held-out line that is not UTF-8 would be missing
        assert len(samples["valid"]) == 5 or (lang == "en" and len(samples["valid"]) == 4)
        # train and valid both hold the lines in file order, as fairseq's own XLM-R encoding + </s>: merge them back
        at = {"train": 0, "valid": 0}
        for line in lines:
            ids = dictionary.encode_line(bpe.encode(line), append_eos=True, add_if_not_exist=False).tolist()
            split = next(s for s in ("train", "valid") if at[s] < len(samples[s]) and samples[s][at[s]] == ids)
            at[split] += 1
            if dictionary.unk() not in ids:
                assert bpe.decode(dictionary.string(ids[:-1])) == " ".join(unicodedata.normalize("NFKC", line).split())
        assert at == {split: len(samples[split]) for split in at}
        assert summary["datasets"][f"{lang}/valid"]["samples"] == len(samples["valid"])
        if lang == "en":
            assert any(dictionary.unk() in sample for sample in samples["train"] + samples["valid"])


def test_plain_output_is_identical_for_workers_chunks_and_compression(corpus):
    one = plain(corpus, "one", "--valid-fraction", "0.05")
    with gzip.open(corpus / "de.txt.gz", "wb") as f:
        f.write((corpus / "de.txt").read_bytes())
    inputs = [str(corpus / "en.txt"), str(corpus / "de.txt.gz"), f"ja={corpus / 'ja.txt'}"]
    two = plain(corpus, "two", "--valid-fraction", "0.05", "--workers", "2", "--chunk-mb", "0.002", inputs=inputs)
    assert tree_bytes(one) == tree_bytes(two)
    other_seed = plain(corpus, "seed", "--valid-fraction", "0.05", "--seed", "7")
    assert tree_bytes(one)["plain/de/valid.bin"] != tree_bytes(other_seed)["plain/de/valid.bin"]


def concatenated(directory, split):
    sizes, tokens, k = [], [], 0
    while (directory / f"{split}{k or ''}.idx").exists():
        s, t = read_indexed_dataset(directory / f"{split}{k or ''}")
        sizes.append(s)
        tokens.append(t)
        k += 1
    return np.concatenate(sizes).tolist(), np.concatenate(tokens).tolist(), k


def test_plain_slurm_parts_gather_to_the_single_run(corpus):
    single = plain(corpus, "single", "--valid-fraction", "0.05")
    parts = prepared(corpus, "parts")
    inputs = [str(corpus / f"{lang}.txt") for lang in LANGS]
    for index in range(4):
        assert cli.main(["plain", *inputs, "-o", str(parts), "--workers", "1", "--valid-fraction", "0.05",
                         "--part", f"{index}/4"]) == 0
    last = parts / "plain" / "parts" / "00003-of-00004" / "summary.json"
    last.rename(parts / "moved.json")  # as if the last task had not finished
    with pytest.raises(UserFacingError, match="parts not finished .*00003-of-00004"):
        gather_parts(parts / "plain")
    last.write_text("")  # a damaged summary (a copy cut short, a full disk)
    with pytest.raises(UserFacingError, match="00003-of-00004/summary.json: not a JSON summary .*re-run part 00003"):
        gather_parts(parts / "plain")
    (parts / "moved.json").rename(last)
    assert cli.main(["plain", "--gather", "-o", str(parts)]) == 0
    shards = 0
    for lang in LANGS:
        for split in ("train", "valid"):
            gathered = concatenated(parts / "plain" / lang, split)
            assert gathered[:2] == concatenated(single / "plain" / lang, split)[:2]
            shards += gathered[2]
    assert shards > 2 * len(LANGS)  # some language was split between tasks


def test_indexed_writer_matches_fairseq_builder(tmp_path):
    import torch
    from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder

    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=50)
    for vocab in (1000, 250_002):
        dtype = best_fitting_int_dtype(vocab)
        tokens = rng.integers(0, vocab, size=int(sizes.sum()))
        builder = MMapIndexedDatasetBuilder(str(tmp_path / "ref.bin"), dtype=dtype.type)
        for sample in np.split(tokens, np.cumsum(sizes)[:-1]):
            builder.add_item(torch.from_numpy(sample))
        builder.finalize(str(tmp_path / "ref.idx"))
        write_indexed_dataset(tmp_path / "ours", tokens, sizes, dtype)
        for ext in ("bin", "idx"):
            assert (tmp_path / f"ours.{ext}").read_bytes() == (tmp_path / f"ref.{ext}").read_bytes()


def test_parse_inputs_tells_languages_and_rejects_unknown(tmp_path):
    for name in ("de.txt", "fr.txt.gz", "weird name.txt"):
        (tmp_path / name).write_text("x\n")
    assert parse_inputs([str(tmp_path / "de.txt"), f"en={tmp_path / 'weird name.txt'}", str(tmp_path / "fr.txt.gz"),
                         f"de={tmp_path / 'weird name.txt'}"]) == [
        ("de", tmp_path / "de.txt"), ("de", tmp_path / "weird name.txt"), ("en", tmp_path / "weird name.txt"),
        ("fr", tmp_path / "fr.txt.gz")]
    for name in ("weird name.txt", "train.txt", "wiki.de.txt", "EN.txt"):
        (tmp_path / name).write_text("x\n")
        with pytest.raises(UserFacingError, match="cannot tell its language"):
            parse_inputs([str(tmp_path / name)])
    (tmp_path / "zh-hans.txt.bz2").write_text("x\n")
    assert parse_inputs([str(tmp_path / "zh-hans.txt.bz2")]) == [("zh-hans", tmp_path / "zh-hans.txt.bz2")]
    with pytest.raises(UserFacingError, match="no such file"):
        parse_inputs([f"en={tmp_path / 'missing.txt'}"])


@pytest.mark.parametrize("data", [b"plain ascii\n", "é中😀\n".encode(), b"\xed\x9f\xbf\xef\xbf\xbf", b"",
                                  b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xe2\x82",
                                  b"ok\xff", "中".encode()[:2] + b"\n"])
def test_utf8_check_agrees_with_python_strict_decoder(data):
    """Surrogates, overlong forms, code points past U+10FFFF and cut sequences are not UTF-8, as for Python."""
    try:
        data.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    assert is_utf8(data) == expected
