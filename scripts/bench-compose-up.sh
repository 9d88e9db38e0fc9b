#!/usr/bin/env bash
# Time from `podman-compose up -d` on fresh volumes (so the tools services seed their databases)
# to the first tools/call answered through the gateway on 127.0.0.1:8080, RUNS times (default
# 5), and the median. Uses the images as they are: build them first, e.g.
#   cargo build --release -p gateway --bin gateway -p tools-service --bin tools-service \
#     -p agent-service --bin agent-service -p devstack --bin devstack
#   scripts/container-binaries.sh release
#   BINARIES=prebuilt podman-compose --podman-build-args="--format docker" build
# Also prints the images' sizes. Needs podman, podman-compose (.interop/deploy-venv) and curl.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS="${RUNS:-5}"
PROJECT=bench-up
PC=.interop/deploy-venv/bin/podman-compose
[ -x "$PC" ] || PC=podman-compose
compose() { "$PC" --project-name "$PROJECT" "$@" >/dev/null 2>&1; }
trap 'compose down -v' EXIT
call='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer_detail","arguments":{"customer_id":251}}}'
times=()
for _ in $(seq "$RUNS"); do
  compose down -v
  start=$(date +%s%N)
  compose up -d
  token=""
  until [ -n "$token" ]; do
    token=$(podman exec "${PROJECT}_idp_1" devstack token --tenant contoso --roles query \
      --resource http://127.0.0.1:8080/contoso-mcp/mcp 2>/dev/null) || sleep 0.1
  done
  until curl -sf -o /dev/null -X POST http://127.0.0.1:8080/contoso-mcp/mcp \
    -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2025-11-25' \
    -d "$call"; do sleep 0.1; done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "up to the first answer: ${ms} ms"
  times+=("$ms")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median of $RUNS: ${median} ms"
for image in gateway tools-service agent-service idp; do
  echo "localhost/mcp-platform/$image:dev $(podman image inspect --format '{{.Size}}' "localhost/mcp-platform/$image:dev") bytes"
done
