"""Every config in configs/ composes the way fairseq-hydra-train composes it, and merges with fairseq's dataclasses.

fairseq-hydra-train registers its config schema in Hydra's ConfigStore under the --config-name, and Hydra merges
that schema at the primary config's _self_: a primary config listing _self_ last would silently lose every group
listed before it. hydra_init(name) reproduces that here, so such a config fails these checks.
"""
import functools
import re

import pytest
from fairseq.dataclass.initialize import add_defaults, hydra_init
from fairseq.dataclass.utils import omegaconf_no_object_check
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

import kmlm_fairseq  # noqa: F401  (registers the tasks, criterion and roberta_tiny, as common.user_dir does)
from tests.conftest import REPO_ROOT

CONFIG_DIR = REPO_ROOT / "configs"
TOP_LEVEL = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
GROUP_OPTIONS = sorted((path.parent.name, path.stem) for path in CONFIG_DIR.glob("*/*.yaml"))
KMLM_CONFIGS = [name for name in TOP_LEVEL if name.startswith("kmlm") or name == "tiny_cpu"]
GPU_CONFIGS = [name for name in KMLM_CONFIGS if name != "tiny_cpu"]
SEQUENCES_PER_STREAM = 9600


@functools.lru_cache(maxsize=None)
def compose_like_fairseq(name, overrides=()):
    """The composed, resolved config fairseq-hydra-train would train with (read-only: cached)."""
    GlobalHydra.instance().clear()
    hydra_init(name)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose(config_name=name, overrides=["task.data=/data", *overrides], return_hydra_config=True)
    finally:
        ConfigStore.instance().repo.pop(f"{name}.yaml", None)  # the CLI registers only its own config name
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} interpolations
    with open_dict(cfg):
        del cfg["hydra"]
    add_defaults(cfg)  # merges task, criterion, model, optimizer... with their registered dataclasses
    with omegaconf_no_object_check():
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def test_configs_are_found():
    assert {"kmlm_r_base", "kmlm_base", "kmlm_large", "kmlm_r_base_len512", "tiny_cpu"} <= set(TOP_LEVEL)
    assert {("run", "cpu"), ("run", "gpu"), ("run", "slurm"), ("model", "tiny")} <= set(GROUP_OPTIONS)


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_config_composes(name):
    cfg = compose_like_fairseq(name)
    assert cfg.task._name


@pytest.mark.parametrize("name", KMLM_CONFIGS)
def test_kmlm_config_starts_with_its_command_and_keeps_its_groups(name):
    assert (CONFIG_DIR / f"{name}.yaml").read_text().startswith("#")
    assert f"--config-dir configs --config-name {name} " in (CONFIG_DIR / f"{name}.yaml").read_text()
    cfg = compose_like_fairseq(name)
    assert cfg.common.user_dir == "kmlm_fairseq" and cfg.criterion._name == "kmlm_multitask"
    assert cfg.task._name in ("kmlm_reasoning", "kmlm_knowledge")
    on_cpu = name == "tiny_cpu"
    assert (cfg.common.cpu, cfg.common.fp16) == (on_cpu, not on_cpu), "the run/ group was overridden"


@pytest.mark.parametrize("name", GPU_CONFIGS)
def test_gpu_configs_have_the_paper_hyperparameters(name):
    cfg = compose_like_fairseq(name)
    world, batch, accumulate = (cfg.distributed_training.distributed_world_size, cfg.dataset.batch_size,
                                cfg.optimization.update_freq[0])
    assert world * batch * accumulate == SEQUENCES_PER_STREAM
    assert cfg.optimization.lr == [5e-05] and cfg.optimizer.weight_decay == 0.0 and cfg.optimizer._name == "adam"
    # AdamW as the official code's transformers AdamW defaults; linear warmup then linear decay to 0
    assert (cfg.optimizer.adam_betas, cfg.optimizer.adam_eps) == ("(0.9,0.999)", 1e-06)
    assert (cfg.lr_scheduler._name, cfg.lr_scheduler.power, cfg.lr_scheduler.end_learning_rate) == (
        "polynomial_decay", 1.0, 0.0)
    assert cfg.lr_scheduler.total_num_update == cfg.optimization.max_update
    assert cfg.lr_scheduler.warmup_updates == 100 and cfg.criterion.alpha == 0.3 and cfg.task.mask_prob == 0.15
    assert (cfg.task.knowledge_masking, cfg.task.leave_unmasked_prob, cfg.task.random_token_prob) == ("tokens", 0.1,
                                                                                                        0.1)
    assert cfg.task.knowledge_at_least_one is False and cfg.task.multilang_sampling_alpha == 1.0
    assert cfg.task.plain_masking == "bernoulli"
    if name.endswith("_len512"):
        assert (cfg.task.streams, cfg.task.tokens_per_sample, cfg.optimization.max_update) == ("plain", 512, 600)
        assert cfg.task.sample_break_mode == "complete"
    else:
        assert cfg.task.streams == "plain,knowledge,reasoning" and cfg.task.tokens_per_sample == 128
        assert cfg.task.sample_break_mode == "eos"  # one line per sample, as the official --line_by_line
        assert (cfg.task.epoch_stream, cfg.optimization.max_epoch) == ("knowledge", 1)
    assert cfg.model._name == ("roberta_large" if "large" in name else "roberta_base")
    assert cfg.task.recipe == name


