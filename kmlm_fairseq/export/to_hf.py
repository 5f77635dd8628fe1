"""fairseq checkpoint -> Hugging Face masked-LM directory.

``kmlm-export hf CHECKPOINT OUTDIR [--dict dict.txt] [--spm sentencepiece.bpe.model | --hf-tokenizer DIR]
[--arch xlm-roberta|bert]``

Input: a fairseq RoBERTa checkpoint (``checkpoint_last.pt`` of any of our tasks or stock ``masked_lm``), the
fairseq dictionary it was trained with (default: ``dict.txt`` in the checkpoint's ``task.data`` directory), and its
tokenizer: the sentencepiece model (default: ``sentencepiece.bpe.model`` next to dict.txt) or, for BERT, the
Hugging Face tokenizer directory written by ``kmlm-export fairseq``.
Output: OUTDIR with ``config.json``, ``model.safetensors`` (float32), ``tokenizer.json`` +
``tokenizer_config.json`` (+ a copy of the sentencepiece model): ``XLMRobertaForMaskedLM`` (or ``BertForMaskedLM``),
and a model card ``README.md`` (model_card.py: what was trained, data, settings, losses, the checks below).

Before anything is written, the conversion proves itself: the Hugging Face tokenizer must give fairseq's ids on
real text, and both models' logits must agree within ``--tolerance`` on random ids and on real text.
"""
import logging
import os
import shutil
from pathlib import Path

import torch

from kmlm_fairseq.export import fairseq_checkpoint as fc
from kmlm_fairseq.export import model_card
from kmlm_fairseq.export.files import atomic_directory
from kmlm_fairseq.export.key_map import KEY_MAPS, fairseq_to_hf
from kmlm_fairseq.export.tokenizer import (
    FairseqTextEncoder,
    build_spm_tokenizer,
    check_same_ids,
    load_dictionary,
    vocab_permutation,
)
from kmlm_fairseq.export.verify import DEFAULT_TEXTS, check_logits
from preprocess.core.errors import UserFacingError
from preprocess.core.tokenizers.wordpiece import HF_TOKENIZER_DIR

logger = logging.getLogger(__name__)
SPM_NAME = "sentencepiece.bpe.model"


def add_arguments(parser):
    parser.add_argument("checkpoint", type=Path, help="fairseq checkpoint (.pt)")
    parser.add_argument("outdir", type=Path, help="Hugging Face model directory to create")
    parser.add_argument("--dict", type=Path, help="fairseq dict.txt (default: in the checkpoint's task.data)")
    parser.add_argument("--spm", type=Path, help=f"sentencepiece model (default: {SPM_NAME} next to dict.txt)")
    parser.add_argument("--hf-tokenizer", type=Path,
                        help="use this Hugging Face tokenizer directory instead of --spm (BERT WordPiece; default: "
                             f"{HF_TOKENIZER_DIR}/ next to dict.txt when there is no {SPM_NAME})")
    parser.add_argument("--arch", choices=sorted(KEY_MAPS),
                        help="Hugging Face architecture to write (default: bert with a BERT tokenizer, "
                             "else xlm-roberta)")
    parser.add_argument("--verify-text", type=Path, help="extra UTF-8 lines to check tokenizer ids and logits on")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |Δlogit| allowed (default 1e-4)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists")


def verification_texts(path):
    texts = list(DEFAULT_TEXTS)
    if path is not None:
        try:
            texts += [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise UserFacingError(f"cannot read --verify-text {path}: {err}") from err
    return texts


def default_dict(cfg_task_data, checkpoint):
    if not cfg_task_data:
        raise UserFacingError(f"{checkpoint} names no task.data directory: pass --dict")
    path = Path(str(cfg_task_data).split(":")[0]) / "dict.txt"
    if not path.is_file():
        raise UserFacingError(f"{path} (from the checkpoint's task.data) does not exist: pass --dict")
    return path


def hf_config(key_map, args, vocab_size, positions, tokenizer):
    from transformers import BertConfig, XLMRobertaConfig

    common = dict(
        vocab_size=vocab_size, hidden_size=args.encoder_embed_dim, num_hidden_layers=args.encoder_layers,
        num_attention_heads=args.encoder_attention_heads, intermediate_size=args.encoder_ffn_embed_dim,
        hidden_act=fc.ACTIVATIONS[args.activation_fn], hidden_dropout_prob=args.dropout,
        attention_probs_dropout_prob=args.attention_dropout, layer_norm_eps=1e-5,  # fairseq's LayerNorm eps
        max_position_embeddings=positions - key_map.position_offset, type_vocab_size=key_map.type_vocab_size,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=not args.untie_weights_roberta,
        architectures=[key_map.hf_class],
    )
    if key_map.hf_class == "BertForMaskedLM":
        return BertConfig(**common)
    return XLMRobertaConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **common)


