#!/usr/bin/env bash
# Builds the base image docflow's images build FROM on a machine that reaches Debian's
# packages but no container registry (docs/images.md): Debian bookworm, minbase, with
# its own Python 3.11 as `python` (what python:3.11-slim-bookworm gives elsewhere),
# made by debootstrap and imported into podman's storage. Cached there: nothing is
# done when the image exists (BASE_IMAGE_REBUILD=1 forces a rebuild).
#   scripts/base_image.sh [IMAGE]     default localhost/docflow-base:bookworm
set -euo pipefail

IMAGE=${1:-localhost/docflow-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: the build stage's `python -m venv`; python-is-python3: `python`, as the
# Dockerfile (and the official image) call it; ca-certificates: apt and pip over TLS.
INCLUDE=python3,python3-venv,python-is-python3,ca-certificates

if [ "${BASE_IMAGE_REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
  echo "==> $IMAGE is there (BASE_IMAGE_REBUILD=1 rebuilds it)"
  exit 0
fi
root=$(mktemp -d /var/tmp/docflow-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "==> debootstrap --variant=minbase bookworm (+ $INCLUDE)"
debootstrap --variant=minbase --include="$INCLUDE" bookworm "$root" "$MIRROR" >/dev/null
# apt's lists and caches are fetched again by any build that installs packages.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
# An imported image has no config: without PATH nothing can be executed; LANG keeps
# Python's text I/O in UTF-8, as the official image does.
tar -C "$root" -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python"]' \
  - "$IMAGE" >/dev/null
echo "==> $IMAGE: $(podman image inspect --format '{{.Size}}' "$IMAGE") bytes"
