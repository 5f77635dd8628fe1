"""Running a plan's steps N at a time (``kmlm-preprocess experiment --jobs N``): a step starts once every step it
reads that runs in this plan has finished, earliest in plan order first; each step is still one process with its
own marker, so what a killed or failed run leaves is the same as with one job. A failure stops new starts; the
steps already running finish, then the first failure is raised."""
import dataclasses
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait


class Prefixed:
    """A step's echo with the step's name in front, so the rows of concurrent trainings can be told apart."""

    def __init__(self, name, echo):
        self.name, self.echo = name, echo

    def __call__(self, line):
        shown = self.echo(line)
        return None if shown is None else "\n".join(f"[{self.name}] {row}" for row in shown.splitlines())


def run_concurrently(todo, workdir, jobs, run_step):
    """Run ``todo`` ([(step, record)] in plan order) with at most ``jobs`` at once through ``run_step``."""
    to_run = {step.stage for step, _ in todo}
    pending = [(dataclasses.replace(step, echo=Prefixed(step.stage, step.echo)) if step.echo else step, record)
               for step, record in todo]
    running, finished, failure = {}, set(), None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for item in [] if failure else list(pending):
                step, record = item
                if len(running) < jobs and all(name in finished or name not in to_run for name in step.inputs):
                    pending.remove(item)
                    running[pool.submit(run_step, step, record, workdir)] = step
            if not running:
                break  # a failure left only steps that wait for it
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                try:
                    future.result()
                    finished.add(step.stage)
                except Exception as err:  # noqa: BLE001  (re-raised below, after the running steps end)
                    failure = failure or err
    if failure:
        raise failure
