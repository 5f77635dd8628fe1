"""``kmlm-preprocess pipeline``: run the stages in order, Make-like, skipping those already done as asked.

Input: the settings of a run (Wikidata dump files, seed, languages, XLR sizes, vocabulary size, plain text;
optionally a training config, an initial checkpoint and evaluations) and ``--set STAGE.option=value`` for any other
stage option (checked against the stage's parser, or for train composed with Hydra, before anything runs).
Output: WORKDIR laid out as in run/demo.sh::

    tables/ sentences/ cycles/ xlr/ reasoning/ report/ [plain_text/] data/ [checkpoints/ hf/ eval_xlr/]

Each stage runs as ``python -m MODULE ...`` in its own process (``preprocess.cli STAGE`` for the data stages,
fairseq's ``fairseq_cli.hydra_train`` for train, ``kmlm_fairseq.export.cli hf``, ``kmlm_eval.cli
xlr``): memory is returned after it, and a killed driver kills its stage (Linux PR_SET_PDEATHSIG). After a stage
succeeds the driver writes its completion marker ``WORKDIR/<its directory>/.done.<stage>.json`` (atomically; no
timestamps, so equal runs give equal files) holding a fingerprint: a hash of the stage name, its exact arguments
(WORKDIR written as ``{WORKDIR}``, so a moved WORKDIR stays valid), the fingerprints of the stages it reads, the
path, size and mtime of each file it reads from outside WORKDIR, and its code: the source of its module and of
the modules of ours that it imports (for train also configs/ and the fairseq and torch versions).

A stage is skipped iff its marker holds the fingerprint the current settings give and its outputs exist. A stage
runs when it is not, when ``--force`` names it, or when a stage it reads runs. Before anything runs, the markers of
every stage about to run are removed, and each stage's outputs are cleared just before it runs, so a killed run is
never taken as complete and never leaves stale files. The one exception is resumable work: train records the
fingerprint it started with (``.started.train.json``), and when only its completion marker is missing (it was
killed) and that fingerprint still holds, it keeps its checkpoints and fairseq continues from checkpoint_last.pt.
The plan is logged one line a stage ("skip (up to date)" / "run (reason: ...)"); ``--dry-run`` prints it and the
commands without running anything.
"""
import argparse
import ctypes
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from preprocess.cli import STAGES, stage_parser
from preprocess.core.common import UserFacingError, parse_languages, write_text

logger = logging.getLogger("kmlm-preprocess pipeline")

WORKDIR = "{WORKDIR}"  # placeholder in a step's arguments, resolved when it runs
REPO = "{REPO}"  # the repository (configs/), likewise
LOCK_FILE = ".pipeline.lock"
NO_MARKER = "no completion marker"  # the one reason a resumable step continues its interrupted run
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
    code_modules: tuple = ()  # modules whose source (and what they import of ours) is in the fingerprint
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

    def modules(self):
        return self.code_modules or (STAGES[self.stage][0],)

    def about(self):
        return self.description or STAGES[self.stage][1]


# ---------------------------------------------------------------------------------------------------------------
# the plan


