"""``python -m kmlm_fairseq.validate CHECKPOINT --data DATA --output OUT [--config kmlm_r_base] [--seed 1]
[OVERRIDE ...]``: the three losses of a checkpoint on DATA's validation sets, per language, every model scored alike.

Scoring: the task and criterion of the training config CONFIG (configs/, composed as fairseq-hydra-train composes
it, with the Hydra OVERRIDEs; default kmlm_r_base: the KMLM_R masking rules) on every stream of DATA, whatever task
and streams trained the checkpoint: a model trained on plain text alone still gets a knowledge and a reasoning
loss, and KMLM's model is scored with KMLM_R's reasoning masks. Only the checkpoint's weights and architecture are
read. Masks are a function of (``--seed``, stream, index), as in fairseq's own validation with ``common.seed``:
models given the same seed are scored on the same masked tokens (a paired comparison). Eval mode (no dropout), on
the GPU when there is one.
Output: OUT/results.csv in kmlm-eval's one-seed layout (columns task,model,lang,metric,value,count, which
kmlm_eval/results.py reads as one seed; written here: the plugin does not import the evaluation) and OUT/results.md
(languages down, losses across): task ``valid-loss``, metrics ``<stream>_loss`` in bits per predicted token as
fairseq logs them, per language (and ``avg``, their unweighted mean), count = predicted tokens. The log gives each
loss over all languages' tokens (sum of value x count / sum of count): with the same seed, the value fairseq's own
validation logs.
"""
import argparse
import csv
import io
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from fairseq import checkpoint_utils, tasks, utils
from fairseq.dataclass.initialize import add_defaults, hydra_init
from fairseq.dataclass.utils import omegaconf_no_object_check
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

import kmlm_fairseq  # noqa: F401  (registers the tasks, criterion and architecture)
from kmlm_fairseq.data.binarized_streams import STREAMS, stream_languages
from preprocess.core.console import run_command
from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.core.scores import Score

logger = logging.getLogger("kmlm_fairseq.validate")
REPO_ROOT = Path(__file__).resolve().parents[1]
TASK = "valid-loss"
RESULTS_COLUMNS = ("task", "model", "lang", "metric", "value", "count")
SPLIT = "valid"


def scoring_config(name, data, seed, overrides):
    """CONFIG composed as fairseq-hydra-train composes it (its schema registered under the name), resolved."""
    if not (REPO_ROOT / "configs" / f"{name}.yaml").is_file():
        raise UserFacingError(f"--config {name}: no configs/{name}.yaml")
    GlobalHydra.instance().clear()
    hydra_init(name)
    try:
        with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base=None):
            cfg = compose(config_name=name, overrides=[f"task.data={data}", f"common.seed={seed}", *overrides],
                          return_hydra_config=True)
    except Exception as err:  # Hydra's own errors: a key or group that does not exist
        raise UserFacingError(f"--config {name} with {list(overrides)} does not compose: {err}") from None
    finally:
        ConfigStore.instance().repo.pop(f"{name}.yaml", None)
    HydraConfig.instance().set_config(cfg)  # for ${hydra:...} interpolations (task.recipe: the config's name)
    with open_dict(cfg):
        del cfg["hydra"]
        cfg.common.user_dir = None  # already imported
    add_defaults(cfg)
    with omegaconf_no_object_check():
        return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))


def load_model(checkpoint, task):
    state = checkpoint_utils.load_checkpoint_to_cpu(str(checkpoint))
    model = task.build_model(state["cfg"].model, from_checkpoint=True)
    model.load_state_dict(state["model"], strict=True)
    return model.eval(), int(state.get("optimizer_history", [{}])[-1].get("num_updates", 0))


def language_of_sample(task, data):
    """stream -> array: the language of each sample of the stream's concatenated valid set (the task's order)."""
    languages = {}
    for stream in task.streams:
        per_language = [(lang, len(task.load_stream(stream, lang, SPLIT)))
                        for lang in stream_languages(data, stream, SPLIT, task.languages)]
        languages[stream] = np.array([lang for lang, n in per_language for _ in range(n)], dtype=object)
    return languages


