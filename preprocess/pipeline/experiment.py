"""``kmlm-preprocess experiment FILE.yaml -o OUT [--quick] [--jobs N] [--dry-run] [--force STEP] [--set K=V]``:
a declared set of runs (one shared data build, arms x seeds of training from one common start, evaluations, a
comparison), run Make-like by the pipeline driver: every step is a pipeline step with a completion marker and a
fingerprint.

The file (OmegaConf YAML; examples in run/experiments/)::

    data:         kmlm-preprocess pipeline options of the shared data build, without -o/--train/--init/--eval
                  (``dump: [a, b]`` -> ``--dump a b``, ``plain_text_from_descriptions: true`` -> the flag,
                  ``set: [sentences.holdout-triples=0.1]`` -> ``--set ...``); relative paths are relative to the
                  repository root; ``${oc.env:KMLM_SHARED_DATA,../shared/data}``-style interpolations work
    train:        Hydra overrides appended to EVERY training below (the scale: model=tiny run=cpu ...)
    init:         optional, a checkpoint every first launch starts from (+init=pretrained), e.g. XLM-R's model.pt
    baselines:    optional, {name: HF_DIR}: models evaluated as they are, per seed (e.g. XLM-R base exported with
                  kmlm-export hf); no valid-loss (it needs a fairseq checkpoint)
    start:        optional, the common start: {config, overrides, evaluate (default true)}; trained once (seed:
                  the data seed) and evaluated as a row of its own; every arm's first launch is initialised from
                  its checkpoint_last.pt (+init=pretrained)
    arms:         {name: {config, overrides}}: a training config of configs/ and its Hydra overrides; from the
                  start's checkpoint if there is a start, else from init
    arm_overrides: Hydra overrides of every arm (not of the start), e.g. the number of updates
    seeds:        [1, 2, 3]: common.seed of each arm's run (masks, data order, dropout); {SEED} in evaluations
    launcher:     local (default: fairseq-hydra-train here) or slurm (run/slurm/train.sbatch through `sbatch
                  --wait`, ``sbatch: [--nodes=4, ...]`` its options; see preprocess/pipeline/sbatch.py)
    evaluations:  {name: {task, args}}: task ``valid-loss`` (python -m kmlm_fairseq.validate: the three losses
                  on the data's valid sets, args = its options) or a kmlm-eval task (xlr, fact-recall, xfactr,
                  ...: ``--model ARM=<run>/hf --output <run>/eval/<name>`` + args); {WORKDIR} is OUT, {SEED} the
                  run's seed
    compare:      [[A, B], ...]: paired differences B - A over the seeds both have
    quick:        a mapping merged over the file with --quick (lists replace), e.g. {seeds: [1], ...}

Layout of OUT: the data build as the pipeline lays it out (tables/ sentences/ ... data/), runs/start/,
runs/<arm>/seed<k>/{checkpoints,hf,eval/<name>}/ (baselines: eval/ only), comparison/ (results.md, summary.csv,
differences.csv, PNGs). Step names: data stages by their name; ``start.train``,
``<arm>.seed<k>.train|export|<evaluation>``, ``<baseline>.seed<k>.<evaluation>``, ``compare``. A second
invocation with the same file skips every step; an added seed or arm adds only its own steps (and the
comparison); a changed setting re-runs what depends on it. ``--set KEY=VALUE`` overrides the file (OmegaConf
dotlist: ``--set seeds=[1,2,3,4]``).
"""
import argparse
import logging
import re
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from preprocess.core.errors import UserFacingError
from preprocess.pipeline import command
from preprocess.pipeline.execute import check_composes, run_plan
from preprocess.pipeline.plan import REPO, REPO_ROOT, WORKDIR, Step, build_steps
from preprocess.pipeline.train_log import TrainingProgress

logger = logging.getLogger("kmlm-preprocess experiment")

SEED = "{SEED}"
VALID_LOSS = "valid-loss"
KEYS = {"description", "data", "train", "init", "start", "baselines", "arms", "arm_overrides", "seeds", "launcher",
        "sbatch", "evaluations", "compare", "quick"}
PATH_OPTIONS = {"dump", "triples", "plain", "tokenizer"}
NOT_IN_DATA = {"output", "o", "train", "init", "eval", "force", "dry_run"}
NAME = re.compile(r"[A-Za-z0-9_-]+")
TRAINING_CODE = ("kmlm_fairseq/**/*.py", "preprocess/core/**/*.py")  # what a training may load (its started marker)


