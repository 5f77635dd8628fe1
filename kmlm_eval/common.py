"""What every downstream evaluation shares: model/data arguments, input errors with file:line, a small CPU/GPU
fine-tuning loop, and the results table.

Results: ``OUT/results.csv`` with one row per (task, model, language, metric): columns
``task,model,lang,metric,value,count`` (value in percent, count = examples scored), and ``OUT/results.md``, a
Markdown table with one row per language (then ``avg``, the unweighted mean over languages) and one column per
model; with exactly two models a last column ``Δ`` gives second minus first.
"""
import csv
import io
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from preprocess.core.errors import UserFacingError
from preprocess.core.io import write_text

logger = logging.getLogger(__name__)
RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
CSV_COLUMNS = ("task", "model", "lang", "metric", "value", "count")


def data_error(path, line_number, message):
    return UserFacingError(f"{path}:{line_number}: {message}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path


def parse_model(text):
    """``NAME=DIR`` or ``DIR`` (the name is then the directory's name)."""
    name, sep, path = text.partition("=")
    path = Path(path if sep else text)
    if not path.is_dir():
        raise UserFacingError(f"--model {text}: {path} is not a Hugging Face model directory")
    return ModelSpec(name if sep else path.name, path)


def parse_lang_file(text):
    """``LANG=FILE`` -> ``(lang, Path)``."""
    lang, sep, path = text.partition("=")
    if not sep or not lang or not path:
        raise UserFacingError(f"{text!r}: expected LANG=FILE, e.g. de=test.de.txt")
    if not Path(path).is_file():
        raise UserFacingError(f"{path} does not exist")
    return lang, Path(path)


def unique_models(specs):
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserFacingError(f"two --model arguments have the same name ({names}): use NAME=DIR")
    return specs


def read_utf8(path):
    """The text of a file; bytes that are not UTF-8 are an error naming the file and the line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise data_error(path, line, f"not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start})") from None


def open_utf8(path, newline=None):
    """Like ``open(path, encoding="utf-8", newline=newline)``, with ``read_utf8``'s error for bytes not UTF-8."""
    return io.StringIO(read_utf8(path), newline=newline)


def read_jsonl(path):
    """Yield ``(line_number, object)``; a line that is not a JSON object is an error naming the file and line."""
    with open_utf8(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise data_error(path, number, f"not valid JSON ({err.msg})") from err
            if not isinstance(obj, dict):
                raise data_error(path, number, "expected a JSON object")
            yield number, obj


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def add_training_arguments(parser, epochs=3, lr=2e-5, batch_size=16, max_length=128):
    group = parser.add_argument_group("fine-tuning")
    group.add_argument("--epochs", type=float, default=epochs, help=f"training epochs (default {epochs})")
    group.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr})")
    group.add_argument("--batch-size", type=int, default=batch_size, help=f"examples per update (default {batch_size})")
    group.add_argument("--max-length", type=int, default=max_length, help=f"max tokens per input (default {max_length})")
    group.add_argument("--warmup", type=float, default=0.1, help="share of updates with linear warmup (default 0.1)")
    group.add_argument("--seed", type=int, default=1, help="seed of head initialisation and data order")


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_inputs(batch, model):
    """Drop token type ids a model with a single token type cannot take (XLM-R)."""
    if getattr(model.config, "type_vocab_size", 2) < 2:
        batch = {k: v for k, v in batch.items() if k != "token_type_ids"}
    return {k: v.to(device()) for k, v in batch.items()}


