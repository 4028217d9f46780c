#!/usr/bin/env bash
# Makes podman able to build and run docflow's images on this kind of machine,
# idempotently (docs/images.md): Debian's podman, runc and debootstrap (for
# scripts/base_image.sh), and the two engine settings without which no container starts
# here: runc (crun fails: "cgroups in hybrid mode not supported") and an nproc limit of
# at most 30000 (a higher one fails: "setrlimit RLIMIT_NPROC: Operation not permitted").
# Exits 0 with nothing to do when all of it is already in place.
set -euo pipefail

PACKAGES=(podman runc debootstrap netavark aardvark-dns catatonit)
CONF=/etc/containers/containers.conf

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "podman_setup: needs these Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  # With their recommends, as measured: netavark + aardvark-dns (the network with DNS
  # that Service names resolve on), catatonit (the pods' infra container), buildah.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Written once, by this script only (it carries its marker): an operator's own
# containers.conf is left alone and checked instead.
MARKER="# Written by docflow's scripts/podman_setup.sh"
if [ ! -e "$CONF" ] || grep -qxF "$MARKER" "$CONF"; then
  desired="$MARKER
[containers]
default_ulimits = [\"nproc=30000:30000\", \"nofile=20000:20000\"]

[engine]
runtime = \"runc\""
  if [ "$(cat "$CONF" 2>/dev/null)" != "$desired" ]; then
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$desired" >"$CONF"
    echo "==> wrote $CONF (runtime runc, nproc 30000)"
  fi
elif ! grep -q 'runtime *= *"runc"' "$CONF" || ! grep -q 'nproc=' "$CONF"; then
  echo "podman_setup: $CONF exists and was not written by docflow; it needs" \
       '[engine] runtime = "runc" and [containers] default_ulimits with nproc <= 30000' >&2
  exit 1
fi
