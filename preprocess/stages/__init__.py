"""One module per `kmlm-preprocess` subcommand, named after it (``check-leakage`` -> ``check_leakage``).

``STAGES`` is the one stage order: the CLI lists the subcommands in it, the pipeline driver runs its steps in it and
the README's stage table follows it (tests/test_architecture.py checks both).
"""

# subcommand -> (module, one-line help), in pipeline order
STAGES = {
    "ingest": ("preprocess.stages.ingest", "Wikidata JSON dump -> entities.parquet + triples.parquet"),
    "merge": ("preprocess.stages.merge", "merge the shards of `ingest --shard I/N` into one pair of tables"),
    "import-triples": ("preprocess.stages.import_triples",
                       "triple lists + name files (Wikidata5M, X-FACTR) -> entities.parquet + triples.parquet"),
    "sentences": ("preprocess.stages.sentences", "triples -> code-switched and alias-replaced knowledge sentences"),
    "cycles": ("preprocess.stages.cycles", "triples -> triangles and diamonds (length-4 cycles with a diagonal)"),
    "xlr": ("preprocess.stages.xlr", "cycles -> XLR multiple-choice train/dev/test splits"),
    "reasoning": ("preprocess.stages.reasoning", "cycles -> monolingual reasoning samples"),
    "check-leakage": ("preprocess.stages.check_leakage", "prove no XLR dev/test cycle is in the reasoning data"),
    "report": ("preprocess.stages.report", "dataset report: counts, distributions, plots"),
    "descriptions": ("preprocess.stages.descriptions",
                     "entity descriptions -> plain text per language (the demo's MLM stream)"),
    "spm": ("preprocess.stages.spm", "a small sentencepiece model + fairseq dict.txt (demo/tests; real runs: XLM-R's)"),
    "binarize": ("preprocess.stages.binarize", "knowledge + reasoning samples -> fairseq datasets with span tags"),
    "plain": ("preprocess.stages.plain", "plain text files per language -> fairseq mmap datasets"),
}
