"""Scores of a run, their mean and spread over seeds, and the files a run writes.

A task returns one ``Score`` per (model, seed, language, metric). ``summarise`` adds the ``avg`` language (the
unweighted mean over languages, computed within each seed) and reduces the seeds to their mean and standard
deviation (sample standard deviation, ddof=1; 0 for a single seed). ``write_results`` writes, atomically:

- ``OUT/results.csv``: one row per (task, model, language, metric) with columns
  ``task,model,lang,metric,value,std,seeds,runs,count`` (value = mean over seeds in percent, runs = the per-seed
  values joined by ``;``, count = examples scored);
- ``OUT/results.md``: per task and metric a table with the languages down and the models across (``mean ± std``
  when there are several seeds), a ``Δ`` column (second minus first) when there are two models, and with
  ``--paper ROW`` the paper's published number and ours minus it;
- ``OUT/results.png``: per task and metric with at least two languages, a bar chart per language (ours and the
  paper's rows).
"""
import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kmlm_eval.common import data_error, open_utf8
from preprocess.core.errors import UserFacingError
from preprocess.core.io import atomic_path, write_text
from preprocess.core.scores import Score

logger = logging.getLogger(__name__)
RESULTS_CSV, RESULTS_MD, RESULTS_PNG = "results.csv", "results.md", "results.png"
CSV_COLUMNS = ("task", "model", "lang", "metric", "value", "std", "seeds", "runs", "count")
AVG = "avg"


@dataclass(frozen=True)
class Result:
    """A score reduced over seeds."""
    task: str
    model: str
    lang: str
    metric: str
    value: float
    std: float
    runs: tuple
    count: int

    @property
    def key(self):
        return self.task, self.model, self.lang, self.metric


def group(items, key):
    groups = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def with_language_average(scores):
    """Add the ``avg`` language per (task, model, seed, metric) where there are several languages."""
    averages = [Score(t, m, AVG, metric, float(np.mean([s.value for s in g])), sum(s.count for s in g), seed)
                for (t, m, seed, metric), g in group(scores, lambda s: (s.task, s.model, s.seed, s.metric)).items()
                if len(g) > 1]
    return [s for s in scores if s.lang != AVG] + averages


def summarise(scores):
    """Scores of one or more seeds -> Results (mean, sample std over seeds), ``avg`` language included."""
    results = []
    for key, g in group(with_language_average(scores), lambda s: (s.task, s.model, s.lang, s.metric)).items():
        runs = tuple(s.value for s in sorted(g, key=lambda s: s.seed))
        std = float(np.std(runs, ddof=1)) if len(runs) > 1 else 0.0
        results.append(Result(*key, float(np.mean(runs)), std, runs, g[0].count))
    return results


def languages(results):
    langs = list(dict.fromkeys(r.lang for r in results if r.lang != AVG))
    return langs + ([AVG] if any(r.lang == AVG for r in results) else [])


def cell(result):
    if result is None:
        return "–"
    return f"{result.value:.2f} ± {result.std:.2f}" if len(result.runs) > 1 else f"{result.value:.2f}"


def difference(a, b):
    return f"{a - b:+.2f}" if a is not None and b is not None else "–"


