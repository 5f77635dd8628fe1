"""A sentencepiece model + a fairseq dict.txt -> fairseq ids (XLM-R tokenization)."""
from pathlib import Path

import numpy as np

from preprocess.core.errors import UserFacingError
from preprocess.core.tokenizers.base import FairseqIdsTokenizer, append_eos, flatten
from preprocess.core.tokenizers.dictionary import UNK, FairseqDictionary

SPM_FILE = "sentencepiece.bpe.model"


class Tokenizer(FairseqIdsTokenizer):
    """A sentencepiece model + a fairseq dictionary; picklable (workers rebuild the processor from the bytes)."""

    def __init__(self, model_path, dict_path):
        self.model_path, self.dict_path = str(model_path), str(dict_path)
        self.model_proto = Path(model_path).read_bytes()
        self.dictionary = FairseqDictionary.load(dict_path)
        self._build()

    def _build(self):
        import sentencepiece

        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
        except RuntimeError as err:
            raise UserFacingError(f"{self.model_path} is not a sentencepiece model: {err}") from err
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.lookup = np.array([self.dictionary.index(p) for p in pieces], dtype=np.int64)
        self._lookups = {}
        self.unmapped_pieces = sum(1 for i, p in enumerate(pieces) if self.lookup[i] == self.dictionary.unk and p != UNK
                                   and not self.sp.is_control(i) and not self.sp.is_unknown(i))
        self._encode_buffers = self._buffer_encoder()

    def _buffer_encoder(self):
        """sentencepiece's batch encoder into one C++ int32 buffer per text, with ``</s>`` appended to each: the
        private method behind ``encode(out_type="numpy")``, which also builds one NumPy array per text (~20% more
        time on bench/binarize.py's text). None when this sentencepiece lacks it, answers differently on a probe,
        or the model has no control ``</s>`` to mark the ends of the texts with."""
        eos = self.sp.eos_id()
        method = getattr(getattr(self.sp, "_processor", None), "_EncodeAsBufferBatch", None)
        if method is None or eos < 0 or not self.sp.is_control(eos):
            return None

        def encode(texts, threads):
            return method(texts, threads, None, False, 0, 0.0, False, True, False)

        probe = ["Ein Beispiel, 例えば.", ""]
        try:
            flat = np.frombuffer(b"".join(encode([text.encode() for text in probe], 1)), dtype=np.int32)
        except (TypeError, ValueError, RuntimeError):
            return None
        expected = self.sp.encode(probe, add_eos=True)
        return encode if flat.tolist() == [i for ids in expected for i in ids] else None

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("sp", "lookup", "_lookups", "_encode_buffers")}

    def encode(self, texts):
        """Texts -> (flat fairseq ids int64, tokens per text); no bos/eos."""
        ids, lengths = flatten(self.sp.encode(list(texts), num_threads=1))
        return self.lookup[ids], lengths

    def encode_lines(self, texts, dtype=np.int64, threads=1):
        """Texts (str or UTF-8 bytes) -> (flat fairseq ids of ``dtype``, each text's ids followed by ``</s>``; tokens
        per text, ``</s>`` included): the samples fairseq-preprocess makes of lines, without a Python object per
        token. ``threads``: sentencepiece's own threads (the ids do not depend on them)."""
        texts = texts if isinstance(texts, list) else list(texts)
        if self._encode_buffers is None:
            ids, lengths = flatten(self.sp.encode(texts, num_threads=threads))
            return append_eos(self.lookup[ids], lengths, self.eos, dtype)
        flat = np.frombuffer(b"".join(self._encode_buffers(texts, threads)), dtype=np.int32)
        ends = np.flatnonzero(flat == self.sp.eos_id())
        sizes = np.diff(ends, prepend=-1)
        return self._lookup_as(dtype).take(flat), sizes

    def _lookup_as(self, dtype):
        dtype = np.dtype(dtype)
        if dtype not in self._lookups:
            table = self.lookup.astype(dtype)
            if self.sp.eos_id() >= 0:
                table[self.sp.eos_id()] = self.eos
            self._lookups[dtype] = table
        return self._lookups[dtype]

    def encode_pieces(self, texts, threads=1):
        """Texts -> lists of sentencepiece pieces (what ``spm_encode --output_format=piece`` writes)."""
        return self.sp.encode(list(texts), out_type=str, num_threads=threads)