def add_arguments(parser):
    run = parser.add_argument_group("the run")
    run.add_argument("--dump", nargs="+", required=True, metavar="FILE",
                     help="Wikidata JSON dump(s) (.json, .json.gz, .json.bz2), read in this order")
    run.add_argument("-o", "--output", required=True, metavar="WORKDIR", help="directory of every stage's outputs")
    run.add_argument("--seed", type=int, default=1, help="seed of every seeded stage (default: 1)")
    run.add_argument("--languages", help="languages of ingest, sentences, xlr, reasoning and descriptions, "
                                         "e.g. en,de,fr (default: each stage's default)")
    run.add_argument("--xlr-sizes", metavar="TRAIN,DEV,TEST",
                     help="XLR train samples and dev/test samples per language (default: xlr's defaults)")
    tokenizer = run.add_mutually_exclusive_group()
    tokenizer.add_argument("--vocab-size", type=int, help="sentencepiece pieces of the spm stage (default: its own)")
    tokenizer.add_argument("--tokenizer", metavar="DIR",
                           help="a real run: XLM-R's sentencepiece.bpe.model + dict.txt (or a Hugging Face XLM-R "
                                "directory), or the `kmlm-export fairseq` output of a BERT model (WordPiece: dict.txt "
                                "+ hf_tokenizer/) for binarize and plain; the spm stage is left out")
    run.add_argument("--workers", type=int, help="processes of ingest, binarize and plain (default: theirs)")
    plain = run.add_mutually_exclusive_group()
    plain.add_argument("--plain-text-from-descriptions", action="store_true",
                       help="the plain-text (MLM) stream: entity descriptions (the descriptions stage)")
    plain.add_argument("--plain", nargs="+", metavar="[LANG=]FILE", help="the plain-text stream: these files")
    run.add_argument("--set", action="append", default=[], metavar="STAGE.option[=value]", dest="overrides",
                     help="pass --option [value] to STAGE, e.g. --set cycles.max-apexes=4 (repeatable)")
    model = parser.add_argument_group("training, export and evaluation (optional; after the data stages)")
    model.add_argument("--train", metavar="CONFIG",
                       help="train with configs/CONFIG.yaml on WORKDIR/data into WORKDIR/checkpoints (e.g. tiny_cpu), "
                            "then export checkpoint_last.pt to WORKDIR/hf; --set train.KEY=VALUE is a Hydra override")
    model.add_argument("--init", metavar="CHECKPOINT",
                       help="start training from this fairseq checkpoint (e.g. XLM-R's model.pt; +init=pretrained)")
    model.add_argument("--eval", choices=["xlr"], action="append", default=[],
                       help="evaluate the exported model on the run's XLR dataset into WORKDIR/eval_xlr")
    control = parser.add_argument_group("control")
    control.add_argument("--force", action="append", default=[], metavar="STAGE",
                         help="re-run STAGE (and so every stage reading it) even if up to date (repeatable)")
    control.add_argument("--dry-run", action="store_true", help="print the plan and the commands, run nothing")


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


def build_steps(args):
    """The run's steps in pipeline order (run/demo.sh's order)."""
    W = WORKDIR
    seed = ("--seed", str(args.seed))
    langs = optional("--languages", args.languages and ",".join(parse_languages(args.languages)))
    workers = optional("--workers", args.workers)
    dumps = tuple(str(Path(d).resolve()) for d in args.dump)
    steps = [
        Step("ingest", "tables", ("--input", *dumps, "--output", f"{W}/tables", *langs, *workers),
             external=dumps, outputs=("tables/entities.parquet", "tables/triples.parquet")),
        Step("sentences", "sentences", ("--input", f"{W}/tables", "--output", f"{W}/sentences", *seed, *langs),
             inputs=("ingest",), outputs=("sentences/sentences.parquet",)),
        Step("cycles", "cycles", ("--input", f"{W}/tables", "--output", f"{W}/cycles", *seed),
             inputs=("ingest",), outputs=("cycles/cycles.parquet",)),
        Step("xlr", "xlr", ("--input", f"{W}/tables", "--cycles", f"{W}/cycles", "--output", f"{W}/xlr", *seed,
                            *xlr_size_arguments(args.xlr_sizes), *langs),
             inputs=("ingest", "cycles"), outputs=("xlr/heldout_cycles.parquet", "xlr/train.en.jsonl")),
        Step("reasoning", "reasoning", ("--input", f"{W}/tables", "--cycles", f"{W}/cycles", "--output",
                                        f"{W}/reasoning", *seed, "--exclude", f"{W}/xlr/heldout_cycles.parquet",
                                        *langs),
             inputs=("ingest", "cycles", "xlr"), outputs=("reasoning/reasoning.parquet",)),
        Step("check-leakage", "reasoning", ("--xlr", f"{W}/xlr", "--reasoning", f"{W}/reasoning"),
             inputs=("xlr", "reasoning"), owns_directory=False),
        Step("report", "report", ("--tables", f"{W}/tables", "--sentences", f"{W}/sentences", "--cycles",
                                  f"{W}/cycles", "--reasoning", f"{W}/reasoning", "--xlr", f"{W}/xlr",
                                  "--output", f"{W}/report", *seed),
             inputs=("ingest", "sentences", "cycles", "reasoning", "xlr"), outputs=("report/report.md",)),
    ]
    plain_args, plain_inputs, plain_external = (), (), ()
    if args.plain_text_from_descriptions:
        steps.append(Step("descriptions", "plain_text", ("--input", f"{W}/tables", "--output", f"{W}/plain_text",
                                                         *langs),
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
    return apply_overrides(steps, args.overrides)


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
             entry=("fairseq_cli.hydra_train",), code_modules=("kmlm_fairseq",), code_files=("configs/**/*.yaml",),
             code_packages=("fairseq", "torch"), hydra_overrides=True, first_launch_argv=init, resumable=True,
             log="checkpoints/train.log", echo=TrainingProgress(),
             description=f"fairseq-hydra-train --config-name {args.train} (log: checkpoints/train.log)"),
        Step("export", "hf", (f"{W}/checkpoints/checkpoint_last.pt", f"{W}/hf"), inputs=("train",),
             outputs=("hf/config.json",), entry=("kmlm_fairseq.export.cli", "hf"),
             code_modules=("kmlm_fairseq.export.cli", "kmlm_fairseq.export.to_hf"),
             code_packages=("transformers", "torch"),
             description="checkpoint_last.pt -> a Hugging Face model, checked against fairseq's logits"),
    ]
    if "xlr" in args.eval:
        steps.append(Step("eval-xlr", "eval_xlr", ("--model", f"{args.train}={W}/hf", "--data", f"{W}/xlr",
                                                   "--output", f"{W}/eval_xlr", "--seed", str(args.seed)),
                          inputs=("export", "xlr"), outputs=("eval_xlr/results.md",),
                          entry=("kmlm_eval.cli", "xlr"),
                          code_modules=("kmlm_eval.cli", "kmlm_eval.xlr"),
                          code_packages=("transformers", "torch"),
                          description="fine-tune on English XLR, accuracy per language"))
    return steps


