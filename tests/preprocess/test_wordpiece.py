"""binarize/plain with a BERT WordPiece tokenizer (`kmlm-export fairseq` output): fairseq's ids, span tags, training."""
import json
import shutil
import subprocess
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from preprocess.core.errors import UserFacingError
from preprocess.core.tokenizers.dictionary import DICT_FILE
from preprocess.core.tokenizers.install import install_tokenizer
from preprocess.core.tokenizers.sentencepiece import SPM_FILE
from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR, WordPieceTokenizer
from preprocess.stages.spm import read_sample_texts
from tests.conftest import REPO_ROOT, build_real_binarized, run_stage, venv_bin
from tests.preprocess.test_binarize import load_split, match_rows, rows_by_language, tree_bytes

LANGUAGES = ["en", "de", "ja", "zh", "vi"]
SPECIALS = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 10)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # mBERT's order
EXTRA_TEXTS = ["Đà Nẵng là thành phố", "Köln, Straße — «Zürich»!", "東京都は日本の首都である。", "北京市 (中国)",
               "naïve café résumé", "☃ ✈ 𝔘nicode", "x" * 120, "  spaces\tand\ttabs  ", "",
               "[SEP] [MASK] <mask>"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """Samples of the real stages from the bundled dumps (and their sentencepiece DATA, unused here)."""
    root = tmp_path_factory.mktemp("real")
    build_real_binarized(root, LANGUAGES)
    return root


def sample_texts(real):
    return (read_sample_texts(real / "sentences" / "sentences.parquet", 10_000)
            + read_sample_texts(real / "reasoning" / "reasoning.parquet", 10_000))


def tiny_mbert_dir(directory, texts):
    """A random BertForMaskedLM with roberta_tiny's dimensions and a cased WordPiece vocabulary (mBERT's settings)
    trained on ``texts``; its alphabet is cut short so that rare characters are [UNK]."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    trainer = trainers.WordPieceTrainer(vocab_size=1500, limit_alphabet=400, special_tokens=SPECIALS)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainer)
    vocab = sorted(wordpiece.get_vocab().items(), key=lambda item: item[1])
    tokenizer = BertTokenizer(vocab={token: i for i, (token, _) in enumerate(vocab)}, do_lower_case=False,
                              strip_accents=False)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=128, pad_token_id=0)
    out = directory / "bert"
    BertForMaskedLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def imported(real, tmp_path_factory):
    """``kmlm-export fairseq`` of the tiny mBERT: OUT/model.pt, OUT/dict.txt, OUT/hf_tokenizer/."""
    from kmlm_fairseq.export import cli

    work = tmp_path_factory.mktemp("mbert")
    bert = tiny_mbert_dir(work, sample_texts(real))
    assert cli.main(["fairseq", str(bert), str(work / "fs")]) == 0
    return work / "fs"


def binarize(real, imported, data, *options):
    run_stage("binarize", "--sentences", real / "sentences", "--reasoning", real / "reasoning", "-o", data,
              "--tokenizer", imported, "--valid-fraction", 0.05, *options)
    return data


@pytest.fixture(scope="module")
def data(real, imported, tmp_path_factory):
    return binarize(real, imported, tmp_path_factory.mktemp("wp") / "DATA", "--workers", 1)


class WordPieceBPE:
    """fairseq's ``bert`` BPE: the HF tokenizer's ``tokenize``, pieces joined by spaces; "##" glued back."""

    def __init__(self, hf_tokenizer):
        self.hf_tokenizer = hf_tokenizer

    def encode(self, text):
        return " ".join(self.hf_tokenizer.tokenize(text))

    def decode(self, text):
        return text.replace(" ##", "")


@pytest.fixture(scope="module")
def fairseq_side(imported):
    """fairseq's dictionary of OUT/dict.txt (+ <mask> as the kmlm tasks add it) and the HF tokenizer of OUT."""
    from fairseq.data import Dictionary
    from transformers import AutoTokenizer

    dictionary = Dictionary.load(str(imported / DICT_FILE))
    mask = dictionary.add_symbol("<mask>")
    return dictionary, mask, WordPieceBPE(AutoTokenizer.from_pretrained(str(imported / HF_TOKENIZER_DIR)))


def test_wordpiece_ids_equal_hf_tokenizer_ids_through_dict_txt(real, imported, fairseq_side):
    from kmlm_fairseq.export.tokenizer import load_dictionary, vocab_permutation

    dictionary, mask, bpe = fairseq_side
    tokenizer = WordPieceTokenizer(imported / HF_TOKENIZER_DIR, imported / DICT_FILE)
    assert (len(tokenizer), tokenizer.mask, tokenizer.eos) == (len(dictionary) - 1, mask, dictionary.eos())
    texts = sample_texts(real)[::7] + EXTRA_TEXTS
    ids, lengths = tokenizer.encode(texts)
    ours = [chunk.tolist() for chunk in np.split(ids, np.cumsum(lengths)[:-1])]
    fairseq = [dictionary.encode_line(bpe.encode(t), append_eos=False, add_if_not_exist=False).tolist()
               for t in texts]
    assert ours[:-1] == fairseq[:-1]
    # the HF ids mapped by token (kmlm-export's own map): the same, but for special-token strings in the text,
    # which are text here (HF makes [SEP] a </s> inside the sample)
    perm = vocab_permutation(bpe.hf_tokenizer, load_dictionary(imported / DICT_FILE)).numpy()
    hf = [perm[bpe.hf_tokenizer(t, add_special_tokens=False)["input_ids"]].tolist() for t in texts]
    assert ours[:-1] == hf[:-1] and {dictionary.eos(), mask} <= set(hf[-1]) and not {dictionary.eos(), mask} & set(
        ours[-1])
    unk = dictionary.unk()
    assert ours[EXTRA_TEXTS.index("☃ ✈ 𝔘nicode") - len(EXTRA_TEXTS)][:2] == [unk, unk]
    assert ours[EXTRA_TEXTS.index("x" * 120) - len(EXTRA_TEXTS)] == [unk]  # over max_input_chars_per_word
    assert sum(seq.count(unk) for seq in ours[:-len(EXTRA_TEXTS)]) > 0  # the cut alphabet: rare real characters


def test_wordpiece_binarize_round_trip_real_data_with_span_tags(real, imported, data, fairseq_side):
    """Every sample equals its row tokenized by fairseq's bert pipeline; every tagged span decodes to its text."""
    from preprocess.core.span_tags import MENTION_ROLES, tag_role, tag_span

    assert sorted(p.name for p in data.iterdir()) == [DICT_FILE, HF_TOKENIZER_DIR, "knowledge", "reasoning"]
    assert (data / DICT_FILE).read_bytes() == (imported / DICT_FILE).read_bytes()
    dictionary, _, bpe = fairseq_side
    normalizer = bpe.hf_tokenizer.backend_tokenizer.normalizer
    pre_tokenizer = bpe.hf_tokenizer.backend_tokenizer.pre_tokenizer
    checked_spans, unknown_words = 0, 0
    for kind, file in (("knowledge", "sentences"), ("reasoning", "reasoning")):
        for lang, rows in rows_by_language(real / file / f"{file}.parquet").items():
            splits = match_rows(rows, data / kind / lang, fairseq_side)
            assert splits.count("train") > 0 and splits.count("valid") > 0
            kept = [row for row, split in zip(rows, splits) if split == "train"]
            for (tokens, tags), row in zip(load_split(data / kind / lang, "train", dictionary), kept):
                tokens, roles, spans = np.array(tokens), tag_role(tags), tag_span(tags)
                for index, span in enumerate(row["spans"]):
                    where = np.isin(roles, MENTION_ROLES) & (spans == index)
                    words = bpe.decode(dictionary.string(tokens[where])).split()
                    expected = [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(span["text"]))]
                    assert len(words) == len(expected), (words, span["text"])
                    assert all(w in (e, "<unk>") for w, e in zip(words, expected)), (words, expected)
                    unknown_words += words.count("<unk>")
                    checked_spans += 1
    assert checked_spans > 5000 and unknown_words > 0