def markdown_table(results, paper=()):
    """Languages down, models across (+ Δ for two models, + each paper row and ours minus it)."""
    lines = []
    for (task, metric), subset in group(results, lambda r: (r.task, r.metric)).items():
        models = list(dict.fromkeys(r.model for r in subset))
        by_key = {(r.model, r.lang): r for r in subset}
        value = lambda model, lang: by_key[(model, lang)].value if (model, lang) in by_key else None  # noqa: E731
        header = ["lang"] + models + (["Δ"] if len(models) == 2 else [])
        for row in paper:
            header += [f"paper: {row.name}"] + [f"{m} − paper" for m in models]
        lines += [f"### {task}: {metric}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for lang in languages(subset):
            cells = [cell(by_key.get((m, lang))) for m in models]
            if len(models) == 2:
                cells.append(difference(value(models[1], lang), value(models[0], lang)))
            for row in paper:
                published = row.value(task, metric, lang)
                cells += [f"{published:.2f}" if published is not None else "–"]
                cells += [difference(value(m, lang), published) for m in models]
            lines.append("| " + " | ".join([f"**{lang}**" if lang == AVG else lang] + cells) + " |")
        lines.append("")
    return "\n".join(lines)


def csv_text(results):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in results:
        writer.writerow([*r.key, f"{r.value:.4f}", f"{r.std:.4f}", len(r.runs), ";".join(f"{v:.4f}" for v in r.runs),
                         r.count])
    return buffer.getvalue()


def plot(results, paper, path):
    """A bar chart per task/metric with at least two languages: a bar per model and paper row in each language."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, subset) for key, subset in group(results, lambda r: (r.task, r.metric)).items()
              if len([lang for lang in languages(subset) if lang != AVG]) > 1]
    if not panels:
        return False
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, 3.6 * len(panels)), squeeze=False)
    for axis, ((task, metric), subset) in zip(axes[:, 0], panels):
        langs = languages(subset)
        by_key = {(r.model, r.lang): r for r in subset}
        series = [(model, [by_key[(model, lang)].value if (model, lang) in by_key else np.nan for lang in langs],
                   [by_key[(model, lang)].std if (model, lang) in by_key else 0.0 for lang in langs])
                  for model in dict.fromkeys(r.model for r in subset)]
        series += [(f"paper: {row.name}", [np.nan if row.value(task, metric, lang) is None
                                           else row.value(task, metric, lang) for lang in langs], [0.0] * len(langs))
                   for row in paper]
        width = 0.8 / len(series)
        for i, (name, values, errors) in enumerate(series):
            axis.bar(np.arange(len(langs)) + (i - (len(series) - 1) / 2) * width, values, width, yerr=errors,
                     label=name, hatch="//" if name.startswith("paper: ") else None)
        axis.set_xticks(np.arange(len(langs)), langs)
        axis.set_title(f"{task}: {metric}")
        axis.set_ylabel(metric)
        axis.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
    return True


def write_results(results, outdir, paper=()):
    """Write results.csv, results.md and (when a comparison across languages exists) results.png; return the
    Markdown."""
    outdir = Path(outdir)
    write_text(csv_text(results), outdir / RESULTS_CSV)
    markdown = markdown_table(results, paper)
    write_text(markdown, outdir / RESULTS_MD)
    plotted = plot(results, paper, outdir / RESULTS_PNG)
    logger.info("wrote %s, %s%s (%d results)", outdir / RESULTS_CSV, outdir / RESULTS_MD,
                f" and {outdir / RESULTS_PNG}" if plotted else "", len(results))
    return markdown


def read_results(path):
    """Results of an earlier run (``results.csv`` or its directory); files of the one-seed format before
    ``std``/``seeds``/``runs`` existed are read as one seed."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    try:
        rows = list(csv.DictReader(open_utf8(path, newline="")))
    except OSError as err:
        raise UserFacingError(f"cannot read {path}: {err}") from err
    results = []
    for number, row in enumerate(rows, 2):
        try:
            value = float(row["value"])
            runs = tuple(float(v) for v in row["runs"].split(";")) if row.get("runs") else (value,)
            results.append(Result(row["task"], row["model"], row["lang"], row["metric"], value,
                                  float(row.get("std") or 0.0), runs, int(row["count"])))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise data_error(path, number, f"not a kmlm-eval results row ({err!r}); columns {CSV_COLUMNS}") from err
    return results


def report(scores, args):
    """The end of every task: reduce the seeds, write the files (with the ``--paper`` rows), print the Markdown."""
    from kmlm_eval.paper import warn_missing

    if not scores:
        raise UserFacingError("nothing was scored")
    results = summarise(scores)
    warn_missing(args.paper, results)
    print(write_results(results, args.output, args.paper))
    return 0
