"""The pipeline driver on the bundled samples: skips what is up to date, re-runs what changed, survives SIGKILL."""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from preprocess.core.errors import UserFacingError
from preprocess.pipeline import command, execute, fingerprint, plan

REPO_ROOT = Path(__file__).resolve().parents[2]
DUMPS = sorted((REPO_ROOT / "tests" / "data").glob("*.json.bz2"))
ALL_STAGES = ["ingest", "sentences", "cycles", "xlr", "reasoning", "check-leakage", "report", "descriptions", "spm",
              "binarize", "plain"]
SEEDED = {"sentences", "cycles", "xlr", "reasoning", "check-leakage", "report", "spm", "binarize", "plain"}


def pipeline_argv(workdir, dumps, *extra):
    return ["--dump", *map(str, dumps), "-o", str(workdir), "--languages", "en,de,fr", "--xlr-sizes", "10,4,4",
            "--vocab-size", "600", "--plain-text-from-descriptions", *extra]


def parse_args(workdir, dumps, *extra):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(pipeline_argv(workdir, dumps, *extra))


def run_pipeline(workdir, dumps, *extra):
    """{stage: (action, reason)} of one in-process run."""
    return {stage: (action, reason)
            for stage, action, reason in execute.execute(parse_args(workdir, dumps, *extra))}


def ran(decisions):
    return {stage for stage, (action, _) in decisions.items() if action == "run"}


def comparable_files(root, skip_markers=False):
    """{relative path: bytes} under root; in JSON files the run's own path and the timings are neutralised."""
    files = {}
    for path in sorted(Path(root).rglob("*")):
        name = str(path.relative_to(root))
        if path.is_dir() or name == plan.LOCK_FILE or (skip_markers and path.name.startswith(".done.")):
            continue
        data = path.read_bytes()
        if path.suffix in (".json", ".md"):
            data = data.replace(str(root).encode(), b"{WORKDIR}")
        if path.suffix == ".json":
            data = json.dumps(without_seconds(json.loads(data)), sort_keys=True).encode()
        files[name] = data
    return files


