"""Declarative weight-name maps between fairseq's RoBERTa and Hugging Face's XLM-R / BERT masked LMs.

One table per architecture lists ``(Hugging Face name, fairseq name)`` pairs with a ``{L}`` layer placeholder;
the same table converts in both directions. A conversion raises on any source tensor the table does not consume
(unexpected) and on any target tensor it does not produce (missing); the few tensors that have no counterpart
on the other side are listed explicitly with the reason.

Three tensors are not copied one to one:

- vocabulary-indexed tensors (word embeddings, output projection, output bias) are permuted row-wise by
  ``vocab_perm[hf_id] = fairseq_id`` (identity for XLM-R; BERT keeps ``[CLS] [PAD] [SEP] [UNK]`` elsewhere);
- position embeddings: fairseq's learned positions start at ``padding_idx + 1 = 2``, exactly like HF RoBERTa's
  (same rows); BERT's start at 0, so its rows are fairseq's rows from 2 on (rows 0 and 1 are never read);
- token-type embeddings: fairseq has none. Row 0 is added to every position embedding on the way to fairseq
  (exact for inputs of token type 0); on the way back the token-type rows are zeros.
"""
from dataclasses import dataclass, field

import torch

from preprocess.core.errors import UserFacingError

FAIRSEQ_ENCODER = "encoder.sentence_encoder."

# Modules (each has .weight and .bias) inside one transformer layer: HF name -> fairseq name.
LAYER_MODULES = {
    "encoder.layer.{L}.attention.self.query": "layers.{L}.self_attn.q_proj",
    "encoder.layer.{L}.attention.self.key": "layers.{L}.self_attn.k_proj",
    "encoder.layer.{L}.attention.self.value": "layers.{L}.self_attn.v_proj",
    "encoder.layer.{L}.attention.output.dense": "layers.{L}.self_attn.out_proj",
    "encoder.layer.{L}.attention.output.LayerNorm": "layers.{L}.self_attn_layer_norm",
    "encoder.layer.{L}.intermediate.dense": "layers.{L}.fc1",
    "encoder.layer.{L}.output.dense": "layers.{L}.fc2",
    "encoder.layer.{L}.output.LayerNorm": "layers.{L}.final_layer_norm",
}


@dataclass(frozen=True)
class KeyMap:
    """How one Hugging Face masked-LM class stores fairseq RoBERTa's tensors."""

    hf_class: str
    prefix: str  # the HF encoder's attribute name ("roberta", "bert")
    lm_head: dict  # HF LM-head module -> fairseq LM-head module (weight + bias each)
    word_embeddings: str
    output_weight: str
    output_bias: str
    tied_copies: dict  # HF name -> the HF name it is tied to (same values; written, never read)
    position_offset: int  # fairseq position row of the HF position row 0
    type_vocab_size: int
    dropped: dict = field(default_factory=dict)  # HF name prefix -> why fairseq cannot hold it

    @property
    def position_embeddings(self):
        return f"{self.prefix}.embeddings.position_embeddings.weight"

    @property
    def token_type_embeddings(self):
        return f"{self.prefix}.embeddings.token_type_embeddings.weight"

    def direct_pairs(self, num_layers):
        """``(hf_name, fairseq_name)`` of every tensor that is copied unchanged."""
        modules = {f"{self.prefix}.embeddings.LayerNorm": FAIRSEQ_ENCODER + "layernorm_embedding"}
        for layer in range(num_layers):
            for hf, fs in LAYER_MODULES.items():
                modules[f"{self.prefix}.{hf}".format(L=layer)] = FAIRSEQ_ENCODER + fs.format(L=layer)
        modules.update(self.lm_head)
        return [(f"{hf}.{p}", f"{fs}.{p}") for hf, fs in modules.items() for p in ("weight", "bias")]

    def vocab_pairs(self):
        return [
            (self.word_embeddings, FAIRSEQ_ENCODER + "embed_tokens.weight"),
            (self.output_weight, "encoder.lm_head.weight"),
            (self.output_bias, "encoder.lm_head.bias"),
        ]


XLM_ROBERTA = KeyMap(
    hf_class="XLMRobertaForMaskedLM",
    prefix="roberta",
    lm_head={"lm_head.dense": "encoder.lm_head.dense", "lm_head.layer_norm": "encoder.lm_head.layer_norm"},
    word_embeddings="roberta.embeddings.word_embeddings.weight",
    output_weight="lm_head.decoder.weight",
    output_bias="lm_head.bias",
    tied_copies={"lm_head.decoder.bias": "lm_head.bias"},
    position_offset=0,
    type_vocab_size=1,
)