@torch.no_grad()
def stream_sums(task, model, criterion, batch_size):
    """{(stream, lang): [summed cross-entropy in nats, predicted tokens]} over the valid split."""
    task.load_dataset(SPLIT, epoch=1)
    dataset = task.dataset(SPLIT)
    lang_of = language_of_sample(task, task.cfg.data)
    iterator = task.get_batch_iterator(dataset, max_sentences=batch_size, epoch=1).next_epoch_itr(shuffle=False)
    sums = defaultdict(lambda: [0.0, 0])
    for sample in iterator:
        if torch.cuda.is_available():
            sample = utils.move_to_cuda(sample)
        for stream, batch in sample.items():
            langs = lang_of[stream][batch["id"].cpu().numpy()]
            for lang in np.unique(langs):
                rows = torch.from_numpy(np.flatnonzero(langs == lang)).to(batch["target"].device)
                sub = {"net_input": {k: v[rows] for k, v in batch["net_input"].items()},
                       "target": batch["target"][rows]}
                loss, predicted, _ = criterion.stream_loss(model, sub)
                sums[(stream, lang)][0] += float(loss)
                sums[(stream, lang)][1] += int(predicted)
    return sums


def scores(sums, model_name):
    """Per stream and language, the mean loss in bits (fairseq's log unit)."""
    return [Score(TASK, model_name, lang, f"{stream}_loss", loss / predicted / np.log(2), predicted)
            for (stream, lang), (loss, predicted) in sorted(sums.items()) if predicted]


def write_results(results, output):
    """results.csv in kmlm-eval's layout, with the ``avg`` row per metric (mean over languages); returns a table."""
    metrics = list(dict.fromkeys(s.metric for s in results))
    rows = list(results) + [Score(TASK, results[0].model, "avg", metric, float(np.mean(
        [s.value for s in results if s.metric == metric])), sum(s.count for s in results if s.metric == metric))
        for metric in metrics]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RESULTS_COLUMNS)
    writer.writerows([s.task, s.model, s.lang, s.metric, f"{s.value:.4f}", s.count] for s in rows)
    write_text(buffer.getvalue(), Path(output) / "results.csv")
    languages = list(dict.fromkeys(s.lang for s in rows))
    value = {(s.lang, s.metric): s.value for s in rows}
    table = ["| lang | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
    table += ["| " + " | ".join([lang] + [f"{value[(lang, m)]:.3f}" if (lang, m) in value else "–" for m in metrics])
              + " |" for lang in languages]
    write_text("\n".join(table) + "\n", Path(output) / "results.md")
    return "\n".join(table)


def pooled(results):
    """{metric: the loss over every language's predicted tokens}: fairseq's own validation value."""
    totals = defaultdict(lambda: [0.0, 0])
    for score in results:
        totals[score.metric][0] += score.value * score.count
        totals[score.metric][1] += score.count
    return {metric: loss / count for metric, (loss, count) in totals.items()}


def validate(args):
    if not Path(args.checkpoint).is_file():
        raise UserFacingError(f"{args.checkpoint}: no such checkpoint")
    cfg = scoring_config(args.config, args.data, args.seed, args.overrides)
    with open_dict(cfg):
        cfg.task.streams = ",".join(STREAMS)
    torch.manual_seed(args.seed)
    task = tasks.setup_task(cfg.task)
    model, updates = load_model(args.checkpoint, task)
    if torch.cuda.is_available():
        model.cuda()
    criterion = task.build_criterion(cfg.criterion)
    results = scores(stream_sums(task, model, criterion, args.batch_size or cfg.dataset.batch_size),
                     args.name or Path(args.checkpoint).parent.name)
    if not results:
        raise UserFacingError(f"no validation data in {args.data}")
    markdown = write_results(results, args.output)
    logger.info("%s (update %d), over all languages: %s", args.checkpoint, updates,
                ", ".join(f"{metric} {value:.3f}" for metric, value in pooled(results).items()))
    print(markdown)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m kmlm_fairseq.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a fairseq checkpoint of our training (checkpoint_last.pt)")
    parser.add_argument("--data", type=Path, required=True, help="binarized DATA with valid splits")
    parser.add_argument("--output", type=Path, required=True, help="directory for results.csv and results.md")
    parser.add_argument("--config", default="kmlm_r_base", help="training config whose task and criterion score "
                                                                "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the validation masks (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, help="sequences per stream and batch (default: the config's)")
    parser.add_argument("--name", help="the model's name in the results (default: the checkpoint's directory)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides of CONFIG, e.g. model=tiny")
    return parser


def main(argv=None):
    args = build_parser().parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    return run_command(validate, args, "kmlm_fairseq.validate", verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
