"""The run's steps: what each stage reads, writes and is run with, from the pipeline's settings."""
import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from preprocess.cli import stage_parser
from preprocess.core.errors import UserFacingError
from preprocess.core.languages import parse_languages
from preprocess.pipeline.train_log import TrainingProgress
from preprocess.stages import STAGES

WORKDIR = "{WORKDIR}"  # placeholder in a step's arguments, resolved when it runs


REPO = "{REPO}"  # the repository (configs/), likewise


LOCK_FILE = ".pipeline.lock"


NO_MARKER = "no completion marker"  # the one reason a resumable step continues its interrupted run


MODEL_STAGES = ("train", "export", "eval-xlr")  # the driver's steps after the data stages
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Step:
    """One stage invocation of the pipeline."""

    stage: str  # the kmlm-preprocess subcommand, or train / export / eval-xlr
    directory: str  # where it writes, relative to WORKDIR (also where its marker goes)
    argv: tuple  # arguments after the subcommand; may hold {WORKDIR} and {WORKDIR}/*-globs resolved at run time
    inputs: tuple = ()  # steps whose outputs it reads
    external: tuple = ()  # files outside WORKDIR it reads
    outputs: tuple = ()  # what it makes, relative to WORKDIR: must exist for it to count as done
    owns_directory: bool = True  # False: it shares its directory; only its outputs and temp files are cleared
    entry: tuple = ()  # `python -m ENTRY...` runs it (default: preprocess.cli STAGE)
    code_tree: tuple = ()  # resumable steps: globs of every source file the step could load (for its started marker)
    code_files: tuple = ()  # more files in the fingerprint: globs relative to the repository
    code_packages: tuple = ()  # installed packages (import names) whose versions are in the fingerprint
    hydra_overrides: bool = False  # --set STAGE.key=value passes Hydra's key=value, not --key value
    first_launch_argv: tuple = ()  # arguments only for a start from nothing (not for a resumed run)
    resumable: bool = False  # a killed run continues from what it left (training: checkpoint_last.pt)
    log: str = None  # relative to WORKDIR: the stage's output goes here (appended); `echo` picks what is shown
    echo: object = None  # line -> text to print, or None
    description: str = ""

    def marker(self, workdir):
        return Path(workdir) / self.directory / f".done.{self.stage}.json"

    def started_marker(self, workdir):
        """Of a resumable step: the fingerprint of the run its directory holds the partial work of."""
        return Path(workdir) / self.directory / f".started.{self.stage}.json"

    def command(self):
        entry = self.entry or ("preprocess.cli", self.stage)
        return [sys.executable, "-m", *entry]

    def manifest(self, workdir):
        """Where its traced run lists the source files it loaded (preprocess/pipeline/traced.py)."""
        return Path(workdir) / self.directory / f".code.{self.stage}.json"

    def traced_command(self, workdir):
        return [sys.executable, "-m", "preprocess.pipeline.traced", str(self.manifest(workdir)), *self.command()[2:]]

    def about(self):
        return self.description or STAGES[self.stage][1]


def optional(flag, value):
    return () if value is None else (flag, str(value))


def xlr_size_arguments(text):
    if text is None:
        return ()
    sizes = text.replace(",", " ").split()
    if len(sizes) != 3 or not all(s.isdigit() for s in sizes):
        raise UserFacingError(f"--xlr-sizes takes TRAIN,DEV,TEST, three non-negative integers; got {text!r}")
    return ("--train-size", sizes[0], "--dev-size", sizes[1], "--test-size", sizes[2])


def plain_file(spec):
    """``LANG=FILE`` or ``FILE`` -> (``LANG=`` or "", the file's absolute path)."""
    lang, sep, path = spec.partition("=")
    if sep and "/" not in lang:
        return f"{lang}=", Path(path).resolve()
    return "", Path(spec).resolve()


