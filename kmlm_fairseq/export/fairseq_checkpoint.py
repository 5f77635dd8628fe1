"""Reading and writing fairseq RoBERTa checkpoints without the task that trained them.

A checkpoint is the dict ``fairseq.checkpoint_utils.save_state`` writes: ``cfg`` (the full Hydra config as a plain
dict; very old checkpoints have an ``args`` Namespace instead), ``model`` (the state dict), optimizer and
data-iterator state. Only ``cfg.model`` and ``model`` matter here, so checkpoints of our plugin tasks
(kmlm_reasoning, kmlm_knowledge) convert like stock ``masked_lm`` ones; the plugin is imported first because a
checkpoint may pickle its config objects.
"""
import logging
import re
from pathlib import Path

import torch

import kmlm_fairseq  # noqa: F401  (torch >= 2.6 safe-loading of fairseq checkpoints; registers our tasks)
from preprocess.core.errors import UserFacingError
from preprocess.core.io import atomic_path

logger = logging.getLogger(__name__)

# fairseq RoBERTa settings the Hugging Face XLM-R / BERT classes cannot express: name -> value they need.
REQUIRED_MODEL_SETTINGS = {
    "encoder_normalize_before": False,  # pre-LN RoBERTa is HF's XLMRobertaXL, not XLM-R
    "layernorm_embedding": True,
    "no_scale_embedding": True,
    "encoder_learned_pos": True,
    "no_token_positional_embeddings": False,
    "adaptive_input": False,
}
# fairseq activation -> HF hidden_act (fairseq's gelu is the exact erf form; gelu_accurate is the tanh form).
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh"}


class _DictionaryTask:
    """The two things ``RobertaModel.build_model`` asks of a task."""

    def __init__(self, dictionary, max_positions):
        self.source_dictionary = self.target_dictionary = dictionary
        self._max_positions = max_positions

    def max_positions(self):
        return self._max_positions


def read_checkpoint(path):
    """``(cfg, state_dict, training)`` of a fairseq checkpoint, whatever task trained it; ``cfg`` is a plain dict,
    ``training`` holds ``num_updates`` and the saved ``metrics`` meters (for the model card)."""
    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"{path} does not exist")
    try:
        state = checkpoint_utils.load_checkpoint_to_cpu(str(path))
    except Exception as err:  # torch/pickle raise many types, and fairseq's upgrade KeyErrors on other dicts
        raise UserFacingError(not_a_checkpoint(path, err)) from err
    if state.get("cfg") is None or "model" not in state:
        raise UserFacingError(f"{path} is not a fairseq training checkpoint (no cfg/model entries)")
    try:
        cfg = OmegaConf.to_container(state["cfg"], resolve=True)
    except OmegaConfBaseException:  # an interpolation only Hydra resolves (${hydra:...}); never in cfg.model
        cfg = OmegaConf.to_container(state["cfg"], resolve=False)
    name = str(cfg["model"].get("_name") or "roberta")
    if not name.startswith(("roberta", "xlm")):
        raise UserFacingError(f"{path}: model {name!r} is not fairseq's RoBERTa")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    history = state.get("optimizer_history") or [{}]
    training = {"num_updates": history[-1].get("num_updates"),
                "metrics": (state.get("extra_state") or {}).get("metrics")}
    return cfg, weights, training


def not_a_checkpoint(path, err):
    """Why ``path`` failed to load as a fairseq checkpoint, in one line: not a PyTorch file at all, a PyTorch file
    holding something else than fairseq's checkpoint dict, or (the error's first line) a checkpoint that is."""
    try:
        state = torch.load(path, map_location="cpu")  # weights_only (torch >= 2.6): a check runs no pickled code
    except Exception as load_error:  # any unpickling error means the same thing here
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(load_error))
        if unsupported:
            return (f"{path} is not a fairseq checkpoint: it pickles a {unsupported[1]} object, which no checkpoint "
                    "holds (refused by torch.load's weights-only loading)")
        return f"{path} is not a PyTorch checkpoint ({type(load_error).__name__}: {first_line(load_error)})"
    if not isinstance(state, dict) or "model" not in state:
        keys = f"a dict with keys {', '.join(map(str, list(state)[:8]))}" if isinstance(state, dict) else \
            f"a {type(state).__name__}"
        return f"{path} is a PyTorch file but not a fairseq training checkpoint: it holds {keys}, no 'model' entry"
    return f"cannot load the fairseq checkpoint {path}: {type(err).__name__}: {first_line(err)}"


