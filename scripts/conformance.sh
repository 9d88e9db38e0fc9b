#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, pinned in
# scripts/interop/package.json) against a running MCP server over streamable HTTP, and checks the
# outcome against scripts/interop/conformance-expected-failures.txt.
#
# usage: scripts/conformance.sh URL            e.g. scripts/conformance.sh http://127.0.0.1:8080/mcp
#
# Exit 0 only if every scenario not listed passed AND every listed scenario failed (and ran).
# Exit 1 on any mismatch, 2 on usage/setup errors (server unreachable, bad expected-failures file).
# A scenario counts as failed when any of its checks is FAILURE or WARNING (the suite's own rule
# for its --expected-failures baseline, which this script also passes to it).
#
# Environment:
#   CONFORMANCE_SUITE         active (default: all but the suite's "pending" scenarios) | all | pending
#   CONFORMANCE_SPEC_VERSION  only scenarios for this spec version (e.g. 2025-06-18); default: no filter
#   CONFORMANCE_EXPECTED      expected-failures file (default scripts/interop/conformance-expected-failures.txt)
#   CONFORMANCE_OUT           results directory (default .interop/conformance-results/<UTC timestamp>)
#   CONFORMANCE_TIMEOUT       seconds for the whole suite run (default 600)
# The suite sends no Authorization header: run the server under test without auth.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'conformance.sh: %s\n' "$*" >&2; exit 2; }

