"""Running a plan: skip what is up to date, clear and run the rest in order, write completion markers."""
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from preprocess.core.errors import UserFacingError
from preprocess.pipeline.fingerprint import (
    code_change,
    code_state,
    marker_record,
    package_files,
    read_manifest,
    read_marker,
    stale_reason,
    write_marker,
)
from preprocess.pipeline.parallel import run_concurrently
from preprocess.pipeline.plan import LOCK_FILE, NO_MARKER, REPO, REPO_ROOT, WORKDIR, build_steps

logger = logging.getLogger(__name__)


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


def remove_temp_files(directory):
    """What a killed run was writing when it died, in a directory its resumed run keeps: our atomic writers'
    NAME.tmp-PID (the traced run's list of code, the plugin's copy to checkpoint_last.pt) and fairseq's NAME.pt.tmp
    (a checkpoint being saved). The workdir lock and die_with_parent ensure that no writer of the killed run lives."""
    for pattern in ("*.tmp-*", "*.pt.tmp"):  # pathlib's * also matches a leading dot
        for tmp in directory.glob(pattern):
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
        if started and started.get("fingerprint") == record["fingerprint"] and not code_change(started):
            logger.info("%s: continuing the interrupted run in %s", step.stage, Path(workdir) / step.directory)
            remove_temp_files(Path(workdir) / step.directory)
            return step.argv
    clear_outputs(step, workdir)
    if step.resumable:
        write_marker({**record, "code": code_state(package_files(step))}, step.started_marker(workdir))
    return step.argv + step.first_launch_argv


def run_logged(argv, step, workdir):
    """Run with the output appended to the step's log; print what ``step.echo`` picks. Returns the exit status.

    The log is written line by line: a block buffer would lose its last lines when the driver is killed, and would
    show a reader of the log (a person, the tests' kill points) the run as it was thousands of bytes ago."""
    log_path = Path(workdir) / step.log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", buffering=1) as log, subprocess.Popen(
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
    argv = step.traced_command(workdir) + resolve_argv(start_or_resume(step, record, workdir), workdir)
    started = time.monotonic()
    if step.log:
        status = run_logged(argv, step, workdir)
    else:
        status = subprocess.run(argv, env=stage_environment(), preexec_fn=die_with_parent).returncode
    if status != 0:
        raise UserFacingError(f"stage {step.stage} failed (exit status {status}); fix it and run the pipeline "
                              f"again to continue from this stage")
    loaded = read_manifest(step.manifest(workdir))
    if loaded is None:
        raise UserFacingError(f"stage {step.stage} exited 0 but left no list of the code it ran "
                              f"({step.manifest(workdir)}); run the pipeline again")
    write_marker({**record, "code": code_state(loaded)}, step.marker(workdir))
    step.manifest(workdir).unlink()
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
    return run_plan(steps, workdir, set(args.force), args.dry_run)


def run_plan(steps, workdir, forced=(), dry_run=False, what="pipeline", before_running=None, jobs=1):
    """Plan ``steps`` in WORKDIR and (unless ``dry_run``) run those not up to date, in order (``jobs`` > 1: that
    many at once, each after the steps it reads: preprocess.pipeline.parallel), under the WORKDIR lock;
    ``before_running(plan)`` may check the plan first. Returns [(stage, "run" | "skip", reason)]."""
    lock = None if dry_run else lock_workdir(workdir)
    try:
        plan = make_plan(steps, workdir, set(forced))
        if before_running and not dry_run:
            before_running(plan)
        if not dry_run:  # first, so a run killed anywhere leaves no marker of a stage now stale
            for step, _, reason in plan:
                if reason:
                    step.marker(workdir).unlink(missing_ok=True)
                if reason and reason != NO_MARKER:  # forced, or its settings or inputs changed: start over
                    step.started_marker(workdir).unlink(missing_ok=True)
        for step, record, reason in plan:
            logger.info("%s: %s", step.stage, f"run (reason: {reason}): {step.about()}" if reason
                        else "skip (up to date)")
            if reason and dry_run:
                print("  python -m", *step.command()[2:],
                      " ".join(fill_placeholders(a, workdir) for a in step.argv + step.first_launch_argv))
            elif reason and jobs == 1:
                run_step(step, record, workdir)
        if jobs > 1 and not dry_run:
            run_concurrently([(step, record) for step, record, reason in plan if reason], workdir, jobs, run_step)
    finally:
        if lock:
            lock.close()
    ran = [step.stage for step, _, reason in plan if reason]
    logger.info("%s: %s %d stage(s)%s, skipped %d (up to date); outputs in %s", what,
                "would run" if dry_run else "ran", len(ran), f" ({', '.join(ran)})" if ran else "",
                len(plan) - len(ran), workdir)
    return [(step.stage, "run" if reason else "skip", reason) for step, _, reason in plan]


def check_hydra_overrides(steps, overrides, workdir):
    """Compose the training config with its --set overrides (``--cfg job``: print, do not train), so a key that
    does not exist or a value of the wrong type stops the run before the data stages, with Hydra's message."""
    for step in steps:
        if step.hydra_overrides and any(o.startswith(f"{step.stage}.") for o in overrides):
            check_composes(step, workdir, "its --set overrides")


def check_composes(step, workdir, what):
    """Compose the step's Hydra config (``--cfg job``); a UserFacingError with Hydra's message if it does not."""
    check = subprocess.run(step.command() + resolve_argv(step.argv, workdir) + ["--cfg", "job"],
                           env={**stage_environment(), "PYTHONWARNINGS": "ignore"}, capture_output=True, text=True)
    if check.returncode != 0:
        message = [line for line in check.stderr.splitlines() if line.strip() and
                   not re.match(r"(DEBUG|INFO|WARNING):|Set the environment variable HYDRA_FULL_ERROR", line)]
        raise UserFacingError(f"the {step.stage} config with {what} does not compose:\n" + "\n".join(message))