BERT = KeyMap(
    hf_class="BertForMaskedLM",
    prefix="bert",
    lm_head={
        "cls.predictions.transform.dense": "encoder.lm_head.dense",
        "cls.predictions.transform.LayerNorm": "encoder.lm_head.layer_norm",
    },
    word_embeddings="bert.embeddings.word_embeddings.weight",
    output_weight="cls.predictions.decoder.weight",
    output_bias="cls.predictions.bias",
    tied_copies={"cls.predictions.decoder.bias": "cls.predictions.bias"},
    position_offset=2,
    type_vocab_size=2,
    dropped={
        "bert.pooler.": "BERT's pooler (used by the NSP head and by some classifiers) has no fairseq counterpart",
        "cls.seq_relationship.": "BERT's next-sentence-prediction head has no fairseq counterpart",
    },
)

KEY_MAPS = {"xlm-roberta": XLM_ROBERTA, "bert": BERT}

# fairseq tensors that the fairseq model makes itself (a format version buffer): never read, never exported.
FAIRSEQ_OWN_BUFFERS = (FAIRSEQ_ENCODER + "version",)


def _check_consumed(source, consumed, what, ignored_prefixes=()):
    unexpected = sorted(k for k in source if k not in consumed and not k.startswith(tuple(ignored_prefixes)))
    if unexpected:
        raise UserFacingError(
            f"{what}: {len(unexpected)} tensor(s) the key map does not know: {', '.join(unexpected[:8])}"
            + (" ..." if len(unexpected) > 8 else "")
            + " (a different architecture or a fine-tuned head? nothing was written)"
        )


def _require(source, name, what):
    if name not in source:
        raise UserFacingError(f"{what}: tensor {name} is missing (nothing was written)")
    return source[name]


def fairseq_to_hf(fs_state, key_map, num_layers, vocab_perm):
    """A fairseq RoBERTa state dict -> the Hugging Face state dict of ``key_map.hf_class``."""
    what = "fairseq checkpoint"
    hf, consumed = {}, set(FAIRSEQ_OWN_BUFFERS)
    for hf_name, fs_name in key_map.direct_pairs(num_layers):
        hf[hf_name] = _require(fs_state, fs_name, what)
        consumed.add(fs_name)
    for hf_name, fs_name in key_map.vocab_pairs():
        hf[hf_name] = _require(fs_state, fs_name, what)[vocab_perm]
        consumed.add(fs_name)
    positions = _require(fs_state, FAIRSEQ_ENCODER + "embed_positions.weight", what)
    consumed.add(FAIRSEQ_ENCODER + "embed_positions.weight")
    hf[key_map.position_embeddings] = positions[key_map.position_offset:]
    hf[key_map.token_type_embeddings] = positions.new_zeros(key_map.type_vocab_size, positions.shape[1])
    for copy, original in key_map.tied_copies.items():
        hf[copy] = hf[original]
    _check_consumed(fs_state, consumed, what)
    return {name: tensor.detach().clone().contiguous() for name, tensor in hf.items()}


def hf_to_fairseq(hf_state, key_map, num_layers, vocab_perm):
    """A Hugging Face state dict of ``key_map.hf_class`` -> a fairseq RoBERTa state dict (without buffers)."""
    what = f"Hugging Face {key_map.hf_class}"
    fs, consumed = {}, set()
    for hf_name, fs_name in key_map.direct_pairs(num_layers):
        fs[fs_name] = _require(hf_state, hf_name, what)
        consumed.add(hf_name)
    inverse = torch.empty_like(vocab_perm)
    inverse[vocab_perm] = torch.arange(len(vocab_perm))
    for hf_name, fs_name in key_map.vocab_pairs():
        fs[fs_name] = _require(hf_state, hf_name, what)[inverse]
        consumed.add(hf_name)
    for copy, original in key_map.tied_copies.items():
        if copy in hf_state and not torch.equal(hf_state[copy], hf_state[original]):
            raise UserFacingError(f"{what}: {copy} differs from {original}; fairseq has one output bias")
        consumed.add(copy)
    positions = _require(hf_state, key_map.position_embeddings, what)
    token_types = _require(hf_state, key_map.token_type_embeddings, what)
    consumed.update((key_map.position_embeddings, key_map.token_type_embeddings))
    if torch.any(token_types[0] != 0):
        positions = positions + token_types[0]  # exact for token type 0, the only type fairseq's RoBERTa feeds
    padding_rows = positions.new_zeros(key_map.position_offset, positions.shape[1])
    fs[FAIRSEQ_ENCODER + "embed_positions.weight"] = torch.cat([padding_rows, positions])
    _check_consumed(hf_state, consumed, what, ignored_prefixes=key_map.dropped)
    return {name: tensor.detach().clone().contiguous() for name, tensor in fs.items()}


def dropped_tensors(hf_state, key_map):
    """HF tensors the conversion leaves behind, with the reason (for the log and the README)."""
    return {name: reason for name in hf_state for prefix, reason in key_map.dropped.items() if name.startswith(prefix)}