def table_steps(args, langs, workers):
    """The steps that make WORKDIR/tables: ingest of --dump, or import-triples of --triples and --names (the dumps,
    if given too, are then ingested into WORKDIR/wikidata for the relations' labels and the descriptions); returns
    (steps, the stage making the tables, the directory holding descriptions)."""
    W = WORKDIR
    dumps = tuple(str(Path(d).resolve()) for d in args.dump or ())
    if not (dumps or args.triples):
        raise UserFacingError("nothing to read: pass --dump (Wikidata JSON dumps) or --triples (+ --names)")
    if not args.triples:
        if args.names:
            raise UserFacingError("--names goes with --triples (the name files of the imported triples)")
        return [Step("ingest", "tables", ("--input", *dumps, "--output", f"{W}/tables", *langs, *workers),
                     external=dumps, outputs=("tables/entities.parquet", "tables/triples.parquet"))], "ingest", "tables"
    from preprocess.stages.import_triples import parse_names_option, triple_files

    names = parse_names_option(args.names)
    name_args = tuple(f"{lang}={Path(path).resolve()}" for lang, paths in names.items() for path in paths)
    files = tuple(str(path.resolve()) for path in triple_files(args.triples))
    steps = []
    if dumps:
        steps.append(Step("ingest", "wikidata", ("--input", *dumps, "--output", f"{W}/wikidata", *langs, *workers),
                          external=dumps, outputs=("wikidata/entities.parquet",),
                          description="Wikidata dump -> the relations' labels (and descriptions) for import-triples"))
    steps.append(Step("import-triples", "tables",
                      ("--triples", *files, *(("--names", *name_args) if name_args else ()), "--output", f"{W}/tables",
                       *langs, *(("--relation-labels", f"{W}/wikidata") if dumps else ())),
                      inputs=("ingest",) if dumps else (),
                      external=files + tuple(arg.partition("=")[2] for arg in name_args),
                      outputs=("tables/entities.parquet", "tables/triples.parquet")))
    return steps, "import-triples", "wikidata" if dumps else None