def test_wordpiece_output_is_identical_for_one_and_two_workers(real, imported, data, tmp_path):
    two = binarize(real, imported, tmp_path / "two", "--workers", 2, "--chunk-size", 300)
    assert tree_bytes(two) == tree_bytes(data)


def test_wordpiece_data_names_its_tokenizer(real, imported, tmp_path, caplog):
    data = tmp_path / "DATA"
    data.mkdir()
    (data / SPM_FILE).write_bytes((real / "DATA" / SPM_FILE).read_bytes())  # an earlier sentencepiece run
    install_tokenizer(Namespace(tokenizer=imported, spm_model=None, dict=None), data)
    assert not (data / SPM_FILE).exists() and "removing" in caplog.text
    again = install_tokenizer(Namespace(tokenizer=None, spm_model=None, dict=None), data)  # DATA's own files
    assert isinstance(again, WordPieceTokenizer) and again.encode(["Köln"])[0].tolist() == install_tokenizer(
        Namespace(tokenizer=imported, spm_model=None, dict=None), data).encode(["Köln"])[0].tolist()
    no_dict = tmp_path / "no_dict"
    (no_dict / HF_TOKENIZER_DIR).mkdir(parents=True)
    for path in (imported / HF_TOKENIZER_DIR).iterdir():
        (no_dict / HF_TOKENIZER_DIR / path.name).write_bytes(path.read_bytes())
    with pytest.raises(UserFacingError, match="WordPiece tokenizer but .* has no dict.txt: .*kmlm-export fairseq"):
        install_tokenizer(Namespace(tokenizer=no_dict, spm_model=None, dict=None), tmp_path / "other")


def test_wordpiece_data_trains_from_the_imported_mbert_and_exports(real, imported, data, tmp_path):
    """plain + knowledge + reasoning streams made with the WordPiece tokenizer; tiny_cpu restores the imported
    model (same dimensions as roberta_tiny) and trains two updates; kmlm-export hf takes DATA's tokenizer."""
    from kmlm_fairseq.export import cli

    plain, data = tmp_path / "de.txt", Path(shutil.copytree(data, tmp_path / "DATA"))
    plain.write_text("\n".join(sample_texts(real)[:400]) + "\n", encoding="utf-8")
    run_stage("plain", f"de={plain}", "-o", data, "--tokenizer", imported, "--workers", 1)
    result = subprocess.run(
        [venv_bin("fairseq-hydra-train"), "--config-dir", "configs", "--config-name", "tiny_cpu", f"task.data={data}",
         f"checkpoint.save_dir={tmp_path / 'ckpt'}", "+init=pretrained",
         f"checkpoint.restore_file={imported / 'model.pt'}", "optimization.max_update=2", "dataset.batch_size=4",
         "checkpoint.save_interval_updates=0", "dataset.validate_interval_updates=0"],
        cwd=REPO_ROOT, capture_output=True, text=True,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"Loaded checkpoint {imported / 'model.pt'} (epoch 1 @ 0 updates)" in log
    assert "num_updates=2" in log or "num_updates\": \"2\"" in log
    checkpoint = tmp_path / "ckpt" / "checkpoint_last.pt"
    # DATA's own hf_tokenizer/ and the bert architecture are the defaults, as the pipeline's export step relies on
    assert cli.main(["hf", str(checkpoint), str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
