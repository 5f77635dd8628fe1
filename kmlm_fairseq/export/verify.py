"""Both models must compute the same function: compare their masked-LM logits before anything is saved.

Inputs: random token ids (a padded batch of several lengths, specials excluded) and real text tokenized by each
side's own tokenizer. Logits are compared at non-padding positions, in fairseq's id order; the largest absolute
difference must stay under the tolerance (1e-4 by default; float32 on CPU usually gives ~1e-6).
"""
import logging

import torch

from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)

# Real text in the paper's ten languages (and a few characters a small vocabulary will not know).
DEFAULT_TEXTS = (
    "Paris is the capital and most populous city of France.",
    "Hà Nội là thủ đô của Việt Nam.",
    "Amsterdam is de hoofdstad van Nederland.",
    "Berlin ist die Hauptstadt der Bundesrepublik Deutschland.",
    "Marie Curie est née à Varsovie en 1867.",
    "Roma è la capitale d'Italia.",
    "Madrid es la capital de España.",
    "東京は日本の首都です。",
    "서울은 대한민국의 수도이다.",
    "北京是中华人民共和国的首都。",
    "the cat sat on the mat  ,  twice ☃",
)


def _fairseq_logits(model, tokens):
    with torch.no_grad():
        return model(tokens)[0]


def _hf_logits(model, tokens, pad_id):
    with torch.no_grad():
        return model(input_ids=tokens, attention_mask=(tokens != pad_id).long()).logits


def random_batch(vocab_size, num_specials, pad_id, max_len, seed=0, lengths=(1, 3, 7, 12)):
    """A right-padded batch of random non-special ids, one row per length (clipped to ``max_len``)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = sorted({min(n, max_len) for n in lengths} | {max_len})
    batch = torch.full((len(lengths), max(lengths)), pad_id, dtype=torch.long)
    for row, n in enumerate(lengths):
        batch[row, :n] = torch.randint(num_specials, vocab_size, (n,), generator=generator)
    return batch


def pad_batch(sequences, pad_id):
    batch = torch.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=torch.long)
    for row, ids in enumerate(sequences):
        batch[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return batch


def max_logit_difference(fairseq_model, hf_model, fairseq_tokens, vocab_perm, pad_id):
    """Max |Δlogit| at non-pad positions; HF ids and logit columns are mapped to fairseq's through vocab_perm."""
    inverse = torch.empty_like(vocab_perm)
    inverse[vocab_perm] = torch.arange(len(vocab_perm))
    hf_tokens = inverse[fairseq_tokens]
    fairseq_out = _fairseq_logits(fairseq_model, fairseq_tokens)
    hf_out = _hf_logits(hf_model, hf_tokens, inverse[pad_id].item())[..., inverse]
    keep = fairseq_tokens != pad_id
    return (fairseq_out[keep] - hf_out[keep]).abs().max().item()


def check_logits(fairseq_model, hf_model, vocab_perm, dictionary, text_ids, max_len, tolerance):
    """Raise unless both models agree within ``tolerance`` on random ids and on ``text_ids`` (fairseq ids)."""
    pad = dictionary.pad()
    random_ids = random_batch(len(dictionary), dictionary.nspecial, pad, max_len)
    checks = {"random ids": random_ids}
    if text_ids:
        checks["real text"] = pad_batch([ids[:max_len] for ids in text_ids], pad)
    differences = {}
    for name, tokens in checks.items():
        differences[name] = max_logit_difference(fairseq_model, hf_model, tokens, vocab_perm, pad)
        if not differences[name] <= tolerance:
            raise UserFacingError(
                f"logits differ between fairseq and Hugging Face on {name}: max |Δ| = {differences[name]:.3g} "
                f"> {tolerance:g}; nothing was written"
            )
    logger.info("logit check: max |Δ| %s (tolerance %g)",
                ", ".join(f"{name} {value:.2e}" for name, value in differences.items()), tolerance)
    return differences