class TrainingProgress:
    """Echo of fairseq's log: one table row per logged update and per validation, and any error line."""

    FIELDS = ("loss", "plain_loss", "knowledge_loss", "reasoning_loss")

    def __init__(self):
        self.header_shown = False

    @staticmethod
    def field(line, name):
        """The number after "name=" or "name " (not after "plain_name=")."""
        match = re.search(rf"[ ,|]{name}[= ]([0-9.]+)", line)
        return match.group(1) if match else "-"

    def __call__(self, line):
        if re.match(r"epoch \d+: .*num_updates=", line):
            row = "%8s" % self.field(line, "num_updates")
        elif "valid on" in line:
            row = "   valid"
        elif "Traceback" in line or "Error" in line:
            return line.rstrip("\n")
        else:
            return None
        row += "".join(" %14s" % self.field(line, name) for name in self.FIELDS)
        if row.startswith("   valid"):
            row += "   (update %s)" % self.field(line, "num_updates")
        if not self.header_shown:
            self.header_shown = True
            row = "%8s" % "update" + "".join(" %14s" % name for name in self.FIELDS) + "\n" + row
        return row


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


def check_hydra_overrides(steps, overrides, workdir):
    """Compose the training config with its --set overrides (``--cfg job``: print, do not train), so a key that
    does not exist or a value of the wrong type stops the run before the data stages, with Hydra's message."""
    for step in steps:
        if step.hydra_overrides and any(o.startswith(f"{step.stage}.") for o in overrides):
            check = subprocess.run(step.command() + resolve_argv(step.argv, workdir) + ["--cfg", "job"],
                                   env={**stage_environment(), "PYTHONWARNINGS": "ignore"}, capture_output=True,
                                   text=True)
            if check.returncode != 0:
                message = [line for line in check.stderr.splitlines() if line.strip() and
                           not re.match(r"(DEBUG|INFO|WARNING):|Set the environment variable HYDRA_FULL_ERROR", line)]
                raise UserFacingError(f"the {step.stage} config with its --set overrides does not compose:\n"
                                      + "\n".join(message))


# ---------------------------------------------------------------------------------------------------------------
# fingerprints


OUR_PACKAGES = ("preprocess", "kmlm_fairseq", "kmlm_eval")


def module_file(name):
    """The source file of one of our modules or packages (found by path: importing would load torch)."""
    path = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(name, source):
    """Our modules that importing ``name`` runs: its parent packages and what its source imports."""
    parts = name.split(".")
    yield from (".".join(parts[:i]) for i in range(1, len(parts)))
    package = r"((?:%s)(?:\.\w+)*)" % "|".join(OUR_PACKAGES)
    yield from re.findall(rf"^\s*import {package}", source, flags=re.MULTILINE)
    for base, names in re.findall(rf"^\s*from {package} import (\([^)]*\)|.*)", source, flags=re.MULTILINE):
        yield base
        for imported in re.sub(r"#.*", "", names).strip("()").split(","):
            imported = imported.split(" as ")[0].strip()
            if imported and module_file(f"{base}.{imported}"):
                yield f"{base}.{imported}"


