#!/usr/bin/env bash
# Runs every fuzz target in fuzz/fuzz_targets/ for a bounded time: scripts/fuzz.sh [SECONDS] [TARGET...]
# (default 30 s each, every target). Part of scripts/test.sh, so CI runs it.
#
# On the stable toolchain: `--sanitizer none` keeps cargo-fuzz to stable rustc flags (coverage
# instrumentation, `--cfg fuzzing`, debug assertions and overflow checks on); no nightly needed.
# Each input gets at most 2 s and the process 2 GiB, so a hang or a blow-up counts as a failure like
# a panic. New inputs found go to a scratch copy of the corpus, never into fuzz/corpus/ (commit
# those deliberately, after `cargo fuzz cmin`). Exits non-zero if any target failed; the failing
# input's path (under fuzz/artifacts/<target>/) and the command to reproduce it are in the output.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

secs="${1:-30}"
shift || true
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a whole number above 0, got ${secs:?}" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

# The fuzz crate is outside the workspace, so `cargo fmt --all` does not see it.
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

# The same flags for the build and every run, or `cargo fuzz run` would build again. 16 codegen
# units: the cold build (every dependency instrumented) is most of this script's time on 2 cores,
# and bounded CI runs gain more from it than they lose in executions per second.
flags=(--sanitizer none --codegen-units 16)

# Every target file must be a [[bin]] of fuzz/Cargo.toml, or it would silently never run.
registered="$(cargo fuzz list)"
for file in fuzz/fuzz_targets/*.rs; do
  name="$(basename "$file" .rs)"
  if ! grep -qx "$name" <<<"$registered"; then
    echo "fuzz.sh: $file is not a [[bin]] of fuzz/Cargo.toml; add it there" >&2
    exit 2
  fi
done
if [[ $# -gt 0 ]]; then targets=("$@"); else mapfile -t targets <<<"$registered"; fi

start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz.sh: built ${#targets[@]} target(s) in $(($(date +%s) - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target" "fuzz/corpus/$target"
  log="$scratch/$target.log"
  echo "fuzz.sh: $target for $secs s"
  status=0
  cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -timeout=2 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  corpus="$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$log" | tail -n 1 || true)"
  if [[ $status -ne 0 ]]; then
    failed+=("$target")
    summary+=("$target: FAILED after ${execs:-?} executions")
    echo "fuzz.sh: $target FAILED (exit $status); the end of its output:" >&2
    tail -n 80 "$log" >&2
  else
    summary+=("$target: ${execs:-?} executions in $secs s (${corpus:-no stats})")
  fi
done

printf 'fuzz.sh: %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz.sh: failing target(s): ${failed[*]}" >&2
  exit 1
fi
