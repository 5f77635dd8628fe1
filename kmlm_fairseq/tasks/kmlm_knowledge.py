"""Task ``kmlm_knowledge`` (the paper's KMLM ablation, no R): the reasoning samples are masked like the knowledge
sentences (KnowledgeMaskDataset, task.knowledge_masking) instead of with the cycle rules.

The paper: "the masked language modeling task is also used on the reasoning based data"; the official
``run_k_mlm_ablation_mlm.py`` feeds the reasoning samples to the knowledge collator (DataCollatorForSyntheticSentence):
each token with probability mask_prob, 80/10/10, the link <mask>s never predicted. That is the default here
(``knowledge_masking: tokens``); ``task.knowledge_masking=spans`` gives the kmlm_base of before issue 14 (whole
mentions in both streams).
Input and output as ``kmlm_reasoning``; the criterion still reports the reasoning stream's loss separately.
"""
from dataclasses import dataclass

from fairseq.tasks import register_task

from kmlm_fairseq.tasks.kmlm_reasoning import KMLMConfig, KMLMReasoningTask


@dataclass
class KMLMKnowledgeConfig(KMLMConfig):
    pass


@register_task("kmlm_knowledge", dataclass=KMLMKnowledgeConfig)
class KMLMKnowledgeTask(KMLMReasoningTask):
    def reasoning_masking(self, dataset, seed, epoch):
        return self.knowledge_masking(dataset, seed, epoch)
