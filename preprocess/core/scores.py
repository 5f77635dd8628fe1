"""One measured number, a row of ``results.csv``: written by kmlm-eval (kmlm_eval/results.py, which reduces the
seeds) and by the plugin's validation (kmlm_fairseq/validate.py, one run); here because neither side may import
the other."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """``value`` (a percentage, or bits for a loss) over ``count`` examples, from the fine-tuning run ``seed``."""
    task: str
    model: str
    lang: str
    metric: str
    value: float
    count: int
    seed: int = 0
