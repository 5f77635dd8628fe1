"""kmlm-preprocess experiment: the bookkeeping of a declared experiment, in seconds (the steps' commands are faked;
the comparison step runs for real): fingerprints and skips, an added seed, a changed arm, the aggregation and the
paired differences against an independent computation, the plots."""
import csv
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from preprocess import cli
from preprocess.core.errors import UserFacingError
from preprocess.pipeline import execute, experiment
from preprocess.pipeline.fingerprint import code_state, write_marker
from tests.conftest import REPO_ROOT, TEST_DATA

LANGS = ("en", "de", "fr")
EXPERIMENT = f"""
data:
  dump: [{TEST_DATA / 'opentapioca_sample_items.json.bz2'}]
  seed: 7
  plain_text_from_descriptions: true
train: [model=tiny, run=cpu]
start: {{config: kmlm_r_base, overrides: ["task.streams='plain'"]}}
arms:
  a: {{config: tiny_cpu, overrides: ["task.streams='plain'"]}}
  b: {{config: tiny_cpu}}
arm_overrides: [optimization.max_update=5]
seeds: [1, 2]
evaluations:
  score: {{task: xlr, args: [--data, "{{WORKDIR}}/xlr", --seed, "{{SEED}}"]}}
compare: [[a, b]]
quick: {{seeds: [1]}}
"""


def value(arm, seed, lang):
    """The score a faked evaluation reports: arm b is 5 points above a on average, with seed noise."""
    rng = np.random.default_rng([ord(c) for c in f"{arm}{seed}{lang}"])
    return {"start": 20.0, "a": 30.0, "b": 35.0}[arm] + float(rng.normal(0, 2))


class FakeSteps:
    """Stands in for execute.run_step: makes what a step declares, writes its marker, records its name; the
    comparison step runs for real."""

    def __init__(self):
        self.ran, self.events, self.fail, self.delay = [], [], set(), 0.0
        self.real = execute.run_step

    def __call__(self, step, record, workdir):
        self.ran.append(step.stage)
        self.events.append(("start", step.stage))
        time.sleep(self.delay)
        try:
            self.make(step, record, workdir)
        finally:
            self.events.append(("end", step.stage))

    def make(self, step, record, workdir):
        if step.stage in self.fail:
            raise UserFacingError(f"stage {step.stage} failed (exit status 1)")
        if step.stage == "compare":
            return self.real(step, record, workdir)
        for output in step.outputs:
            path = workdir / output
            path.parent.mkdir(parents=True, exist_ok=True)
            if output.endswith("results.csv"):
                arm = re.search(r"--model (\w+)=", " ".join(step.argv)).group(1)
                seed = int(step.argv[step.argv.index("--seed") + 1])
                path.write_text("task,model,lang,metric,value,count\n" + "".join(
                    f"xlr,{arm},{lang},test accuracy,{value(arm, seed, lang):.4f},100\n" for lang in LANGS)
                    + f"xlr,{arm},avg,test accuracy,{np.mean([value(arm, seed, g) for g in LANGS]):.4f},300\n")
            elif not path.suffix:
                path.mkdir(exist_ok=True)
            else:
                path.write_text("made\n")
        write_marker({**record, "code": code_state(["preprocess/pipeline/experiment.py"])}, step.marker(workdir))


@pytest.fixture
def fake(monkeypatch):
    steps = FakeSteps()
    monkeypatch.setattr(execute, "run_step", steps)
    monkeypatch.setattr(experiment, "check_composes", lambda step, workdir, what: None)
    return steps


@pytest.fixture
def declared(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT)
    return path


def run(path, out, *extra):
    assert cli.main(["experiment", str(path), "-o", str(out), *extra]) == 0


def read_csv(path):
    return list(csv.DictReader(open(path, encoding="utf-8")))


