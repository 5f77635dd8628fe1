"""The dataset report as people read it: PNG plots and report.md, drawn from the counts of ``preprocess.stages.report``.

Input
    report  the report dict that ``preprocess.stages.report.build_report`` returns (the content of report.json; the
            sections of the stages not given are absent). Splits and kinds are shown in the dict's order, kinds
            in ``KINDS`` order where the dict sorts them by name.
    data    what the plots need beyond the dict (also from ``build_report``): ``relation_counts`` (triples per
            relation), ``combinations`` (kind -> cycles per relation combination), and from cycles_stats.json
            (None without ``--cycles``) the distributions, each (values, entities) int arrays, values ascending:
            ``degree`` (over the graph's nodes), ``triples_per_entity``, ``membership`` (kind or "all" -> cycles
            per entity, over the entities in at least one).
Output
    ``write_plots``      OUT/coverage.png, relation_frequency.png, degree_distribution.png, samples_per_language.png,
                         cycles.png, relation_combinations.png, xlr_answer_positions.png, each when its data is
                         given (written atomically, without a timestamp, so the same dict gives the same bytes);
                         one of these names left by an earlier run is removed.
    ``render_markdown``  the text of report.md: the numbers as tables, the written plots linked.

matplotlib draws on an Agg canvas, without pyplot's global state.
"""
import json

import numpy as np

from preprocess.core.cycle_triples import DIAMOND, TRIANGLE
from preprocess.core.io import atomic_path
from preprocess.core.languages import PIVOT_LANGUAGE

KINDS = (TRIANGLE, DIAMOND)  # the paper's order; any other kind after them, by name


def kind_order(kind):
    return (KINDS.index(kind) if kind in KINDS else len(KINDS), kind)


def in_kind_order(counts):
    """``{kind: value}`` with its kinds in ``kind_order``."""
    return dict(sorted(counts.items(), key=lambda kv: kind_order(kv[0])))


# ---------------------------------------------------------------------------------------------------------------
# Plots


