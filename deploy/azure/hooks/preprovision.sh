#!/usr/bin/env bash
# azd's preprovision hook (azure.yaml): turns deploy/azure/gateway.toml, the deployment's tenants
# and routes, into what the Bicep reads at compile time, under deploy/azure/generated/ (not
# committed: it is derived, and holds your tenant and application ids):
#   generated/policies/<route>.policy.xml  the API Management policies, by `gateway render-apim`,
#                                          the renderer of apim/policies/, so both edges agree
#   generated/routes.json                  each route's tenants and audiences, for the backends'
#                                          ALLOWED_TENANTS and MCP_API_AUDIENCE
# and refuses to go on while the file still has example ids, lacks a route the Bicep deploys, or
# the agent's settings do not match it. Needs python3 >= 3.11 (tomllib), and cargo (the policies
# are rendered by this repository's gateway) unless GATEWAY_BIN names a built `gateway` binary.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
AZURE_DIR="$REPO/deploy/azure"
CONFIG="$AZURE_DIR/gateway.toml"
OUT="$AZURE_DIR/generated"

log() { printf '[preprovision] %s\n' "$*" >&2; }
die() { printf '[preprovision] ERROR: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 (>= 3.11) is needed to read $CONFIG"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  die "python3 >= 3.11 is needed to read $CONFIG (tomllib); have $(python3 -V)"

rm -rf "$OUT"
mkdir -p "$OUT/policies"

# The checks and routes.json. The route names and placeholders are the ones main.bicep and
# modules/apim-routes.bicep substitute: a change here needs a change there.
AGENT_CLIENT_ID="${AGENT_CLIENT_ID:-}" \
  python3 - "$CONFIG" "$OUT/routes.json" <<'PY'
import json, os, sys, tomllib

config_path, out_path = sys.argv[1], sys.argv[2]
EDGE = "https://mcp-edge.invalid"
ROUTES = ["contoso", "fabrikam", "contoso-agent"]
EXAMPLE = "00000000-0000-0000-0000-0000000000"

def fail(message):
    sys.exit(f"[preprovision] ERROR: {message}")

def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)

with open(config_path, "rb") as f:
    config = tomllib.load(f)
if any(EXAMPLE in s for s in strings(config)):
    fail(f"{config_path} still has example ids (00000000-...): put in your tenant id and the "
         "client ids of your app registrations (deploy/azure/README.md, 'Register the applications')")
if config.get("public_base_url", "").rstrip("/") != EDGE:
    fail(f"public_base_url must stay {EDGE}: the deployment replaces it with API Management's URL")

routes = {r.get("name"): r for r in config.get("routes", [])}
if sorted(routes) != sorted(ROUTES):
    fail(f"the routes are {sorted(routes)}; this deployment serves exactly {ROUTES} (one Container "
         "App each). A new route also needs its app in main.bicep and its API in modules/apim-routes.bicep")

summary = {"issuer": config["auth"]["issuer"].rstrip("/"), "routes": {}}
for name in ROUTES:
    route = routes[name]
    backend = f"https://{name}.backend.invalid"
    if route.get("apim_backend_url", "").rstrip("/") != backend:
        fail(f"routes {name}: apim_backend_url must stay {backend}: the deployment replaces it "
             "with the Container App's address")
    audiences = route.get("audiences")
    if not audiences:
        fail(f"routes {name}: list the audiences (the route URL, api://<client id>, <client id>)")
    ids = [a for a in audiences if not a.startswith(("https://", "http://"))]
    if not ids:
        fail(f"routes {name}: no Entra audience; Entra v2 tokens carry the client id in aud")
    summary["routes"][name] = {
        "path": route["prefix"].lstrip("/"),
        "tenants": route["allowed_tenants"],
        "audiences": audiences,
        # What a client asks Entra for to call this route: `<first non-URL audience>/.default`,
        # the rule the renderer and the services use for scopes_supported.
        "scopeAudience": ids[0],
    }

agent_client_id = os.environ["AGENT_CLIENT_ID"].strip()
if not agent_client_id:
    fail("AGENT_CLIENT_ID is not set: azd env set AGENT_CLIENT_ID <client id of the experts' application>")
if agent_client_id not in routes["contoso-agent"]["audiences"]:
    fail(f"AGENT_CLIENT_ID {agent_client_id} is not an audience of the contoso-agent route: the "
         "on-behalf-of exchange needs the experts' tokens to be issued to that same application")

with open(out_path, "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
PY

# The policies, rendered by this repository's gateway from the same file.
if [ -n "${GATEWAY_BIN:-}" ]; then
  log "rendering the policies with $GATEWAY_BIN"
  "$GATEWAY_BIN" render-apim --config "$CONFIG" --out "$OUT/policies"
elif command -v cargo >/dev/null; then
  log "rendering the policies with cargo run -p gateway (the first build takes a few minutes)"
  (cd "$REPO" && cargo run --quiet -p gateway -- render-apim --config "$CONFIG" --out "$OUT/policies")
else
  die "cannot render the API Management policies: install Rust (cargo), or build the gateway elsewhere and set GATEWAY_BIN=<path to gateway>"
fi

for route in contoso fabrikam contoso-agent; do
  policy="$OUT/policies/$route.policy.xml"
  [ -f "$policy" ] || die "the renderer wrote no $policy"
  grep -q "https://$route.backend.invalid" "$policy" ||
    die "$policy does not name https://$route.backend.invalid: the deployment could not set its backend"
done
log "policies and routes for $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["issuer"])' "$OUT/routes.json") written to $OUT"