def test_experiment_runs_once_then_skips_and_adds_only_a_new_seed(fake, declared, tmp_path):
    out = tmp_path / "out"
    run(declared, out)
    data = ["ingest", "sentences", "cycles", "xlr", "reasoning", "check-leakage", "report", "descriptions", "spm",
            "binarize", "plain"]
    runs = [f"{arm}.seed{seed}.{step}" for arm in "ab" for seed in (1, 2) for step in ("train", "export", "score")]
    assert fake.ran == data + ["start.train", "start.export", "start.score"] + runs + ["compare"]

    fake.ran.clear()
    run(declared, out)
    assert fake.ran == []  # a second invocation redoes nothing

    run(declared, out, "--set", "seeds=[1,2,3]")
    assert fake.ran == [f"{arm}.seed3.{step}" for arm in "ab" for step in ("train", "export", "score")] + ["compare"]

    fake.ran.clear()
    declared.write_text(EXPERIMENT.replace("b: {config: tiny_cpu}", "b: {config: tiny_cpu, overrides: [x=1]}"))
    run(declared, out, "--set", "seeds=[1,2,3]")
    assert fake.ran == [f"b.seed{seed}.{step}" for seed in (1, 2, 3) for step in ("train", "export", "score")] + [
        "compare"]


def test_comparison_is_mean_sd_over_seeds_and_paired_differences(fake, declared, tmp_path):
    out = tmp_path / "out"
    run(declared, out, "--set", "seeds=[1,2,3]")
    summary = {(r["arm"], r["lang"]): r for r in read_csv(out / "comparison" / "summary.csv")}
    for arm in "ab":
        for lang in LANGS:
            values = [value(arm, seed, lang) for seed in (1, 2, 3)]
            row = summary[(arm, lang)]
            assert int(row["n"]) == 3
            assert float(row["mean"]) == pytest.approx(np.mean(values), abs=2e-4)
            assert float(row["sd"]) == pytest.approx(np.std(values, ddof=1), abs=2e-4)
    assert summary[("start", "en")]["n"] == "1" and summary[("start", "en")]["sd"] == ""
    differences = {r["lang"]: r for r in read_csv(out / "comparison" / "differences.csv")}
    for lang in (*LANGS, "avg"):
        if lang == "avg":
            d = [np.mean([value("b", s, g) - value("a", s, g) for g in LANGS]) for s in (1, 2, 3)]
        else:
            d = [value("b", s, lang) - value("a", s, lang) for s in (1, 2, 3)]
        row = differences[lang]
        assert (row["arm_a"], row["arm_b"], row["n"]) == ("a", "b", "3")
        assert float(row["mean"]) == pytest.approx(np.mean(d), abs=5e-4)
        assert float(row["sd"]) == pytest.approx(np.std(d, ddof=1), abs=5e-4)
    markdown = (out / "comparison" / "results.md").read_text()
    assert "| lang | start (n=1) | a (n=3) | b (n=3) | b − a |" in markdown
    assert re.search(r"\| en \| [\d.]+ \| [\d.]+ ± [\d.]+ \| [\d.]+ ± [\d.]+ \| \+[\d.]+ ± [\d.]+ \|", markdown)
    plot = out / "comparison" / "xlr_test_accuracy.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "(xlr_test_accuracy.png)" in markdown


def test_jobs_run_steps_at_once_each_after_what_it_reads(fake, declared, tmp_path):
    sequential, parallel = tmp_path / "one", tmp_path / "two"
    run(declared, sequential)
    fake.ran.clear()
    fake.events.clear()
    fake.delay = 0.05
    run(declared, parallel, "--jobs", "2")
    steps = {s.stage: s for s in experiment.experiment_steps(experiment.load_experiment(declared), parallel)}
    assert sorted(fake.ran) == sorted(steps)
    ended, running, most = set(), set(), 0
    for event, stage in fake.events:
        if event == "start":
            assert set(steps[stage].inputs) <= ended, f"{stage} started before its inputs ended"
            running.add(stage)
            most = max(most, len(running))
        else:
            running.discard(stage)
            ended.add(stage)
    assert most == 2
    assert (parallel / "comparison" / "summary.csv").read_text() == (sequential / "comparison" /
                                                                      "summary.csv").read_text()


