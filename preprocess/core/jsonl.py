"""JSON Lines input (X-FACTR fact files, the evaluation's data files): one JSON object per line, blank lines skipped,
a line that is not a JSON object a one-line error naming the file and the line."""
import json

from preprocess.core.errors import UserFacingError


def json_objects(lines, path):
    """Yield ``(line_number, object)`` for the lines of an open text file; ``path`` names it in errors."""
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
