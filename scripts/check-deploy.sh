#!/usr/bin/env bash
# Static checks of the deployment files that can be checked without Azure: checkov over every
# Bicep file under deploy/ and apim/ and every Dockerfile (Dockerfile, *.Dockerfile, Dockerfile.*)
# under deploy/, offline (--skip-download). Fails when checkov could not parse a file (it would
# otherwise skip it and still pass), or when a check fails that deploy/checkov-accepted.txt does not
# accept; an accepted finding that no longer occurs fails too, so the list stays true. Prints
# every finding (with its reason when accepted) and checkov's summary per framework. Then hadolint
# over the same Dockerfiles, and compose.yaml parsed as podman-compose reads it.
#
# checkov comes from .interop/deploy-venv (scripts/setup-interop.sh installs it, pinned in
# scripts/interop/requirements-deploy.txt) or from PATH. Needs python3 to read its report.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ACCEPTED="deploy/checkov-accepted.txt"

log() { printf '[check-deploy] %s\n' "$*" >&2; }
die() { printf '[check-deploy] ERROR: %s\n' "$*" >&2; exit 1; }

if [ -x .interop/deploy-venv/bin/checkov ]; then
  CHECKOV=.interop/deploy-venv/bin/checkov
elif command -v checkov >/dev/null; then
  CHECKOV="$(command -v checkov)"
else
  die "checkov not found: run scripts/setup-interop.sh (installs it into .interop/deploy-venv)"
fi
command -v python3 >/dev/null || die "python3 is needed to read checkov's report"

# generated/ holds what azd's hook derives from gateway.toml: not source, and not always there.
mapfile -t bicep < <(find deploy apim -name '*.bicep' -not -path '*/generated/*' 2>/dev/null | sort)
mapfile -t dockerfiles < <(find deploy -type f \( -name Dockerfile -o -name '*.Dockerfile' -o -name 'Dockerfile.*' \) 2>/dev/null | sort)

frameworks=()
files=()
[ "${#bicep[@]}" -gt 0 ] && frameworks+=(bicep)
[ "${#dockerfiles[@]}" -gt 0 ] && frameworks+=(dockerfile)
[ "${#frameworks[@]}" -gt 0 ] || die "no Bicep file under deploy/ or apim/ and no Dockerfile under deploy/: nothing to check"
for f in "${bicep[@]}" "${dockerfiles[@]}"; do files+=(-f "$f"); done
log "checkov $("$CHECKOV" --version) on ${#bicep[@]} Bicep file(s) and ${#dockerfiles[@]} Dockerfile(s)"

# With one output format, checkov takes --output-file-path as a folder (results_json.json in it).
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
report="$out/results_json.json"
# --soft-fail: the verdict is ours (parsing errors, the accepted list), made from the JSON report,
# which lists the files checkov could not parse only without --quiet; the findings are printed below.
"$CHECKOV" --skip-download --compact --soft-fail --framework "${frameworks[@]}" "${files[@]}" \
  -o json --output-file-path "$out" >/dev/null

checkov_ok=true
python3 - "$report" "$ACCEPTED" "${#bicep[@]}" "${#dockerfiles[@]}" <<'PY' || checkov_ok=false
import json, sys

report_path, accepted_path, n_bicep, n_docker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def norm(path):
    # checkov names files relative to where it ran, with a leading "/".
    return path.lstrip("/")

with open(report_path) as f:
    report = json.load(f)
# One framework: one object; several: a list. A framework with nothing to report is a bare summary.
reports = report if isinstance(report, list) else [report]

accepted = {}
try:
    with open(accepted_path) as f:
        lines = f.read().splitlines()
except FileNotFoundError:
    lines = []  # nothing accepted: every finding fails
