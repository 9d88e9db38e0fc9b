#!/usr/bin/env bash
# The cost of OpenTelemetry: tools-bench and gateway-bench with OpenTelemetry disabled
# (OTEL_SDK_DISABLED=true: no spans at all), export off (the default: spans made for trace
# context and log ids, nothing exported) and export on (100% sampling, every span and metric sent
# over OTLP/HTTP to a running rotel collector that drops what it receives), in turn, ROUNDS
# times each.
# The benchmarks pass their environment to the services they start.
#
# Run: cargo build --release -p tools-service -p gateway -p devstack && scripts/bench-telemetry.sh
# Needs the collector of scripts/setup-interop.sh (.interop/venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROUNDS="${ROUNDS:-3}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"

ROTEL="$(ls .interop/venv/lib/python3*/site-packages/rotel/rotel-agent 2>/dev/null | head -1)"
[ -x "$ROTEL" ] || { echo "rotel-agent not found: run scripts/setup-interop.sh" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"; GRPC_PORT="$(free_port)"
"$ROTEL" start --otlp-http-endpoint "127.0.0.1:$HTTP_PORT" --otlp-grpc-endpoint "127.0.0.1:$GRPC_PORT" \
  --exporter blackhole >/dev/null 2>&1 &
ROTEL_PID=$!
trap 'kill $ROTEL_PID 2>/dev/null || true' EXIT
sleep 1

run() { # mode bench args...
  local mode="$1"; shift
  case "$mode" in
    on) OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$HTTP_PORT" OTEL_TRACES_SAMPLER=always_on \
          OTEL_METRIC_EXPORT_INTERVAL=5000 "$@" ;;
    off) env -u OTEL_EXPORTER_OTLP_ENDPOINT "$@" ;;
    disabled) env -u OTEL_EXPORTER_OTLP_ENDPOINT OTEL_SDK_DISABLED=true "$@" ;;
  esac
}

for round in $(seq "$ROUNDS"); do
  for mode in ${MODES:-disabled off on}; do
    echo "## round $round, export $mode: tools-bench"
    run "$mode" target/release/tools-bench --seconds "$SECONDS_PER_RUN" --concurrency 1,16 --starts 1
    echo "## round $round, export $mode: gateway-bench"
    run "$mode" target/release/gateway-bench --seconds "$SECONDS_PER_RUN" --concurrency 16 --rounds 1
  done
done
