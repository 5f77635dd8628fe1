"""``kmlm-preprocess spm``: a small sentencepiece model + matching fairseq ``dict.txt`` for demos and tests; and the
tokenizer that ``binarize`` and ``plain`` use, giving exactly the token ids of fairseq's XLM-R (or of an imported
BERT, through preprocess/core/tokenizers/wordpiece.py, which has the same interface).

Token ids. fairseq's XLM-R encodes text with ``SentencepieceBPE.encode`` (sentencepiece pieces joined by spaces)
and ``Dictionary.encode_line`` (each piece -> its index in ``dict.txt``, an unknown piece -> ``<unk>``), where the
dictionary holds ``<s> <pad> </s> <unk>`` (ids 0-3) before the lines of ``dict.txt``, and the masked_lm task adds
``<mask>`` after them (``Dictionary.add_symbol("<mask>")``). ``Tokenizer`` computes the same ids as one lookup
table sentencepiece id -> fairseq id applied with NumPy (tests/preprocess/test_spm.py checks it against fairseq's
own pipeline).

Where the tokenizer comes from (the files are copied to ``DATA/sentencepiece.bpe.model`` and ``DATA/dict.txt``):
  ``--tokenizer DIR``         the XLM-R release directory (``xlmr.base``/``xlmr.large``: ``sentencepiece.bpe.model`` +
                              ``dict.txt``), or a Hugging Face XLM-R tokenizer directory (``sentencepiece.bpe.model``
                              without ``dict.txt``: the dictionary then follows HF's ``XLMRobertaTokenizer``, fairseq id
                              = sentencepiece id + 1 for ids >= 3, which is XLM-R's ``dict.txt``). A directory with only
                              ``tokenizer.json`` (an XLM-R fast tokenizer) is unsupported: no sentencepiece model.
                              Or the directory ``kmlm-export fairseq`` writes for a BERT model (``dict.txt`` +
                              ``hf_tokenizer/``, no sentencepiece model): WordPiece, preprocess/core/tokenizers/wordpiece.py; copied to
                              ``DATA/dict.txt`` + ``DATA/hf_tokenizer/``.
  ``--spm-model F --dict F``  the two files named explicitly.
  neither                     ``DATA``'s own files: ``sentencepiece.bpe.model`` + ``dict.txt`` (e.g. from
                              ``kmlm-preprocess spm``), else ``hf_tokenizer/`` + ``dict.txt``.
Installing one kind of tokenizer removes the other kind's files from ``DATA`` (with a warning), so ``DATA`` names
the tokenizer its data was made with.

Training (``kmlm-preprocess spm -o DATA``). Input: knowledge sentences and reasoning samples (``--sentences``,
``--reasoning``: Parquet files or directories holding ``sentences.parquet`` / ``reasoning.parquet``, as the stages
``sentences`` and ``reasoning`` write them) and plain text files (``--plain [LANG=]FILE``, one sample per line,
gz/bz2 allowed). A sample's text is its mentions joined by spaces with `` .`` closing each sentence (the link
``<mask>`` is not text); at most ``--max-samples-per-input`` are read from each input (the first lines of a text
file; the first rows of each row group alike of a Parquet file). Output: ``DATA/sentencepiece.bpe.model`` (ids 0-2
= ``<unk> <s> </s>`` as in XLM-R's model) and ``DATA/dict.txt`` in XLM-R's layout: every other piece in piece-id
order with its count in the training text, so fairseq id = sentencepiece id + 1.
"""
import io
import itertools
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from preprocess.core import text_blocks
from preprocess.core.common import UserFacingError, atomic_path, write_text

logger = logging.getLogger("kmlm-preprocess spm")

SPM_FILE = "sentencepiece.bpe.model"
DICT_FILE = "dict.txt"
SENTENCES_FILE, REASONING_FILE = "sentences.parquet", "reasoning.parquet"
BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"
MASK = "<mask>"
SENTENCE_END = " ."  # closes each rendered sentence `h <mask> r <mask> t .`


