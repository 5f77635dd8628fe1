#!/usr/bin/env bash
# Install kmlm-fairseq into .venv (or $KMLM_VENV) with the only recipe known to work on Python 3.11
# (docs/design.md §3). Idempotent: a second run with nothing changed only checks the imports and takes seconds.
#
#   bash run/install.sh            # create/refresh .venv
#   KMLM_VENV=/path/env bash run/install.sh
#
# The order matters: torch==2.13.0 first (a CPU wheel on local disk; anything unpinned pulls a multi-GB CUDA
# build), then fairseq-fixed built against it without build isolation and without its dependencies (they would
# pull CUDA torch and a torchaudio that breaks `import transformers`), then the rest under the same constraints.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KMLM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$ROOT/requirements/constraints.txt"
REQUIREMENTS="$ROOT/requirements/requirements.txt"
STAMP="$VENV/.kmlm-install-stamp"

fail() {
    echo "run/install.sh: FAILED: $*" >&2
    exit 1
}

step() {
    local what="$1"
    shift
    echo "run/install.sh: $what"
    "$@" || fail "$what (command: $*)"
}

pin_of() {
    grep -i -E "^$1==" "$CONSTRAINTS" | head -n 1 || fail "no pin for $1 in $CONSTRAINTS"
}

install_fingerprint() {
    cat "$CONSTRAINTS" "$REQUIREMENTS" "$ROOT/setup.py" "$ROOT/run/install.sh" | cksum | cut -d' ' -f1
}

imports_work() {
    "$VENV/bin/python" -c "import fairseq, kmlm_fairseq, preprocess.cli, transformers, tensorboardX" >/dev/null 2>&1
}

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || fail "$PYTHON is $("$PYTHON" --version 2>&1); kmlm-fairseq needs Python >= 3.10 (set PYTHON=...)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(install_fingerprint)" ]] && imports_work; then
    echo "run/install.sh: $VENV is up to date"
    exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
    step "creating virtual environment $VENV" "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
export PIP_CONSTRAINT="$CONSTRAINTS"

step "pinning pip, setuptools, wheel" "${PIP[@]}" install -q "$(pin_of pip)" "$(pin_of setuptools)" "$(pin_of wheel)"
step "installing torch (CPU wheel) first" "${PIP[@]}" install -q "$(pin_of torch)"
step "installing fairseq build dependencies" "${PIP[@]}" install -q "$(pin_of cython)" "$(pin_of numpy)"
step "installing fairseq-fixed (a fresh build takes 2-3 minutes)" \
    "${PIP[@]}" install -q --no-build-isolation --no-deps "$(pin_of fairseq-fixed)"
echo "run/install.sh: (a pip note that fairseq-fixed requires torchaudio is expected: it is left out on purpose)"
step "installing the other dependencies" "${PIP[@]}" install -q -r "$REQUIREMENTS"
if "${PIP[@]}" show torchaudio >/dev/null 2>&1; then
    step "removing torchaudio (a CUDA build here; it breaks import transformers)" "${PIP[@]}" uninstall -q -y torchaudio
fi
step "installing kmlm-fairseq in editable mode" "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

"$VENV/bin/python" -c "import fairseq, kmlm_fairseq, preprocess.cli, transformers, tensorboardX" \
    || fail "the installed packages do not import (see the traceback above)"
install_fingerprint >"$STAMP"
echo "run/install.sh: done: $("$VENV/bin/python" -c 'import torch, fairseq; print("torch", torch.__version__, "fairseq", fairseq.__version__)' 2>/dev/null)"
