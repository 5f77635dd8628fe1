"""The model card (README.md) of an exported Hugging Face directory.

Input: the fairseq checkpoint's config and training state (``read_checkpoint``), the languages of each stream in
its DATA directory (when it is there) and the export's own checks.
Output: Markdown saying what was trained (task, config, settings), on what data, with which losses (the meters the
checkpoint holds: the training epoch in progress and the last validation, base 2 as fairseq logs them) and how the
export was verified (tokenizer ids and logits against fairseq's). No path is written: the same checkpoint gives
the same card wherever it and its DATA are.
"""
import math
import os

TRAINED = {
    "kmlm_reasoning": "KMLM_R: plain-text MLM + code-switched knowledge sentences + reasoning samples from entity "
                      "cycles, L = L_MLM + alpha (L_CS + L_L)",
    "kmlm_knowledge": "KMLM (no reasoning task): plain-text MLM + code-switched knowledge sentences, the reasoning "
                      "samples masked like the knowledge sentences",
    "masked_lm": "masked language modelling (fairseq's masked_lm task)",
}
LOSS_COLUMNS = ("loss", "plain_loss", "knowledge_loss", "reasoning_loss")
AGGREGATORS = (("train", "train (the epoch in progress at the checkpoint)"), ("valid", "valid (last validation)"))
# Our tasks start fairseq's `valid` meters afresh at every validation (KMLMReasoningTask.begin_valid_epoch); other
# tasks' checkpoints hold fairseq's running mean over the validations of the launch (and those restored with it).
RESETS_VALID_METERS = ("kmlm_reasoning", "kmlm_knowledge")
ACCUMULATED_VALID = "valid (fairseq's meters: the mean of several validations, not the last one)"


def meter_averages(aggregator):
    """{meter name: average} of one fairseq metrics aggregator saved in a checkpoint (a list of
    (priority, name, meter type, state)); meters without data are left out."""
    averages = {}
    for _, name, kind, state in aggregator or ():
        if kind == "AverageMeter" and state.get("count"):
            averages[name] = float(state["sum"]) / float(state["count"])
    return averages


def logged_losses(metrics):
    """{aggregator: {column: loss}}: each stream's loss, and the combined loss as fairseq logs it (the sum of the
    streams' weighted means for the kmlm criterion, the `loss` meter otherwise)."""
    table = {}
    for aggregator, _ in AGGREGATORS:
        averages = meter_averages((metrics or {}).get(aggregator))
        row = {column: averages[column] for column in LOSS_COLUMNS if column in averages}
        weighted = [value for name, value in averages.items() if name.startswith("_") and name.endswith("_weighted")]
        if weighted:
            row["loss"] = sum(weighted)
        if row:
            table[aggregator] = row
    return table


def settings(cfg):
    task, criterion = cfg.get("task") or {}, cfg.get("criterion") or {}
    optimizer, scheduler = cfg.get("optimizer") or {}, cfg.get("lr_scheduler") or {}
    optimization, dataset = cfg.get("optimization") or {}, cfg.get("dataset") or {}
    common, distributed = cfg.get("common") or {}, cfg.get("distributed_training") or {}
    precision = "bf16" if common.get("bf16") else "fp16" if common.get("fp16") else "fp32"
    rows = [
        ("task", task.get("_name")), ("streams", task.get("streams")),
        ("languages", task.get("languages") or ("every language directory of DATA" if "streams" in task else None)),
        ("knowledge masking", task.get("knowledge_masking")), ("mask_prob", task.get("mask_prob")),
        ("tokens_per_sample", task.get("tokens_per_sample")),
        ("plain text samples (sample_break_mode)", task.get("sample_break_mode")),
        ("alpha", criterion.get("alpha")), ("optimizer", optimizer.get("_name")),
        ("adam_betas, adam_eps, weight_decay",
         f"{optimizer.get('adam_betas')}, {optimizer.get('adam_eps')}, {optimizer.get('weight_decay')}"),
        ("lr", optimization.get("lr")), ("lr schedule", f"{scheduler.get('_name')}, warmup "
                                                        f"{scheduler.get('warmup_updates')}"),
        ("max_update", optimization.get("max_update")),
        ("sequences per stream and update (GPUs x batch_size x update_freq)",
         f"{distributed.get('distributed_world_size')} x {dataset.get('batch_size')} x "
         f"{optimization.get('update_freq')}"),
        ("precision", precision), ("seed", common.get("seed")),
    ]
    return [(name, value) for name, value in rows if value not in (None, "None", "None, None, None")]


