#!/usr/bin/env bash
# The README's demo: installs into .venv if needed, then runs the pipeline on the bundled real Wikidata sample
# (tests/data/*.json.bz2) with a tiny model on CPU. Outputs go to $KMLM_DEMO_DIR (default: work/demo).
#   bash run/demo.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/run/install.sh"
VENV="${KMLM_VENV:-$ROOT/.venv}"
OUT="${KMLM_DEMO_DIR:-$ROOT/work/demo}"
SEED="${KMLM_SEED:-1}"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

banner() { printf '\n==== %s\n' "$*"; }

# Steps 1-10 are one `kmlm-preprocess pipeline` run: it logs "STAGE: run (reason: ...)" or "STAGE: skip (up to date)"
# per stage, so a second demo run redoes nothing that is up to date (each stage leaves $OUT/<dir>/.done.<stage>.json
# when complete; a killed training continues from its checkpoint_last.pt).
#   1 ingest        Wikidata dump -> $OUT/tables (both samples together: the 100 recent items carry the triangles,
#                   the 2014 dump carries the property labels)
#   2 sentences     code-switched and alias-replaced knowledge sentences
#   3 cycles        triangles and diamonds of the entity graph
#   4 xlr           the XLR multiple-choice dataset (its dev/test cycles are held out of pretraining)
#   5 reasoning     monolingual reasoning samples from the remaining cycles, then check-leakage
#   6 report        $OUT/report/report.md
#   7 descriptions, spm, binarize, plain: tokenizer and binarized datasets (plain text = entity descriptions;
#                   real runs use CC100)
#   8 train         a tiny KMLM_R model on CPU (config tiny_cpu: tasks kmlm_reasoning, criterion kmlm_multitask)
#   9 export        $OUT/checkpoints/checkpoint_last.pt -> $OUT/hf, a Hugging Face model
#  10 eval-xlr      XLR: fine-tune on English, accuracy per language -> $OUT/eval_xlr/results.md
UPDATES="${KMLM_DEMO_UPDATES:-1000}"
EVERY=$(( UPDATES >= 100 ? UPDATES / 10 : 5 ))
# one thread: a 2-layer model gains nothing from more, and oversubscribed cores slow it down tenfold
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
banner "1-10/10 ingest -> sentences -> cycles -> xlr -> reasoning (+ check-leakage) -> report -> descriptions" \
    "-> spm -> binarize -> plain -> train -> export -> eval-xlr"
kmlm-preprocess pipeline \
    --dump tests/data/opentapioca_sample_items.json.bz2 tests/data/wikibrain_2014_testdump.json.bz2 \
    --output "$OUT" --seed "$SEED" --xlr-sizes 40,10,10 --vocab-size 2000 --plain-text-from-descriptions \
    --train tiny_cpu --set "train.optimization.max_update=$UPDATES" --set "train.common.log_interval=$EVERY" \
    --set "train.checkpoint.save_interval_updates=$(( UPDATES / 2 ))" \
    --set "train.dataset.validate_interval_updates=$(( UPDATES / 2 ))" \
    --eval xlr --set eval-xlr.epochs=2 --set eval-xlr.batch-size=4

banner "the exported model fills a mask"
HF_HUB_OFFLINE=1 python - "$OUT/hf" <<'PY'
import sys
from transformers import pipeline
fill = pipeline("fill-mask", model=sys.argv[1])
for guess in fill("Paris is the capital of <mask> ."):
    print(f"  {guess['score']:.3f}  {guess['sequence']}")
PY

banner "done: outputs in $OUT (report: $OUT/report/report.md, XLR: $OUT/eval_xlr/results.md)"
ls "$OUT"
