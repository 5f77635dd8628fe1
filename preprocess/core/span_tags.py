"""Per-token span tags: what the KMLM masking rules need to know about every token of a binarized sample.

The binarize stage writes, next to each token dataset ``PREFIX.bin/.idx``, an aligned tag dataset
``PREFIX.tags.bin/.idx`` (same number of tokens per sample, fairseq mmap format, int32). One tag packs:

    bits 0-2    role      SPECIAL (<s>, </s>), LINK (the two link <mask>s of `h <mask> r <mask> t .`),
                          HEAD, RELATION, TAIL, PUNCT (the final ".")
    bits 3-7    sentence  index of the triple-sentence in the sample (0; 0-2 triangle; 0-4 diamond, diagonal at 4)
    bits 8-15   span      index of the mention in the sample, in reading order: all subwords of one mention share it
    bits 16-23  entity    index of the distinct Wikidata id in the sample (the same entity mentioned twice shares it)

A reasoning sample's cycle kind follows from its number of sentences (3: triangle, 5: diamond).
"""
import numpy as np

SPECIAL, LINK, HEAD, RELATION, TAIL, PUNCT = range(6)
ROLE_NAMES = ("special", "link", "head", "relation", "tail", "punct")
MENTION_ROLES = (HEAD, RELATION, TAIL)
NO_INDEX = 0  # sentence/span/entity of SPECIAL, LINK and PUNCT tokens: meaningless, kept 0

_ROLE_BITS, _SENTENCE_BITS, _SPAN_BITS, _ENTITY_BITS = 3, 5, 8, 8
_SENTENCE_SHIFT = _ROLE_BITS
_SPAN_SHIFT = _SENTENCE_SHIFT + _SENTENCE_BITS
_ENTITY_SHIFT = _SPAN_SHIFT + _SPAN_BITS
MAX_SENTENCES, MAX_SPANS, MAX_ENTITIES = 1 << _SENTENCE_BITS, 1 << _SPAN_BITS, 1 << _ENTITY_BITS
TAG_DTYPE = np.int32


def pack_tags(role, sentence=0, span=0, entity=0):
    """Pack arrays (or scalars) of fields into int32 tags; raises if a field does not fit its bits."""
    role, sentence, span, entity = (np.asarray(x, dtype=np.int64) for x in (role, sentence, span, entity))
    for name, values, limit in (("role", role, len(ROLE_NAMES)), ("sentence", sentence, MAX_SENTENCES),
                                ("span", span, MAX_SPANS), ("entity", entity, MAX_ENTITIES)):
        if values.size and (values.min() < 0 or values.max() >= limit):
            raise ValueError(f"span tag field {name} out of range [0, {limit}): {values.min()}..{values.max()}")
    packed = role | (sentence << _SENTENCE_SHIFT) | (span << _SPAN_SHIFT) | (entity << _ENTITY_SHIFT)
    return packed.astype(TAG_DTYPE)


def tag_role(tags):
    return np.asarray(tags) & ((1 << _ROLE_BITS) - 1)


def tag_sentence(tags):
    return (np.asarray(tags) >> _SENTENCE_SHIFT) & (MAX_SENTENCES - 1)


def tag_span(tags):
    return (np.asarray(tags) >> _SPAN_SHIFT) & (MAX_SPANS - 1)


def tag_entity(tags):
    return (np.asarray(tags) >> _ENTITY_SHIFT) & (MAX_ENTITIES - 1)