def build_hf_model(key_map, config, state):
    import transformers

    model = getattr(transformers, key_map.hf_class)(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserFacingError(f"{key_map.hf_class} rejected the mapped weights: missing {missing}, "
                              f"unexpected {unexpected}")
    return model


def hf_tokenizer_dir(args, dict_path):
    """The Hugging Face (WordPiece) tokenizer to use: --hf-tokenizer, else DATA's own when DATA has no
    sentencepiece model, else None (sentencepiece)."""
    if args.hf_tokenizer is not None or args.spm is not None:
        return args.hf_tokenizer
    own = dict_path.parent / HF_TOKENIZER_DIR
    return own if own.is_dir() and not (dict_path.parent / SPM_NAME).is_file() else None


def load_tokenizer(args, dictionary, dict_path, max_len):
    hf_dir = hf_tokenizer_dir(args, dict_path)
    if hf_dir is not None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
        except (OSError, ValueError) as err:
            raise UserFacingError(f"cannot load the tokenizer in {hf_dir}: {err}") from err
        return tokenizer, None
    spm = args.spm or dict_path.parent / SPM_NAME
    if not spm.is_file():
        raise UserFacingError(f"{spm} does not exist: pass --spm (or --hf-tokenizer)")
    return build_spm_tokenizer(spm, dictionary, dict_path, model_max_length=max_len), spm


def training_languages(cfg):
    """{stream: [languages with train data]} of the checkpoint's DATA for the kmlm tasks, {} when unknown."""
    from kmlm_fairseq.data.binarized_streams import stream_languages

    task = cfg.get("task") or {}
    data = str(task.get("data") or "").split(":")[0]
    if "streams" not in task or not os.path.isdir(data):
        return {}
    return {stream: stream_languages(data, stream, "train") for stream in str(task["streams"]).split(",")}


def export(args):
    cfg, weights, training = fc.read_checkpoint(args.checkpoint)
    dict_path = args.dict or default_dict(cfg.get("task", {}).get("data"), args.checkpoint)
    dictionary = load_dictionary(dict_path)
    rows = weights.get("encoder.sentence_encoder.embed_tokens.weight")
    if rows is not None and rows.shape[0] != len(dictionary):
        raise UserFacingError(f"{args.checkpoint} has {rows.shape[0]} token embeddings but {dict_path} gives "
                              f"{len(dictionary)} symbols (with <s> <pad> </s> <unk> and <mask>): pass the dict.txt "
                              "the model was trained with")
    fairseq_model, model_cfg = fc.build_model(cfg["model"], dictionary)
    fc.load_weights(fairseq_model, model_cfg, weights, f"{args.checkpoint} with {dict_path}")
    model_args = fairseq_model.encoder.args
    fc.check_mappable(model_args, args.checkpoint)
    positions = fairseq_model.encoder.sentence_encoder.embed_positions.weight.shape[0]
    max_len = positions - 2  # fairseq positions start at padding_idx + 1

    tokenizer, spm = load_tokenizer(args, dictionary, dict_path, max_len)
    arch = args.arch or ("bert" if spm is None and "Bert" in type(tokenizer).__name__ else "xlm-roberta")
    key_map = KEY_MAPS[arch]
    perm = vocab_permutation(tokenizer, dictionary)
    if arch == "xlm-roberta" and tokenizer.pad_token_id != dictionary.pad():
        raise UserFacingError("XLM-R derives positions from the padding id, which must be fairseq's (1)")
    hf_state = fairseq_to_hf(fairseq_model.state_dict(), key_map, model_args.encoder_layers, perm)
    config = hf_config(key_map, model_args, len(dictionary), positions, tokenizer)
    hf_model = build_hf_model(key_map, config, hf_state)

    texts = verification_texts(args.verify_text)
    encoder = FairseqTextEncoder(dictionary, spm_path=spm, hf_tokenizer=tokenizer)
    check_same_ids(texts, encoder, tokenizer, perm)
    differences = check_logits(fairseq_model, hf_model, perm, dictionary, [encoder.encode(t) for t in texts],
                               max_len, args.tolerance)

    card = model_card.render(cfg, training, args.checkpoint, key_map.hf_class,
                             {"sentences": len(texts), "tolerance": args.tolerance, "max |Δlogit|": differences},
                             training_languages(cfg))
    with atomic_directory(args.outdir, overwrite=args.overwrite) as tmp:
        hf_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if spm is not None:
            shutil.copyfile(spm, tmp / SPM_NAME)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    logger.info("wrote %s: %s, %d layers, hidden %d, vocabulary %d, max length %d; max |Δlogit| %s",
                args.outdir, key_map.hf_class, model_args.encoder_layers, model_args.encoder_embed_dim,
                len(dictionary), max_len, ", ".join(f"{k} {v:.1e}" for k, v in differences.items()))
    return 0


def run(args):
    torch.manual_seed(0)
    return export(args)
