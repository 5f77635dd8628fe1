"""JSON input with one-line errors: a JSON file one of our commands wrote (a summary, statistics), and JSON Lines
(X-FACTR fact files, the evaluation's data files)."""
import json
from pathlib import Path

from preprocess.core.errors import UserFacingError


def read_json(path, missing, invalid):
    """The JSON value in ``path``; ``UserFacingError(missing)`` when the file does not exist, and
    ``UserFacingError(invalid(err))`` when it is not UTF-8 JSON (``err`` the decoder's error)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserFacingError(missing) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserFacingError(invalid(err)) from None


def json_objects(lines, path):
    """Yield ``(line_number, object)`` for the JSON Lines of an open text file, blank lines skipped; a line that is
    not a JSON object is an error naming ``path`` and the line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserFacingError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict):
            raise UserFacingError(f"{path}:{number}: expected a JSON object")
        yield number, obj