def module_sources(*module_names):
    """{module: source} of the given modules and every module of ours they import, transitively."""
    sources, todo = {}, list(module_names)
    while todo:
        name = todo.pop()
        if name in sources or module_file(name) is None:
            continue
        sources[name] = module_file(name).read_text(encoding="utf-8")
        todo.extend(imported_modules(name, sources[name]))
    return sources


def installed_version(package):
    """The version of the distribution that provides ``import package`` (fairseq comes as fairseq-fixed)."""
    names = importlib.metadata.packages_distributions().get(package, [package])
    try:
        return importlib.metadata.version(names[0])
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def code_version(step):
    """A hash of the code that makes the step's outputs: our modules, config files, package versions."""
    digest = hashlib.sha256()
    for name, source in sorted(module_sources(*step.modules()).items()):
        digest.update(f"{name}\0{source}\0".encode("utf-8"))
    for pattern in step.code_files:
        for path in sorted(REPO_ROOT.glob(pattern)):
            digest.update(f"{path.relative_to(REPO_ROOT)}\0".encode("utf-8") + path.read_bytes())
    for package in step.code_packages:
        digest.update(f"{package}=={installed_version(package)}\0".encode("utf-8"))
    return digest.hexdigest()[:16]


def file_state(path):
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise UserFacingError(f"input file {path} does not exist") from None
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def marker_record(step, input_fingerprints):
    """What a step's marker holds: its fingerprint and the parts it is hashed from (deterministic: no clock)."""
    record = {
        "stage": step.stage,
        "argv": list(step.argv + step.first_launch_argv),
        "inputs": {name: input_fingerprints[name] for name in step.inputs},
        "external": [file_state(path) for path in step.external],
        "code": code_version(step),
    }
    text = json.dumps(record, sort_keys=True, ensure_ascii=False)
    return {"fingerprint": hashlib.sha256(text.encode("utf-8")).hexdigest(), **record}


