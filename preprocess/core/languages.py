"""The paper's ten languages and the one parser of a --languages option."""
from preprocess.core.errors import UserFacingError

# The paper's ten languages (docs/design.md §1); English is the pivot of code-switching.
DEFAULT_LANGUAGES = ("en", "vi", "nl", "de", "fr", "it", "es", "ja", "ko", "zh")


PIVOT_LANGUAGE = "en"


def parse_languages(text):
    """``"en,de fr"`` -> ``("en", "de", "fr")``; an empty set is an error, duplicates are dropped."""
    langs = tuple(dict.fromkeys(t for t in text.replace(",", " ").split() if t))
    if not langs:
        raise UserFacingError("the language set is empty: pass e.g. --languages en,de,fr")
    return langs