# --- The fairseq dictionary -----------------------------------------------------------------------------------
class FairseqDictionary:
    """``fairseq.data.Dictionary.load`` without importing fairseq (torch): the same symbols at the same indices."""

    def __init__(self):
        self.symbols, self.indices = [], {}
        for symbol in (BOS, PAD, EOS, UNK):
            self._add(symbol)
        self.bos, self.pad, self.eos, self.unk = range(4)

    def _add(self, symbol):
        self.indices[symbol] = len(self.symbols)
        self.symbols.append(symbol)

    @classmethod
    def load(cls, path):
        """Read ``dict.txt`` lines ``<symbol> <count> [#fairseq:overwrite]`` as ``Dictionary.add_from_file``."""
        dictionary = cls()
        with open(path, encoding="utf-8") as f:  # text mode: the same line splitting as fairseq
            lines = f.readlines()
        for number, line in enumerate(lines, 1):
            fields = line.rstrip().rsplit(" ", 1)
            overwrite = len(fields) == 2 and fields[1] == "#fairseq:overwrite"
            if overwrite:
                fields = fields[0].rsplit(" ", 1)
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise UserFacingError(f"{path}:{number}: expected '<symbol> <count> [flags]', got {line.rstrip()!r}")
            symbol = fields[0]
            if symbol in dictionary.indices and not overwrite:
                raise UserFacingError(f"{path}:{number}: duplicate symbol {symbol!r} (fairseq refuses it too)")
            dictionary._add(symbol)
        return dictionary

    def __len__(self):
        return len(self.symbols)

    def index(self, symbol):
        return self.indices.get(symbol, self.unk)

    @property
    def mask(self):
        """The id masked_lm's ``add_symbol("<mask>")`` returns: past the end, unless dict.txt already has it."""
        return self.indices.get(MASK, len(self.symbols))