def fine_tune(model, examples, collate, args):
    """AdamW + linear warmup/decay over ``args.epochs`` passes of shuffled ``examples``; returns the model (eval)."""
    from transformers import get_linear_schedule_with_warmup

    model.to(device()).train()
    generator = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = max(1, -(-len(examples) // args.batch_size))
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, int(args.warmup * total), total)
    step, losses = 0, []
    while step < total:
        order = torch.randperm(len(examples), generator=generator).tolist()
        for start in range(0, len(order), args.batch_size):
            if step >= total:
                break
            batch = collate([examples[i] for i in order[start:start + args.batch_size]])
            loss = model(**model_inputs(batch, model)).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            step += 1
    logger.info("fine-tuned %d updates on %d examples; loss %.4f -> %.4f", total, len(examples), losses[0], losses[-1])
    return model.eval()


@torch.no_grad()
def predict_logits(model, examples, collate, batch_size):
    model.to(device()).eval()
    outputs = []
    for start in range(0, len(examples), batch_size):
        batch = collate(examples[start:start + batch_size])
        batch.pop("labels", None)
        outputs.append(model(**model_inputs(batch, model)).logits.float().cpu())
    return outputs


@dataclass(frozen=True)
class Score:
    task: str
    model: str
    lang: str
    metric: str
    value: float
    count: int


def with_average(scores):
    """Add an ``avg`` row (unweighted mean over languages) per task/model/metric."""
    groups = {}
    for s in scores:
        groups.setdefault((s.task, s.model, s.metric), []).append(s)
    averages = [Score(t, m, "avg", metric, float(np.mean([s.value for s in group])), sum(s.count for s in group))
                for (t, m, metric), group in groups.items() if len(group) > 1]
    return list(scores) + averages


def markdown_table(scores):
    """Languages down, models across (+ Δ for two models), one table per task/metric."""
    lines = []
    for task, metric in dict.fromkeys((s.task, s.metric) for s in scores):
        subset = [s for s in scores if (s.task, s.metric) == (task, metric)]
        models = list(dict.fromkeys(s.model for s in subset))
        langs = list(dict.fromkeys(s.lang for s in subset if s.lang != "avg")) + (
            ["avg"] if any(s.lang == "avg" for s in subset) else [])
        value = {(s.model, s.lang): s.value for s in subset}
        header = ["lang"] + models + (["Δ"] if len(models) == 2 else [])
        lines += [f"### {task}: {metric}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for lang in langs:
            cells = [f"{value[(m, lang)]:.2f}" if (m, lang) in value else "–" for m in models]
            if len(models) == 2 and all((m, lang) in value for m in models):
                cells.append(f"{value[(models[1], lang)] - value[(models[0], lang)]:+.2f}")
            elif len(models) == 2:
                cells.append("–")
            lines.append("| " + " | ".join([f"**{lang}**" if lang == "avg" else lang] + cells) + " |")
        lines.append("")
    return "\n".join(lines)


def write_results(scores, outdir):
    """Write results.csv and results.md (atomically); return the Markdown."""
    scores = with_average([s for s in scores if s.lang != "avg"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in scores:
        writer.writerow([s.task, s.model, s.lang, s.metric, f"{s.value:.4f}", s.count])
    outdir = Path(outdir)
    write_text(buffer.getvalue(), outdir / RESULTS_CSV)
    markdown = markdown_table(scores)
    write_text(markdown, outdir / RESULTS_MD)
    logger.info("wrote %s and %s (%d scores)", outdir / RESULTS_CSV, outdir / RESULTS_MD, len(scores))
    return markdown


def read_results(path):
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_CSV
    try:
        rows = list(csv.DictReader(open_utf8(path, newline="")))
    except OSError as err:
        raise UserFacingError(f"cannot read {path}: {err}") from err
    scores = []
    for number, row in enumerate(rows, 2):
        try:
            scores.append(Score(row["task"], row["model"], row["lang"], row["metric"], float(row["value"]),
                                int(row["count"])))
        except (KeyError, TypeError, ValueError) as err:
            raise data_error(path, number, f"not a kmlm-eval results row ({err!r}); columns {CSV_COLUMNS}") from err
    return scores


def evaluate_models(models, evaluate_one):
    """Run ``evaluate_one(spec) -> [Score]`` for each model (same seed each time) and collect the scores."""
    scores = []
    for spec in unique_models(models):
        logger.info("evaluating %s (%s)", spec.name, spec.path)
        scores += evaluate_one(spec)
    return scores


def load_tokenizer(path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"cannot load the tokenizer of {path}: {err}") from err


def load_model(auto_class, path, **kwargs):
    import transformers

    try:
        return getattr(transformers, auto_class).from_pretrained(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise UserFacingError(f"cannot load {path} as {auto_class}: {err}") from err