@pytest.mark.parametrize("name", KMLM_CONFIGS)
def test_configs_train_what_their_name_says(name):
    """kmlm_base is KMLM (no R: the reasoning samples get the knowledge masking); every other KMLM config, the
    large ones included, is KMLM_R; mBERT's checkpoints record no sentencepiece model, the others DATA's."""
    cfg = compose_like_fairseq(name)
    assert cfg.task._name == ("kmlm_knowledge" if name == "kmlm_base" else "kmlm_reasoning")
    header = (CONFIG_DIR / f"{name}.yaml").read_text().splitlines()[0]
    says = "KMLM base" if name == "kmlm_base" else r"KMLM_R\b|Stage 2 after \w+ \(KMLM_R\b"
    assert re.match(f"# ({says})", header), header
    if name == "kmlm_r_mbert":
        assert cfg.bpe is None
    else:
        assert (cfg.bpe._name, cfg.bpe.sentencepiece_model) == ("sentencepiece", "/data/sentencepiece.bpe.model")


def test_task_and_criterion_defaults_are_the_recipe():
    """A run configured without our YAML (fairseq's own command line, a test building KMLMConfig) trains the same
    recipe as recipe/kmlm.yaml."""
    from kmlm_fairseq.criterions.kmlm_multitask import KMLMMultitaskConfig
    from kmlm_fairseq.tasks.kmlm_reasoning import KMLMConfig

    cfg, defaults = compose_like_fairseq("kmlm_r_base"), KMLMConfig()
    for key in ("streams", "tokens_per_sample", "mask_prob", "plain_masking", "knowledge_masking",
                "knowledge_at_least_one", "sample_break_mode", "leave_unmasked_prob", "random_token_prob",
                "diamond_relation_prob", "multilang_sampling_alpha"):
        assert str(getattr(defaults, key)) == str(cfg.task[key]), key
    assert KMLMMultitaskConfig().alpha == cfg.criterion.alpha == 0.3


def test_kmlm_and_mlm_only_are_one_key_away():
    """docs/recipe.md: KMLM with any config through task._name, MLM only on plain text through task.streams."""
    cfg = compose_like_fairseq("tiny_cpu", ("task._name=kmlm_knowledge",))
    assert (cfg.task._name, cfg.model._name, cfg.task.knowledge_masking) == ("kmlm_knowledge", "roberta_tiny", "tokens")
    cfg = compose_like_fairseq("kmlm_r_base", ("task.streams='plain'", "task.epoch_stream=longest"))
    assert (cfg.task.streams, cfg.task.epoch_stream) == ("plain", "longest")


def test_precision_groups():
    """fp16 on GPU (ours, not the paper's), bf16 as a run group, fp32 on CPU."""
    assert (compose_like_fairseq("kmlm_r_base").common.fp16, compose_like_fairseq("kmlm_r_base").common.bf16) == (
        True, False)
    bf16 = compose_like_fairseq("kmlm_r_base", ("run=gpu_bf16",)).common
    assert (bf16.fp16, bf16.bf16, bf16.cpu) == (False, True, False)
    cpu = compose_like_fairseq("tiny_cpu").common
    assert (cpu.fp16, cpu.bf16, cpu.cpu) == (False, False, True)


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_every_group_option_composes(group, option):
    in_defaults = {"model", "run", "experiment", "recipe"}
    override = f"{group}={option}" if group in in_defaults else f"+{group}={option}"
    cfg = compose_like_fairseq("tiny_cpu", (override, "checkpoint.restore_file=/ckpt.pt"))
    if group == "init":
        assert cfg.checkpoint.restore_file == "/ckpt.pt" and cfg.checkpoint.reset_optimizer


def test_init_group_without_a_path_leaves_a_sentinel_the_task_rejects():
    cfg = compose_like_fairseq("tiny_cpu", ("+init=pretrained",))
    assert cfg.checkpoint.restore_file == "REQUIRED"
    assert cfg.checkpoint.reset_optimizer and cfg.checkpoint.reset_dataloader
