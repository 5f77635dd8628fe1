"""kmlm-fairseq: the fairseq plugin (tasks, criterions, datasets) of KMLM.

Importing this package (fairseq does it for ``common.user_dir``) first makes fairseq's own checkpoints loadable
under torch >= 2.6, then registers the plugin's tasks (kmlm_reasoning, kmlm_knowledge), criterion
(kmlm_multitask) and the roberta_tiny architecture.
"""
import logging

# fairseq's speech tasks log "Please install tensorboardX" when imported, which every `import fairseq` does;
# KMLM uses no speech task, so the line is only noise in front of each command's output.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from kmlm_fairseq import compat  # noqa: E402,F401  (must run before any fairseq checkpoint is loaded)
from kmlm_fairseq import criterions, models, tasks  # noqa: E402,F401  (registration)
