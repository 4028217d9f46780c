#!/usr/bin/env bash
# Creates .venv-bench: LlamaIndex and its HuggingFace embedding, for `make bench`'s peer
# comparison. Idempotent: does nothing when the pinned set is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
STAMP=$VENV/.installed
REQS=bench/requirements-peer.txt
if [ -f "$STAMP" ] && cmp -s "$REQS" "$STAMP"; then
  exit 0
fi
PYTHON=${PYTHON:-python3}
[ -x $VENV/bin/python ] || "$PYTHON" -m venv $VENV
PIP=($VENV/bin/pip install --quiet --disable-pip-version-check)
echo "==> installing the benchmark peer (LlamaIndex) into $VENV"
# torch first and pinned: the CPU build comes from the local wheel.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -r "$REQS"
cp "$REQS" "$STAMP"