def test_a_failing_step_stops_what_reads_it_and_leaves_no_marker(fake, declared, tmp_path, caplog):
    fake.fail = {"a.seed1.train"}
    assert cli.main(["experiment", str(declared), "-o", str(tmp_path / "out"), "--jobs", "2"]) == 2
    assert "stage a.seed1.train failed" in caplog.text
    assert "a.seed1.export" not in fake.ran and "compare" not in fake.ran
    assert not (tmp_path / "out" / "runs" / "a" / "seed1" / "checkpoints" / ".done.a.seed1.train.json").exists()
    completed = set(fake.ran) - fake.fail
    assert "start.train" in completed
    fake.fail = set()
    fake.ran.clear()
    run(declared, tmp_path / "out")  # the next run does what is left, and only that
    assert "a.seed1.train" in fake.ran and not completed & set(fake.ran)


def test_quick_dry_run_and_the_steps_it_would_run(fake, declared, tmp_path, capsys):
    run(declared, tmp_path / "out", "--quick", "--dry-run")
    assert fake.ran == []
    printed = capsys.readouterr().out
    assert "a.seed1.train" not in printed  # commands are printed, not step names
    assert "--config-name tiny_cpu" in printed and "common.seed=1" in printed and "common.seed=2" not in printed
    assert "+init=pretrained checkpoint.restore_file=" in printed and "runs/start/checkpoints/checkpoint_last.pt" in \
        printed
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob(".done.*"))


@pytest.mark.parametrize("change, error", [
    ("seedz: [1]", "unknown key(s) seedz"),
    ("compare: [[a, c]]", "compare [a, c]: both must be arms"),
    ("arms: {start: {config: tiny_cpu}}", "arm name 'start'"),
    ("seeds: [1, 1]", "seeds must be distinct integers"),
    ("data: {dump: [nope.json], seed: 1}", "input file"),
    ("data: {dump: [x], train: tiny_cpu}", "data: train is the experiment's own"),
    ("data: {dump: [x], no_such_option: 1}", "data: unrecognized arguments: --no-such-option"),
    ("launcher: cloud", "launcher must be local or slurm"),
])
def test_bad_experiment_files_are_clear_errors(fake, tmp_path, caplog, change, error):
    key = change.split(":")[0]
    text = re.sub(rf"^{key}:.*?(?=^\w)", "", EXPERIMENT + "end: 1\n", flags=re.MULTILINE | re.DOTALL)
    text = text.replace("end: 1\n", "") + change + "\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert cli.main(["experiment", str(path), "-o", str(tmp_path / "out")]) == 2
    assert error in caplog.text
    assert fake.ran == []


def test_slurm_launcher_submits_train_sbatch_and_waits(tmp_path):
    spec = experiment.load_experiment(EXPERIMENT_FILE(tmp_path, "launcher: slurm\nsbatch: [--nodes=2]\n"))
    steps = {s.stage: s for s in experiment.experiment_steps(spec, tmp_path / "out")}
    train = steps["a.seed1.train"]
    assert train.entry == ("preprocess.pipeline.sbatch",) and not train.hydra_overrides
    assert train.argv[:6] == ("--nodes=2", "--", "tiny_cpu", "{WORKDIR}/data", "{WORKDIR}/runs/a/seed1/checkpoints",
                              "{WORKDIR}/runs/start/checkpoints/checkpoint_last.pt")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/sbatch.args\nexit 3\n")
    (fake_bin / "sbatch").chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "preprocess.pipeline.sbatch", "--nodes=2", "--", "tiny_cpu",
                             "/d", str(tmp_path / "save"), "-", "x=1"], capture_output=True, text=True,
                            env={"PATH": f"{fake_bin}:/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 3  # the job's status is the step's
    assert (tmp_path / "sbatch.args").read_text().split() == [
        "--wait", f"--chdir={REPO_ROOT}", f"--output={tmp_path / 'save'}/slurm-%j.out", "--nodes=2",
        str(REPO_ROOT / "run" / "slurm" / "train.sbatch"), "tiny_cpu", "/d", str(tmp_path / "save"), "-", "x=1"]


def EXPERIMENT_FILE(tmp_path, extra):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT + extra)
    return path


XFACTR = REPO_ROOT.parent / "shared" / "data" / "xfactr"


