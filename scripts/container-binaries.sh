#!/usr/bin/env bash
# Copies the four binaries the images need from target/<profile>/ (default release; BIN_DIR
# names another folder) into deploy/bin/, without their debug info, for
# `--build-arg BINARIES=prebuilt` (see deploy/Dockerfile).
# Binaries built on Debian bookworm (glibc 2.36) run in the bookworm-slim runtime image.
#   scripts/container-binaries.sh [release|debug]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
profile="${1:-release}"
from="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/$profile}"
mkdir -p deploy/bin
for bin in gateway tools-service agent-service devstack; do
  [ -x "$from/$bin" ] || { echo "no $from/$bin: build it first (cargo build, with --release for release)" >&2; exit 1; }
  objcopy --strip-debug "$from/$bin" "deploy/bin/$bin"
done
ls -l deploy/bin
