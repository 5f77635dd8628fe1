"""Tokenizers on both sides of the bridge, and the token-id correspondence between them.

fairseq side (what training saw): ``<s>`` + ``Dictionary.encode_line(SentencepieceBPE.encode(text))`` + ``</s>``,
with the dictionary loaded from ``dict.txt`` and ``<mask>`` appended after it (fairseq's masked_lm task does
exactly that). Ids: ``<s>=0 <pad>=1 </s>=2 <unk>=3``, then dict.txt's lines in order, then ``<mask>``.

Hugging Face side: a ``tokenizers`` model whose vocabulary is *in fairseq's id order*, so its ids equal fairseq's
for any dict.txt order (``XLMRobertaTokenizer``'s fixed offset of 1 only expresses XLM-R's own dict.txt, whose
lines are the sentencepiece pieces in sentencepiece order). A sentencepiece unigram model becomes a ``Unigram``
model with the same piece scores; a sentencepiece BPE model becomes a ``BPE`` model whose merges are ranked by the
merged piece's score (sentencepiece's rule). Normalisation is sentencepiece's precompiled character map.

For a tokenizer that is already a Hugging Face tokenizer (BERT's WordPiece, or an imported XLM-R), the two id
spaces are related by token string, with the special tokens matched by role (``[CLS]`` <-> ``<s>`` ...):
``vocab_perm[hf_id] = fairseq_id``.
"""
import logging

import torch
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE, Unigram

from kmlm_fairseq.export.spm_proto import read_spm_spec
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)

MASK = "<mask>"
BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"


def load_dictionary(path):
    """dict.txt the way fairseq's masked_lm task loads it: specials 0..3, the file's lines, then ``<mask>``."""
    from fairseq.data import Dictionary

    try:
        dictionary = Dictionary.load(str(path))
    except (OSError, ValueError, RuntimeError) as err:
        raise UserFacingError(f"cannot read the fairseq dictionary {path}: {err}") from err
    dictionary.add_symbol(MASK)
    return dictionary


def write_dictionary(symbols, path):
    """dict.txt lines (``symbol 1``) for ``symbols`` in id order, without fairseq's four specials and ``<mask>``."""
    lines = [f"{symbol} 1\n" for symbol in symbols if symbol not in (BOS, PAD, EOS, UNK, MASK)]
    for symbol in symbols:
        if not symbol or any(c.isspace() for c in symbol):
            raise UserFacingError(f"token {symbol!r} contains whitespace: a fairseq dict.txt cannot hold it")
    path.write_text("".join(lines), encoding="utf-8")


def _spm_vocab_check(spec, dictionary, spm_path, dict_path):
    if spec.model_type not in ("unigram", "bpe"):
        raise UserFacingError(f"{spm_path}: sentencepiece model type {spec.model_type!r} is not supported "
                              "(unigram and bpe are)")
    if spec.byte_fallback:
        raise UserFacingError(f"{spm_path}: sentencepiece byte fallback is not supported")
    if not (spec.add_dummy_prefix and spec.remove_extra_whitespaces and spec.escape_whitespaces):
        raise UserFacingError(f"{spm_path}: only the default whitespace handling of sentencepiece is supported "
                              "(add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces)")
    missing = [p for p, _, kind in spec.pieces if kind in ("normal", "user_defined") and p not in dictionary.indices]
    if missing:
        raise UserFacingError(
            f"{len(missing)} sentencepiece piece(s) of {spm_path} are not in {dict_path} (e.g. {missing[:5]}): fairseq "
            "segments with them and then maps them to <unk>, which no Hugging Face tokenizer reproduces; "
            "use the dict.txt written for this sentencepiece model"
        )


def _spm_model(spec, dictionary):
    scores = {p: score for p, score, kind in spec.pieces if kind in ("normal", "user_defined")}
    if spec.model_type == "unigram":
        # Symbols sentencepiece does not know (fairseq padding like madeupword0000) get sentencepiece's lowest
        # score: lower would change the penalty of unknown characters, which both libraries derive from it.
        floor = min(scores.values(), default=0.0)
        vocab = [(s, scores.get(s, 0.0 if i < dictionary.nspecial or s == MASK else floor))
                 for i, s in enumerate(dictionary.symbols)]
        return Unigram(vocab, unk_id=dictionary.unk(), byte_fallback=False)
    from transformers.convert_slow_tokenizer import generate_merges

    spm_ids = {p: i for i, (p, _, _) in enumerate(spec.pieces)}
    merges = generate_merges(spm_ids, [(p, s) for p, s in scores.items()])
    vocab = {s: i for i, s in enumerate(dictionary.symbols)}
    return BPE(vocab=vocab, merges=merges, unk_token=UNK, fuse_unk=True, byte_fallback=False)


