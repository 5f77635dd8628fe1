"""Shared code of the data side: never imports torch or fairseq."""