def write_marker(record, path):
    write_text(json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n", path)


def read_marker(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        return {}  # unreadable: treated as out of date


def stale_reason(step, record, workdir):
    """Why a step must run (None: it is up to date)."""
    old = read_marker(step.marker(workdir))
    if old is None:
        return NO_MARKER
    if old.get("fingerprint") != record["fingerprint"]:
        return changed_part(old, record)
    missing = [out for out in step.outputs if not (Path(workdir) / out).exists()]
    if missing:
        return f"output {missing[0]} is missing"
    return None


def changed_part(old, new):
    if old.get("argv") != new["argv"]:
        return "settings changed"
    for name, fingerprint in new["inputs"].items():
        if old.get("inputs", {}).get(name) != fingerprint:
            return f"input stage {name} changed"
    if old.get("external") != new["external"]:
        changed = [s["path"] for s in new["external"] if s not in old.get("external", [])]
        return f"input file {changed[0] if changed else 'list'} changed"
    if old.get("code") != new["code"]:
        return "code changed"
    return "fingerprint differs"


# ---------------------------------------------------------------------------------------------------------------
# execution


def make_plan(steps, workdir, forced):
    """[(step, record, reason or None)] in order; a step reading one that runs runs too."""
    unknown = sorted(set(forced) - {step.stage for step in steps})
    if unknown:
        raise UserFacingError(f"--force {unknown[0]}: no such stage in this run ({', '.join(s.stage for s in steps)})")
    fingerprints, running, plan = {}, set(), []
    for step in steps:
        record = marker_record(step, fingerprints)
        fingerprints[step.stage] = record["fingerprint"]
        upstream = [name for name in step.inputs if name in running]
        if step.stage in forced:
            reason = "forced"
        elif upstream:
            reason = f"input stage {upstream[0]} re-runs"
        else:
            reason = stale_reason(step, record, workdir)
        if reason:
            running.add(step.stage)
        plan.append((step, record, reason))
    return plan


def fill_placeholders(arg, workdir):
    return arg.replace(WORKDIR, str(workdir)).replace(REPO, str(REPO_ROOT))


def resolve_argv(argv, workdir):
    """Placeholders filled in; a {WORKDIR}/ argument holding a * -> the files it matches, sorted."""
    resolved = []
    for arg in argv:
        if arg.startswith(WORKDIR) and "*" in arg:
            pattern = Path(fill_placeholders(arg, workdir))
            matches = sorted(pattern.parent.glob(pattern.name))
            if not matches:
                raise UserFacingError(f"no file matches {pattern}")
            resolved.extend(str(m) for m in matches)
        else:
            resolved.append(fill_placeholders(arg, workdir))
    return resolved


def clear_outputs(step, workdir):
    """Remove what an earlier (maybe killed) run of the step left, so it starts from nothing."""
    directory = Path(workdir) / step.directory
    if step.owns_directory:
        if directory.exists():
            shutil.rmtree(directory)
        for tmp in directory.parent.glob(f".{directory.name}.tmp-*"):  # a killed atomic_directory's
            shutil.rmtree(tmp)
        return
    for out in step.outputs:
        path = Path(workdir) / out
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for tmp in directory.glob(".*.tmp-*"):  # atomic_path's temp files of a killed stage
        tmp.unlink()


def die_with_parent():
    """In the child, before exec: get SIGKILL when the driver dies, so no orphan stage writes into WORKDIR."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the stage then outlives a killed driver, as with `make`


def stage_environment():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def start_or_resume(step, record, workdir):
    """Clear the step's outputs, unless it is resumable and they are the partial work of a run with these
    settings; returns its arguments for this launch."""
    if step.resumable:
        started = read_marker(step.started_marker(workdir))
        if started and started.get("fingerprint") == record["fingerprint"]:
            logger.info("%s: continuing the interrupted run in %s", step.stage, Path(workdir) / step.directory)
            return step.argv
    clear_outputs(step, workdir)
    if step.resumable:
        write_marker(record, step.started_marker(workdir))
    return step.argv + step.first_launch_argv


def run_logged(argv, step, workdir):
    """Run with the output appended to the step's log; print what ``step.echo`` picks. Returns the exit status."""
    log_path = Path(workdir) / step.log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log, subprocess.Popen(
            argv, env=stage_environment(), preexec_fn=die_with_parent, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace") as process:
        for line in process.stdout:
            log.write(line)
            shown = step.echo(line) if step.echo else None
            if shown is not None:
                print(shown, flush=True)
    status = process.returncode
    if status != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        print("\n".join(["the end of " + str(log_path) + ":", *tail]), file=sys.stderr)
    return status


def run_step(step, record, workdir):
    argv = step.command() + resolve_argv(start_or_resume(step, record, workdir), workdir)
    started = time.monotonic()
    if step.log:
        status = run_logged(argv, step, workdir)
    else:
        status = subprocess.run(argv, env=stage_environment(), preexec_fn=die_with_parent).returncode
    if status != 0:
        raise UserFacingError(f"stage {step.stage} failed (exit status {status}); fix it and run the pipeline "
                              f"again to continue from this stage")
    write_marker(record, step.marker(workdir))
    logger.info("%s: done in %.1f s", step.stage, time.monotonic() - started)


def lock_workdir(workdir):
    """Hold an exclusive lock on WORKDIR for the life of the process (two drivers must not interleave)."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle = open(workdir / LOCK_FILE, "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserFacingError(f"another pipeline is running in {workdir}") from None
    return handle


def execute(args):
    """Plan and (unless --dry-run) run; returns [(stage, "run" | "skip", reason)]."""
    workdir = Path(args.output).resolve()
    steps = build_steps(args)
    check_hydra_overrides(steps, args.overrides, workdir)
    lock = None if args.dry_run else lock_workdir(workdir)
    try:
        plan = make_plan(steps, workdir, set(args.force))
        if not args.dry_run:  # first, so a run killed anywhere leaves no marker of a stage now stale
            for step, _, reason in plan:
                if reason:
                    step.marker(workdir).unlink(missing_ok=True)
                if reason and reason != NO_MARKER:  # forced, or its settings or inputs changed: start over
                    step.started_marker(workdir).unlink(missing_ok=True)
        for step, record, reason in plan:
            logger.info("%s: %s", step.stage, f"run (reason: {reason}): {step.about()}" if reason
                        else "skip (up to date)")
            if reason and args.dry_run:
                print("  python -m", *step.command()[2:],
                      " ".join(fill_placeholders(a, workdir) for a in step.argv + step.first_launch_argv))
            elif reason:
                run_step(step, record, workdir)
    finally:
        if lock:
            lock.close()
    ran = [step.stage for step, _, reason in plan if reason]
    logger.info("pipeline: %s %d stage(s)%s, skipped %d (up to date); outputs in %s",
                "would run" if args.dry_run else "ran", len(ran), f" ({', '.join(ran)})" if ran else "",
                len(plan) - len(ran), workdir)
    return [(step.stage, "run" if reason else "skip", reason) for step, _, reason in plan]


def run(args):
    execute(args)
    return 0
