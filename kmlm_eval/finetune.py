"""Fine-tuning as the paper's protocol: train on English, keep the checkpoint that scores best on the English dev
set, repeat for every seed (``--seeds 1,2,3``: "average of 3 runs").

The loop is XTREME's (google-research/xtreme third_party/run_classify.py, run_tag.py, run_squad.py): AdamW
(eps 1e-8 unless a task says otherwise, no weight decay on biases and LayerNorm weights), a linear
warmup-then-decay schedule over all updates, gradients clipped to norm 1, ``--batch-size`` examples per update
split into ``--grad-accum`` micro-batches. Every ``--eval-steps`` updates (0: at the end of every epoch) and after
the last update the model is scored on the dev set (XTREME also scores the final model among its checkpoints); the
best-scoring state (the first one on ties) is kept in memory and restored at the end (``--select last`` keeps the
last state instead: XTREME's QA protocol).
"""
import logging
import math
import random

import numpy as np
import torch
from tqdm import tqdm

from kmlm_eval.batching import collate, to_device, uses_token_types
from preprocess.core.errors import UserFacingError

logger = logging.getLogger(__name__)


def parse_seeds(text):
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserFacingError(f"--seeds {text!r}: expected integers separated by commas, e.g. 1,2,3") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserFacingError(f"--seeds {text!r}: expected distinct integers, e.g. 1,2,3")
    return seeds


def add_training_arguments(parser, source, epochs, lr, batch_size, max_length, eval_steps, warmup_steps=0,
                           weight_decay=0.0, max_grad_norm=1.0, schedule="linear", select="dev", adam_eps=1e-8):
    """The fine-tuning options with a task's defaults; ``source`` (shown in --help) says where they come from."""
    group = parser.add_argument_group("fine-tuning", f"defaults: {source}")
    group.add_argument("--seeds", "--seed", type=parse_seeds, default=parse_seeds("1,2,3"),
                       help="one fine-tuning run per seed, reported as mean ± std (default 1,2,3: the paper's "
                            "'average of 3 runs')")
    group.add_argument("--epochs", type=float, default=epochs, help=f"training epochs (default {epochs})")
    group.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr})")
    group.add_argument("--batch-size", type=int, default=batch_size,
                       help=f"examples per update (default {batch_size})")
    group.add_argument("--grad-accum", type=int, default=1,
                       help="micro-batches per update, to fit memory (same updates; default 1)")
    group.add_argument("--max-length", type=int, default=max_length,
                       help=f"max tokens per input (default {max_length})")
    group.add_argument("--warmup-steps", type=int, default=warmup_steps,
                       help=f"updates of linear warmup (default {warmup_steps})")
    group.add_argument("--weight-decay", type=float, default=weight_decay,
                       help=f"AdamW weight decay (default {weight_decay})")
    group.add_argument("--adam-eps", type=float, default=adam_eps, help=f"AdamW epsilon (default {adam_eps})")
    group.add_argument("--max-grad-norm", type=float, default=max_grad_norm,
                       help=f"gradient clipping norm, 0 for none (default {max_grad_norm})")
    group.add_argument("--schedule", choices=("linear", "constant"), default=schedule,
                       help=f"learning rate after warmup: linear decay to 0, or constant (default {schedule})")
    group.add_argument("--eval-steps", type=int, default=eval_steps,
                       help=f"score the dev set every N updates, 0 = every epoch (default {eval_steps})")
    group.add_argument("--select", choices=("dev", "last"), default=select,
                       help=f"keep the checkpoint best on the dev set, or the last one (default {select})")
    group.add_argument("--eval-batch-size", type=int, default=64, help="examples per inference batch (default 64)")


def check_training_arguments(args, has_dev):
    if args.select == "dev" and not has_dev:
        raise UserFacingError("--select dev (the paper's protocol) needs an English dev set (--dev FILE); "
                              "give one, or --select last")
    for name in ("batch_size", "grad_accum", "eval_batch_size", "max_length"):
        if getattr(args, name) < 1:
            raise UserFacingError(f"--{name.replace('_', '-')} must be at least 1")
    if args.epochs <= 0:
        raise UserFacingError("--epochs must be positive")


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def optimizer_for(model, args):
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": args.weight_decay},
              {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, eps=args.adam_eps)


def schedule_for(optimizer, args, total):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if args.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, args.warmup_steps)
    return get_linear_schedule_with_warmup(optimizer, args.warmup_steps, total)


def evaluation_steps(args, steps_per_epoch, total):
    every = args.eval_steps or steps_per_epoch
    return set(range(every, total + 1, every)) | {total}


def train(model, examples, args, pad_id, seed, dev_score=None):
    """Fine-tune ``model`` on ``examples`` (see ``batching``); -> the model in eval mode with the selected state.

    ``dev_score(model) -> float`` scores the dev set (higher is better); required with ``--select dev``.
    """
    if not examples:
        raise UserFacingError("no training example is left to fine-tune on (see the skips logged above)")
    device = next(model.parameters()).device
    token_types = uses_token_types(model)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total = max(1, round(args.epochs * steps_per_epoch))
    optimizer = optimizer_for(model, args)
    schedule = schedule_for(optimizer, args, total)
    checkpoints = evaluation_steps(args, steps_per_epoch, total) if args.select == "dev" else set()
    best, best_state, best_step, losses = -math.inf, None, total, []
    batches = epoch_batches(len(examples), args.batch_size, generator)
    model.train()
    for step in tqdm(range(1, total + 1), desc="fine-tuning", unit="update", leave=False):
        losses.append(update(model, [examples[i] for i in next(batches)], args, pad_id, token_types, device))
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step in checkpoints:
            score = dev_score(model)
            model.train()
            logger.debug("update %d: dev %.4f", step, score)
            if score > best:
                best, best_step = score, step
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    logger.info("seed %d: %d updates on %d examples, loss %.4f -> %.4f; kept update %d%s", seed, total,
                len(examples), losses[0], losses[-1], best_step,
                f" (dev {best:.2f}, the best of {len(checkpoints)} scored)" if best_state is not None else " (last)")
    return model.eval()


def epoch_batches(n, batch_size, generator):
    """Index batches of a fresh permutation every epoch (the last batch of an epoch may be short), forever."""
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        yield from (order[start:start + batch_size] for start in range(0, n, batch_size))


def update(model, examples, args, pad_id, token_types, device):
    """Forward and backward one update's examples in ``--grad-accum`` micro-batches; -> the mean loss."""
    size = math.ceil(len(examples) / args.grad_accum)
    total = 0.0
    for start in range(0, len(examples), size):
        chunk = examples[start:start + size]
        loss = model(**to_device(collate(chunk, pad_id, token_types), device)).loss * (len(chunk) / len(examples))
        loss.backward()
        total += loss.item()
    return total


def run_seeds(args, load_model, examples, pad_id, dev_score, test_scores):
    """For every seed: seed everything, load a fresh ``load_model()``, fine-tune it on ``examples``, and collect
    ``test_scores(model, seed) -> [Score]``."""
    from kmlm_eval.common import device

    scores = []
    for seed in args.seeds:
        set_seed(seed)
        model = train(load_model().to(device()), examples, args, pad_id, seed, dev_score)
        scores += test_scores(model, seed)
    return scores
