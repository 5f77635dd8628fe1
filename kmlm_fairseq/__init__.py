"""kmlm-fairseq: the fairseq plugin (tasks, criterions, datasets) of KMLM.

Importing this package (fairseq does it for ``common.user_dir``) first makes fairseq's own checkpoints loadable
under torch >= 2.6, then registers the plugin's tasks (kmlm_reasoning, kmlm_knowledge), criterion
(kmlm_multitask) and the roberta_tiny architecture.
"""
from kmlm_fairseq import compat  # noqa: F401  (must run before any fairseq checkpoint is loaded)

# isort: split
from kmlm_fairseq import criterions, models, tasks  # noqa: F401  (registration)