def data_description(languages_by_stream):
    if not languages_by_stream:
        return "the binarized DATA directory of the training (not found here to list its contents)"
    return "binarized by kmlm-preprocess; " + "; ".join(
        f"{stream}: {', '.join(languages) or 'none'}" for stream, languages in languages_by_stream.items())


def render(cfg, training, checkpoint, hf_class, checks, languages_by_stream=None):
    """The card's Markdown. ``training``: {"num_updates", "metrics"}; ``checks``: {"sentences": n, "tolerance": t,
    "max |Δlogit|": {check: value}}; ``languages_by_stream``: {stream: [languages]} of the training DATA."""
    task = (cfg.get("task") or {}).get("_name") or "unknown"
    recipe = (cfg.get("task") or {}).get("recipe") or ""
    command = (f"`fairseq-hydra-train --config-dir configs --config-name {recipe}` (kmlm-fairseq)" if recipe
               else "not recorded in the checkpoint")
    lines = [
        f"# {recipe or task}: {hf_class} exported from a kmlm-fairseq checkpoint", "",
        f"- **Trained**: {TRAINED.get(task, f'fairseq task {task}')}.",
        f"- **Config**: {command}; its settings and their sources: kmlm-fairseq's docs/recipe.md.",
        f"- **Data**: {data_description(languages_by_stream)}.",
        f"- **Checkpoint**: `{os.path.basename(str(checkpoint))}` after {training.get('num_updates')} updates.", "",
        "| setting | value |", "|---|---|",
        *(f"| {name} | {value} |" for name, value in settings(cfg)), "",
        "## Losses", "",
        "Cross-entropy in bits (base 2, as fairseq logs it) per predicted token, from the meters saved in the "
        "checkpoint.", "",
    ]
    losses = logged_losses(training.get("metrics"))
    columns = [column for column in LOSS_COLUMNS if any(column in row for row in losses.values())]
    if losses:
        lines += [f"| split | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
        labels = dict(AGGREGATORS, **({} if task in RESETS_VALID_METERS else {"valid": ACCUMULATED_VALID}))
        for aggregator, label in labels.items():
            if aggregator in losses:
                values = [f"{losses[aggregator][c]:.3f}" if c in losses[aggregator] else "" for c in columns]
                lines.append(f"| {label} | {' | '.join(values)} |")
    else:
        lines.append("The checkpoint holds no loss meters.")
    differences = ", ".join(f"{name} {value:.1e}" for name, value in checks["max |Δlogit|"].items()
                            if not math.isnan(value))
    lines += [
        "", "## How the export was verified", "",
        f"- The tokenizer gives exactly fairseq's ids on {checks['sentences']} sentences (ten languages + any "
        "`--verify-text`).",
        f"- The logits of this model and of the fairseq checkpoint differ by at most: {differences} "
        f"(tolerance {checks['tolerance']:g}, float32 on CPU).", "",
        "## Use", "", "```python",
        "from transformers import AutoModelForMaskedLM, pipeline",
        "model = AutoModelForMaskedLM.from_pretrained(\"THIS_DIRECTORY\")",
        "fill = pipeline(\"fill-mask\", model=\"THIS_DIRECTORY\")", "```", "",
    ]
    return "\n".join(lines)
