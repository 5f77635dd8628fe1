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
                              ``hf_tokenizer/``, no sentencepiece model): WordPiece,
                              preprocess/core/tokenizers/wordpiece.py; copied to
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
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from preprocess.core import text_blocks
from preprocess.core.errors import UserFacingError
from preprocess.core.formats.reasoning import REASONING_FILE, open_reasoning
from preprocess.core.formats.sentences import SENTENCES_FILE, open_sentences
from preprocess.core.formats.spans import SENTENCE_END
from preprocess.core.io import atomic_path, write_text
from preprocess.core.tokenizers.base import flatten
from preprocess.core.tokenizers.dictionary import DICT_FILE
from preprocess.core.tokenizers.sentencepiece import SPM_FILE

logger = logging.getLogger("kmlm-preprocess spm")


# --- Training -------------------------------------------------------------------------------------------------


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


def read_sample_texts(path, limit, open_samples=open_sentences):
    """At most ``limit`` sample texts of a samples file (or its directory; ``open_samples``: its format's reader),
    the first rows of every row group alike: the stages write their rows grouped by language, so the first rows of
    the file alone could all be one language."""
    parquet = open_samples(path, ["spans"])
    per_group = -(-limit // max(parquet.num_row_groups, 1))
    texts = []
    for group in range(parquet.num_row_groups):
        for batch in parquet.iter_batches(per_group, row_groups=[group], columns=["spans"]):
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
        texts += read_sample_texts(path, limit)
    for path in reasoning:
        texts += read_sample_texts(path, limit, open_reasoning)
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
