"""Downstream evaluation of Hugging Face models (``kmlm-eval``): XLR, X-FACTR, NER, RELX."""
