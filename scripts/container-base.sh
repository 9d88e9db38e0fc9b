#!/usr/bin/env bash
# Makes sure podman has docker.io/library/debian:bookworm-slim, the base of deploy/Dockerfile's
# runtime stage: pulled when a registry is reachable, else built from the Debian mirror apt uses
# (debootstrap --variant=minbase, trimmed the way the slim image is: no docs, man pages, locales
# or package caches) and tagged with that name, so the unchanged Dockerfile builds. Needs root
# and debootstrap for the offline path. A no-op when the image is there.
set -euo pipefail

IMAGE="docker.io/library/debian:bookworm-slim"
log() { printf '[container-base] %s\n' "$*" >&2; }

if podman image exists "$IMAGE"; then
  log "$IMAGE is there"
  exit 0
fi
if podman pull --quiet "$IMAGE" >/dev/null 2>&1; then
  log "pulled $IMAGE"
  exit 0
fi
command -v debootstrap >/dev/null || { log "cannot pull $IMAGE and debootstrap is not installed"; exit 1; }
# The mirror this machine's apt uses, so the image's apt reaches the same one.
mirror="$(grep -hoE '^URIs: *http[^ ]*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | sed 's/^URIs: *//')"
mirror="${mirror:-http://deb.debian.org/debian}"
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
log "building $IMAGE offline from $mirror"
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --quiet - "$IMAGE" >/dev/null
log "made $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
