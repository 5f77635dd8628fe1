"""``python -m preprocess.pipeline.experiment_report --output OUT --arms A B ... [--pairs A:B ...] --runs
ARM:SEED:DIR ...``: an experiment's comparison (the ``compare`` step of ``kmlm-preprocess experiment``).

Input: every ``DIR/eval/<evaluation>/results.csv`` of every run, in kmlm-eval's layout (kmlm_eval/results.py:
``task,model,lang,metric,value,count``, further columns ignored: value is the mean over kmlm-eval's ``--seeds``,
and an experiment gives each run's evaluation its one seed; ``avg`` rows are the run's unweighted mean over
languages).
Output, in OUT (written atomically):
  ``summary.csv``      task, metric, lang, arm, n (seeds), mean, sd (sample standard deviation over seeds, empty
                       for n = 1), per arm (the start, then the arms in order) and language (the run's ``avg`` too);
  ``differences.csv``  task, metric, lang, arm_a, arm_b, n, mean, sd: per --pairs A:B, the paired difference B - A
                       of the runs with the same seed, its mean and sd over the seeds both have;
  ``results.md``       one table per task and metric: languages down; per arm ``mean ± sd``; per pair ``B − A``;
  ``<task>_<metric>.png``  bars per language, one colour per arm, the sd as error bars.
"""
import argparse
import csv
import io
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text
from preprocess.core.report_render import new_figure, save_figure

RESULTS_CSV = "results.csv"
COLUMNS = ("task", "model", "lang", "metric", "value", "count")
START = "start"


def read_results(path):
    """Rows of one results.csv (kmlm-eval's layout); a clear error naming the file for anything else."""
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError) as err:
        raise UserFacingError(f"cannot read {path}: {err}") from None
    for number, row in enumerate(rows, 2):
        if set(COLUMNS) - set(row) or None in row.values():
            raise UserFacingError(f"{path}:{number}: not a kmlm-eval results row (columns {', '.join(COLUMNS)})")
        try:
            row["value"] = float(row["value"])
        except ValueError:
            raise UserFacingError(f"{path}:{number}: value {row['value']!r} is not a number") from None
    return rows


def collect(runs):
    """{(task, metric, lang): {arm: {seed: value}}} from every run's evaluations."""
    values = defaultdict(lambda: defaultdict(dict))
    for arm, seed, directory in runs:
        files = sorted(Path(directory).glob(f"eval/*/{RESULTS_CSV}"))
        if not files:
            raise UserFacingError(f"{directory}: no eval/*/{RESULTS_CSV} (did its evaluations run?)")
        for path in files:
            for row in read_results(path):
                values[(row["task"], row["metric"], row["lang"])][arm][seed] = row["value"]
    return values


def mean_sd(values):
    values = np.asarray(values, dtype=float)
    return len(values), float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None


def summarise(values, arms):
    """summary rows (task, metric, lang, arm, n, mean, sd), in table order."""
    rows = []
    for (task, metric, lang), by_arm in values.items():
        for arm in arms:
            if by_arm.get(arm):
                rows.append((task, metric, lang, arm, *mean_sd(list(by_arm[arm].values()))))
    return rows


def paired(values, pairs):
    """difference rows (task, metric, lang, a, b, n, mean, sd) of B - A over the seeds both have."""
    rows = []
    for (task, metric, lang), by_arm in values.items():
        for a, b in pairs:
            seeds = sorted(set(by_arm.get(a, {})) & set(by_arm.get(b, {})))
            if seeds:
                rows.append((task, metric, lang, a, b,
                             *mean_sd([by_arm[b][s] - by_arm[a][s] for s in seeds])))
    return rows


