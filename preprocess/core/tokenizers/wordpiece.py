"""WordPiece tokenization (BERT, mBERT) for ``binarize`` and ``plain``: the fairseq ids of a model imported with
``kmlm-export fairseq``, behind the interface of ``preprocess.stages.spm.Tokenizer``.

Input: the directory ``kmlm-export fairseq BERT_DIR OUT`` writes: ``OUT/dict.txt`` (the HF vocabulary in HF id order,
BERT's special tokens left out: fairseq's ``<s> <pad> </s> <unk>`` take ids 0-3 and masked_lm adds ``<mask>``
last) and ``OUT/hf_tokenizer/`` (the Hugging Face fast tokenizer: ``tokenizer.json`` + ``tokenizer_config.json``).
Both are copied into DATA (``DATA/dict.txt``, ``DATA/hf_tokenizer/``).

Token ids. fairseq's own BERT pipeline is the HF tokenizer's ``tokenize`` (fairseq's ``bert`` BPE) and
``Dictionary.encode_line``; the HF id of a token maps to the fairseq id of the same string, the special tokens by
role (``[CLS]`` -> ``<s>``, ``[PAD]`` -> ``<pad>``, ``[SEP]`` -> ``</s>``, ``[UNK]`` -> ``<unk>``, ``[MASK]`` ->
``<mask>``), as kmlm_fairseq/export/tokenizer.py maps them. ``WordPieceTokenizer`` applies that map as one NumPy
lookup table HF id -> fairseq id to the ids of the ``tokenizers`` library's batch encoder.
Two deliberate differences from calling the HF tokenizer on raw text: special-token strings in the text (a label
"[SEP]") are tokenized as text, never as the control ids (sentencepiece does the same with "</s>"); and any
truncation or padding saved in ``tokenizer.json`` is switched off (a sample is never cut here).

Spans. BERT's pre-tokenizer splits at whitespace and punctuation and WordPiece marks continuations with "##", so a
mention encoded on its own gives the tokens it gets inside its sentence: there is no word-start marker to carry
(the leading space ``binarize`` adds for sentencepiece's "▁" changes nothing here).
"""
import contextlib
import json
import os
from pathlib import Path

import numpy as np

from preprocess.core.errors import UserFacingError
from preprocess.core.tokenizers.base import FairseqIdsTokenizer, append_eos, flatten
from preprocess.core.tokenizers.dictionary import BOS, EOS, MASK, PAD, UNK, FairseqDictionary

HF_TOKENIZER_DIR = "hf_tokenizer"
HF_TOKENIZER_FILE = "tokenizer.json"
HF_CONFIG_FILES = ("tokenizer_config.json", "special_tokens_map.json")
# HF special-token attribute -> the fairseq special it plays (kmlm_fairseq.export.tokenizer._role_to_fairseq)
ROLES = (("cls_token", BOS), ("bos_token", BOS), ("pad_token", PAD), ("sep_token", EOS), ("eos_token", EOS),
         ("unk_token", UNK), ("mask_token", MASK))


def is_wordpiece_dir(directory):
    return (Path(directory) / HF_TOKENIZER_FILE).is_file() and wordpiece_model_type(directory) == "WordPiece"


def wordpiece_model_type(directory):
    try:
        spec = json.loads((Path(directory) / HF_TOKENIZER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return spec.get("model", {}).get("type") if isinstance(spec, dict) else None


def special_token_roles(directory):
    """{HF special token string: fairseq special} from tokenizer_config.json (or special_tokens_map.json)."""
    for name in HF_CONFIG_FILES:
        path = Path(directory) / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise UserFacingError(f"{path}: not JSON: {err}") from err
        roles = {}
        for attribute, symbol in ROLES:
            token = config.get(attribute)
            token = token.get("content") if isinstance(token, dict) else token
            if token:
                roles.setdefault(token, symbol)
        if roles:
            return roles
    raise UserFacingError(f"{directory}: no {' or '.join(HF_CONFIG_FILES)} naming the special tokens ([CLS], [SEP], "
                          "[UNK], ...): use the hf_tokenizer/ that `kmlm-export fairseq` writes")


@contextlib.contextmanager
def tokenizers_parallelism(enabled):
    """The ``tokenizers`` library reads TOKENIZERS_PARALLELISM at every batch call: one thread unless asked."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if enabled else "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


class WordPieceTokenizer(FairseqIdsTokenizer):
    """A Hugging Face WordPiece tokenizer + a fairseq dictionary; picklable (workers rebuild it from the JSON)."""

    def __init__(self, tokenizer_dir, dict_path):
        self.model_path, self.dict_path = str(tokenizer_dir), str(dict_path)  # model_path: named as in spm.Tokenizer
        if not is_wordpiece_dir(tokenizer_dir):
            raise UserFacingError(f"{tokenizer_dir}/{HF_TOKENIZER_FILE}: not a Hugging Face WordPiece tokenizer "
                                  f"(model type {wordpiece_model_type(tokenizer_dir)!r})")
        self.tokenizer_json = (Path(tokenizer_dir) / HF_TOKENIZER_FILE).read_text(encoding="utf-8")
        self.roles = special_token_roles(tokenizer_dir)
        self.dictionary = FairseqDictionary.load(dict_path)
        self._build()

    def _build(self):
        from tokenizers import Tokenizer as HFTokenizer

        self.hf = HFTokenizer.from_str(self.tokenizer_json)
        self.hf.no_truncation()
        self.hf.no_padding()
        self.hf.encode_special_tokens = True
        vocab = self.hf.get_vocab(with_added_tokens=True)
        self.lookup = np.full(max(vocab.values()) + 1, self.dictionary.unk, dtype=np.int64)
        for token, hf_id in vocab.items():
            self.lookup[hf_id] = self.fairseq_index(self.roles.get(token, token))
        self.unmapped_pieces = sum(1 for token, hf_id in vocab.items()
                                   if token not in self.roles and self.lookup[hf_id] == self.dictionary.unk)

    def fairseq_index(self, symbol):
        return self.dictionary.mask if symbol == MASK else self.dictionary.index(symbol)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("hf", "lookup")}

    def _hf_ids(self, texts, threads=1):
        texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
        with tokenizers_parallelism(threads > 1):
            encodings = self.hf.encode_batch_fast(texts, add_special_tokens=False)
        return flatten([e.ids for e in encodings])

    def encode(self, texts):
        """Texts -> (flat fairseq ids int64, tokens per text); no bos/eos."""
        ids, lengths = self._hf_ids(texts)
        return self.lookup[ids], lengths

    def encode_lines(self, texts, dtype=np.int64, threads=1):
        """Texts (str or UTF-8 bytes) -> (flat fairseq ids of ``dtype``, each text's ids followed by ``</s>``; tokens
        per text, ``</s>`` included). ``threads``: the tokenizers library's own threads (the ids do not depend on
        them)."""
        ids, lengths = self._hf_ids(texts, threads)
        return append_eos(self.lookup[ids], lengths, self.eos, dtype)

    def encode_pieces(self, texts, threads=1):
        """Texts -> lists of fairseq symbols (``[UNK]`` written as ``<unk>``), for fairseq-preprocess."""
        ids, lengths = self._hf_ids(texts, threads)
        symbols = self.symbols(self.lookup[ids])
        ends = np.cumsum(lengths)
        return [symbols[end - n:end] for end, n in zip(ends.tolist(), lengths.tolist())]
