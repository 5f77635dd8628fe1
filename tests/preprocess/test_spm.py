"""The tokenizer gives fairseq's XLM-R ids; `kmlm-preprocess spm` trains a model + dict.txt; tokenizer dirs."""
import shutil
from argparse import Namespace

import numpy as np
import pytest

from preprocess import cli
from preprocess.core.errors import UserFacingError
from preprocess.core.tokenizers.dictionary import DICT_FILE, FairseqDictionary
from preprocess.core.tokenizers.install import install_tokenizer
from preprocess.core.tokenizers.sentencepiece import SPM_FILE, Tokenizer
from preprocess.stages.spm import dict_text, train_model

# Real-looking multilingual text: Wikidata labels and descriptions in the paper's languages.
TEXTS = [
    "Belgium shares border with Germany .", "Belgien grenzt an Deutschland .", "Belgique partage une frontière avec",
    "Douglas Adams was an English writer and humorist", "Douglas Adams war ein britischer Schriftsteller",
    "ベルギー 国境を接する ドイツ .", "比利时王国 是 西欧国家", "벨기에 유럽에 있는 나라", "Bỉ giáp biên giới với Đức",
    "Koninkrijk België federale staat in West-Europa", "stato dell'Europa occidentale", "país de Europa",
] * 20


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spm")
    model = train_model(TEXTS, vocab_size=200)
    (directory / SPM_FILE).write_bytes(model)
    (directory / DICT_FILE).write_text(dict_text(model, TEXTS), encoding="utf-8")
    return directory


def fairseq_pipeline(directory):
    """fairseq's own XLM-R encoding: SentencepieceBPE + Dictionary.encode_line, <mask> added as masked_lm does."""
    from fairseq.data import Dictionary
    from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

    dictionary = Dictionary.load(str(directory / DICT_FILE))
    mask = dictionary.add_symbol("<mask>")
    bpe = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(directory / SPM_FILE)))

    def encode(text):
        return dictionary.encode_line(bpe.encode(text), append_eos=False, add_if_not_exist=False).tolist()

    return dictionary, mask, encode


def test_tokenizer_ids_equal_fairseq_sentencepiece_bpe_and_dictionary(tiny_tokenizer):
    dictionary, mask, encode = fairseq_pipeline(tiny_tokenizer)
    tokenizer = Tokenizer(tiny_tokenizer / SPM_FILE, tiny_tokenizer / DICT_FILE)
    # unseen characters (<unk>), emoji, empty and whitespace-only text, extra spaces, tabs
    texts = TEXTS[:12] + ["Xylophon 😀 qüz", "", "   ", "  two   spaces\there ", "Ελλάδα", "Douglas"]
    ids, lengths = tokenizer.encode(texts)
    ours = [chunk.tolist() for chunk in np.split(ids, np.cumsum(lengths)[:-1])]
    assert ours == [encode(t) for t in texts]
    assert any(dictionary.unk() in ids for ids in ours)  # the <unk> path was exercised
    assert tokenizer.mask == mask == len(dictionary) - 1
    assert len(tokenizer) == len(dictionary) - 1  # what fairseq-preprocess sees: no <mask>
    assert (tokenizer.bos, tokenizer.eos) == (dictionary.bos(), dictionary.eos())


def test_dictionary_load_matches_fairseq_on_overwrite_flags(tmp_path):
    from fairseq.data import Dictionary

    path = tmp_path / "dict.txt"
    path.write_text("▁a 5\nb 3\n<mask> 1\n▁a 2 #fairseq:overwrite\nc d 4\n", encoding="utf-8")
    ours, theirs = FairseqDictionary.load(path), Dictionary.load(str(path))
    assert ours.symbols == theirs.symbols
    assert ours.indices == theirs.indices
    assert ours.mask == theirs.add_symbol("<mask>")