[ $# -eq 1 ] || die "usage: $0 URL   (e.g. http://127.0.0.1:8080/mcp)"
URL="$1"
case "$URL" in http://* | https://*) ;; *) die "URL must start with http:// or https://, got: $URL" ;; esac

SUITE="${CONFORMANCE_SUITE:-active}"
SPEC="${CONFORMANCE_SPEC_VERSION:-}"
EXPECTED="${CONFORMANCE_EXPECTED:-$REPO/scripts/interop/conformance-expected-failures.txt}"
OUT="${CONFORMANCE_OUT:-$REPO/.interop/conformance-results/$(date -u +%Y%m%dT%H%M%SZ)}"
TIMEOUT="${CONFORMANCE_TIMEOUT:-600}"
[ -f "$EXPECTED" ] || die "expected-failures file not found: $EXPECTED"

# Installs on first use; a no-op taking well under a second once done.
setup_out="$(bash "$REPO/scripts/setup-interop.sh" 2>&1)" || { printf '%s\n' "$setup_out" >&2; die "scripts/setup-interop.sh failed"; }
NODE="$REPO/.interop/node/node_modules/node/bin/node"
CONF="$REPO/.interop/node/node_modules/@modelcontextprotocol/conformance/dist/index.js"
PY="$REPO/.interop/venv/bin/python"

# Fail fast, with a clear message, if nothing listens at URL.
"$PY" - "$URL" <<'PY' || exit 2
import socket, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
port = u.port or (443 if u.scheme == "https" else 80)
try:
    socket.create_connection((u.hostname, port), timeout=5).close()
except OSError as e:
    sys.exit(f"conformance.sh: cannot connect to {u.hostname}:{port} ({e}); is the server running?")
PY

rm -rf "$OUT"
mkdir -p "$OUT/checks"
LOG="$OUT/suite.log"
BASELINE="$OUT/expected-failures.yml"

# Known scenario names (for validating the expected-failures file).
"$NODE" "$CONF" list --server | sed -n 's/^  - \([^ ]*\).*/\1/p' >"$OUT/known-scenarios.txt"
[ -s "$OUT/known-scenarios.txt" ] || die "could not list the suite's scenarios"

# Our text list -> the suite's own YAML baseline ({server: [names]}).
"$PY" - "$EXPECTED" "$OUT/known-scenarios.txt" "$BASELINE" "$OUT/expected.txt" <<'PY' || exit 2
import sys
src, known_f, yml, plain = sys.argv[1:]
known = set(open(known_f).read().split())
names, errors = [], []
for n, line in enumerate(open(src), 1):
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    name, _, reason = s.partition("#")
    name = name.strip()
    if not reason.strip():
        errors.append(f"{src}:{n}: '{name}' has no ' # reason'")
    if " " in name or "\t" in name:
        errors.append(f"{src}:{n}: expected one scenario name before '#', got '{name}'")
    elif name not in known:
        errors.append(f"{src}:{n}: unknown scenario '{name}' (see: conformance list --server)")
    elif name in names:
        errors.append(f"{src}:{n}: '{name}' listed twice")
    names.append(name)
if errors:
    sys.exit("conformance.sh: bad expected-failures file:\n  " + "\n  ".join(errors))
with open(yml, "w") as f:
    f.write("server:\n" + "".join(f"  - {x}\n" for x in names) if names else "server: []\n")
open(plain, "w").write("".join(x + "\n" for x in names))
PY

args=(server --url "$URL" --suite "$SUITE" --output-dir "$OUT/checks" --expected-failures "$BASELINE")
[ -n "$SPEC" ] && args+=(--spec-version "$SPEC")
printf 'conformance: running @modelcontextprotocol/conformance %s (suite %s%s) against %s\n' \
  "$("$NODE" -p "require('$REPO/.interop/node/node_modules/@modelcontextprotocol/conformance/package.json').version")" \
  "$SUITE" "${SPEC:+, spec $SPEC}" "$URL"
# The suite's own output (including its "Total: N passed, N failed" line) goes to the log only.
set +e
timeout --kill-after=10 "$TIMEOUT" "$NODE" "$CONF" "${args[@]}" >"$LOG" 2>&1
suite_rc=$?
set -e
[ "$suite_rc" -eq 124 ] && printf 'conformance: the suite timed out after %ss\n' "$TIMEOUT"

"$PY" - "$LOG" "$OUT/checks" "$OUT/expected.txt" "$suite_rc" "$OUT" <<'PY'
import json, os, re, sys
log, checks_dir, expected_f, suite_rc, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
expected = [l.strip() for l in open(expected_f) if l.strip()]
text = open(log, errors="replace").read()
ran = re.findall(r"^=== Running scenario: (\S+) ===$", text, re.M)
dirs = os.listdir(checks_dir) if os.path.isdir(checks_dir) else []

rows, counts = [], {"passed": [], "expected": [], "unexpected_fail": [], "unexpected_pass": []}
for name in ran:
    pat = re.compile(r"^server-" + re.escape(name) + r"-\d{4}-\d\d-\d\dT")
    found = sorted(d for d in dirs if pat.match(d))
    checks, why = None, ""
    if found:
        try:
            checks = json.load(open(os.path.join(checks_dir, found[-1], "checks.json")))
        except FileNotFoundError:
            why = "no checks.json: the scenario did not finish (see suite.log)"
        except (OSError, ValueError) as e:
            why = f"unreadable checks.json: {e}"
    else:
        why = "scenario crashed (no checks.json; see suite.log)"
    if checks is not None:
        bad = [c for c in checks if c.get("status") in ("FAILURE", "WARNING")]
        failed = bool(bad)
        why = "; ".join(f"{c.get('status')} {c.get('id')}: {c.get('errorMessage') or c.get('description', '')}"
                        for c in bad)
        n_ok = sum(c.get("status") == "SUCCESS" for c in checks)
        detail = f"{n_ok}/{sum(c.get('status') in ('SUCCESS', 'FAILURE') for c in checks)} checks"
    else:
        failed, detail = True, "-"
    listed = name in expected
    if not failed and not listed:
        verdict, key = "pass", "passed"
    elif failed and listed:
        verdict, key = "fail (expected)", "expected"
    elif failed:
        verdict, key = "FAIL (unexpected)", "unexpected_fail"
    else:
        verdict, key = "PASS (unexpected: remove from expected-failures)", "unexpected_pass"
    counts[key].append(name)
    rows.append((name, verdict, detail, why))

not_run = [n for n in expected if n not in ran]

w = max([len(r[0]) for r in rows] + [8])
print(f"\n{'scenario':<{w}}  {'result':<18} checks      notes")
for name, verdict, detail, why in rows:
    note = why if verdict != "pass" else ""
    if len(note) > 160:
        note = note[:157] + "..."
    print(f"{name:<{w}}  {verdict:<18} {detail:<11} {note}")

print()
print(f"  passed                {len(counts['passed']):3d}")
print(f"  failed as expected    {len(counts['expected']):3d}")
print(f"  unexpected failures   {len(counts['unexpected_fail']):3d}  {' '.join(counts['unexpected_fail'])}")
print(f"  unexpected passes     {len(counts['unexpected_pass']):3d}  {' '.join(counts['unexpected_pass'])}")
if not_run:
    print(f"  listed but not run    {len(not_run):3d}  {' '.join(not_run)}  (not in this suite/spec-version selection)")
print(f"  results: {out} (suite.log, checks/<scenario>/checks.json)")

mismatches = len(counts["unexpected_fail"]) + len(counts["unexpected_pass"]) + len(not_run)
ok = mismatches == 0 and len(ran) > 0
if not ran:
    print("conformance: the suite ran no scenario; see suite.log")
if suite_rc == 124:
    print("conformance: the suite timed out (CONFORMANCE_TIMEOUT); scenarios after the last one shown did not run")
    ok = False
# The suite's own baseline verdict must agree with ours.
if ok and suite_rc != 0:
    print(f"conformance: the suite itself exited {suite_rc} although every scenario matched; see suite.log")
    ok = False
# Plain closing line: matched outcomes count as passed, mismatches as failed, expected failures as skipped.
print(f"conformance: {len(counts['passed'])} passed, {mismatches} failed, {len(counts['expected'])} skipped")
sys.exit(0 if ok else 1)
PY
