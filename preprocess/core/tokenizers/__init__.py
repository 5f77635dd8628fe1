"""Tokenizers that give fairseq ids without importing fairseq."""