# --- The file ------------------------------------------------------------------------------------------------------
def load_experiment(path, quick=False, overrides=()):
    """The experiment as plain Python containers, interpolations resolved, --quick and KEY=VALUE applied."""
    try:
        config = OmegaConf.load(path)
        quick_part = config.pop("quick", None)
        if quick:
            if quick_part is None:
                raise UserFacingError(f"{path} has no quick: section for --quick")
            config = OmegaConf.merge(config, quick_part)
        config = OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))
        experiment = OmegaConf.to_container(config, resolve=True)
    except FileNotFoundError:
        raise UserFacingError(f"{path}: no such experiment file") from None
    except (OmegaConfBaseException, ValueError) as err:
        raise UserFacingError(f"{path}: {err}") from None
    check_experiment(experiment, path)
    return experiment


def check_experiment(experiment, path):
    unknown = sorted(set(experiment) - KEYS)
    if unknown:
        raise UserFacingError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    for key in ("data", "arms", "seeds"):
        if not experiment.get(key):
            raise UserFacingError(f"{path}: '{key}' is missing or empty")
    if not all(isinstance(s, int) for s in experiment["seeds"]) or len(set(experiment["seeds"])) != len(
            experiment["seeds"]):
        raise UserFacingError(f"{path}: seeds must be distinct integers, got {experiment['seeds']}")
    for name, arm in experiment["arms"].items():
        if not NAME.fullmatch(name) or name == "start":
            raise UserFacingError(f"{path}: arm name {name!r}: letters, digits, _ and - only (not 'start')")
        if not isinstance(arm, dict) or not arm.get("config"):
            raise UserFacingError(f"{path}: arm {name} needs a config (a name in configs/)")
    runs = [*experiment["arms"], *(experiment.get("baselines") or {}), *(["start"] if experiment.get("start") else [])]
    for name in experiment.get("baselines") or {}:
        if not NAME.fullmatch(name) or name in experiment["arms"] or name == "start":
            raise UserFacingError(f"{path}: baseline name {name!r}: letters, digits, _ and -, not an arm's or 'start'")
    for a, b in experiment.get("compare") or []:
        if {a, b} - set(runs):
            raise UserFacingError(f"{path}: compare [{a}, {b}]: both must be arms, baselines or start "
                                  f"({', '.join(runs)})")
    for name, evaluation in (experiment.get("evaluations") or {}).items():
        if not NAME.fullmatch(name) or not isinstance(evaluation, dict) or not evaluation.get("task"):
            raise UserFacingError(f"{path}: evaluation {name!r} needs a task (valid-loss or a kmlm-eval task)")
    if experiment.get("launcher", "local") not in ("local", "slurm"):
        raise UserFacingError(f"{path}: launcher must be local or slurm, got {experiment['launcher']!r}")


def repo_path(text):
    path = Path(str(text))
    return str(path if path.is_absolute() else REPO_ROOT / path)


def data_argv(data):
    """The data build as `kmlm-preprocess pipeline` arguments (file paths made absolute)."""
    argv = []
    for key, value in data.items():
        if key in NOT_IN_DATA:
            raise UserFacingError(f"data: {key} is the experiment's own, not an option of the data build")
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        if key == "set":
            argv += [a for v in values for a in ("--set", str(v))]
        elif key in PATH_OPTIONS:
            argv += [flag, *(repo_path(v) for v in values)]
        elif key == "names":
            argv += [flag, *(f"{v.partition('=')[0]}={repo_path(v.partition('=')[2])}" for v in map(str, values))]
        elif value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, *map(str, values)]
    return argv


class DataParser(argparse.ArgumentParser):
    def error(self, message):
        raise UserFacingError(f"data: {message}")


def data_steps(experiment, workdir):
    parser = DataParser(prog="data", add_help=False)
    command.add_arguments(parser)
    args = parser.parse_args(["-o", str(workdir), *data_argv(experiment["data"])])
    if args.train or args.init or args.eval:
        raise UserFacingError("data: --train/--init/--eval belong to the arms, not to the data build")
    return build_steps(args), args