def build_steps(args):
    """The run's steps, in pipeline order."""
    W = WORKDIR
    seed = ("--seed", str(args.seed))
    langs = optional("--languages", args.languages and ",".join(parse_languages(args.languages)))
    workers = optional("--workers", args.workers)
    steps, tables, described = table_steps(args, langs, workers)
    steps += [
        Step("sentences", "sentences", ("--input", f"{W}/tables", "--output", f"{W}/sentences", *seed, *langs),
             inputs=(tables,), outputs=("sentences/sentences.parquet", "sentences/heldout_triples.parquet")),
        Step("cycles", "cycles", ("--input", f"{W}/tables", "--output", f"{W}/cycles", *seed),
             inputs=(tables,), outputs=("cycles/cycles.parquet",)),
        Step("xlr", "xlr", ("--input", f"{W}/tables", "--cycles", f"{W}/cycles", "--output", f"{W}/xlr", *seed,
                            *xlr_size_arguments(args.xlr_sizes), *langs),
             inputs=(tables, "cycles"), outputs=("xlr/heldout_cycles.parquet", "xlr/train.en.jsonl")),
        Step("reasoning", "reasoning", ("--input", f"{W}/tables", "--cycles", f"{W}/cycles", "--output",
                                        f"{W}/reasoning", *seed, "--exclude", f"{W}/xlr/heldout_cycles.parquet",
                                        "--exclude-triples", f"{W}/sentences/heldout_triples.parquet", *langs),
             inputs=(tables, "cycles", "xlr", "sentences"), outputs=("reasoning/reasoning.parquet",)),
        Step("check-leakage", "reasoning", ("--xlr", f"{W}/xlr", "--reasoning", f"{W}/reasoning"),
             inputs=("xlr", "reasoning"), owns_directory=False),
        Step("report", "report", ("--tables", f"{W}/tables", "--sentences", f"{W}/sentences", "--cycles",
                                  f"{W}/cycles", "--reasoning", f"{W}/reasoning", "--xlr", f"{W}/xlr",
                                  "--output", f"{W}/report", *seed),
             inputs=(tables, "sentences", "cycles", "reasoning", "xlr"), outputs=("report/report.md",)),
    ]
    plain_args, plain_inputs, plain_external = (), (), ()
    if args.plain_text_from_descriptions:
        if described is None:
            raise UserFacingError("--plain-text-from-descriptions with --triples needs --dump: imported tables have "
                                  "no descriptions (the dump's entities give them)")
        steps.append(Step("descriptions", "plain_text", ("--input", f"{W}/{described}", "--output",
                                                         f"{W}/plain_text", *langs),
                          inputs=("ingest",), outputs=("plain_text",)))
        plain_args, plain_inputs = (f"{W}/plain_text/*.txt",), ("descriptions",)
    elif args.plain:
        specs = [plain_file(p) for p in args.plain]
        plain_args = tuple(f"{lang}{path}" for lang, path in specs)
        plain_external = tuple(str(path) for _, path in specs)
    if args.tokenizer:
        tokenizer_dir = Path(args.tokenizer).resolve()
        if not tokenizer_dir.is_dir():
            raise UserFacingError(f"--tokenizer {args.tokenizer} is not a directory")
        tokenizer = ("--tokenizer", str(tokenizer_dir))
        tokenizer_inputs, tokenizer_files = (), tuple(str(p) for p in sorted(tokenizer_dir.rglob("*")) if p.is_file())
    else:
        spm_plain = ("--plain", *plain_args) if plain_args else ()
        steps.append(Step("spm", "data", ("-o", f"{W}/data", "--sentences", f"{W}/sentences", "--reasoning",
                                          f"{W}/reasoning", *spm_plain, *optional("--vocab-size", args.vocab_size)),
                          inputs=("sentences", "reasoning", *plain_inputs), external=plain_external,
                          outputs=("data/sentencepiece.bpe.model", "data/dict.txt"), owns_directory=False))
        tokenizer, tokenizer_inputs, tokenizer_files = (), ("spm",), ()
    steps.append(Step("binarize", "data", ("--sentences", f"{W}/sentences", "--reasoning", f"{W}/reasoning",
                                           "-o", f"{W}/data", *seed, *workers, *tokenizer),
                      inputs=("sentences", "reasoning", *tokenizer_inputs), external=tokenizer_files,
                      outputs=("data/knowledge", "data/reasoning"), owns_directory=False))
    if plain_args:
        steps.append(Step("plain", "data", ("-o", f"{W}/data", *seed, *workers, *tokenizer, *plain_args),
                          inputs=(*tokenizer_inputs, *plain_inputs), external=(*tokenizer_files, *plain_external),
                          outputs=("data/plain",), owns_directory=False))
    steps += model_steps(args, data_stages=[step.stage for step in steps if step.directory == "data"])
    return apply_overrides(in_pipeline_order(steps), args.overrides)


def in_pipeline_order(steps):
    """The steps sorted as ``STAGES`` orders the data stages (then train, export, eval-xlr); each after its inputs."""
    order = [*STAGES, *MODEL_STAGES]
    steps = sorted(steps, key=lambda step: order.index(step.stage))
    for position, step in enumerate(steps):
        later = [name for name in step.inputs if name not in {s.stage for s in steps[:position]}]
        assert not later, f"{step.stage} reads {later}, which STAGES puts after it"
    return steps