for number, line in enumerate(lines, 1):
    entry = line.split("#", 1)[0].split()
    if not entry:
        continue
    if len(entry) != 3:
        sys.exit(f"[check-deploy] ERROR: {accepted_path}:{number}: expected CHECK_ID FILE RESOURCE  # reason")
    if "#" not in line or not line.split("#", 1)[1].strip():
        sys.exit(f"[check-deploy] ERROR: {accepted_path}:{number}: an accepted finding needs its reason after #")
    accepted[tuple(entry)] = (number, line.split("#", 1)[1].strip())

totals = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
found = set()
unparsed = []
summaries = []
for r in reports:
    summary = r.get("summary", r)
    kind = r.get("check_type", "(no findings)")
    summaries.append(f"checkov {kind}: passed {summary.get('passed', 0)}, failed {summary.get('failed', 0)}, "
                     f"skipped {summary.get('skipped', 0)}, parsing errors {summary.get('parsing_errors', 0)}, "
                     f"resources {summary.get('resource_count', 0)}")
    for key in totals:
        totals[key] += summary.get(key, 0)
    results = r.get("results", {})
    unparsed += results.get("parsing_errors", [])
    for c in results.get("failed_checks", []):
        key = (c["check_id"], norm(c["file_path"]), c["resource"])
        found.add(key)
        lines = c.get("file_line_range") or [0, 0]
        verdict = f"accepted: {accepted[key][1]}" if key in accepted else "NOT ACCEPTED"
        print(f"{c['check_id']} {c['check_name']}\n    {c['resource']} at {key[1]}:{lines[0]}-{lines[1]}\n    {verdict}")
print()
print("\n".join(summaries))

new = sorted(found - set(accepted))
stale = sorted(set(accepted) - found, key=lambda k: accepted[k][0])
accepted_now = len(found) - len(new)
print(f"checkov total: passed {totals['passed']}, failed {totals['failed']} "
      f"({accepted_now} accepted in {accepted_path}, {len(new)} new), skipped {totals['skipped']}, "
      f"parsing errors {totals['parsing_errors']}; {n_bicep} Bicep file(s), {n_docker} Dockerfile(s)")

ok = True
if totals["parsing_errors"] or unparsed:
    ok = False
    print(f"FAIL: checkov could not parse {', '.join(unparsed) or 'some files'}; it skips what it cannot "
          "parse, so nothing in it was checked (its parser knows no lambdas, @export() or union types)")
for check_id, path, resource in new:
    ok = False
    print(f"FAIL: {check_id} on {resource} ({path}) is not accepted: fix it, or add it to {accepted_path} with its reason")
for check_id, path, resource in stale:
    ok = False
    print(f"FAIL: {accepted_path}:{accepted[(check_id, path, resource)][0]} accepts {check_id} on {resource} "
          f"({path}), which checkov no longer reports: remove the line")
sys.exit(0 if ok else 1)
PY

# hadolint: the Dockerfiles' own lint (shell in RUN, pinning, USER...); an accepted rule is an
# inline `# hadolint ignore=` with its reason beside it.
HADOLINT=.interop/deploy-venv/bin/hadolint
[ -x "$HADOLINT" ] || HADOLINT="$(command -v hadolint)" || die "hadolint not found: run scripts/setup-interop.sh"
hadolint_ok=true
for f in "${dockerfiles[@]}"; do
  "$HADOLINT" --no-color "$f" || hadolint_ok=false
done
$hadolint_ok && log "hadolint: ${#dockerfiles[@]} Dockerfile(s) clean"

# compose.yaml: parsed and interpolated as podman-compose runs it (every service, every profile).
COMPOSE=.interop/deploy-venv/bin/podman-compose
[ -x "$COMPOSE" ] || COMPOSE="$(command -v podman-compose)" || die "podman-compose not found: run scripts/setup-interop.sh"
compose_ok=true
"$COMPOSE" --profile observability -f compose.yaml config >/dev/null || compose_ok=false
$compose_ok && log "compose.yaml: valid"

$checkov_ok && $hadolint_ok && $compose_ok
