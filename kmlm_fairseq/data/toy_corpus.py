"""A tiny synthetic, learnable corpus in the exact layout of `kmlm-preprocess binarize`, built in seconds.

For the plugin's tests, the training benchmark and trying the training without running the preprocessing pipeline.
Output: ``DATA/dict.txt`` and ``DATA/{plain,knowledge,reasoning}/<lang>/{train,valid}.{bin,idx}`` (+ ``.tags``)
written with fairseq's MMapIndexedDatasetBuilder, samples stored as ``tokens + </s>`` (the task prepends <s>).

The world: entities 0..E-1 and relations 0..R-1; the relation of an edge (h, t) is (t - h) mod R, so in a cycle
the relations compose (a triangle's third relation is the sum of the other two) and a masked relation or entity
can be inferred from its context. Every entity/relation has a surface form per language of 1-3 subwords
(``de:e7``, ``de:e7~1``, ...), so whole-span masking across subwords is exercised. Knowledge sentences are
code-switched between English and the language l' (each of h, r, t independently with p = 0.5); reasoning
samples are monolingual triangles (3 sentences) and diamonds (A-B-D-C-A, then the diagonal B-C: 5 sentences).
Plain text lines are arithmetic progressions over a language's words (``en:w3 en:w5 en:w7 ...``).
"""
import os
from dataclasses import dataclass

import numpy as np
import torch
from fairseq.data import Dictionary
from fairseq.data.indexed_dataset import MMapIndexedDatasetBuilder, best_fitting_int_dtype

from preprocess.core.seeds import derive_seed
from preprocess.core.span_tags import HEAD, LINK, PUNCT, RELATION, SPECIAL, TAG_DTYPE, TAIL, pack_tags

MASK = "<mask>"
ENGLISH = "en"


@dataclass(frozen=True)
class ToyWorld:
    entities: int = 24
    relations: int = 5
    plain_words: int = 40

    def relation(self, head, tail):
        return (tail - head) % self.relations

    @staticmethod
    def entity_pieces(lang, entity):
        return [f"{lang}:e{entity}"] + [f"{lang}:e{entity}~{k}" for k in range(1, 1 + entity % 3)]

    @staticmethod
    def relation_pieces(lang, relation):
        return [f"{lang}:r{relation}"] + [f"{lang}:r{relation}~1"] * (relation % 2)

    def symbols(self, languages):
        for lang in languages:
            for entity in range(self.entities):
                yield from self.entity_pieces(lang, entity)
            for relation in range(self.relations):
                yield from dict.fromkeys(self.relation_pieces(lang, relation))
            yield from (f"{lang}:w{k}" for k in range(self.plain_words))
        yield "."


def build_dictionary(world, languages):
    dictionary = Dictionary()
    for symbol in world.symbols(languages):
        dictionary.add_symbol(symbol)
    return dictionary


class SampleRenderer:
    """Renders triples ``h <mask> r <mask> t .`` into token ids and span tags, one sample at a time."""

    def __init__(self, world, dictionary):
        self.world = world
        self.dictionary = dictionary
        self.mask = dictionary.index(MASK)

    def render(self, triples, langs):
        """triples: [(h, r, t)]; langs: [(lang_h, lang_r, lang_t)] per triple. Returns (token ids, tags)."""
        ids, roles, sentences, spans, entities = [], [], [], [], []
        entity_index = {}

        def add(pieces, role, sentence, span=0, key=None):
            ids.extend(self.dictionary.index(piece) for piece in pieces)
            roles.extend([role] * len(pieces))
            sentences.extend([sentence] * len(pieces))
            spans.extend([span] * len(pieces))
            entities.extend([entity_index.setdefault(key, len(entity_index)) if key else 0] * len(pieces))

        span = 0
        for sentence, ((head, relation, tail), (lang_h, lang_r, lang_t)) in enumerate(zip(triples, langs)):
            add(self.world.entity_pieces(lang_h, head), HEAD, sentence, span, ("e", head))
            add([MASK], LINK, sentence)
            add(self.world.relation_pieces(lang_r, relation), RELATION, sentence, span + 1, ("r", relation))
            add([MASK], LINK, sentence)
            add(self.world.entity_pieces(lang_t, tail), TAIL, sentence, span + 2, ("e", tail))
            add(["."], PUNCT, sentence)
            span += 3
        ids.append(self.dictionary.eos())
        roles.append(SPECIAL)
        sentences.append(0)
        spans.append(0)
        entities.append(0)
        # LINK, PUNCT and SPECIAL tokens carry sentence/span/entity 0 (span_tags.NO_INDEX)
        sentence_field = np.where(np.isin(roles, [HEAD, RELATION, TAIL]), sentences, 0)
        return np.array(ids, dtype=np.int64), pack_tags(roles, sentence_field, spans, entities)


