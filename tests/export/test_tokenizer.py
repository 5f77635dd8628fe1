"""The Hugging Face tokenizer built from sentencepiece + dict.txt gives fairseq's ids, for any dict.txt order."""
import pytest
import sentencepiece as spm

from kmlm_fairseq.export.spm_proto import read_spm_spec
from kmlm_fairseq.export.tokenizer import (
    FairseqTextEncoder,
    build_spm_tokenizer,
    check_same_ids,
    load_dictionary,
    vocab_permutation,
)
from kmlm_fairseq.export.verify import DEFAULT_TEXTS
from preprocess.core.errors import UserFacingError
from tests.export import tiny

TEXTS = DEFAULT_TEXTS + ("  Köln   ist eine   Stadt ", "Привет 😀 ＡＢＣ ①", "école\tStraße", "xyz qqq the", "",
                         "Paris.")


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_tokenizer_gives_fairseq_ids_for_a_shuffled_dict(tmp_path, model_type):
    spm_path = tiny.train_spm(tmp_path, model_type)
    dict_path = tiny.write_dict(spm_path, tmp_path / "dict.txt", shuffle_seed=7, extra=["madeupword0000"])
    dictionary = load_dictionary(dict_path)
    tokenizer = build_spm_tokenizer(spm_path, dictionary, dict_path, model_max_length=64)
    fairseq = FairseqTextEncoder(dictionary, spm_path=spm_path)

    assert [tokenizer(t)["input_ids"] for t in TEXTS] == [fairseq.encode(t) for t in TEXTS]
    assert vocab_permutation(tokenizer, dictionary).tolist() == list(range(len(dictionary)))
    assert tokenizer.mask_token_id == dictionary.index("<mask>") == len(dictionary) - 1
    assert any(fairseq.encode(t).count(dictionary.unk()) for t in TEXTS)  # unknown characters were exercised


def test_tokenizer_saved_and_reloaded_keeps_ids(tmp_path):
    from transformers import AutoTokenizer

    spm_path = tiny.train_spm(tmp_path)
    dict_path = tiny.write_dict(spm_path, tmp_path / "dict.txt", shuffle_seed=3)
    dictionary = load_dictionary(dict_path)
    build_spm_tokenizer(spm_path, dictionary, dict_path, model_max_length=64).save_pretrained(tmp_path / "tok")
    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    check_same_ids(TEXTS, FairseqTextEncoder(dictionary, spm_path=spm_path), reloaded,
                   vocab_permutation(reloaded, dictionary))


def test_tokenizer_check_fails_on_a_different_dictionary(tmp_path):
    spm_path = tiny.train_spm(tmp_path)
    ours = load_dictionary(tiny.write_dict(spm_path, tmp_path / "a.txt", shuffle_seed=1))
    other = load_dictionary(tiny.write_dict(spm_path, tmp_path / "b.txt", shuffle_seed=2))
    tokenizer = build_spm_tokenizer(spm_path, ours, tmp_path / "a.txt", model_max_length=64)
    with pytest.raises(UserFacingError, match="disagrees with fairseq"):
        check_same_ids(TEXTS, FairseqTextEncoder(other, spm_path=spm_path), tokenizer,
                       vocab_permutation(tokenizer, ours))


def test_dict_missing_sentencepiece_pieces_is_refused(tmp_path):
    spm_path = tiny.train_spm(tmp_path)
    dict_path = tiny.write_dict(spm_path, tmp_path / "dict.txt")
    lines = dict_path.read_text(encoding="utf-8").splitlines()
    dict_path.write_text("\n".join(lines[:-5]) + "\n", encoding="utf-8")
    with pytest.raises(UserFacingError, match="5 sentencepiece piece"):
        build_spm_tokenizer(spm_path, load_dictionary(dict_path), dict_path, model_max_length=64)


def test_spm_proto_reader_agrees_with_sentencepiece(tmp_path):
    for model_type in ("unigram", "bpe"):
        spm_path = tiny.train_spm(tmp_path / model_type, model_type)
        spec = read_spm_spec(spm_path)
        sp = spm.SentencePieceProcessor(model_file=str(spm_path))
        assert spec.model_type == model_type
        assert [p for p, _, _ in spec.pieces] == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        assert [s for _, s, _ in spec.pieces] == pytest.approx([sp.get_score(i) for i in range(sp.get_piece_size())])
        assert [k for _, _, k in spec.pieces[:3]] == ["unknown", "control", "control"]
        assert spec.precompiled_charsmap and spec.add_dummy_prefix and spec.normalizer_name == "nmt_nfkc"


def test_spm_proto_reader_rejects_other_files(tmp_path):
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"\xff\xff\xff")
    with pytest.raises(UserFacingError, match="not a sentencepiece model"):
        read_spm_spec(bogus)
