#!/usr/bin/env bash
# Installs everything docflow needs on a fresh Debian machine, idempotently:
# system packages (Redis, Tesseract with English and German, poppler), then one
# virtualenv (.venv) holding every service as an editable install.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(redis-server tesseract-ocr tesseract-ocr-eng tesseract-ocr-deu poppler-utils prometheus)
# The console's browser tests drive Debian's Chromium with Playwright (never `playwright
# install`: it downloads a browser); fonts-liberation gives its screenshots text.
APT_PACKAGES+=(chromium fonts-liberation)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "docflow needs these Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's packages start their services; docflow starts its own on its own ports.
  systemctl disable --now redis-server prometheus >/dev/null 2>&1 || true
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/pip install --quiet --disable-pip-version-check)
# torch first, pinned: the CPU build comes from the local wheel; any looser request
# would pull gigabytes of CUDA wheels.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "==> installing torch (CPU)"
  "${PIP[@]}" torch==2.13.0
fi
echo "==> installing docflow services (editable)"
"${PIP[@]}" \
  -e "shared[test]" \
  -e "services/gateway[test]" \
  -e "services/extractor[test]" \
  -e "services/embedder[minilm,onnx,onnx-build,test]" \
  -e "services/indexer[test]" \
  -e cli \
  -e devstack \
  -r requirements-test.txt
# The bundled model's ONNX files (DOCFLOW_MINILM_RUNTIME=onnx|onnx-int8), exported from
# the packaged weights into .venv/share/docflow/minilm-onnx: about a minute the first
# time, nothing once they are there and match their manifest.
echo "==> building the MiniLM ONNX files"
.venv/bin/python -m docflow.embedder.onnx_build
echo "==> docflow installed in .venv"

# --- Tools kept out of .venv ----------------------------------------------------------
# checkov pins many libraries of its own, so it lives in its own virtualenv
# (.venv-tools); tests/deploy runs it from there. Skipped when already installed.
CHECKOV_VERSION=3.3.30
if ! .venv-tools/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "==> installing checkov $CHECKOV_VERSION into .venv-tools"
  [ -x .venv-tools/bin/python ] || "$PYTHON" -m venv .venv-tools
  .venv-tools/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