# --- The steps -----------------------------------------------------------------------------------------------------
def train_step(name, directory, config, overrides, inputs, init, experiment):
    """One training as a resumable pipeline step (local fairseq-hydra-train, or train.sbatch via sbatch --wait)."""
    W = WORKDIR
    save_dir = f"{W}/{directory}/checkpoints"
    init_file, init_inputs = init
    common = dict(stage=f"{name}.train", directory=f"{directory}/checkpoints", inputs=(*inputs, *init_inputs),
                  outputs=(f"{directory}/checkpoints/checkpoint_last.pt",), code_tree=TRAINING_CODE,
                  code_files=("configs/**/*.yaml",), code_packages=("fairseq", "torch"), resumable=True,
                  log=f"{directory}/checkpoints/train.log", echo=TrainingProgress(),
                  external=() if init_inputs or not init_file else (init_file,),
                  description=f"train {name}: {config} {' '.join(overrides)}")
    if experiment.get("launcher", "local") == "slurm":
        # the job runs the training elsewhere: the traced run here loads only sbatch.py, so the code it may run is
        # fingerprinted whole
        common["code_files"] += ("run/slurm/train.sbatch", *TRAINING_CODE)
        return Step(**common, argv=(*experiment.get("sbatch", []), "--", config, f"{W}/data", save_dir,
                                    init_file or "-", *overrides), entry=("preprocess.pipeline.sbatch",))
    first = ("+init=pretrained", f"checkpoint.restore_file={init_file}") if init_file else ()
    return Step(**common, argv=("--config-dir", f"{REPO}/configs", "--config-name", config, f"task.data={W}/data",
                                f"checkpoint.save_dir={save_dir}", *overrides),
                entry=("fairseq_cli.hydra_train",), hydra_overrides=True, first_launch_argv=first)


def export_step(name, directory):
    return Step(f"{name}.export", f"{directory}/hf",
                (f"{WORKDIR}/{directory}/checkpoints/checkpoint_last.pt", f"{WORKDIR}/{directory}/hf"),
                inputs=(f"{name}.train",), outputs=(f"{directory}/hf/config.json",),
                entry=("kmlm_fairseq.export.cli", "hf"), code_packages=("transformers", "torch"),
                description=f"{name}: checkpoint_last.pt -> Hugging Face")


def evaluation_steps(name, arm, seed, directory, experiment, data_inputs, model_dir=None):
    """The evaluations of one run: of its exported model, or of a given Hugging Face model (a baseline: no
    valid-loss, which needs a fairseq checkpoint)."""
    steps = []
    hf = model_dir or f"{WORKDIR}/{directory}/hf"
    model_input = dict(inputs=data_inputs, external=tuple(str(p) for p in sorted(Path(model_dir).rglob("*"))
                                                          if p.is_file())) if model_dir else \
        dict(inputs=(f"{name}.export", *data_inputs))
    for evaluation, spec in (experiment.get("evaluations") or {}).items():
        out = f"{directory}/eval/{evaluation}"
        args = tuple(str(a).replace(SEED, str(seed)) for a in spec.get("args", []))
        common = dict(stage=f"{name}.{evaluation}", directory=out, outputs=(f"{out}/results.csv",),
                      code_packages=("transformers", "torch"), description=f"{name}: {evaluation}")
        if spec["task"] == VALID_LOSS and model_dir:
            continue
        if spec["task"] == VALID_LOSS:
            steps.append(Step(**common, argv=(f"{WORKDIR}/{directory}/checkpoints/checkpoint_last.pt", "--data",
                                              f"{WORKDIR}/data", "--output", f"{WORKDIR}/{out}", "--name", arm, *args),
                              inputs=(f"{name}.train", *data_inputs), entry=("kmlm_fairseq.validate",),
                              code_files=("configs/**/*.yaml",)))
        else:
            steps.append(Step(**common, **model_input, argv=("--model", f"{arm}={hf}", "--output", f"{WORKDIR}/{out}",
                                                             *args), entry=("kmlm_eval.cli", spec["task"])))
    return steps


def run_name(arm, seed):
    return "start" if arm == "start" else f"{arm}.seed{seed}"


def run_directory(arm, seed):
    return "runs/start" if arm == "start" else f"runs/{arm}/seed{seed}"