# --- The tokenizer --------------------------------------------------------------------------------------------
def flatten(lists, dtype=np.int64):
    """list of lists of ints -> (flat array, lengths)."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = np.fromiter(itertools.chain.from_iterable(lists), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def append_eos(ids, lengths, eos, dtype):
    """Flat ids + tokens per text -> (flat ids with ``eos`` after each text's, as ``dtype``; sizes with it)."""
    sizes = lengths + 1
    tokens = np.full(int(sizes.sum()), eos, dtype=dtype)
    tokens[np.arange(len(ids)) + np.repeat(np.arange(len(lengths)), lengths)] = ids
    return tokens, sizes


class FairseqIdsTokenizer:
    """What every tokenizer of binarize/plain shares: a fairseq dictionary and its special ids; picklable, a worker
    rebuilds the unpicklable part (``_build``) from the state."""

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._build()

    @property
    def bos(self):
        return self.dictionary.bos

    @property
    def eos(self):
        return self.dictionary.eos

    @property
    def mask(self):
        return self.dictionary.mask

    def __len__(self):
        """The dictionary size fairseq-preprocess sees (without ``<mask>``)."""
        return len(self.dictionary)

    def symbols(self, ids):
        return [self.dictionary.symbols[i] if i < len(self.dictionary) else MASK for i in ids]


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



# --- Finding and installing the tokenizer files ---------------------------------------------------------------
def add_tokenizer_arguments(parser):
    group = parser.add_argument_group("tokenizer (default: DATA/sentencepiece.bpe.model + DATA/dict.txt, else "
                                      "DATA/hf_tokenizer/ + DATA/dict.txt)")
    group.add_argument("--tokenizer", type=Path, metavar="DIR",
                       help="XLM-R release dir (sentencepiece.bpe.model + dict.txt), Hugging Face XLM-R tokenizer "
                            "dir (sentencepiece.bpe.model; dict.txt derived as XLMRobertaTokenizer does), or the "
                            "`kmlm-export fairseq` output of a BERT model (dict.txt + hf_tokenizer/: WordPiece)")
    group.add_argument("--spm-model", type=Path, metavar="FILE", help="sentencepiece model (with --dict)")
    group.add_argument("--dict", type=Path, metavar="FILE", help="fairseq dict.txt matching --spm-model")


def find_spm_model(directory):
    """The sentencepiece model of a tokenizer directory, or a clear error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserFacingError(f"--tokenizer {directory}: not a directory")
    if (directory / SPM_FILE).is_file():
        return directory / SPM_FILE
    models = sorted(directory.glob("*.model"))
    if len(models) == 1:
        return models[0]
    if (directory / "tokenizer.json").is_file():
        raise UserFacingError(
            f"{directory} holds only tokenizer.json (a Hugging Face fast tokenizer), which is unsupported: the ids "
            f"must come from the sentencepiece model. Use a directory with {SPM_FILE} (e.g. the XLM-R release, or "
            "`XLMRobertaTokenizer.from_pretrained(...).save_pretrained(DIR)` of the slow tokenizer); for a BERT "
            "WordPiece tokenizer, pass the directory `kmlm-export fairseq BERT_DIR OUT` writes (--tokenizer OUT)")
    found = ", ".join(p.name for p in models) or "none"
    raise UserFacingError(f"{directory}: expected {SPM_FILE} (or exactly one *.model file); found {found}")


def find_wordpiece_dir(directory):
    """The WordPiece tokenizer directory of a ``--tokenizer DIR`` (``DIR/hf_tokenizer`` as ``kmlm-export fairseq``
    writes it for BERT, or DIR itself), or None when DIR is a sentencepiece directory or holds no WordPiece."""
    from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR, is_wordpiece_dir

    directory = Path(directory)
    if not directory.is_dir() or (directory / SPM_FILE).is_file() or any(directory.glob("*.model")):
        return None
    for candidate in (directory / HF_TOKENIZER_DIR, directory):
        if is_wordpiece_dir(candidate):
            if not (directory / DICT_FILE).is_file():
                raise UserFacingError(
                    f"{candidate} holds a Hugging Face WordPiece tokenizer but {directory} has no {DICT_FILE}: make "
                    "the directory with `kmlm-export fairseq BERT_DIR OUT` (dict.txt + hf_tokenizer/) and pass "
                    "--tokenizer OUT")
            return candidate
    return None


def xlmr_dict_text(model_proto):
    """dict.txt for a sentencepiece model as Hugging Face's XLMRobertaTokenizer maps it: ids 0-2 of the model are
    <unk> <s> </s> (fairseq's 3, 0, 2), every other piece keeps its order, so fairseq id = spm id + 1."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    head = [sp.id_to_piece(i) for i in range(min(3, sp.get_piece_size()))]
    if head != [UNK, BOS, EOS]:
        raise UserFacingError(f"the sentencepiece model starts with {head}, not XLM-R's ['<unk>', '<s>', '</s>']: "
                              "pass its fairseq dict.txt with --dict")
    return "".join(f"{sp.id_to_piece(i)} 1\n" for i in range(3, sp.get_piece_size()))


def _copy(source, destination):
    source, destination = Path(source), Path(destination)
    if destination.exists():
        if source.resolve() == destination.resolve() or source.read_bytes() == destination.read_bytes():
            return
        logger.warning("replacing %s with %s: data binarized with the old one no longer matches it; rebinarize it",
                       destination, source)
    with atomic_path(destination) as tmp:
        shutil.copyfile(source, tmp)


def _copy_directory(source, destination):
    """Copy the files of ``source`` to ``destination``, which is replaced whole (unless it holds the same files)."""
    files = sorted(p for p in Path(source).iterdir() if p.is_file())
    if destination.is_dir():
        old = sorted(p for p in destination.iterdir())
        if [p.name for p in old] == [p.name for p in files] and all(
                a.read_bytes() == b.read_bytes() for a, b in zip(files, old)):
            return
        logger.warning("replacing %s with %s: data binarized with the old one no longer matches it; rebinarize it",
                       destination, source)
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, tmp / path.name)
    if destination.exists():
        aside = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        os.replace(destination, aside)
        os.replace(tmp, destination)
        shutil.rmtree(aside)
    else:
        os.replace(tmp, destination)


def _remove_other_tokenizer(path, installed):
    """Remove the files of the other kind of tokenizer from DATA: DATA must name the tokenizer its data uses."""
    if path.exists():
        logger.warning("removing %s: DATA is now tokenized with %s", path, installed)
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def install_wordpiece(source_dir, source_dict, data_dir):
    """Copy a WordPiece tokenizer + dict.txt into ``data_dir``; return its ``WordPieceTokenizer``."""
    from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR, WordPieceTokenizer

    tokenizer_dir, dictionary = data_dir / HF_TOKENIZER_DIR, data_dir / DICT_FILE
    WordPieceTokenizer(source_dir, source_dict)  # a clear error before DATA changes
    data_dir.mkdir(parents=True, exist_ok=True)
    _copy_directory(source_dir, tokenizer_dir)
    _copy(source_dict, dictionary)
    _remove_other_tokenizer(data_dir / SPM_FILE, f"the WordPiece tokenizer {tokenizer_dir}")
    return _checked(WordPieceTokenizer(tokenizer_dir, dictionary), dictionary)


def _checked(tokenizer, dictionary):
    if tokenizer.unmapped_pieces:
        logger.warning("%d tokenizer pieces are not in %s and map to <unk>: do the tokenizer and dict.txt match?",
                       tokenizer.unmapped_pieces, dictionary)
    return tokenizer


def install_tokenizer(args, data_dir):
    """Resolve the tokenizer options, copy (or derive) the files into ``data_dir``; return its tokenizer
    (``Tokenizer``, or ``preprocess.core.tokenizers.wordpiece.WordPieceTokenizer`` for a BERT WordPiece vocabulary)."""
    from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR, WordPieceTokenizer

    data_dir = Path(data_dir)
    model, dictionary = data_dir / SPM_FILE, data_dir / DICT_FILE
    if args.tokenizer and (args.spm_model or args.dict):
        raise UserFacingError("pass either --tokenizer DIR or --spm-model + --dict, not both")
    wordpiece = find_wordpiece_dir(args.tokenizer) if args.tokenizer else None
    if wordpiece is not None:
        return install_wordpiece(wordpiece, args.tokenizer / DICT_FILE, data_dir)
    if args.tokenizer:
        source_model = find_spm_model(args.tokenizer)
        _copy(source_model, model)
        if (args.tokenizer / DICT_FILE).is_file():
            _copy(args.tokenizer / DICT_FILE, dictionary)
        else:
            derived = xlmr_dict_text(source_model.read_bytes())
            if dictionary.exists() and dictionary.read_text(encoding="utf-8") != derived:
                logger.warning("replacing %s: data binarized with the old one no longer matches it", dictionary)
            write_text(derived, dictionary)
            logger.info("%s has no %s: derived it from %s as XLMRobertaTokenizer does", args.tokenizer, DICT_FILE,
                        source_model.name)
    elif args.spm_model or args.dict:
        if not (args.spm_model and args.dict):
            raise UserFacingError("--spm-model and --dict go together (an XLM-R dict.txt must match its model)")
        for path in (args.spm_model, args.dict):
            if not path.is_file():
                raise UserFacingError(f"{path}: no such file")
        _copy(args.spm_model, model)
        _copy(args.dict, dictionary)
    elif not (model.is_file() and dictionary.is_file()):
        if dictionary.is_file() and (data_dir / HF_TOKENIZER_DIR).is_dir():
            return _checked(WordPieceTokenizer(data_dir / HF_TOKENIZER_DIR, dictionary), dictionary)
        raise UserFacingError(f"no tokenizer: {model} and {dictionary} do not both exist; run `kmlm-preprocess spm "
                              "-o DATA ...` or pass --tokenizer DIR (or --spm-model + --dict)")
    if args.tokenizer or args.spm_model:
        _remove_other_tokenizer(data_dir / HF_TOKENIZER_DIR, f"the sentencepiece model {model}")
    return _checked(Tokenizer(model, dictionary), dictionary)


# --- Training -------------------------------------------------------------------------------------------------
def sample_parquet(path, default_name):
    """A Parquet input given as a file or as the directory a stage wrote it to."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise UserFacingError(f"{path}: no such file (expected {default_name} or its directory)")
    return path


def sample_texts(table):
    """Knowledge/reasoning rows -> their text, sentences closed by `` .`` (link masks left out)."""
    spans = table.column("spans").combine_chunks()
    counts = pc.list_value_length(spans).fill_null(0).to_numpy(zero_copy_only=False)
    flat = spans.flatten()
    texts = flat.field("text").fill_null("").to_pylist()
    tails = (flat.field("role").to_numpy(zero_copy_only=False) == "tail").tolist()
    out, start = [], 0
    for n in counts:
        out.append(" ".join(t + SENTENCE_END if is_tail else t for t, is_tail in
                            zip(texts[start:start + n], tails[start:start + n])))
        start += n
    return out


def read_sample_texts(path, limit):
    """At most ``limit`` sample texts, the first rows of every row group alike: the stages write their rows
    grouped by language, so the first rows of the file alone could all be one language."""
    parquet = pq.ParquetFile(path)
    per_group = -(-limit // max(parquet.num_row_groups, 1))
    texts = []
    for group in range(parquet.num_row_groups):
        for batch in parquet.iter_batches(batch_size=per_group, row_groups=[group], columns=["spans"]):
            texts += sample_texts(pa.Table.from_batches([batch]))
            break
    return texts[:limit]


def read_lines(path, limit):
    """The first ``limit`` non-blank lines of a text file (plain, gz or bz2)."""
    lines = []
    for block in text_blocks.iter_blocks(path, 4 << 20):
        lines += [line for line in block.data.decode("utf-8", "replace").split("\n") if line.strip()]
        if len(lines) >= limit:
            break
    return lines[:limit]


def training_texts(sentences=(), reasoning=(), plain=(), limit=1_000_000):
    texts = []
    for path in sentences:
        texts += read_sample_texts(sample_parquet(path, SENTENCES_FILE), limit)
    for path in reasoning:
        texts += read_sample_texts(sample_parquet(path, REASONING_FILE), limit)
    for spec in plain:
        path = Path(spec.split("=", 1)[1] if "=" in spec and not Path(spec).exists() else spec)
        if not path.is_file():
            raise UserFacingError(f"--plain {spec}: no such file")
        texts += read_lines(path, limit)
    return texts


def train_model(texts, vocab_size, model_type="unigram", character_coverage=0.9995):
    """Train a sentencepiece model (XLM-R's special ids: <unk>=0 <s>=1 </s>=2, no <pad>); returns its bytes."""
    import sentencepiece

    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, hard_vocab_limit=False,
            model_type=model_type, character_coverage=character_coverage, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1, minloglevel=2,
        )
    except RuntimeError as err:
        raise UserFacingError(f"sentencepiece training failed: {err} (try another --vocab-size)") from err
    return model.getvalue()


def dict_text(model_proto, texts):
    """XLM-R-style dict.txt: every piece but <unk> <s> </s>, in piece-id order, with its count in ``texts``."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    ids, _ = flatten(sp.encode(list(texts), num_threads=1))
    counts = np.bincount(ids, minlength=sp.get_piece_size())
    return "".join(f"{sp.id_to_piece(i)} {counts[i]}\n" for i in range(sp.get_piece_size())
                   if not (sp.is_control(i) or sp.is_unknown(i)))


def train(output, sentences=(), reasoning=(), plain=(), vocab_size=8000, model_type="unigram",
          character_coverage=0.9995, limit=1_000_000):
    """Train on the inputs' text and write ``output/sentencepiece.bpe.model`` + ``output/dict.txt``."""
    texts = training_texts(sentences, reasoning, plain, limit)
    if not texts:
        raise UserFacingError("no training text: pass --sentences, --reasoning and/or --plain inputs")
    model_proto = train_model(texts, vocab_size, model_type, character_coverage)
    dictionary = dict_text(model_proto, texts)
    output = Path(output)
    with atomic_path(output / SPM_FILE) as tmp:
        Path(tmp).write_bytes(model_proto)
    write_text(dictionary, output / DICT_FILE)
    pieces = dictionary.count("\n")
    logger.info("trained a %s sentencepiece model on %s texts (%s characters): %s pieces; wrote %s and %s "
                "(%s symbols + <s> <pad> </s> <unk>; <mask> = id %s)", model_type, f"{len(texts):,}",
                f"{sum(map(len, texts)):,}", f"{pieces + 3:,}", output / SPM_FILE, output / DICT_FILE,
                f"{pieces:,}", pieces + 4)
    return output / SPM_FILE, output / DICT_FILE


def add_arguments(parser):
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help=f"DATA directory to write {SPM_FILE} and {DICT_FILE} to")
    parser.add_argument("--sentences", nargs="+", default=[], metavar="PATH",
                        help=f"knowledge sentences: {SENTENCES_FILE} or its directory")
    parser.add_argument("--reasoning", nargs="+", default=[], metavar="PATH",
                        help=f"reasoning samples: {REASONING_FILE} or its directory")
    parser.add_argument("--plain", nargs="+", default=[], metavar="[LANG=]FILE", help="plain text, one sample a line")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="upper bound on the pieces (a soft limit: small data gives fewer) (default: %(default)s)")
    parser.add_argument("--model-type", choices=("unigram", "bpe"), default="unigram",
                        help="sentencepiece algorithm (XLM-R's model is unigram) (default: %(default)s)")
    parser.add_argument("--character-coverage", type=float, default=0.9995,
                        help="share of characters the model covers, the rest map to <unk> (default: %(default)s)")
    parser.add_argument("--max-samples-per-input", type=int, default=1_000_000, metavar="N",
                        help="read at most the first N samples/lines of each input (default: %(default)s)")


def run(args):
    train(args.output, args.sentences, args.reasoning, args.plain, args.vocab_size, args.model_type,
          args.character_coverage, args.max_samples_per_input)
    return 0
