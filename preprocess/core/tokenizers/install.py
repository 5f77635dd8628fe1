"""The --tokenizer options of binarize and plain: find the tokenizer files, copy them into DATA, load them."""
import logging
import os
import shutil
from pathlib import Path

from preprocess.core.errors import UserFacingError
from preprocess.core.io import atomic_path, write_text
from preprocess.core.tokenizers.dictionary import BOS, DICT_FILE, EOS, UNK
from preprocess.core.tokenizers.sentencepiece import SPM_FILE, Tokenizer
from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR, WordPieceTokenizer, is_wordpiece_dir

logger = logging.getLogger(__name__)


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
