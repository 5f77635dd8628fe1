"""kmlm-export fairseq: Hugging Face XLM-R / mBERT -> fairseq checkpoint, round trips, training restarts from it."""
import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from kmlm_fairseq.export import cli
from tests.export import tiny
from tests.export.conftest import hydra_train


@pytest.fixture(scope="module")
def imported(exported_hf, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "fairseq"
    assert cli.main(["fairseq", str(exported_hf), str(out)]) == 0
    return out


def test_import_writes_checkpoint_dict_and_tokenizers(imported, fairseq_run):
    _, data_bin = fairseq_run
    assert (imported / "model.pt").is_file() and (imported / "hf_tokenizer" / "tokenizer.json").is_file()
    assert (imported / "dict.txt").read_text().split()[::2] == (data_bin / "dict.txt").read_text().split()[::2]
    assert (imported / "sentencepiece.bpe.model").read_bytes() == (data_bin / "sentencepiece.bpe.model").read_bytes()


def test_hf_fairseq_hf_round_trip_is_tensor_exact(exported_hf, imported, tmp_path):
    assert cli.main(["hf", str(imported / "model.pt"), str(tmp_path / "again")]) == 0
    before, after = load_file(exported_hf / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert before.keys() == after.keys()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    vocab = lambda d: json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]  # noqa: E731
    assert vocab(exported_hf) == vocab(tmp_path / "again")


def test_imported_checkpoint_loads_in_fairseq_hub_with_hf_logits(exported_hf, imported):
    from fairseq.models.roberta import RobertaModel
    from transformers import AutoModelForMaskedLM

    hub = RobertaModel.from_pretrained(str(imported), "model.pt").eval()
    hf = AutoModelForMaskedLM.from_pretrained(str(exported_hf)).eval()
    tokens = hub.encode("Marie Curie was born in Warsaw , Poland .").unsqueeze(0)
    with torch.no_grad():
        assert torch.allclose(hub.model(tokens)[0], hf(input_ids=tokens).logits, atol=1e-5)


def test_training_restarts_from_the_imported_checkpoint(imported, fairseq_run, tmp_path):
    """lr 0: one update later the saved weights must still be exactly the imported ones."""
    _, data_bin = fairseq_run
    log = hydra_train(data_bin, tmp_path / "ckpt", f"checkpoint.restore_file={imported / 'model.pt'}",
                      "optimization.max_update=1", "optimization.lr=[0.0]", "checkpoint.save_interval_updates=1")
    assert f"Loaded checkpoint {imported / 'model.pt'} (epoch 1 @ 0 updates)" in log
    import kmlm_fairseq  # noqa: F401  (loads fairseq checkpoints on torch >= 2.6)

    start = torch.load(imported / "model.pt", map_location="cpu")["model"]
    after = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", map_location="cpu")["model"]
    assert start.keys() == after.keys() and all(torch.equal(start[k], after[k]) for k in start)


def test_mbert_converts_both_ways(tmp_path, caplog):
    from transformers import AutoModelForMaskedLM

    original = tiny.tiny_bert_dir(tmp_path)
    with caplog.at_level(logging.INFO):
        assert cli.main(["fairseq", str(original), str(tmp_path / "fs")]) == 0
    err = caplog.text
    assert "not converted: bert.pooler." in err and "not converted: cls.seq_relationship." in err
    assert "layer_norm_eps 1e-12 becomes fairseq's 1e-05" in err
    dict_symbols = (tmp_path / "fs" / "dict.txt").read_text().split()[::2]
    assert "[CLS]" not in dict_symbols and "[PAD]" not in dict_symbols and dict_symbols[0] == "[unused1]"

    assert cli.main(["hf", str(tmp_path / "fs" / "model.pt"), str(tmp_path / "hf"), "--arch", "bert",
                     "--hf-tokenizer", str(tmp_path / "fs" / "hf_tokenizer")]) == 0
    before, after = load_file(original / "model.safetensors"), load_file(tmp_path / "hf" / "model.safetensors")
    changed = sorted(k for k in after if not torch.equal(before[k], after[k]))
    assert changed == ["bert.embeddings.position_embeddings.weight", "bert.embeddings.token_type_embeddings.weight"]
    assert sorted(set(before) - set(after)) == ["bert.pooler.dense.bias", "bert.pooler.dense.weight",
                                                "cls.seq_relationship.bias", "cls.seq_relationship.weight"]
    # Same function for token type 0 once the LayerNorm epsilon is fairseq's.
    source = AutoModelForMaskedLM.from_pretrained(str(original), layer_norm_eps=1e-5).eval()
    exported = AutoModelForMaskedLM.from_pretrained(str(tmp_path / "hf")).eval()
    tokens = torch.tensor([[6, 40, 50, 60, 7]])
    with torch.no_grad():
        assert torch.allclose(source(input_ids=tokens).logits, exported(input_ids=tokens).logits, atol=1e-5)


def test_unsupported_architecture_is_refused(tmp_path, caplog):
    from transformers import RobertaConfig, RobertaForMaskedLM

    xlmr = tiny.tiny_xlmr_dir(tmp_path)
    config = RobertaConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=8)
    RobertaForMaskedLM(config).save_pretrained(tmp_path / "roberta")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "roberta" / name).write_bytes((xlmr / name).read_bytes())
    assert cli.main(["fairseq", str(tmp_path / "roberta"), str(tmp_path / "out")]) == 2
    assert "model_type 'roberta' is not supported" in caplog.text


def test_imported_mbert_trains_in_fairseq_masked_lm(tmp_path):
    """WordPiece-tokenized text binarized with the imported dict.txt; stock masked_lm restores and trains."""
    import subprocess

    from transformers import AutoTokenizer

    from tests.conftest import venv_bin

    original = tiny.tiny_bert_dir(tmp_path)
    assert cli.main(["fairseq", str(original), str(tmp_path / "fs")]) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "fs" / "hf_tokenizer"))
    corpus = tiny.write_corpus(tmp_path / "train.txt", lines=200).read_text().splitlines()
    (tmp_path / "train.wp").write_text("\n".join(" ".join(tokenizer.tokenize(line)) for line in corpus) + "\n")
    subprocess.run([venv_bin("fairseq-preprocess"), "--only-source", "--trainpref", str(tmp_path / "train.wp"),
                    "--srcdict", str(tmp_path / "fs" / "dict.txt"), "--destdir", str(tmp_path / "bin"),
                    "--workers", "1"], check=True, capture_output=True)
    log = hydra_train(tmp_path / "bin", tmp_path / "ckpt", f"checkpoint.restore_file={tmp_path / 'fs' / 'model.pt'}",
                      "model.max_positions=40", "optimization.max_update=2")
    assert "Loaded checkpoint" in log and "(epoch 1 @ 0 updates)" in log
    assert "num_updates=2" in log