def first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def build_model(model_cfg, dictionary):
    """fairseq's own RoBERTa for ``model_cfg`` and ``dictionary`` (eval mode), with its defaults filled in."""
    from fairseq.models import build_model as fairseq_build_model
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(model_cfg)
    OmegaConf.set_struct(cfg, False)
    cfg.setdefault("_name", "roberta")
    max_positions = cfg.get("max_positions") or cfg.get("tokens_per_sample") or 512
    model = fairseq_build_model(cfg, _DictionaryTask(dictionary, max_positions))
    return model.eval(), cfg


def load_weights(model, cfg, weights, what):
    """Load ``weights`` the way fairseq's trainer does (upgrade, then strict)."""
    try:
        model.load_state_dict(weights, strict=True, model_cfg=cfg)
    except RuntimeError as err:
        raise UserFacingError(f"{what} does not fit the model its config describes: {err}") from err


def check_mappable(args, path):
    problems = [f"{name}={getattr(args, name, None)!r} (needs {value!r})"
                for name, value in REQUIRED_MODEL_SETTINGS.items() if getattr(args, name, value) != value]
    if getattr(args, "activation_fn", "gelu") not in ACTIVATIONS:
        problems.append(f"activation_fn={args.activation_fn!r}")
    if getattr(args, "encoder_layers_to_keep", None):
        problems.append(f"encoder_layers_to_keep={args.encoder_layers_to_keep!r}")
    for name in ("mha_heads_to_keep", "ffn_blocks_to_remove"):
        if getattr(args, name, -1) not in (-1, None):
            problems.append(f"{name}={getattr(args, name)!r}")
    if problems:
        raise UserFacingError(f"{path}: this RoBERTa variant has no Hugging Face XLM-R/BERT equivalent: "
                              + "; ".join(problems))


def model_cfg_from_hf(config, max_positions):
    """A fairseq ``cfg.model`` (roberta) for a Hugging Face XLM-R/BERT config."""
    activations = {hf: fs for fs, hf in ACTIVATIONS.items()}
    if config.hidden_act not in activations:
        raise UserFacingError(f"hidden_act={config.hidden_act!r} has no fairseq RoBERTa activation")
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        raise UserFacingError(f"position_embedding_type={config.position_embedding_type!r}: fairseq RoBERTa has "
                              "absolute learned positions only")
    return {
        "_name": "roberta",
        "encoder_layers": config.num_hidden_layers,
        "encoder_embed_dim": config.hidden_size,
        "encoder_ffn_embed_dim": config.intermediate_size,
        "encoder_attention_heads": config.num_attention_heads,
        "max_positions": max_positions,
        "dropout": config.hidden_dropout_prob,
        "attention_dropout": config.attention_probs_dropout_prob,
        "activation_dropout": 0.0,
        "pooler_dropout": 0.0,
        "activation_fn": activations[config.hidden_act],
        "untie_weights_roberta": not getattr(config, "tie_word_embeddings", True),
        **REQUIRED_MODEL_SETTINGS,
    }


def write_checkpoint(path, model_cfg, state_dict, data_dir, spm_path=None):
    """A checkpoint that ``checkpoint.restore_file`` and ``RobertaModel.from_pretrained`` accept.

    It looks like a released pretrained model: weights, fairseq's default config with our model, task stock
    ``masked_lm`` on ``data_dir`` (where dict.txt is) and the sentencepiece BPE (if any), no optimizer state and
    update 0, so training starts from it cleanly.
    """
    from fairseq.dataclass.configs import FairseqConfig
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.structured(FairseqConfig()), resolve=True, enum_to_str=True)
    cfg["model"] = model_cfg
    cfg["task"] = {"_name": "masked_lm", "data": str(data_dir), "tokens_per_sample": model_cfg["max_positions"]}
    cfg["criterion"] = {"_name": "masked_lm"}
    if spm_path is not None:
        cfg["bpe"] = {"_name": "sentencepiece", "sentencepiece_model": str(spm_path)}
    state = {
        "args": None,
        "cfg": cfg,
        "model": state_dict,
        "criterion": {},
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "none",
                               "lr_scheduler_state": {"best": None}, "num_updates": 0}],
        "task_state": {},
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0, "shuffle": True}, "val_loss": None},
        "last_optimizer_state": None,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