def experiment_steps(experiment, workdir):
    """Every step, in order: the data build, the start, each arm x seed, the comparison."""
    steps, data_args = data_steps(experiment, workdir)
    data_inputs = tuple(step.stage for step in steps)
    shared = list(experiment.get("train") or [])
    runs = []  # (arm, seed, directory)
    init = (str(Path(repo_path(experiment["init"]))), ()) if experiment.get("init") else (None, ())
    if experiment.get("start"):
        start = experiment["start"]
        seed = data_args.seed
        steps.append(train_step("start", "runs/start", start["config"],
                                (*shared, *start.get("overrides", []), f"common.seed={seed}"), data_inputs, init,
                                experiment))
        steps.append(export_step("start", "runs/start"))
        if start.get("evaluate", True):
            steps += evaluation_steps("start", "start", seed, "runs/start", experiment, data_inputs)
            runs.append(("start", seed, "runs/start"))
        init = (f"{WORKDIR}/runs/start/checkpoints/checkpoint_last.pt", ("start.train",))
    for name, model_dir in (experiment.get("baselines") or {}).items():
        if not Path(repo_path(model_dir)).is_dir():
            raise UserFacingError(f"baseline {name}: {model_dir} is not a Hugging Face model directory")
        for seed in experiment["seeds"]:
            directory = run_directory(name, seed)
            steps += evaluation_steps(run_name(name, seed), name, seed, directory, experiment, data_inputs,
                                      model_dir=repo_path(model_dir))
            runs.append((name, seed, directory))
    for arm, spec in experiment["arms"].items():
        for seed in experiment["seeds"]:
            name, directory = run_name(arm, seed), run_directory(arm, seed)
            overrides = (*shared, *spec.get("overrides", []), *(experiment.get("arm_overrides") or []),
                         f"common.seed={seed}")
            steps.append(train_step(name, directory, spec["config"], overrides, data_inputs, init, experiment))
            steps.append(export_step(name, directory))
            steps += evaluation_steps(name, arm, seed, directory, experiment, data_inputs)
            runs.append((arm, seed, directory))
    evaluations = [step.stage for step in steps if step.stage.rsplit(".", 1)[-1] in (experiment.get("evaluations")
                                                                                    or {})]
    pairs = [f"{a}:{b}" for a, b in experiment.get("compare") or []]
    steps.append(Step("compare", "comparison",
                      ("--output", f"{WORKDIR}/comparison", "--arms", *(experiment.get("baselines") or {}),
                       *experiment["arms"],
                       *(("--pairs", *pairs) if pairs else ()),
                       "--runs", *(f"{arm}:{seed}:{WORKDIR}/{directory}" for arm, seed, directory in runs)),
                      inputs=tuple(evaluations), outputs=("comparison/results.md",),
                      entry=("preprocess.pipeline.experiment_report",),
                      description="mean ± sd per arm and language, paired differences, plots"))
    return steps


def check_trainings(plan, workdir):
    """Compose each training config that is about to run (once per distinct config and overrides, seed aside), so
    a bad override stops the experiment before hours of work, not in the middle."""
    seen = set()
    for step, _, reason in plan:
        if reason and step.hydra_overrides:
            key = tuple(a for a in step.argv if not a.startswith(("common.seed=", "checkpoint.save_dir=")))
            if key not in seen:
                seen.add(key)
                check_composes(step, workdir, "the experiment's overrides")


# --- The command ---------------------------------------------------------------------------------------------------
def add_arguments(parser):
    parser.add_argument("file", type=Path, help="the experiment (YAML; see run/experiments/)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="directory of everything")
    parser.add_argument("--quick", action="store_true", help="merge the file's quick: section (fewer runs)")
    parser.add_argument("--force", action="append", default=[], metavar="STEP",
                        help="re-run STEP (e.g. kmlm.seed1.train) and what depends on it (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")
    parser.add_argument("--jobs", type=int, default=1,
                        help="steps run at once, each after the steps it reads (default: 1); on CPU with "
                             "OMP_NUM_THREADS=1, one per core")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a key of the file (OmegaConf dotlist), e.g. --set seeds=[1,2,3,4] (repeatable)")


def run(args):
    experiment = load_experiment(args.file, args.quick, args.overrides)
    workdir = args.output.resolve()
    steps = experiment_steps(experiment, workdir)
    if args.jobs < 1:
        raise UserFacingError(f"--jobs must be at least 1, got {args.jobs}")
    run_plan(steps, workdir, set(args.force), args.dry_run, what="experiment",
             before_running=lambda plan: check_trainings(plan, workdir), jobs=args.jobs)
    if not args.dry_run:
        logger.info("comparison: %s", workdir / "comparison" / "results.md")
    return 0
