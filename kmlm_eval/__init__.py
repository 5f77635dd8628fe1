"""Downstream evaluation of Hugging Face models (``kmlm-eval``) with the paper's protocols: XLR, X-FACTR, NER, RELX,
XNLI, PAWS-X, POS, QA; never imports fairseq or kmlm_fairseq."""
