"""fairseq's dict.txt without fairseq: the same symbols at the same indices."""
from preprocess.core.errors import UserFacingError

DICT_FILE = "dict.txt"


BOS, PAD, EOS, UNK = "<s>", "<pad>", "</s>", "<unk>"


MASK = "<mask>"


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
