#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test of the workspace, including the
# interop tests against third-party MCP peers (ignored by a plain `cargo test`), then the fuzz targets.
# Needs Rust (with rustfmt and clippy), python3 >= 3.10, node + npm, and network access on first run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The Python MCP SDK and the MCP conformance suite, into .interop/ (a no-op once installed).
scripts/setup-interop.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# The deployment files: checkov over the Bicep and the Dockerfile, hadolint, compose.yaml parsed.
scripts/check-deploy.sh

if ! cargo nextest --version >/dev/null 2>&1; then
  cargo install cargo-nextest --locked
fi
# The storage contract runs on SQLite and on the Cosmos DB emulator (installed above); without
# the emulator the Cosmos half would be skipped, so here its absence fails the run. The same for
# the collector, and for podman and redis-server, which need root to install (.ci/run does):
# REQUIRE_CONTAINERS=0 / REQUIRE_REDIS=0 skip those tests on a machine without them.
REQUIRE_COSMOS_EMULATOR=1 REQUIRE_OTEL_COLLECTOR=1 \
  REQUIRE_CONTAINERS="${REQUIRE_CONTAINERS:-1}" REQUIRE_REDIS="${REQUIRE_REDIS:-1}" \
  cargo nextest run --workspace --run-ignored all --no-fail-fast

# Every fuzz target for a bounded time (FUZZ_SECONDS each, default 30): a panic, a hang (2 s per
# input) or a blow-up (2 GiB) fails the run; see scripts/fuzz.sh.
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