def model_steps(args, data_stages):
    """train -> export (-> eval-xlr): the steps after the data, when --train names a config."""
    if not args.train:
        if args.init or args.eval:
            raise UserFacingError("--init and --eval need --train CONFIG")
        return []
    if not (REPO_ROOT / "configs" / f"{args.train}.yaml").is_file():
        names = sorted(p.stem for p in (REPO_ROOT / "configs").glob("*.yaml"))
        raise UserFacingError(f"--train {args.train}: no configs/{args.train}.yaml (configs: {', '.join(names)})")
    W = WORKDIR
    streams = ",".join(s for s in ("plain", "knowledge", "reasoning") if s != "plain" or "plain" in data_stages)
    init, init_file = (), ()
    if args.init:
        init_file = (str(Path(args.init).resolve()),)
        init = ("+init=pretrained", f"checkpoint.restore_file={init_file[0]}")
    steps = [
        Step("train", "checkpoints", ("--config-dir", f"{REPO}/configs", "--config-name", args.train,
                                      f"task.data={W}/data", f"checkpoint.save_dir={W}/checkpoints",
                                      f"task.streams='{streams}'"),
             inputs=tuple(data_stages), external=init_file, outputs=("checkpoints/checkpoint_last.pt",),
             entry=("fairseq_cli.hydra_train",), code_tree=("kmlm_fairseq/**/*.py", "preprocess/core/**/*.py"),
             code_files=("configs/**/*.yaml",),
             code_packages=("fairseq", "torch"), hydra_overrides=True, first_launch_argv=init, resumable=True,
             log="checkpoints/train.log", echo=TrainingProgress(),
             description=f"fairseq-hydra-train --config-name {args.train} (log: checkpoints/train.log)"),
        Step("export", "hf", (f"{W}/checkpoints/checkpoint_last.pt", f"{W}/hf"), inputs=("train",),
             outputs=("hf/config.json",), entry=("kmlm_fairseq.export.cli", "hf"),
             code_packages=("transformers", "torch"),
             description="checkpoint_last.pt -> a Hugging Face model, checked against fairseq's logits"),
    ]
    if "xlr" in args.eval:
        steps.append(Step("eval-xlr", "eval_xlr", ("--model", f"{args.train}={W}/hf", "--data", f"{W}/xlr",
                                                   "--output", f"{W}/eval_xlr", "--seed", str(args.seed)),
                          inputs=("export", "xlr"), outputs=("eval_xlr/results.md",),
                          entry=("kmlm_eval.cli", "xlr"),
                          code_packages=("transformers", "torch"),
                          description="fine-tune on English XLR, accuracy per language"))
    return steps


def apply_overrides(steps, overrides):
    """``--set STAGE.option=value`` -> ``--option value`` appended to STAGE's arguments (argparse: last wins), or
    Hydra's ``option=value`` for train. A value naming an existing file makes that file an input of the stage."""
    by_stage = {step.stage: step for step in steps}
    for override in overrides:
        target, _, value = override.partition("=")
        stage, dot, option = target.partition(".")
        if not dot or not option or stage not in by_stage:
            raise UserFacingError(f"--set {override}: expected STAGE.option[=value] with STAGE one of "
                                  f"{', '.join(by_stage)}")
        step = by_stage[stage]
        if step.hydra_overrides:
            extra = (f"{option}={value}",)
        else:
            extra = (known_option(step, option, override),) + ((value,) if "=" in override else ())
        external = (str(Path(value).resolve()),) if value and Path(value).is_file() else ()
        by_stage[stage] = Step(**{**step.__dict__, "argv": step.argv + extra, "external": step.external + external})
    return [by_stage[step.stage] for step in steps]


def known_option(step, option, override):
    """``--option`` if the step's command line has it (or it is the start of exactly one option, as argparse
    allows); else an error now, not after the stages before it have run for hours."""
    flag = f"--{option.lstrip('-')}"
    options = stage_options(step)
    matches = [flag] if flag in options else [o for o in options if o.startswith(flag)]
    if len(matches) != 1:
        raise UserFacingError(f"--set {override}: {step.stage} has no option {flag} "
                              f"(its options: {', '.join(o for o in options if o.startswith('--'))})")
    return flag


def stage_options(step):
    """The option strings of the step's command (export and eval import torch to build their parsers)."""
    if step.entry:
        parser = importlib.import_module(step.entry[0]).build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = commands.choices[step.entry[1]]
    else:
        parser, _ = stage_parser(step.stage)
    return [flag for action in parser._actions for flag in action.option_strings]