def csv_text(header, rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else f"{v:.4f}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def cell(n, mean, sd, signed=False):
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text if sd is None else f"{text} ± {sd:.2f}"


def languages_of(rows):
    langs = list(dict.fromkeys(r[2] for r in rows if r[2] != "avg"))
    return langs + (["avg"] if any(r[2] == "avg" for r in rows) else [])


def markdown(summary, differences, arms, pairs):
    lines = ["# Comparison", "", "mean ± sd over seeds (n seeds per arm in the column head); B − A: the paired "
             "difference over the seeds both arms have.", ""]
    for task, metric in dict.fromkeys((r[0], r[1]) for r in summary):
        rows = [r for r in summary if r[:2] == (task, metric)]
        diffs = [r for r in differences if r[:2] == (task, metric)]
        by = {(r[3], r[2]): r[4:] for r in rows}
        shown = [a for a in arms if any(r[3] == a for r in rows)]
        n_seeds = {a: max(by[(a, lang)][0] for (arm, lang) in by if arm == a) for a in shown}
        pair_cols = [(a, b) for a, b in pairs if any(r[3:5] == (a, b) for r in diffs)]
        diff = {(r[3], r[4], r[2]): r[5:] for r in diffs}
        header = ["lang"] + [f"{a} (n={n_seeds[a]})" for a in shown] + [f"{b} − {a}" for a, b in pair_cols]
        lines += [f"## {task}: {metric}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for lang in languages_of(rows):
            cells = [cell(*by[(a, lang)]) if (a, lang) in by else "–" for a in shown]
            cells += [cell(*diff[(a, b, lang)], signed=True) if (a, b, lang) in diff else "–" for a, b in pair_cols]
            lines.append("| " + " | ".join([f"**{lang}**" if lang == "avg" else lang] + cells) + " |")
        lines += ["", f"![{task} {metric}]({plot_name(task, metric)})", ""]
    return "\n".join(lines)


def plot_name(task, metric):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task}_{metric}") + ".png"


def plot(summary, arms, output):
    """One PNG per task and metric: bars per language and arm, sd as error bars."""
    written = []
    for task, metric in dict.fromkeys((r[0], r[1]) for r in summary):
        rows = [r for r in summary if r[:2] == (task, metric)]
        langs = languages_of(rows)
        shown = [a for a in arms if any(r[3] == a for r in rows)]
        by = {(r[3], r[2]): r for r in rows}
        figure, (ax,) = new_figure(width=max(6.0, 0.9 * len(langs) + 2.5), height=4.0)
        width = 0.8 / len(shown)
        x = np.arange(len(langs))
        for i, arm in enumerate(shown):
            means = [by[(arm, lang)][5] if (arm, lang) in by else np.nan for lang in langs]
            sds = [(by[(arm, lang)][6] or 0.0) if (arm, lang) in by else 0.0 for lang in langs]
            ax.bar(x + (i - (len(shown) - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=arm)
        ax.set_xticks(x, langs)
        ax.set_title(f"{task}: {metric} (mean ± sd over seeds)", fontsize=10)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        save_figure(figure, output / plot_name(task, metric))
        written.append(plot_name(task, metric))
    return written


def parse_run(text):
    arm, seed, directory = (text.split(":", 2) + ["", ""])[:3]
    if not arm or not seed.isdigit() or not directory:
        raise UserFacingError(f"--runs {text}: expected ARM:SEED:DIR")
    return arm, int(seed), directory


def parse_pair(text):
    a, sep, b = text.partition(":")
    if not sep or not a or not b:
        raise UserFacingError(f"--pairs {text}: expected A:B")
    return a, b


def compare(args):
    runs = [parse_run(r) for r in args.runs]
    pairs = [parse_pair(p) for p in args.pairs]
    arms = list(dict.fromkeys([*(arm for arm, _, _ in runs if arm == START), *args.arms]))
    values = collect(runs)
    summary, differences = summarise(values, arms), paired(values, pairs)
    output = Path(args.output)
    write_text(csv_text(("task", "metric", "lang", "arm", "n", "mean", "sd"), summary), output / "summary.csv")
    write_text(csv_text(("task", "metric", "lang", "arm_a", "arm_b", "n", "mean", "sd"), differences),
               output / "differences.csv")
    plots = plot(summary, arms, output)
    text = markdown(summary, differences, arms, pairs)
    write_text(text + "\n", output / "results.md")
    print(text)
    print(f"wrote {output}/results.md, summary.csv, differences.csv and {len(plots)} plots")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m preprocess.pipeline.experiment_report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--arms", nargs="+", required=True, help="the arms, in table order")
    parser.add_argument("--pairs", nargs="*", default=[], metavar="A:B", help="paired differences B - A")
    parser.add_argument("--runs", nargs="+", required=True, metavar="ARM:SEED:DIR")
    return parser


def main(argv=None):
    from preprocess.core.console import run_command

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(compare, args, "experiment compare")


if __name__ == "__main__":
    sys.exit(main())
