"""Criterion ``kmlm_multitask``: L = L_MLM + alpha (L_CS + L_L), each L the mean cross-entropy over its own stream's
predicted tokens.

Input: a batch of the kmlm tasks: an OrderedDict stream name (plain, knowledge, reasoning) -> masked_lm batch.
Output: (L, sample_size=1, logging output). The LM head projects only the predicted positions (``masked_tokens``,
as fairseq's masked_lm). Since L is already a mean, sample_size is 1: the trainer divides the summed gradients by
the summed sample sizes, i.e. averages L over distributed workers and accumulation steps. The logging output has
the same keys on every worker (zeros for a stream absent from its batch) and only sums, so fairseq can all-reduce
it; reduce_metrics turns the sums into each stream's loss (over all its predicted tokens) and accuracy, and the
combined loss. Losses are logged in base 2, as fairseq's masked_lm.
"""
import math
from dataclasses import dataclass, field

import torch
from fairseq import modules
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from kmlm_fairseq.data.binarized_streams import PLAIN, STREAMS


@dataclass
class KMLMMultitaskConfig(FairseqDataclass):
    alpha: float = field(default=0.3, metadata={
        "help": "weight of the knowledge and reasoning losses: L = L_MLM + alpha (L_CS + L_L)"})


@register_criterion("kmlm_multitask", dataclass=KMLMMultitaskConfig)
class KMLMMultitaskLoss(FairseqCriterion):
    def __init__(self, cfg: KMLMMultitaskConfig, task):
        super().__init__(task)
        self.streams = list(getattr(task, "streams", STREAMS))
        self.weights = {stream: 1.0 if stream == PLAIN else cfg.alpha for stream in self.streams}

    def forward(self, model, sample, reduce=True):
        loss = None
        logging_output = {"ntokens": 0, "nsentences": 0, "sample_size": 1}
        for stream in self.streams:
            batch = sample.get(stream)
            if batch is None:
                # zero tensors, not ints: fairseq all-reduces tensors and numbers in separate buffers, so the type of
                # every key must be the same on all workers
                zero = torch.zeros((), device=next(model.parameters()).device)
                logging_output.update({f"{stream}_{key}": zero for key in ("loss", "weighted_loss", "predicted",
                                                                          "correct")})
                continue
            stream_loss, predicted, correct = self.stream_loss(model, batch)
            # the masking datasets give every sample a target; clamp keeps a target-less batch at 0 instead of NaN
            weighted = self.weights[stream] * stream_loss / predicted.clamp(min=1)
            loss = weighted if loss is None else loss + weighted
            logging_output.update({f"{stream}_loss": stream_loss.detach(),
                                   f"{stream}_weighted_loss": self.weights[stream] * stream_loss.detach(),
                                   f"{stream}_predicted": predicted, f"{stream}_correct": correct})
            logging_output["ntokens"] += batch["ntokens"]
            logging_output["nsentences"] += batch["nsentences"]
        if loss is None:
            raise ValueError(f"batch holds none of the streams {self.streams}: {list(sample)}")
        logging_output["loss"] = loss.detach()
        return loss, 1, logging_output

    def stream_loss(self, model, batch):
        """(summed cross-entropy, number of predicted tokens, number predicted right) of one stream's batch, as
        tensors (no device-to-host copy)."""
        masked_tokens = batch["target"].ne(self.padding_idx)
        logits = model(**batch["net_input"], masked_tokens=masked_tokens)[0]
        targets = batch["target"][masked_tokens]
        loss = modules.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), reduction="sum")
        correct = (logits.argmax(-1) == targets).sum()
        return loss, masked_tokens.sum(), correct

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        """Per stream: loss = summed CE / predicted tokens, and accuracy. The combined loss is derived from the
        streams' weighted means (hidden meters ``_<stream>_weighted``), so it stays sum_k w_k L_k over any number of
        batches, also in validation where the last batches may lack a stream; for one batch it is the L optimised. A
        stream that predicted nothing since the meters were last reset (a log interval whose masks drew no token, as
        the default bernoulli/token masking may) has an empty meter and adds nothing."""
        def total(key):
            return sum(float(log.get(key, 0)) for log in logging_outputs)

        for stream in STREAMS:
            predicted = total(f"{stream}_predicted")
            if predicted > 0:
                metrics.log_scalar(f"{stream}_loss", total(f"{stream}_loss") / predicted / math.log(2), predicted,
                                   round=3)
                metrics.log_scalar(f"{stream}_acc", 100.0 * total(f"{stream}_correct") / predicted, predicted,
                                   round=2)
                metrics.log_scalar(f"_{stream}_weighted", total(f"{stream}_weighted_loss") / predicted / math.log(2),
                                   predicted)
        metrics.log_derived("loss", lambda meters: round(sum(
            meters[f"_{stream}_weighted"].avg for stream in STREAMS
            if f"_{stream}_weighted" in meters and meters[f"_{stream}_weighted"].count > 0), 3), priority=1)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
