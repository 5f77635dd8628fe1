"""Hugging Face masked-LM directory -> fairseq checkpoint that training can start from.

``kmlm-export fairseq HF_DIR OUTDIR``

Input: a local Hugging Face directory of ``XLMRobertaForMaskedLM`` (XLM-R) or ``BertForMaskedLM`` /
``BertForPreTraining`` (mBERT) with its tokenizer.
Output: OUTDIR with
    ``model.pt``          fairseq RoBERTa checkpoint (task masked_lm on OUTDIR, update 0, no optimizer state):
                          ``checkpoint.restore_file=OUTDIR/model.pt`` starts training from it, and
                          ``RobertaModel.from_pretrained(OUTDIR, "model.pt")`` loads it;
    ``dict.txt``          the fairseq dictionary (the HF vocabulary in HF order; fairseq's four specials and
                          ``<mask>`` take the places fairseq gives them);
    ``sentencepiece.bpe.model``  copied when HF_DIR has one (XLM-R);
    ``hf_tokenizer/``     the HF tokenizer, for ``kmlm-export hf --hf-tokenizer`` on the way back.

What fairseq's RoBERTa cannot hold (logged): BERT's token-type embeddings (row 0 is folded into the position
embeddings, exact for token type 0), BERT's pooler and next-sentence head (dropped), BERT's LayerNorm epsilon
(1e-12; fairseq uses 1e-5 — the logit change this causes is measured and logged).
"""
import copy
import logging
import shutil
from pathlib import Path

import torch

from kmlm_fairseq.export import fairseq_checkpoint as fc
from kmlm_fairseq.export.files import atomic_directory
from kmlm_fairseq.export.key_map import FAIRSEQ_OWN_BUFFERS, KEY_MAPS, hf_to_fairseq
from kmlm_fairseq.export.to_hf import SPM_NAME, verification_texts
from kmlm_fairseq.export.tokenizer import (
    FairseqTextEncoder,
    check_same_ids,
    fairseq_symbols_for,
    load_dictionary,
    vocab_permutation,
    write_dictionary,
)
from kmlm_fairseq.export.verify import check_logits, max_logit_difference, pad_batch
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)
FAIRSEQ_LAYER_NORM_EPS = 1e-5
HF_ARCH = {"xlm-roberta": "xlm-roberta", "bert": "bert"}  # HF model_type -> key map


def add_arguments(parser):
    parser.add_argument("hf_dir", type=Path, help="local Hugging Face model directory")
    parser.add_argument("outdir", type=Path, help="directory to create (model.pt, dict.txt, ...)")
    parser.add_argument("--verify-text", type=Path, help="extra UTF-8 lines to check tokenizer ids and logits on")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |Δlogit| allowed (default 1e-4)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists")


def load_hf(hf_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    if not Path(hf_dir).is_dir():
        raise UserFacingError(f"{hf_dir} is not a directory")
    try:
        model = AutoModelForMaskedLM.from_pretrained(str(hf_dir), local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise UserFacingError(f"cannot load a Hugging Face masked LM + tokenizer from {hf_dir}: {err}") from err
    if model.config.model_type not in HF_ARCH:
        raise UserFacingError(f"{hf_dir}: model_type {model.config.model_type!r} is not supported "
                              f"(supported: {', '.join(HF_ARCH)})")
    return model.eval(), tokenizer


def max_positions_of(config, key_map):
    if key_map.position_offset == 0 and config.pad_token_id != 1:
        raise UserFacingError(f"XLM-R with pad_token_id={config.pad_token_id}: fairseq's positions assume 1")
    # XLM-R's table already has fairseq's two leading rows; BERT's starts at position 0.
    return config.max_position_embeddings - 2 + key_map.position_offset


def bert_with_fairseq_eps(hf_model):
    """A copy of a BERT model with fairseq's LayerNorm epsilon: what the converted model really computes."""
    twin = copy.deepcopy(hf_model)
    for module in twin.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = FAIRSEQ_LAYER_NORM_EPS
    return twin


def convert(args):
    hf_model, tokenizer = load_hf(args.hf_dir)
    config = hf_model.config
    key_map = KEY_MAPS[HF_ARCH[config.model_type]]
    max_positions = max_positions_of(config, key_map)
    spm = args.hf_dir / SPM_NAME if (args.hf_dir / SPM_NAME).is_file() else None
    texts = verification_texts(args.verify_text)

    with atomic_directory(args.outdir, overwrite=args.overwrite) as tmp:
        write_dictionary(fairseq_symbols_for(tokenizer), tmp / "dict.txt")
        dictionary = load_dictionary(tmp / "dict.txt")
        perm = vocab_permutation(tokenizer, dictionary)
        model_cfg = fc.model_cfg_from_hf(config, max_positions)
        fairseq_model, cfg = fc.build_model(model_cfg, dictionary)
        state = hf_to_fairseq(hf_model.state_dict(), key_map, config.num_hidden_layers, perm)
        own = fairseq_model.state_dict()
        state.update({name: own[name] for name in FAIRSEQ_OWN_BUFFERS})
        fc.load_weights(fairseq_model, cfg, state, f"the weights mapped from {args.hf_dir}")

        encoder = FairseqTextEncoder(dictionary, spm_path=spm, hf_tokenizer=tokenizer)
        check_same_ids(texts, encoder, tokenizer, perm)
        text_ids = [encoder.encode(t) for t in texts]
        reference = hf_model
        if abs(config.layer_norm_eps - FAIRSEQ_LAYER_NORM_EPS) > 1e-12:
            reference = bert_with_fairseq_eps(hf_model)
            check_batch = pad_batch([t[:max_positions] for t in text_ids], dictionary.pad())
            eps_effect = max_logit_difference(fairseq_model, hf_model, check_batch, perm, dictionary.pad())
            logger.warning("layer_norm_eps %g becomes fairseq's %g: max |Δlogit| on the check texts %.2e",
                           config.layer_norm_eps, FAIRSEQ_LAYER_NORM_EPS, eps_effect)
        check_logits(fairseq_model, reference, perm, dictionary, text_ids, max_positions, args.tolerance)

        final = args.outdir.resolve()
        fc.write_checkpoint(tmp / "model.pt", model_cfg, fairseq_model.state_dict(), final,
                            spm_path=final / SPM_NAME if spm else None)
        tokenizer.save_pretrained(tmp / "hf_tokenizer")
        if spm is not None:
            shutil.copyfile(spm, tmp / SPM_NAME)
    for prefix, reason in key_map.dropped.items():
        logger.info("not converted: %s* (%s)", prefix, reason)
    logger.info("wrote %s: model.pt (%d layers, hidden %d, vocabulary %d, max positions %d), dict.txt%s, hf_tokenizer/",
                args.outdir, config.num_hidden_layers, config.hidden_size, len(dictionary), max_positions,
                f", {SPM_NAME}" if spm else "")
    return 0


def run(args):
    torch.manual_seed(0)
    return convert(args)
