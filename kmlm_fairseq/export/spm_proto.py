"""The few fields of a sentencepiece ``.model`` file that a Hugging Face tokenizer needs, read without protobuf.

A ``.model`` file is a serialized ``ModelProto`` (sentencepiece_model.proto). Pieces, scores and types come from
the sentencepiece library itself; what it does not expose — the normalizer's precompiled character map and the
whitespace flags, the model type, byte fallback — is read here from the protobuf wire format (the ``protobuf``
package is not a dependency of this project).
"""
import struct
from dataclasses import dataclass

from preprocess.core.errors import UserFacingError

# ModelProto field numbers
_PIECES, _TRAINER_SPEC, _NORMALIZER_SPEC = 1, 2, 3
# SentencePiece (one entry of ModelProto.pieces)
_PIECE, _SCORE, _TYPE = 1, 2, 3
# TrainerSpec
_MODEL_TYPE, _BYTE_FALLBACK = 3, 35
# NormalizerSpec
_NAME, _CHARSMAP, _ADD_DUMMY_PREFIX, _REMOVE_EXTRA_WHITESPACES, _ESCAPE_WHITESPACES = 1, 2, 3, 4, 5

MODEL_TYPES = {1: "unigram", 2: "bpe", 3: "word", 4: "char"}
PIECE_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user_defined", 5: "unused", 6: "byte"}


@dataclass(frozen=True)
class SpmSpec:
    pieces: tuple  # (piece, score, type) in id order; type is a PIECE_TYPES value
    model_type: str
    byte_fallback: bool
    normalizer_name: str
    precompiled_charsmap: bytes
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    escape_whitespaces: bool


def _varint(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data):
    """Yield ``(field_number, value)`` of one message; length-delimited values are ``bytes``."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(data, pos)
        elif wire_type == 1:
            value, pos = struct.unpack_from("<d", data, pos)[0], pos + 8
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            value, pos = bytes(data[pos:pos + length]), pos + length
        elif wire_type == 5:
            value, pos = struct.unpack_from("<f", data, pos)[0], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        yield number, value


def _last(message, number, default):
    value = default
    for field_number, field_value in _fields(message):
        if field_number == number:
            value = field_value
    return value


def _piece(message):
    values = dict(_fields(message))
    return (values.get(_PIECE, b"").decode("utf-8"), float(values.get(_SCORE, 0.0)),
            PIECE_TYPES.get(values.get(_TYPE, 1), "normal"))


def read_spm_spec(path):
    data = open(path, "rb").read()
    try:
        trainer = _last(data, _TRAINER_SPEC, b"")
        normalizer = _last(data, _NORMALIZER_SPEC, b"")
        model_type = _last(trainer, _MODEL_TYPE, 1)
        return SpmSpec(
            pieces=tuple(_piece(message) for number, message in _fields(data) if number == _PIECES),
            model_type=MODEL_TYPES.get(model_type, str(model_type)),
            byte_fallback=bool(_last(trainer, _BYTE_FALLBACK, 0)),
            normalizer_name=_last(normalizer, _NAME, b"").decode("utf-8"),
            precompiled_charsmap=_last(normalizer, _CHARSMAP, b""),
            add_dummy_prefix=bool(_last(normalizer, _ADD_DUMMY_PREFIX, 1)),
            remove_extra_whitespaces=bool(_last(normalizer, _REMOVE_EXTRA_WHITESPACES, 1)),
            escape_whitespaces=bool(_last(normalizer, _ESCAPE_WHITESPACES, 1)),
        )
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as err:
        raise UserFacingError(f"{path} is not a sentencepiece model file ({err})") from err