def knowledge_samples(world, renderer, lang, count, rng):
    for _ in range(count):
        head, tail = rng.choice(world.entities, 2, replace=False)
        langs = tuple(lang if rng.random() < 0.5 else ENGLISH for _ in range(3))
        yield renderer.render([(head, world.relation(head, tail), tail)], [langs])


def reasoning_samples(world, renderer, lang, count, rng):
    for k in range(count):
        if k % 2 == 0:  # triangle A-B-C
            a, b, c = rng.choice(world.entities, 3, replace=False)
            edges = [(a, b), (b, c), (a, c)]
        else:  # diamond A-B-D-C-A with the diagonal B-C last
            a, b, d, c = rng.choice(world.entities, 4, replace=False)
            edges = [(a, b), (b, d), (c, d), (a, c), (b, c)]
        triples = [(h, world.relation(h, t), t) for h, t in edges]
        yield renderer.render(triples, [(lang, lang, lang)] * len(triples))


def plain_samples(world, dictionary, lang, count, rng):
    for _ in range(count):
        start, step, length = rng.integers(world.plain_words), rng.integers(1, 4), rng.integers(6, 20)
        words = [f"{lang}:w{(start + step * k) % world.plain_words}" for k in range(length)]
        yield np.array([dictionary.index(word) for word in words] + [dictionary.eos()], dtype=np.int64), None


def write_split(prefix, samples, vocab_size):
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    token_builder = MMapIndexedDatasetBuilder(prefix + ".bin", dtype=best_fitting_int_dtype(vocab_size))
    tag_builder = None
    for tokens, tags in samples:
        token_builder.add_item(torch.from_numpy(tokens))
        if tags is not None:
            if tag_builder is None:
                tag_builder = MMapIndexedDatasetBuilder(prefix + ".tags.bin", dtype=TAG_DTYPE)
            tag_builder.add_item(torch.from_numpy(tags.astype(np.int64)))
    token_builder.finalize(prefix + ".idx")
    if tag_builder is not None:
        tag_builder.finalize(prefix + ".tags.idx")


def write_toy_corpus(out_dir, languages=("en", "de"), sizes=None, seed=0, world=ToyWorld()):
    """Write the corpus; sizes maps (stream, split) -> samples per language (an int, or a dict lang -> int).
    Returns the dictionary, <mask> included."""
    sizes = {("plain", "train"): 240, ("knowledge", "train"): 160, ("reasoning", "train"): 80,
             ("plain", "valid"): 16, ("knowledge", "valid"): 16, ("reasoning", "valid"): 16, **(sizes or {})}
    dictionary = build_dictionary(world, languages)
    os.makedirs(out_dir, exist_ok=True)
    dictionary.save(os.path.join(out_dir, "dict.txt"))
    dictionary.add_symbol(MASK)  # the task adds <mask> after loading dict.txt: same id
    renderer = SampleRenderer(world, dictionary)
    for (stream, split), counts in sorted(sizes.items()):
        for lang in languages:
            count = counts.get(lang, 0) if isinstance(counts, dict) else counts
            if count == 0 or (stream == "knowledge" and lang == ENGLISH):
                continue  # knowledge: code-switched pairs (en, l'), stored under l'
            rng = np.random.default_rng(derive_seed(seed, stream, split, lang))
            if stream == "plain":
                samples = plain_samples(world, dictionary, lang, count, rng)
            elif stream == "knowledge":
                samples = knowledge_samples(world, renderer, lang, count, rng)
            else:
                samples = reasoning_samples(world, renderer, lang, count, rng)
            write_split(os.path.join(out_dir, stream, lang, split), samples, len(dictionary))
    return dictionary