def test_dictionary_load_rejects_duplicates_with_line_number(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text("▁a 5\nb 3\n▁a 1\n", encoding="utf-8")
    with pytest.raises(UserFacingError, match=r"dict.txt:3: duplicate symbol '▁a'"):
        FairseqDictionary.load(path)


def test_spm_stage_trains_model_and_xlmr_style_dict_deterministically(tmp_path):
    text = tmp_path / "de.txt"
    text.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    for out in ("a", "b"):
        assert cli.main(["spm", "-o", str(tmp_path / out), "--plain", f"de={text}", "--vocab-size", "300"]) == 0
    model, dictionary = tmp_path / "a" / SPM_FILE, tmp_path / "a" / DICT_FILE
    assert model.read_bytes() == (tmp_path / "b" / SPM_FILE).read_bytes()
    assert dictionary.read_bytes() == (tmp_path / "b" / DICT_FILE).read_bytes()

    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    lines = dictionary.read_text(encoding="utf-8").splitlines()
    assert [line.rsplit(" ", 1)[0] for line in lines] == [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    assert all(int(line.rsplit(" ", 1)[1]) >= 0 for line in lines)
    tokenizer = Tokenizer(model, dictionary)
    assert np.array_equal(tokenizer.lookup[3:], np.arange(3, sp.get_piece_size()) + 1)  # XLM-R: fairseq = spm + 1
    assert int(tokenizer.encode(["▁."])[0].size) > 0


def test_hugging_face_dir_without_dict_gets_xlmr_mapping(tiny_tokenizer, tmp_path):
    hf_dir = tmp_path / "xlm-roberta-tiny"
    hf_dir.mkdir()
    shutil.copy(tiny_tokenizer / SPM_FILE, hf_dir / SPM_FILE)
    (hf_dir / "tokenizer.json").write_text("{}")
    data = tmp_path / "DATA"
    tokenizer = install_tokenizer(Namespace(tokenizer=hf_dir, spm_model=None, dict=None), data)
    # XLMRobertaTokenizer: <s>=0 <pad>=1 </s>=2 <unk>=3, piece id i >= 3 -> i + 1, <mask> = pieces + 1
    n_pieces = tokenizer.sp.get_piece_size()
    assert tokenizer.lookup[:3].tolist() == [3, 0, 2]
    assert np.array_equal(tokenizer.lookup[3:], np.arange(3, n_pieces) + 1)
    assert tokenizer.mask == n_pieces + 1
    assert (data / SPM_FILE).read_bytes() == (tiny_tokenizer / SPM_FILE).read_bytes()
    # the same pieces in the same order as the trained dict.txt: identical ids
    derived = [line.rsplit(" ", 1)[0] for line in (data / DICT_FILE).read_text(encoding="utf-8").splitlines()]
    trained = [line.rsplit(" ", 1)[0] for line in (tiny_tokenizer / DICT_FILE).read_text(encoding="utf-8").splitlines()]
    assert derived == trained


def test_xlmr_release_dir_is_copied_into_data(tiny_tokenizer, tmp_path):
    data = tmp_path / "DATA"
    install_tokenizer(Namespace(tokenizer=tiny_tokenizer, spm_model=None, dict=None), data)
    for name in (SPM_FILE, DICT_FILE):
        assert (data / name).read_bytes() == (tiny_tokenizer / name).read_bytes()
    # later stages find it in DATA without options
    again = install_tokenizer(Namespace(tokenizer=None, spm_model=None, dict=None), data)
    assert again.mask == len(again.dictionary)


def test_tokenizer_dir_with_only_tokenizer_json_is_unsupported(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(UserFacingError, match="only tokenizer.json .* unsupported"):
        install_tokenizer(Namespace(tokenizer=tmp_path, spm_model=None, dict=None), tmp_path / "DATA")


def test_missing_tokenizer_and_half_given_pair_are_clear_errors(tiny_tokenizer, tmp_path):
    with pytest.raises(UserFacingError, match="run `kmlm-preprocess spm"):
        install_tokenizer(Namespace(tokenizer=None, spm_model=None, dict=None), tmp_path)
    with pytest.raises(UserFacingError, match="go together"):
        install_tokenizer(Namespace(tokenizer=None, spm_model=tiny_tokenizer / SPM_FILE, dict=None), tmp_path)


def test_training_text_of_samples_renders_sentences_and_spreads_over_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from preprocess.stages.spm import read_sample_texts

    def row(head, relation, tail, sentences=1):
        return {"spans": [{"text": text, "role": role, "id": "Q1", "sentence": s, "lang": "en"}
                          for s in range(sentences)
                          for text, role in ((head, "head"), (relation, "relation"), (tail, "tail"))]}

    rows = [row("Belgium", "shares border with", "Germany", 2)] * 3 + [row("Belgien", "grenzt an", "Deutschland")] * 3
    path = tmp_path / "reasoning.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=3)  # one language per row group
    assert read_sample_texts(path, 2) == [
        "Belgium shares border with Germany . Belgium shares border with Germany .",
        "Belgien grenzt an Deutschland ."]


def test_encode_lines_fast_buffer_path_equals_the_public_fallback(tiny_tokenizer):
    """encode_lines uses sentencepiece's private batch-buffer encoder when it probes right; the public path must
    agree."""
    tokenizer = Tokenizer(tiny_tokenizer / SPM_FILE, tiny_tokenizer / DICT_FILE)
    assert tokenizer._encode_buffers is not None  # this sentencepiece has the fast path: the comparison is real
    texts = TEXTS[:12] + ["Xylophon 😀 qüz", "", "   ", "Ελλάδα"]
    fast = tokenizer.encode_lines(texts, dtype=np.uint16)
    tokenizer._encode_buffers = None
    public = tokenizer.encode_lines(texts, dtype=np.uint16)
    for ours, theirs in zip(fast, public):
        np.testing.assert_array_equal(ours, theirs)
    assert fast[0].dtype == np.uint16 and int(fast[1].sum()) == len(fast[0])