@pytest.mark.skipif(not (XFACTR / "mTRExf").is_dir(), reason=f"X-FACTR data not found at {XFACTR}")
def test_the_shipped_cpu_ablation_declares_the_papers_arms(tmp_path):
    path = REPO_ROOT / "run" / "experiments" / "cpu_ablation.yaml"
    for quick, seeds, updates in ((False, (1, 2, 3), 5000), (True, (1,), 1000)):
        spec = experiment.load_experiment(path, quick=quick)
        steps = {s.stage: s for s in experiment.experiment_steps(spec, tmp_path)}
        assert steps["import-triples"].argv[:2] == ("--triples", *[str(p) for p in sorted(
            (XFACTR / "mTRExf" / "sub").glob("*.jsonl"))][:1])
        trains = {name: s for name, s in steps.items() if name.endswith(".train") and name != "start.train"}
        assert set(trains) == {f"{arm}.seed{seed}.train" for arm in ("mlm", "kmlm", "kmlm_r") for seed in seeds}
        for name, step in trains.items():
            config = step.argv[step.argv.index("--config-name") + 1]
            assert config == {"mlm": "kmlm_r_base", "kmlm": "kmlm_base", "kmlm_r": "kmlm_r_base"}[name.split(".")[0]]
            assert ("task.streams='plain'" in step.argv) == name.startswith("mlm.")
            assert f"optimization.max_update={updates}" in step.argv and "model=tiny" in step.argv
            assert "optimization.lr=[0.001]" in step.argv  # not tiny_cpu's 5e-3 (README "Does it work?")
            assert step.first_launch_argv[1].endswith("runs/start/checkpoints/checkpoint_last.pt")
        assert ("start.xlr" in steps) == (not quick)


def test_the_shipped_gpu_ablation_sends_trainings_to_train_sbatch(tmp_path):
    tokenizer, hf, dump = tmp_path / "xlmr.base", tmp_path / "xlmr_hf", tmp_path / "dump.json"
    for directory in (tokenizer, hf):
        directory.mkdir()
        (directory / "dict.txt").write_text("a 1\n")
    dump.write_text("")
    spec = experiment.load_experiment(REPO_ROOT / "run" / "experiments" / "paper_ablation_gpu.yaml", overrides=[
        f"data.tokenizer={tokenizer}", f"baselines.xlmr_base={hf}", f"data.dump=[{dump}]", "data.plain=null",
        f"init={tokenizer}/model.pt"])
    steps = {s.stage: s for s in experiment.experiment_steps(spec, tmp_path / "out")}
    for arm, config in (("kmlm", "kmlm_base"), ("kmlm_r", "kmlm_r_base")):
        train = steps[f"{arm}.seed1.train"]
        assert train.entry == ("preprocess.pipeline.sbatch",)
        assert train.argv[:8] == ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--time=24:00:00", "--",
                                  config, "{WORKDIR}/data", f"{{WORKDIR}}/runs/{arm}/seed1/checkpoints")
        assert train.argv[8] == f"{tokenizer}/model.pt"
    assert {"xlmr_base.seed1.xlr", "xlmr_base.seed1.ner", "xlmr_base.seed1.relx"} <= set(steps)
    assert "xlmr_base.seed1.valid-loss" not in steps and "kmlm.seed1.valid-loss" in steps
    assert steps["xlmr_base.seed1.xlr"].argv[:2] == ("--model", f"xlmr_base={hf}")
    compare = steps["compare"].argv
    assert compare[compare.index("--pairs") + 1:compare.index("--runs")] == (
        "xlmr_base:kmlm", "kmlm:kmlm_r", "xlmr_base:kmlm_r")


def test_an_arm_whose_overrides_do_not_compose_stops_the_run_before_anything_runs(declared, tmp_path, monkeypatch,
                                                                                   caplog):
    steps = FakeSteps()
    monkeypatch.setattr(execute, "run_step", steps)  # the composition check is the real one (Hydra, --cfg job)
    declared.write_text(EXPERIMENT.replace("b: {config: tiny_cpu}", "b: {config: tiny_cpu, overrides: [task.nosuch=1]}")
                        .replace("start: {config: kmlm_r_base, overrides: [\"task.streams='plain'\"]}\n", ""))
    assert cli.main(["experiment", str(declared), "-o", str(tmp_path / "out"), "--set", "seeds=[1]"]) == 2
    assert "b.seed1.train config with the experiment's overrides does not compose" in caplog.text
    assert "task.nosuch" in caplog.text and steps.ran == []
