"""What every downstream evaluation shares: model and data arguments, reading input files with errors that name
the file and line, loading Hugging Face models, and running each model."""
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from preprocess.core.errors import UserFacingError
from preprocess.core.json_input import json_objects

logger = logging.getLogger(__name__)


def data_error(path, line_number, message):
    return UserFacingError(f"{path}:{line_number}: {message}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path


def parse_model(text):
    """``NAME=DIR`` or ``DIR`` (the name is then the directory's name)."""
    name, sep, path = text.partition("=")
    path = Path(path if sep else text)
    if not path.is_dir():
        raise UserFacingError(f"--model {text}: {path} is not a Hugging Face model directory")
    return ModelSpec(name if sep else path.name, path)


def parse_lang_file(text):
    """``LANG=FILE`` -> ``(lang, Path)``."""
    lang, sep, path = text.partition("=")
    if not sep or not lang or not path:
        raise UserFacingError(f"{text!r}: expected LANG=FILE, e.g. de=test.de.txt")
    if not Path(path).is_file():
        raise UserFacingError(f"{path} does not exist")
    return lang, Path(path)


def unique_models(specs):
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserFacingError(f"two --model arguments have the same name ({names}): use NAME=DIR")
    return specs


def read_utf8(path):
    """The text of a file; bytes that are not UTF-8 are an error naming the file and the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise data_error(path, line, f"not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def open_utf8(path, newline=None):
    """Like ``open(path, encoding="utf-8", newline=newline)``, with ``read_utf8``'s error for bytes not UTF-8."""
    return io.StringIO(read_utf8(path), newline=newline)


def read_jsonl(path):
    """Yield ``(line_number, object)``; a line that is not a JSON object is an error naming the file and line."""
    with open_utf8(path) as f:
        yield from json_objects(f, path)


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def evaluate_models(models, evaluate_one):
    """Run ``evaluate_one(spec) -> [Score]`` for each model (the same seeds each time) and collect the scores."""
    scores = []
    for spec in unique_models(models):
        logger.info("evaluating %s (%s)", spec.name, spec.path)
        scores += evaluate_one(spec)
    return scores


def parse_lang_files(specs, option="--test"):
    """``[(lang, Path)]`` of repeated ``LANG=FILE`` options -> ``{lang: Path}``; a language given twice is an error."""
    files = {}
    for lang, path in specs:
        if lang in files:
            raise UserFacingError(f"{option} {lang}= is given twice ({files[lang]}, {path})")
        files[lang] = path
    return files


def load_tokenizer(path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"cannot load the tokenizer of {path}: {err}") from err


def load_model(auto_class, path, **kwargs):
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"cannot load {path} as {auto_class}: {err}") from err