def without_seconds(value):
    if isinstance(value, dict):
        return {k: without_seconds(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [without_seconds(v) for v in value]
    return value


def step_products(workdir, step):
    """The files a step made: its whole directory, or its declared outputs in a shared one (data/)."""
    roots = [step.directory] if step.owns_directory else list(step.outputs)
    return {name: data for name, data in comparable_files(workdir, skip_markers=True).items()
            if any(name == root or name.startswith(f"{root}/") for root in roots)}


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    """Copies of the samples, so a test may touch them."""
    directory = tmp_path_factory.mktemp("dumps")
    for dump in DUMPS:
        shutil.copy2(dump, directory / dump.name)
    return sorted(directory.iterdir())


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, dumps):
    """One complete uninterrupted run; tests work on copies of it."""
    workdir = tmp_path_factory.mktemp("baseline") / "work"
    decisions = run_pipeline(workdir, dumps)
    assert ran(decisions) == set(ALL_STAGES)
    return workdir


def copy_of(baseline, tmp_path):
    workdir = tmp_path / "work"
    shutil.copytree(baseline, workdir)  # also a moved WORKDIR: markers hold {WORKDIR}, not the path
    return workdir


def test_pipeline_second_run_skips_everything(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    before = comparable_files(workdir)
    decisions = run_pipeline(workdir, dumps)
    assert ran(decisions) == set()
    assert comparable_files(workdir) == before


def test_pipeline_seed_change_reruns_seeded_stages_only(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    decisions = run_pipeline(workdir, dumps, "--seed", "2")
    assert ran(decisions) == SEEDED
    assert decisions["sentences"] == ("run", "settings changed")
    assert json.loads((workdir / "cycles" / ".done.cycles.json").read_text())["argv"][-1] == "2"
    entities = Path("tables", "entities.parquet")
    assert (workdir / entities).read_bytes() == (baseline / entities).read_bytes()


def test_pipeline_touched_input_reruns_from_ingest(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    stat = dumps[0].stat()
    os.utime(dumps[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        decisions = run_pipeline(workdir, dumps, "--dry-run")  # the plan a real run follows
    finally:
        os.utime(dumps[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert ran(decisions) == set(ALL_STAGES)
    assert decisions["ingest"] == ("run", f"input file {dumps[0]} changed")
    assert decisions["cycles"] == ("run", "input stage ingest re-runs")
    assert ran(run_pipeline(workdir, dumps, "--dry-run")) == set()


def test_pipeline_with_a_given_tokenizer_leaves_out_spm_and_binarizes_identically(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    tokenizer = tmp_path / "xlmr"
    tokenizer.mkdir()
    for name in ("sentencepiece.bpe.model", "dict.txt"):  # the tokenizer the baseline's spm stage trained
        shutil.copy2(baseline / "data" / name, tokenizer / name)
    argv = [a for a in pipeline_argv(workdir, dumps) if a not in ("--vocab-size", "600")]
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    decisions = {stage: action for stage, action, _ in execute.execute(parser.parse_args(argv + ["--tokenizer",
                                                                                                    str(tokenizer)]))}
    assert "spm" not in decisions
    assert {stage for stage, action in decisions.items() if action == "run"} == {"binarize", "plain"}
    def datasets(root):  # the .bin/.idx files; the summaries name the tokenizer's path, which differs
        return {k: v for k, v in comparable_files(root / "data", skip_markers=True).items()
                if k.endswith((".bin", ".idx"))}

    assert len(datasets(workdir)) > 10 and datasets(workdir) == datasets(baseline)


def test_pipeline_force_reruns_stage_and_dependents_only(baseline, dumps, tmp_path):
    decisions = run_pipeline(copy_of(baseline, tmp_path), dumps, "--force", "cycles", "--dry-run")
    assert ran(decisions) == {"cycles", "xlr", "reasoning", "check-leakage", "report", "spm", "binarize", "plain"}
    assert decisions["cycles"] == ("run", "forced")


def test_pipeline_missing_output_or_marker_reruns_stage(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    (workdir / "data" / "dict.txt").unlink()
    (workdir / "report" / ".done.report.json").unlink()
    decisions = run_pipeline(workdir, dumps, "--dry-run")
    assert decisions["spm"] == ("run", "output data/dict.txt is missing")
    assert decisions["report"] == ("run", "no completion marker")
    assert ran(decisions) == {"report", "spm", "binarize", "plain"}


def test_pipeline_set_passes_option_to_its_stage(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    decisions = run_pipeline(workdir, dumps, "--set", "cycles.max-apexes=4", "--dry-run")
    assert decisions["cycles"] == ("run", "settings changed")
    assert decisions["sentences"][0] == "skip"
    with pytest.raises(UserFacingError, match="STAGE.option"):
        run_pipeline(workdir, dumps, "--set", "nosuchstage.x=1", "--dry-run")


def test_pipeline_set_with_a_file_fingerprints_the_file(dumps, tmp_path):
    entity_list = tmp_path / "wikidata5m_entities.txt"
    entity_list.write_text("Q90\nQ142\n")
    args = parse_args(tmp_path / "work", dumps, "--set", f"ingest.entity-list={entity_list}")
    ingest = plan.build_steps(args)[0]
    assert ingest.argv[-2:] == ("--entity-list", str(entity_list)) and str(entity_list) in ingest.external
    before = fingerprint.marker_record(ingest, {})
    entity_list.write_text("Q90\nQ142\nQ64\n")  # edited in place: same path, same argv
    after = fingerprint.marker_record(ingest, {})
    assert before["argv"] == after["argv"] and before["fingerprint"] != after["fingerprint"]
    assert fingerprint.changed_part(before, after) == f"input file {entity_list} changed"


def test_pipeline_worker_count_gives_identical_products(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    decisions = run_pipeline(workdir, dumps, "--workers", "2")
    assert {"ingest", "binarize", "plain"} <= ran(decisions)
    assert comparable_files(workdir, skip_markers=True) == comparable_files(baseline, skip_markers=True)



def repository_copy(tmp_path):
    """The packages and configs, copied: a pipeline started from the copy fingerprints the copy's code."""
    root = tmp_path / "repo"
    for name in ("preprocess", "kmlm_fairseq", "kmlm_eval", "configs"):
        shutil.copytree(REPO_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def dry_run_from(root, workdir, dumps):
    """{stage: (action, reason)} of a --dry-run of the pipeline of the repository at ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-m", "preprocess.cli", "pipeline", *pipeline_argv(workdir, dumps),
                             "--dry-run"], env=env, cwd=root, capture_output=True, text=True, check=True)
    plans = re.findall(r"\| (\S+): (skip|run)(?: \(reason: (.*?)\))?", result.stderr)
    return {stage: (action, reason or None) for stage, action, reason in plans}


@pytest.mark.parametrize("edited, reruns", [
    # the tag layout: only binarize writes tags (the plugin reads them: train would re-run too)
    ("preprocess/core/span_tags.py", {"binarize"}),
    # a format module: the stage that writes cycles.parquet, those that read it, and what reads theirs
    ("preprocess/core/formats/cycles.py",
     {"cycles", "xlr", "reasoning", "check-leakage", "report", "spm", "binarize", "plain"}),
    # a tokenizer module, loaded by the stages that tokenize (and by spm for the file names it shares)
    ("preprocess/core/tokenizers/sentencepiece.py", {"spm", "binarize", "plain"}),
])
def test_pipeline_code_change_reruns_the_stages_that_ran_the_code(baseline, dumps, tmp_path, edited, reruns):
    workdir = copy_of(baseline, tmp_path)
    root = repository_copy(tmp_path)
    assert ran(dry_run_from(root, workdir, dumps)) == set(), "an unchanged copy must change nothing"
    with open(root / edited, "a", encoding="utf-8") as f:
        f.write("\n# edited\n")
    decisions = dry_run_from(root, workdir, dumps)
    assert ran(decisions) == reruns
    loaded_it = {stage for stage, (_, reason) in decisions.items() if reason and edited in reason}
    assert loaded_it and all(decisions[s][1].startswith(f"code changed ({edited}") for s in loaded_it)
    assert all(json.loads((workdir / directory / f".done.{stage}.json").read_text())["code"].get(edited)
               for stage, directory in stage_directories(workdir).items() if stage in loaded_it)


def stage_directories(workdir):
    return {marker.name[len(".done."):-len(".json")]: marker.parent.relative_to(workdir)
            for marker in Path(workdir).rglob(".done.*.json")}


@pytest.mark.slow
def test_pipeline_killed_at_random_moments_resumes_to_identical_outputs(baseline, dumps, tmp_path):
    workdir = tmp_path / "work"
    steps = plan.build_steps(parse_args(workdir, dumps))
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    rng = random.Random(7)
    for kill in range(3):
        process = subprocess.Popen([sys.executable, "-m", "preprocess.cli", "pipeline", *pipeline_argv(workdir, dumps)],
                                   env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 4.0))  # a run takes ~11 s here: the kills fall in different stages
        os.killpg(process.pid, signal.SIGKILL)  # the driver, its stage and the stage's workers, as Ctrl-C/SLURM do
        if process.wait() == 0:  # a fast machine finished the last stretch before the kill
            break
        assert process.returncode == -signal.SIGKILL
        done = {step.stage for step in steps if step.marker(workdir).exists()}
        print(f"kill {kill}: done {sorted(done)}")
        for step in steps:  # a marker only ever stands next to complete outputs
            if step.stage in done:
                assert step_products(workdir, step) == step_products(baseline, step), step.stage
    decisions = run_pipeline(workdir, dumps)
    assert set(ALL_STAGES) - done <= ran(decisions)
    assert comparable_files(workdir) == comparable_files(baseline)


# ---------------------------------------------------------------------------------------------------------------
# train -> export -> eval-xlr

MODEL_ARGS = ("--train", "tiny_cpu", "--set", "train.optimization.max_update=160", "--set",
              "train.checkpoint.save_interval_updates=25", "--set", "train.dataset.validate_interval_updates=50",
              "--eval", "xlr", "--set", "eval-xlr.epochs=1")
# Bit-equal weights need equal thread counts (float sums are ordered by thread): every run here uses one.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
MODEL_STAGES = {"train", "export", "eval-xlr"}


def model_weights(checkpoint):
    import torch

    import kmlm_fairseq  # noqa: F401  (fairseq's checkpoints load under torch's safe loader)
    return torch.load(checkpoint, map_location="cpu")["model"]


def assert_same_model_products(workdir, reference):
    import torch

    mine, theirs = model_weights(workdir / "checkpoints" / "checkpoint_last.pt"), model_weights(
        reference / "checkpoints" / "checkpoint_last.pt")
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine), "the trained weights differ"
    for directory in ("hf", "eval_xlr"):
        assert comparable_files(workdir / directory) == comparable_files(reference / directory), directory


@pytest.fixture(scope="module")
def trained(baseline, dumps, tmp_path_factory):
    """The baseline's data + one uninterrupted train -> export -> eval-xlr."""
    workdir = copy_of(baseline, tmp_path_factory.mktemp("trained"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ONE_THREAD.items():
            patch.setenv(name, value)
        decisions = run_pipeline(workdir, dumps, *MODEL_ARGS)
    assert ran(decisions) == MODEL_STAGES
    return workdir


@pytest.mark.slow
def test_pipeline_trains_exports_evaluates_and_then_skips_them(trained, dumps, tmp_path):
    workdir = copy_of(trained, tmp_path)
    assert (workdir / "hf" / "config.json").exists() and (workdir / "eval_xlr" / "results.md").exists()
    assert "update" in (workdir / "checkpoints" / "train.log").read_text()
    assert ran(run_pipeline(workdir, dumps, *MODEL_ARGS)) == set()

    decisions = run_pipeline(workdir, dumps, *MODEL_ARGS, "--set", "eval-xlr.epochs=2", "--dry-run")
    assert ran(decisions) == {"eval-xlr"} and decisions["eval-xlr"] == ("run", "settings changed")
    decisions = run_pipeline(workdir, dumps, *MODEL_ARGS, "--set", "train.optimization.max_update=200", "--dry-run")
    assert ran(decisions) == MODEL_STAGES and decisions["train"] == ("run", "settings changed")
    decisions = run_pipeline(workdir, dumps, *MODEL_ARGS, "--force", "binarize", "--dry-run")
    assert decisions["train"] == ("run", "input stage binarize re-runs")
    assert ran(run_pipeline(workdir, dumps, *MODEL_ARGS[:2], "--dry-run")) == {"train", "export"}  # other settings


def test_pipeline_options_are_checked_before_anything_runs(baseline, dumps, tmp_path):
    workdir = copy_of(baseline, tmp_path)
    before = comparable_files(workdir)
    with pytest.raises(UserFacingError, match="no configs/nosuch.yaml"):
        run_pipeline(workdir, dumps, "--train", "nosuch")
    with pytest.raises(UserFacingError, match="need --train"):
        run_pipeline(workdir, dumps, "--eval", "xlr")
    with pytest.raises(UserFacingError, match="input file .*no_such_model.pt does not exist"):
        run_pipeline(workdir, dumps, "--train", "tiny_cpu", "--init", str(tmp_path / "no_such_model.pt"))
    with pytest.raises(UserFacingError, match="(?s)does not compose.*Could not override 'task.no_such_key'"):
        run_pipeline(workdir, dumps, "--train", "tiny_cpu", "--set", "train.task.no_such_key=1", "--force", "ingest")
    with pytest.raises(UserFacingError, match="cycles has no option --no-such .*--max-apexes"):
        run_pipeline(workdir, dumps, "--set", "cycles.no-such=1", "--force", "ingest")
    assert run_pipeline(workdir, dumps, "--set", "cycles.max-ap=4", "--dry-run")  # a prefix, as argparse allows
    assert not (workdir / "checkpoints").exists()
    assert comparable_files(workdir) == before  # nothing ran, not even the forced ingest


def test_pipeline_failing_training_names_the_stage_and_shows_the_end_of_its_log(baseline, dumps, tmp_path, capsys):
    workdir = copy_of(baseline, tmp_path)
    with pytest.raises(UserFacingError, match="stage train failed"):
        run_pipeline(workdir, dumps, "--train", "tiny_cpu", "--set", "train.task.streams='plain,nosuch'")
    shown = capsys.readouterr().err
    assert f"the end of {workdir / 'checkpoints' / 'train.log'}" in shown
    assert "task.streams='plain,nosuch': choose among plain, knowledge, reasoning" in shown
    assert not (workdir / "checkpoints" / ".done.train.json").exists()


@pytest.mark.slow
def test_pipeline_killed_during_training_and_export_resumes_to_the_same_model(trained, baseline, dumps, tmp_path):
    """SIGKILL at random updates of the training (twice), right after its last checkpoint (before the driver records
    the training as done: the next run relaunches a finished training), then during the export and the evaluation:
    the re-run continues the training from its checkpoint_last.pt and ends with the uninterrupted run's weights,
    export (its model card: update count and loss meters) and scores; a killed run never leaves a
    checkpoint_last.pt that does not load."""
    workdir = copy_of(baseline, tmp_path)
    log, last = workdir / "checkpoints" / "train.log", workdir / "checkpoints" / "checkpoint_last.pt"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **ONE_THREAD)
    argv = [sys.executable, "-m", "preprocess.cli", "pipeline", *pipeline_argv(workdir, dumps), *MODEL_ARGS]
    rng = random.Random(11)
    finished = re.compile(rb"Saved checkpoint \S+ \(epoch \d+ @ 160 updates|the training is complete")
    kill_points = [  # (a moment, seen in the log this run wrote so far; the longest wait after it)
        (lambda new, u=rng.randint(30, 70): b"num_updates=%d," % u in new, 0.5),  # after the checkpoint of 25
        (lambda new, u=rng.randint(110, 140): b"num_updates=%d," % u in new, 0.5),  # a resumed run
        (lambda new: finished.search(new) is not None, 0.0),  # fairseq is done; the driver has not recorded it
        (lambda new: (workdir / "checkpoints" / ".done.train.json").exists(), 1.5),  # export runs next
        (lambda new: (workdir / "hf" / ".done.export.json").exists(), 1.5),  # eval-xlr runs next
    ]
    for kill_point, longest_wait in kill_points:
        offset = log.stat().st_size if log.exists() else 0
        process = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        wait_for(lambda: kill_point(log_since(log, offset)), process)
        time.sleep(rng.uniform(0.0, longest_wait))
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        assert model_weights(last)  # never half a checkpoint
    text = log.read_text()
    assert text.count("No existing checkpoint found") == 1  # one start; every other run resumed
    # a run found the training complete and took no update 161 (fairseq alone would: kmlm_fairseq/compat.py)
    assert re.search(r"Loaded checkpoint \S+ \(epoch \d+ @ 160 updates\).*?the training is complete", text, re.S)
    assert "num_updates=161" not in text
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ran_stages(result.stderr) == {"eval-xlr"}
    assert_same_model_products(workdir, trained)
    assert not list(workdir.rglob("*.tmp-*")), "a killed stage's temp files were left behind"


def log_since(log, offset):
    if not log.exists():
        return b""
    with open(log, "rb") as f:
        f.seek(offset)
        return f.read()


def ran_stages(driver_log):
    return set(re.findall(r"\| (\S+): run \(reason", driver_log))


def wait_for(condition, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the pipeline ended before the moment to kill it"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_stage_log_holds_each_line_as_soon_as_the_stage_prints_it(tmp_path):
    """The driver writes a stage's log (train.log) line by line: a killed driver loses none of it, and a reader (the
    kill points above) sees the run as it is, not as it was a buffer ago. The stage prints a line, then waits until
    the line is in the log (or 30 s)."""
    log, release = tmp_path / "stage.log", tmp_path / "release"
    stage = (f"import os, time\nprint('update 1', flush=True)\ndeadline = time.monotonic() + 30\n"
             f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline: time.sleep(0.01)")
    seen = []

    def release_when_logged():
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            seen.extend([True] if log.exists() and b"update 1\n" in log.read_bytes() else [])
            time.sleep(0.01)
        release.touch()

    watcher = threading.Thread(target=release_when_logged)
    watcher.start()
    status = execute.run_logged([sys.executable, "-c", stage], SimpleNamespace(log="stage.log", echo=None), tmp_path)
    watcher.join()
    assert status == 0 and seen, "the line reached the log only when the stage ended"


def test_a_resumed_training_starts_without_the_temp_files_of_the_killed_run(tmp_path):
    """A resumable step keeps its directory; what the killed run was writing when it died goes: the traced run's
    list of code, the plugin's copy to checkpoint_last.pt, fairseq's checkpoint being saved."""
    step = plan.Step("train", "checkpoints", ("task.data=DATA",), resumable=True, first_launch_argv=("+init=x",))
    record = {"fingerprint": "same settings"}
    fingerprint.write_marker({**record, "code": fingerprint.code_state(["preprocess/pipeline/execute.py"])},
                             step.started_marker(tmp_path))
    directory = tmp_path / "checkpoints"
    kept = {"checkpoint_last.pt", "checkpoint_1_125.pt", "train.log", ".started.train.json"}
    for name in kept - {".started.train.json"} | {".code.train.json.tmp-7", "checkpoint_last.pt.tmp-8",
                                                  "checkpoint_1_150.pt.tmp"}:
        (directory / name).write_bytes(b"x")
    assert execute.start_or_resume(step, record, tmp_path) == step.argv  # resumed, not started over
    assert {path.name for path in directory.iterdir()} == kept


def test_traced_run_keeps_the_exit_status_and_lists_our_modules_even_into_a_new_directory(tmp_path):
    manifest = tmp_path / "not" / "made" / ".code.x.json"
    result = subprocess.run([sys.executable, "-m", "preprocess.pipeline.traced", str(manifest), "preprocess.cli",
                             "spm", "-o", str(tmp_path / "data")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr  # spm without inputs: one line, exit 2
    loaded = json.loads(manifest.read_text())
    assert "preprocess/stages/spm.py" in loaded and "preprocess/cli.py" in loaded
    assert not [path for path in loaded if path.startswith(("fairseq", "torch"))]
