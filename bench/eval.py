"""Examples per second of kmlm-eval's inference loop against the bare model forward on the same batches, for a
base-size encoder (12 layers, hidden 768, 12 heads, FFN 3072: XLM-R base's shape, random weights), and print the
ratio (target: at least 0.8).

Our loop, timed from the raw sentence pairs: one batched tokenizer call (kmlm_eval.pairs.encode), batches of
similar length (kmlm_eval.batching), padding, ``torch.inference_mode`` forward, argmax and accuracy
(kmlm_eval.pairs.accuracy) -- what ``kmlm-eval xnli`` does for each test language. The baseline: the same model's
forward alone over the same batches, already tokenized, padded and in tensors. Rounds alternate the two so that
machine noise hits both alike; reported: the median over rounds.

Data: the real XNLI and PAWS-X dev slices of ../shared/data/xtreme (repeated to --examples pairs); a sentencepiece
model with a vocabulary of up to 8,000 pieces is trained on them, so sequence lengths are those of a real
subword vocabulary (the embedding table's size does not change the encoder's cost).

    python bench/eval.py [--examples 256] [--batch-size 32] [--rounds 3] [--threads 1]
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kmlm_eval import batching, pairs  # noqa: E402

XTREME = REPO_ROOT.parent / "shared" / "data" / "xtreme"


def real_pairs(n):
    files = sorted((XTREME / "xnli").glob("dev-*.tsv")) + sorted((XTREME / "pawsx").glob("dev-*.tsv"))
    if not files:
        sys.exit(f"bench/eval.py: the real XNLI/PAWS-X slices are not at {XTREME}")
    found = [(a, b, "neutral") for path in files for a, b, _ in pairs.read_pairs(path, "pawsx" if "pawsx" in str(path)
                                                                                 else "xnli", path.stem[4:6])]
    return (found * (n // len(found) + 1))[:n], files


def build_tokenizer(files, directory):
    """A sentencepiece unigram model trained on the real sentences, as a Hugging Face tokenizer."""
    import sentencepiece as spm

    from kmlm_fairseq.export.tokenizer import build_spm_tokenizer, load_dictionary
    from tests.export.tiny import write_dict

    corpus = directory / "corpus.txt"
    corpus.write_text("\n".join(s for path in files for a, b, _ in pairs.read_pairs(
        path, "pawsx" if "pawsx" in str(path) else "xnli", path.stem[4:6]) for s in (a, b)), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "spm"), vocab_size=8000,
                                   hard_vocab_limit=False, character_coverage=0.9995, minloglevel=2)
    dict_path = write_dict(directory / "spm.model", directory / "dict.txt")
    return build_spm_tokenizer(directory / "spm.model", load_dictionary(dict_path), dict_path, model_max_length=512)


def base_model(vocab_size):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=vocab_size, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1, num_labels=3,
                              pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return XLMRobertaForSequenceClassification(config).eval()


def our_loop(model, tokenizer, data, args):
    start = time.perf_counter()
    examples = pairs.encode(tokenizer, data, {"contradiction": 0, "entailment": 1, "neutral": 2}, args.max_length)
    pairs.accuracy(model, examples, args.batch_size, tokenizer.pad_token_id)
    return len(data) / (time.perf_counter() - start)


def bare_forward(model, batches, n):
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch).logits.argmax(-1)
    return n / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, files = real_pairs(args.examples)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_tokenizer(files, Path(tmp))
    model = base_model(len(tokenizer))
    examples = pairs.encode(tokenizer, data, {"contradiction": 0, "entailment": 1, "neutral": 2}, args.max_length)
    batches = [batching.collate([examples[i] for i in indices], tokenizer.pad_token_id)
               for indices in batching.length_sorted_batches(examples, args.batch_size)]
    for batch in batches:
        batch.pop("labels")
    lengths = [len(e["input_ids"]) for e in examples]
    print(f"{len(data)} real XNLI/PAWS-X pairs, {len(batches)} batches of <= {args.batch_size}, tokens per pair: mean "
          f"{statistics.mean(lengths):.1f}, max {max(lengths)}; base-size encoder, {args.threads} thread(s)")
    bare_forward(model, batches[:1], 1)  # warm-up
    ours, bare = [], []
    for round_ in range(args.rounds):
        ours.append(our_loop(model, tokenizer, data, args))
        bare.append(bare_forward(model, batches, len(data)))
        print(f"round {round_ + 1}: ours {ours[-1]:.1f} examples/s, bare forward {bare[-1]:.1f} examples/s")
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"median: ours {statistics.median(ours):.1f} examples/s, bare forward {statistics.median(bare):.1f} "
          f"examples/s, ratio {ratio:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