def new_figure(width=9.0, height=4.8, ncols=1, nrows=1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_axisbelow(True)
    return figure, axes


def save_figure(figure, path):
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", metadata={"Software": None})


def grouped_bars(ax, categories, series, value_labels=None):
    """Bars per category, one colour per series (``{name: [values per category]}``); ``value_labels``: the texts
    over the bars, per series (default: the values)."""
    from matplotlib.ticker import MaxNLocator

    width = 0.8 / max(1, len(series))
    x = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        if value_labels is not False:
            texts = value_labels[name] if value_labels else [f"{v:,}" for v in values]
            ax.bar_label(bars, labels=texts, fontsize=7 if len(series) * len(categories) < 40 else 6, padding=1)
    ax.set_xticks(x, categories)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if len(series) > 1:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def log_spaced(n, points=2000):
    """At most ~``points`` indices of 0..n-1, log-spaced (a log-log line looks the same, renders much faster)."""
    if n <= points:
        return np.arange(n)
    return np.unique(np.geomspace(1, n, points).astype(np.int64) - 1)


def rank_plot(ax, counts_by_name, xlabel, ylabel):
    for name, counts in counts_by_name.items():
        counts = np.sort(np.asarray(counts))[::-1]
        if counts.size:
            keep = log_spaced(counts.size)
            ax.loglog(keep + 1, counts[keep], marker="." if counts.size < 50 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(counts_by_name) > 1:
        ax.legend(fontsize=8)


def short(text, limit=32):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def top_bars(ax, names, values, color):
    """Horizontal bars, largest on top, each labelled with its value."""
    y = np.arange(len(names))
    bars = ax.barh(y, values, color=color)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=7, padding=2)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.margins(x=0.18)


def plot_coverage(report, path):
    entities = report["entities"]
    langs = entities["languages"]
    if not langs:
        return False
    figure, (ax,) = new_figure(max(8.0, 1.0 + 1.0 * len(langs)), 5.0)
    cov = entities["coverage"]

    def share(key, total):
        return [100.0 * cov[lang].get(key, 0) / total if total else 0.0 for lang in langs]

    series = {
        "items labelled": share("items_labelled", entities["items"]),
        "items with aliases": share("items_with_aliases", entities["items"]),
        "properties labelled": share("properties_labelled", entities["properties"]),
        "triples with h, r, t labelled": share("triples_fully_labelled", report["triples"]["triples"]),
    }
    grouped_bars(ax, langs, series, value_labels=False)
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("% of items / properties / triples")
    ax.set_title(f"Label and alias coverage per language ({entities['items']:,} items, "
                 f"{entities['properties']:,} properties, {report['triples']['triples']:,} triples)")
    ax.legend(fontsize=8, loc="upper center", ncols=4, frameon=False)
    save_figure(figure, path)
    return True


def plot_relation_frequency(report, relation_counts, path):
    if relation_counts.size == 0:
        return False
    top = report["triples"]["top_relations"][:15]
    figure, axes = new_figure(13.0, max(4.8, 0.3 * len(top) + 1.2), ncols=2)
    rank_plot(axes[0], {"relations": relation_counts}, "relation rank", "triples")
    axes[0].set_title(f"Triples per relation, by rank ({len(relation_counts):,} relations, "
                      f"{int(relation_counts.sum()):,} triples)")
    top_bars(axes[1], [f"{r['id']} {short(r['label'] or '')}" for r in top], [r["triples"] for r in top], "tab:blue")
    axes[1].set_title(f"Top {len(top)} relations")
    axes[1].set_xlabel("triples")
    save_figure(figure, path)
    return True


def ccdf(ax, distribution, label):
    """The share of entities with a value >= k, of a distribution (values ascending, entities) of values > 0."""
    values, counts = distribution
    positive = values > 0
    values, counts = values[positive], counts[positive]
    if values.size == 0:
        return
    entities = counts.sum()
    at_least = entities - np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = log_spaced(values.size)
    ax.loglog(values[keep], at_least[keep] / entities, marker=".", markersize=3, label=label)


def plot_degrees(report, data, path):
    degree, triples, membership = data["degree"], data["triples_per_entity"], data["membership"]
    if degree is None or not degree[1].sum():
        return False
    kinds = [kind for kind in KINDS if kind in membership and membership[kind][1].sum()]
    ncols = 2 if kinds else 1
    figure, axes = new_figure(9.0 if ncols == 1 else 12.0, 4.8, ncols=ncols)
    ccdf(axes[0], degree, "degree (distinct neighbours)")
    ccdf(axes[0], triples, "triples per entity")
    axes[0].set_xlabel("k")
    axes[0].set_ylabel("share of entities with ≥ k")
    graph = report["graph"]
    axes[0].set_title(f"Entity graph: {graph['nodes']:,} nodes, {graph['edges']:,} edges "
                      f"(max degree {graph['degree']['max']:,})")
    axes[0].legend(fontsize=8)
    if ncols == 2:
        for kind in kinds + (["all"] if len(kinds) > 1 else []):
            ccdf(axes[1], membership[kind], kind if kind != "all" else "all cycles")
        axes[1].set_xlabel("k")
        axes[1].set_ylabel("share of entities in cycles with ≥ k cycles")
        axes[1].set_title(f"Cycle membership ({report['cycles']['entities_in_cycles']:,} entities in a cycle)")
        axes[1].legend(fontsize=8)
    save_figure(figure, path)
    return True


def samples_per_language(report):
    """``{panel: {series: {lang: samples}}}`` for every stage given (sentences by their non-English language)."""
    panels = {}
    if "sentences" in report:
        per_lang = {}
        for pair, n in report["sentences"]["by_lang_pair"].items():
            other = [lang for lang in pair.split("-") if lang != PIVOT_LANGUAGE] or [PIVOT_LANGUAGE]
            per_lang[other[-1]] = per_lang.get(other[-1], 0) + n
        panels["knowledge sentences (by the pair's other language)"] = {"sentences": per_lang}
    if "reasoning" in report:
        by_kind = {}
        for lang, per_kind in report["reasoning"]["by_lang_and_kind"].items():
            for kind, n in per_kind.items():
                by_kind.setdefault(kind, {})[lang] = n
        panels["reasoning samples"] = in_kind_order(by_kind)
    if "xlr" in report:
        panels["XLR"] = dict(report["xlr"]["samples"])
    return panels


def plot_samples_per_language(report, path):
    panels = {name: series for name, series in samples_per_language(report).items()
              if any(per_lang for per_lang in series.values())}
    if not panels:
        return False
    langs = list(report["entities"]["languages"])
    langs += sorted({lang for s in panels.values() for per_lang in s.values() for lang in per_lang} - set(langs))
    figure, axes = new_figure(max(8.0, 1.0 + 0.9 * len(langs)), 2.8 * len(panels) + 0.4, nrows=len(panels))
    for ax, (name, series) in zip(axes, panels.items()):
        grouped_bars(ax, langs, {s: [per_lang.get(lang, 0) for lang in langs] for s, per_lang in series.items()})
        ax.set_ylabel("samples")
        total = sum(sum(per_lang.values()) for per_lang in series.values())
        ax.set_title(f"{name}: {total:,}", fontsize=10)
        ax.margins(y=0.2)
    save_figure(figure, path)
    return True


def plot_cycles(report, path):
    cycles = report["cycles"]
    numeric = {k: v for k, v in cycles["stats"].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k.startswith(KINDS)}
    figure, axes = new_figure(12.0, max(4.8, 0.35 * len(numeric) + 1.2), ncols=2)
    kinds = sorted(cycles["by_kind"], key=kind_order)
    grouped_bars(axes[0], kinds, {"cycles": [cycles["by_kind"][k] for k in kinds]})
    axes[0].set_title(f"Cycles per kind ({cycles['cycles']:,})")
    axes[0].margins(y=0.2)
    if numeric:
        names = sorted(numeric, key=lambda k: not k.startswith(TRIANGLE))  # triangles first, file order kept
        colors = ["tab:blue" if n.startswith(TRIANGLE) else "tab:orange" for n in names]
        top_bars(axes[1], [n.replace("_", " ") for n in names], [numeric[n] for n in names], colors)
        if max(numeric.values()) > 0:
            axes[1].set_xscale("log")
            axes[1].set_xlim(left=0.8)
        axes[1].margins(x=0.3)
        axes[1].set_title("cycles_stats.json: found, capped, kept (log scale)")
    else:
        axes[1].set_axis_off()
    save_figure(figure, path)
    return True


def plot_relation_combinations(report, combination_counts, path):
    if not any(len(c) for c in combination_counts.values()):
        return False
    figure, (ax,) = new_figure()
    stats = report["reasoning"]["relation_combinations"]
    rank_plot(ax, {f"{kind} ({stats[kind]['unique']:,} unique)": counts
                   for kind, counts in combination_counts.items()}, "relation-combination rank", "cycles")
    ax.set_title("Relation combinations of the rendered cycles: the long tail")
    if len(combination_counts) == 1:
        ax.legend(fontsize=8)
    save_figure(figure, path)
    return True


def plot_answer_positions(report, path):
    positions = report["xlr"]["answer_positions"]
    names = [n for split in report["xlr"]["samples"] for n in positions if n == f"{split}.{PIVOT_LANGUAGE}"]
    names = names or sorted(positions)
    names = [n for n in names if sum(positions[n])]
    if not names:
        return False
    width = max(len(positions[n]) for n in names)
    counts = {n: positions[n] + [0] * (width - len(positions[n])) for n in names}
    shares = {n: [100.0 * c / sum(counts[n]) for c in counts[n]] for n in names}
    figure, (ax,) = new_figure(8.0, 4.2)
    grouped_bars(ax, [str(i) for i in range(width)], shares,
                 value_labels={n: [f"{c:,}" for c in counts[n]] for n in names})
    ax.axhline(100.0 / width, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("answer position (label); bar labels: samples")
    ax.set_ylabel("% of the file's samples")
    ax.set_title(f"XLR: where the right answer sits (dashed: uniform, {100.0 / width:.1f}%)")
    ax.margins(y=0.2)
    save_figure(figure, path)
    return True


def write_plots(report, data, output):
    """The plots whose data is given, written to ``output``; returns their file names (others there are removed)."""
    plots = {
        "coverage.png": lambda p: plot_coverage(report, p),
        "relation_frequency.png": lambda p: plot_relation_frequency(report, data["relation_counts"], p),
        "degree_distribution.png": lambda p: plot_degrees(report, data, p),
        "samples_per_language.png": lambda p: plot_samples_per_language(report, p),
        "cycles.png": lambda p: "cycles" in report and plot_cycles(report, p),
        "relation_combinations.png": lambda p: plot_relation_combinations(report, data["combinations"], p),
        "xlr_answer_positions.png": lambda p: "xlr" in report and plot_answer_positions(report, p),
    }
    written = [name for name, plot in plots.items() if plot(output / name)]
    for stale in set(plots) - set(written):  # from an earlier report with more inputs: it would mislead
        (output / stale).unlink(missing_ok=True)
    return written


# ---------------------------------------------------------------------------------------------------------------
# Markdown


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (list, dict)):
        return "`" + json.dumps(value, ensure_ascii=False) + "`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent(part, whole):
    return f"{part:,} ({100.0 * part / whole:.1f}%)" if whole else f"{part:,}"


def md_image(name, plots, alt):
    return f"\n![{alt}]({name})\n" if name in plots else ""


def md_overview(report):
    rows = [("entities", report["entities"]["entities"]), ("triples", report["triples"]["triples"])]
    if "graph" in report:
        rows.append(("graph edges", report["graph"]["edges"]))
    if "sentences" in report:
        rows.append(("knowledge sentences", report["sentences"]["sentences"]))
    if "cycles" in report:
        rows += [(f"{kind} cycles", n) for kind, n in in_kind_order(report["cycles"]["by_kind"]).items()]
    if "reasoning" in report:
        rows += [(f"{kind} reasoning samples", n) for kind, n in report["reasoning"]["by_kind"].items()]
    if "xlr" in report:
        rows += [(f"XLR {split} (en)", per_lang.get(PIVOT_LANGUAGE))
                 for split, per_lang in report["xlr"]["samples"].items()]
    given = ", ".join(f"`--{k} {v}`" for k, v in report["inputs"].items() if v)
    return f"Inputs: {given}. Seed {report['seed']}, top {report['top']}.\n\n" + md_table(["what", "count"], rows)


def md_entities(report, plots):
    entities, triples = report["entities"], report["triples"]["triples"]
    out = [f"{entities['items']:,} items and {entities['properties']:,} properties "
           f"({entities['entities']:,} rows).\n"]
    rows = []
    for lang, cov in entities["coverage"].items():
        rows.append((lang, percent(cov["items_labelled"], entities["items"]),
                     percent(cov["properties_labelled"], entities["properties"]),
                     percent(cov["items_with_aliases"], entities["items"]) if "items_with_aliases" in cov else None,
                     cov.get("aliases"), cov.get("entities_described"),
                     percent(cov["triples_fully_labelled"], triples)))
    out.append(md_table(["lang", "items labelled", "properties labelled", "items with aliases", "aliases",
                         "entities described", "triples with h, r, t labelled"], rows))
    out.append(md_image("coverage.png", plots, "label and alias coverage per language"))
    return "\n".join(out)


def md_triples(report, plots):
    t = report["triples"]
    self_loops = report["graph"]["self_loops"] if "graph" in report else None
    out = [md_table(["triples", "relations", "distinct heads", "distinct tails", "entities", "self-loops",
                     "entity ids not in entities.parquet", "relation ids not in entities.parquet"],
                    [(t["triples"], t["relations"], t["heads"], t["tails"], t["entities"], self_loops,
                      t["entities_not_in_entities_table"], t["relations_not_in_entities_table"])]),
           f"\nTop {len(t['top_relations'])} relations:\n",
           md_table(["#", "relation", "label (en)", "triples", "share"],
                    [(i, r["id"], r["label"], r["triples"], f"{100.0 * r['triples'] / t['triples']:.1f}%")
                     for i, r in enumerate(t["top_relations"], 1)]),
           md_image("relation_frequency.png", plots, "triples per relation by rank")]
    return "\n".join(out) + ("\n" + md_graph(report, plots) if "graph" in report else
                             "\nThe entity graph's statistics come from `cycles_stats.json`: give `--cycles`.\n")


def md_graph(report, plots):
    g = report["graph"]
    out = [f"\n### Entity graph\n\nUndirected, self-loops dropped, parallel triples folded (as `cycles` sees it): "
           f"{g['nodes']:,} nodes, {g['edges']:,} edges; degree (distinct neighbours) mean {fmt(g['degree']['mean'])}, "
           f"median {fmt(g['degree']['median'])}, max {fmt(g['degree']['max'])}.\n",
           md_table(["degree"] + list(g["degree_histogram"]), [["entities"] + list(g["degree_histogram"].values())]),
           f"\nTop {len(g['top_hubs_by_degree'])} hubs by degree:\n",
           md_table(["#", "entity", "label (en)", "degree", "triples"],
                    [(i, h["id"], h["label"], h["degree"], h["triples"])
                     for i, h in enumerate(g["top_hubs_by_degree"], 1)]),
           md_image("degree_distribution.png", plots, "degree distribution")]
    return "\n".join(out)


def md_sentences(report):
    s = report["sentences"]
    pairs = sorted({p for per in s["by_variant_and_lang_pair"].values() for p in per})
    variants = list(s["by_variant_and_lang_pair"])
    rows = [[pair] + [s["by_variant_and_lang_pair"][v].get(pair, 0) for v in variants] + [s["by_lang_pair"][pair]]
            for pair in pairs]
    rows.append(["**all**"] + [s["by_variant"][v] for v in variants] + [s["sentences"]])
    mentions = s["mentions_by_language"]
    switched = [[pair] + [switched_share(mentions.get(v, {}).get(pair, {}), pair) for v in variants] for pair in pairs]
    return "\n".join([
        f"{s['sentences']:,} knowledge sentences; triple_index out of range: {s['triple_index_out_of_range']:,}.\n",
        md_table(["language pair"] + variants + ["total"], rows),
        "\nShare of mentions (head, relation, tail spans) whose text is in the pair's non-English language "
        "(code-switching replaces each with p = 0.5 when a label exists):\n",
        md_table(["language pair"] + variants, switched),
    ])


def switched_share(per_lang, pair):
    total = sum(per_lang.values())
    other = sum(n for lang, n in per_lang.items() if lang != PIVOT_LANGUAGE and lang in pair.split("-"))
    return f"{100.0 * other / total:.1f}% of {total:,}" if total else None


def md_cycles(report):
    c = report["cycles"]
    out = [f"{c['cycles']:,} cycles; {c['entities_in_cycles']:,} entities are in at least one.\n",
           md_table(["kind", "cycles"], in_kind_order(c["by_kind"]).items()),
           "\n`cycles_stats.json` (counts of what was read, folded, found, capped and kept):\n",
           md_table(["key", "value"], list(c["stats"].items()))]
    if "entities_at_cap" in c:
        out.append(f"\nEntities at the per-entity cap (M = {c['stats']['max_cycles_per_entity']:,}): "
                   + ", ".join(f"{kind} {n:,}" for kind, n in c["entities_at_cap"].items()) + ".\n")
    kinds = [k for k in (c["top_hubs_by_cycles"][0] if c["top_hubs_by_cycles"] else {})
             if k not in ("id", "label", "cycles", "degree")]
    out += [f"\nTop {len(c['top_hubs_by_cycles'])} hubs by cycle membership:\n",
            md_table(["#", "entity", "label (en)"] + kinds + ["cycles", "degree"],
                     [[i, h["id"], h["label"]] + [h[k] for k in kinds] + [h["cycles"], h["degree"]]
                      for i, h in enumerate(c["top_hubs_by_cycles"], 1)])]
    return "\n".join(out)


def md_reasoning(report, plots):
    r = report["reasoning"]
    kinds = list(r["by_kind"])
    rows = [[lang] + [per.get(k, 0) for k in kinds] + [sum(per.values())]
            for lang, per in r["by_lang_and_kind"].items()]
    rows.append(["**all**"] + [r["by_kind"][k] for k in kinds] + [r["samples"]])
    combos = r["relation_combinations"]
    out = [f"{r['samples']:,} reasoning samples from "
           + ", ".join(f"{n:,} {k} cycles" for k, n in r["cycles_rendered"].items()) + ".\n",
           md_table(["lang"] + kinds + ["total"], rows),
           "\n### Relation combinations\n\nA combination is the multiset of the relations of a cycle's chosen "
           "triples (sorted ids, from the reasoning spans). Counted over distinct cycles (each cycle is rendered "
           "in several languages), samples alongside.\n",
           md_table(["kind", "unique combinations", "paper", "cycles", "combinations of one cycle",
                     "cycles in the top 1% of combinations"],
                    [(k, v["unique"], v["paper_unique"], v["cycles"], v["seen_in_one_cycle"],
                      percent(v["cycles_in_top_1_percent"], v["cycles"])) for k, v in combos.items()]),
           md_image("relation_combinations.png", plots, "relation-combination long tail")]
    for kind, v in combos.items():
        out += [f"\nTop {len(v['top'])} {kind} combinations:\n",
                md_table(["#", "relations", "labels (en)", "cycles", "samples"],
                         [(i, " + ".join(t["relations"]), " + ".join(lb or "?" for lb in t["labels"]), t["cycles"],
                           t["samples"]) for i, t in enumerate(v["top"], 1)])]
    return "\n".join(out)


def md_xlr(report, plots):
    x = report["xlr"]
    langs = sorted({lang for per in x["samples"].values() for lang in per},
                   key=lambda code: (code != PIVOT_LANGUAGE, code))
    rows = [[split] + [per_lang.get(lang) for lang in langs] + [x["distinct_cycles"][split],
                                                                x["distinct_answer_relations"][split]]
            for split, per_lang in x["samples"].items()]
    width = max((len(p) for p in x["answer_positions"].values()), default=0)
    return "\n".join([
        md_table(["split"] + langs + ["distinct cycles", "distinct answers"], rows),
        f"\nSamples whose `choice_ids[label]` is not `relation`: {x['answer_mismatches']:,}.\n",
        "\nAnswer positions (`label`) per file:\n",
        md_table(["file"] + [str(i) for i in range(width)],
                 [[name] + counts for name, counts in x["answer_positions"].items()]),
        md_image("xlr_answer_positions.png", plots, "XLR answer positions"),
    ])


def md_examples(examples):
    out = []
    for stage, items in examples.items():
        if items:
            out.append(f"\n**{stage}**\n")
            for item in items:
                where = ", ".join(f"{k} {v}" for k, v in item.items() if k != "text")
                out.append(f"- ({where}) `{item['text'].replace('`', chr(39))}`")
    return "\n".join(out) + "\n"


def render_markdown(report, plots):
    """report.md: the report dict as tables, with the written ``plots`` (file names) linked."""
    parts = ["# Dataset report\n", md_overview(report), "\n## Entities and label coverage\n",
             md_entities(report, plots), "\n## Triples and relations\n", md_triples(report, plots)]
    stage_plot = md_image("samples_per_language.png", plots, "samples per language per stage")
    if stage_plot:
        parts += ["\n## Samples per language and stage\n", stage_plot]
    if "sentences" in report:
        parts += ["\n## Knowledge sentences\n", md_sentences(report)]
    if "cycles" in report:
        parts += ["\n## Cycles\n", md_cycles(report), md_image("cycles.png", plots, "cycles per kind and caps")]
    if "reasoning" in report:
        parts += ["\n## Reasoning samples\n", md_reasoning(report, plots)]
    if "xlr" in report:
        parts += ["\n## XLR\n", md_xlr(report, plots)]
    if any(report["examples"].values()):
        parts += ["\n## Examples\n", "Random rows (under the seed), each sentence rendered `h <mask> r <mask> t .`; "
                  "XLR: context | question | choices, the answer starred.\n", md_examples(report["examples"])]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)
