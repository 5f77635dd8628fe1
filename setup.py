"""kmlm-fairseq: Wikidata -> multilingual knowledge & reasoning data -> KMLM continued pretraining with fairseq.

Install with ``bash run/install.sh`` (it pins torch, fairseq-fixed and the rest; see requirements/constraints.txt).
``pip install -e .`` alone does not install fairseq: it must be built with ``--no-build-isolation --no-deps``.
"""
from setuptools import find_packages, setup

setup(
    name="kmlm-fairseq",
    version="0.1.0",
    description="KMLM (Liu et al., EMNLP 2022) as a fairseq plugin and a Wikidata preprocessing pipeline",
    python_requires=">=3.10",
    packages=find_packages(include=["kmlm_fairseq", "kmlm_fairseq.*", "kmlm_eval", "kmlm_eval.*", "preprocess",
                                    "preprocess.*"]),
    package_data={"kmlm_eval": ["paper_results.csv"]},  # the paper's published numbers (kmlm-eval --paper)
    # fairseq-fixed and torch are installed by run/install.sh in a fixed order; listing them here would let pip
    # pull an unpinned CUDA torch and a torchaudio that breaks `import transformers` (docs/design.md §3).
    install_requires=[
        "numpy", "pyarrow", "msgspec", "isal", "numba", "tqdm", "ujson", "sentencepiece", "sacremoses",
        "hydra-core", "omegaconf", "matplotlib",
    ],
    entry_points={
        "console_scripts": [
            "kmlm-preprocess=preprocess.cli:main",
            "kmlm-export=kmlm_fairseq.export.cli:main",
            "kmlm-eval=kmlm_eval.cli:main",
        ],
    },
)