def build_spm_tokenizer(spm_path, dictionary, dict_path, model_max_length):
    """An HF fast tokenizer that gives fairseq's ids for the sentencepiece model + fairseq dictionary."""
    from transformers import PreTrainedTokenizerFast

    spec = read_spm_spec(spm_path)
    _spm_vocab_check(spec, dictionary, spm_path, dict_path)
    tokenizer = Tokenizer(_spm_model(spec, dictionary))
    if spec.precompiled_charsmap:
        tokenizer.normalizer = normalizers.Precompiled(spec.precompiled_charsmap)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} {EOS} $B {EOS}",
        special_tokens=[(BOS, dictionary.bos()), (EOS, dictionary.eos())],
    )
    user_defined = [p for p, _, kind in spec.pieces if kind == "user_defined" and p != MASK]
    tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in user_defined])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, sep_token=EOS, cls_token=BOS, unk_token=UNK,
        pad_token=PAD, mask_token=AddedToken(MASK, lstrip=True, rstrip=False, special=True),
        model_max_length=model_max_length, clean_up_tokenization_spaces=False,
    )
    _check_special_ids(hf, dictionary)
    return hf


def _check_special_ids(tokenizer, dictionary):
    expected = {BOS: dictionary.bos(), PAD: dictionary.pad(), EOS: dictionary.eos(), UNK: dictionary.unk(),
                MASK: dictionary.index(MASK)}
    got = {token: tokenizer.convert_tokens_to_ids(token) for token in expected}
    if got != expected:
        raise UserFacingError(f"special token ids of the Hugging Face tokenizer {got} differ from fairseq's {expected}")


def _role_to_fairseq(tokenizer):
    """HF special token string -> the fairseq special it plays."""
    roles = {}
    for attribute, symbol in (("cls_token", BOS), ("bos_token", BOS), ("pad_token", PAD), ("sep_token", EOS),
                              ("eos_token", EOS), ("unk_token", UNK), ("mask_token", MASK)):
        token = getattr(tokenizer, attribute, None)
        if token is not None:
            roles.setdefault(str(token), symbol)
    return roles


def fairseq_symbols_for(tokenizer):
    """The fairseq symbol of every HF id, in HF id order (special tokens renamed to fairseq's)."""
    vocab = tokenizer.get_vocab()
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise UserFacingError("the Hugging Face tokenizer's ids are not contiguous from 0")
    roles = _role_to_fairseq(tokenizer)
    return [roles.get(token, token) for token, _ in by_id]


def vocab_permutation(tokenizer, dictionary):
    """``perm[hf_id] = fairseq_id`` (a bijection), or a clear error naming the tokens that do not match."""
    symbols = fairseq_symbols_for(tokenizer)
    missing = [s for s in symbols if s not in dictionary.indices]
    if missing or len(symbols) != len(dictionary):
        raise UserFacingError(
            f"the Hugging Face tokenizer ({len(symbols)} tokens) and the fairseq dictionary ({len(dictionary)} "
            f"symbols incl. <mask>) do not hold the same tokens; not in the dictionary: {missing[:8]}"
        )
    perm = torch.tensor([dictionary.index(s) for s in symbols], dtype=torch.long)
    if len(set(perm.tolist())) != len(perm):
        raise UserFacingError("two Hugging Face tokens map to the same fairseq symbol")
    return perm


class FairseqTextEncoder:
    """fairseq's own text -> ids pipeline (what ``RobertaHubInterface.encode`` does)."""

    def __init__(self, dictionary, spm_path=None, hf_tokenizer=None):
        self.dictionary = dictionary
        if spm_path is not None:
            from fairseq.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

            self._bpe = SentencepieceBPE(SentencepieceConfig(sentencepiece_model=str(spm_path))).encode
        else:  # fairseq's `bert` BPE is exactly the HF tokenizer's tokenize()
            self._bpe = lambda text: " ".join(hf_tokenizer.tokenize(text))

    def encode(self, text):
        ids = self.dictionary.encode_line(self._bpe(text), append_eos=False, add_if_not_exist=False).tolist()
        return [self.dictionary.bos()] + ids + [self.dictionary.eos()]


def check_same_ids(texts, fairseq_encoder, hf_tokenizer, vocab_perm):
    """Raise unless the HF tokenizer gives fairseq's ids (through ``vocab_perm``) on every text (untruncated)."""
    for text in texts:
        fairseq_ids = fairseq_encoder.encode(text)
        hf_ids = hf_tokenizer(text, truncation=False, verbose=False)["input_ids"]
        mapped = vocab_perm[torch.tensor(hf_ids, dtype=torch.long)].tolist()
        if mapped != fairseq_ids:
            raise UserFacingError(
                f"the Hugging Face tokenizer disagrees with fairseq on {text!r}:\n  fairseq {fairseq_ids}\n"
                f"  HF      {mapped} (in fairseq ids)\nnothing was written"
            )
    logger.info("tokenizer check: %d texts give identical ids in fairseq and Hugging Face", len(texts))
