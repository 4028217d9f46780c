#!/usr/bin/env bash
# Builds one wheelhouse for all four images: every wheel their `pip install` needs
# (torch's CPU build, the services' dependencies, the build backend of docflow's own
# distributions), made on the host, which reaches the package index. A build where pip
# cannot reach the index (inside podman here: its TLS cannot be verified) installs from
# it with --no-index --find-links (services/Dockerfile, build arg WHEELHOUSE; docs/images.md).
# Cached: nothing is done while the inputs' hash matches the one recorded in it.
#   scripts/wheelhouse.sh [DIR [BASE_IMAGE]]
#     DIR         default $DOCFLOW_WHEELHOUSE or ~/.cache/docflow/wheelhouse
#     BASE_IMAGE  the image whose Python installs the wheels (localhost/docflow-base:bookworm)
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${1:-${DOCFLOW_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/docflow/wheelhouse}}
BASE_IMAGE=${2:-localhost/docflow-base:bookworm}
PYTHON=${PYTHON:-python3}
# Dependencies' markers must be decided as the image's Python decides them, not the
# host's: bookworm's 3.11.2 needs async-timeout (redis: python_full_version < "3.11.3")
# where a newer 3.11 does not, and pip's --python-version does not change markers.
TARGET_PYTHON=${TARGET_PYTHON:-$(podman run --rm --network none "$BASE_IMAGE" \
                                   python -c 'import platform; print(platform.python_version())')}
# The services as the images install them (the Makefile's IMAGE_BUILD_ARGS: the
# embedder's extras); torch pinned first, as in the Dockerfile, so pip takes the CPU build.
TORCH=torch==2.13.0
REQUIREMENTS=("$TORCH" hatchling==1.27.0 ./shared ./services/gateway ./services/extractor
              "./services/embedder[minilm,onnx,onnx-build]" ./services/indexer)

inputs_hash() {
  { printf '%s\n' "${REQUIREMENTS[@]}" "$TARGET_PYTHON"; "$PYTHON" --version
    cat shared/pyproject.toml services/*/pyproject.toml; } | sha256sum | cut -d' ' -f1
}
hash=$(inputs_hash)
if [ -f "$DIR/.inputs" ] && [ "$(cat "$DIR/.inputs")" = "$hash" ]; then
  echo "==> wheelhouse $DIR is up to date ($(ls "$DIR" | wc -l) wheels)"
  exit 0
fi
mkdir -p "$DIR"
rm -f "$DIR/.inputs"
echo "==> building the wheelhouse in $DIR for Python $TARGET_PYTHON"
# pip run with the target's version in its marker environment (the host's pip, its
# index settings, its ABI: the same CPython 3.11 on the same glibc). Wheels already
# there are reused; docflow's own are built from source by each image. Lines about
# unreachable extra index folders are noise.
"$PYTHON" - "$TARGET_PYTHON" wheel --quiet --disable-pip-version-check --find-links "$DIR" -w "$DIR" \
  "${REQUIREMENTS[@]}" <<'PY' 2> >(grep -v "is neither a file nor a directory" >&2)
import platform
import sys

version = sys.argv.pop(1)
platform.python_version = lambda: version
platform.python_version_tuple = lambda: tuple(version.split("."))
from pip._internal.cli.main import main

sys.exit(main())
PY
rm -f "$DIR"/docflow_*.whl
echo "$hash" >"$DIR/.inputs"
echo "==> wheelhouse: $(ls "$DIR" | wc -l) wheels, $(du -sh "$DIR" | cut -f1)"
