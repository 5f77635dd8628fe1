"""kmlm-export hf: a real fairseq checkpoint becomes a Hugging Face XLM-R directory computing the same logits."""
import json
import os
import subprocess
import sys

import torch

from kmlm_fairseq.export import cli, key_map
from kmlm_fairseq.export.tokenizer import FairseqTextEncoder, load_dictionary
from kmlm_fairseq.export.verify import DEFAULT_TEXTS, pad_batch, random_batch


def fairseq_hub(checkpoint, data_bin):
    from fairseq.models.roberta import RobertaModel

    hub = RobertaModel.from_pretrained(str(checkpoint.parent), checkpoint.name, data_name_or_path=str(data_bin),
                                       bpe="sentencepiece",
                                       sentencepiece_model=str(data_bin / "sentencepiece.bpe.model"))
    return hub.eval()


def test_export_writes_hf_files(exported_hf):
    written = set(os.listdir(exported_hf))
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= written
    config = json.loads((exported_hf / "config.json").read_text())
    assert config["architectures"] == ["XLMRobertaForMaskedLM"] and config["model_type"] == "xlm-roberta"
    assert config["max_position_embeddings"] == 66 and config["type_vocab_size"] == 1


def test_exported_model_matches_fairseq_on_random_and_real_text(fairseq_run, exported_hf):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    checkpoint, data_bin = fairseq_run
    hub = fairseq_hub(checkpoint, data_bin)
    model = AutoModelForMaskedLM.from_pretrained(str(exported_hf)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(exported_hf))
    dictionary = hub.task.source_dictionary

    texts = list(DEFAULT_TEXTS)
    fairseq_ids = [hub.encode(t).tolist() for t in texts]
    assert [tokenizer(t)["input_ids"] for t in texts] == fairseq_ids
    real = pad_batch(fairseq_ids, dictionary.pad())
    random_ids = random_batch(len(dictionary), dictionary.nspecial, dictionary.pad(), max_len=64, seed=5)
    for tokens in (real, random_ids):
        with torch.no_grad():
            expected = hub.model(tokens)[0]
            got = model(input_ids=tokens, attention_mask=(tokens != dictionary.pad()).long()).logits
        keep = tokens != dictionary.pad()
        assert (expected[keep] - got[keep]).abs().max().item() < 1e-4
        assert expected[keep].std() > 0.1  # a real, non-constant function was compared


def test_exported_dir_loads_offline_and_fills_masks(exported_hf):
    script = (
        "from transformers import AutoModelForMaskedLM, pipeline\n"
        f"m = AutoModelForMaskedLM.from_pretrained({str(exported_hf)!r})\n"
        f"fill = pipeline('fill-mask', model={str(exported_hf)!r}, top_k=3)\n"
        "out = fill('Paris is the <mask> of France.')\n"
        "print(type(m).__name__, len(out), out[0]['sequence'])\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    name, count, sequence = result.stdout.split()[:3]
    assert (name, count, sequence) == ("XLMRobertaForMaskedLM", "3", "Paris")


def test_export_refuses_a_mapping_that_changes_logits(fairseq_run, tmp_path, monkeypatch, caplog):
    checkpoint, _ = fairseq_run
    swapped = dict(key_map.LAYER_MODULES)
    value, output = "encoder.layer.{L}.attention.self.value", "encoder.layer.{L}.attention.output.dense"
    swapped[value], swapped[output] = swapped[output], swapped[value]
    monkeypatch.setattr(key_map, "LAYER_MODULES", swapped)
    assert cli.main(["hf", str(checkpoint), str(tmp_path / "out")]) == 2
    assert "logits differ" in caplog.text
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_dictionary_of_another_size(fairseq_run, tmp_path, caplog):
    checkpoint, data_bin = fairseq_run
    (tmp_path / "dict.txt").write_text((data_bin / "dict.txt").read_text() + "extra 1\n")
    assert cli.main(["hf", str(checkpoint), str(tmp_path / "out"), "--dict", str(tmp_path / "dict.txt"),
                     "--spm", str(data_bin / "sentencepiece.bpe.model")]) == 2
    assert "token embeddings but" in caplog.text and not (tmp_path / "out").exists()


def test_export_of_a_missing_checkpoint_is_a_clear_error(tmp_path, caplog):
    assert cli.main(["hf", str(tmp_path / "nope.pt"), str(tmp_path / "out")]) == 2
    assert "nope.pt does not exist" in caplog.text


def test_export_does_not_overwrite_without_flag(fairseq_run, exported_hf, caplog):
    checkpoint, _ = fairseq_run
    assert cli.main(["hf", str(checkpoint), str(exported_hf)]) == 2
    assert "already exists" in caplog.text


def test_fairseq_text_encoder_matches_the_hub_interface(fairseq_run):
    checkpoint, data_bin = fairseq_run
    hub = fairseq_hub(checkpoint, data_bin)
    ours = FairseqTextEncoder(load_dictionary(data_bin / "dict.txt"), spm_path=data_bin / "sentencepiece.bpe.model")
    assert all(ours.encode(t) == hub.encode(t).tolist() for t in DEFAULT_TEXTS)


def test_export_writes_a_model_card(fairseq_run, exported_hf):
    checkpoint, data_bin = fairseq_run
    card = (exported_hf / "README.md").read_text(encoding="utf-8")
    assert "masked language modelling (fairseq's masked_lm task)" in card
    assert "`checkpoint_last.pt` after 2 updates" in card and str(checkpoint.parent) not in card
    assert "| train (the epoch in progress at the checkpoint) | " in card
    assert f"fairseq's ids on {len(DEFAULT_TEXTS)} sentences" in card and "random ids" in card


def test_model_card_calls_the_valid_losses_the_last_validation_only_for_tasks_that_reset_them():
    """kmlm_reasoning/kmlm_knowledge start fairseq's valid meters afresh at every validation; a stock task's
    checkpoint holds their mean over several validations, and its card says so."""
    from kmlm_fairseq.export import model_card

    meter = {"sum": 24.0, "count": 2.0}
    training = {"num_updates": 10, "metrics": {"train": [(0, "loss", "AverageMeter", meter)],
                                               "valid": [(0, "loss", "AverageMeter", meter)]}}
    checks = {"sentences": 1, "tolerance": 1e-4, "max |Δlogit|": {"text": 1e-6}}

    def rows(task):
        card = model_card.render({"task": {"_name": task}}, training, "checkpoint_last.pt", "X", checks)
        return [line.split(" | ")[0] for line in card.splitlines() if line.startswith(("| train", "| valid"))]

    assert rows("kmlm_reasoning") == rows("kmlm_knowledge") == [
        "| train (the epoch in progress at the checkpoint)", "| valid (last validation)"]
    assert rows("masked_lm")[1] == "| valid (fairseq's meters: the mean of several validations, not the last one)"
