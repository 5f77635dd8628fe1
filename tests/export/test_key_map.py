"""The declarative key map converts both ways and refuses tensors it does not know."""
import pytest
import torch

from kmlm_fairseq.export.key_map import BERT, XLM_ROBERTA, fairseq_to_hf, hf_to_fairseq
from preprocess.core.errors import UserFacingError


def random_hf_state(key_map, layers=2, vocab=11, hidden=4, positions=9):
    g = torch.Generator().manual_seed(0)
    state = {}
    for hf, _ in key_map.direct_pairs(layers):
        state[hf] = torch.randn(hidden, hidden if hf.endswith("weight") and "LayerNorm" not in hf
                                and "layer_norm" not in hf else 1, generator=g).squeeze(-1)
    state[key_map.word_embeddings] = torch.randn(vocab, hidden, generator=g)
    state[key_map.output_weight] = state[key_map.word_embeddings]
    state[key_map.output_bias] = torch.randn(vocab, generator=g)
    for copy, original in key_map.tied_copies.items():
        state[copy] = state[original]
    state[key_map.position_embeddings] = torch.randn(positions, hidden, generator=g)
    state[key_map.token_type_embeddings] = torch.zeros(key_map.type_vocab_size, hidden)
    return state


@pytest.mark.parametrize("key_map", [XLM_ROBERTA, BERT], ids=["xlmr", "bert"])
def test_hf_fairseq_hf_is_identity_with_a_vocab_permutation(key_map):
    hf = random_hf_state(key_map)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(1))
    back = fairseq_to_hf(hf_to_fairseq(hf, key_map, 2, perm), key_map, 2, perm)
    assert back.keys() == hf.keys()
    assert all(torch.equal(back[k], hf[k]) for k in hf)


def test_bert_positions_move_by_two_rows_and_absorb_token_type_zero():
    hf = random_hf_state(BERT)
    hf[BERT.token_type_embeddings] = torch.ones(2, 4)
    fs = hf_to_fairseq(hf, BERT, 2, torch.arange(11))
    positions = fs["encoder.sentence_encoder.embed_positions.weight"]
    assert positions.shape[0] == hf[BERT.position_embeddings].shape[0] + 2
    assert torch.equal(positions[2:], hf[BERT.position_embeddings] + 1)


def test_unknown_tensor_is_refused():
    hf = random_hf_state(XLM_ROBERTA)
    hf["classifier.dense.weight"] = torch.zeros(2, 2)
    with pytest.raises(UserFacingError, match="classifier.dense.weight"):
        hf_to_fairseq(hf, XLM_ROBERTA, 2, torch.arange(11))


def test_missing_tensor_is_refused():
    fs = hf_to_fairseq(random_hf_state(XLM_ROBERTA), XLM_ROBERTA, 2, torch.arange(11))
    del fs["encoder.sentence_encoder.layers.1.fc2.bias"]
    with pytest.raises(UserFacingError, match="layers.1.fc2.bias is missing"):
        fairseq_to_hf(fs, XLM_ROBERTA, 2, torch.arange(11))


def test_bert_pooler_and_nsp_head_are_dropped_not_refused():
    hf = random_hf_state(BERT)
    hf["bert.pooler.dense.weight"] = torch.zeros(4, 4)
    hf["cls.seq_relationship.weight"] = torch.zeros(2, 4)
    fs = hf_to_fairseq(hf, BERT, 2, torch.arange(11))
    assert not any("pooler" in k or "seq_relationship" in k for k in fs)
