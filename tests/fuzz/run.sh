#!/usr/bin/env bash
# Runs the libFuzzer targets (tests/fuzz/README.md) for SECONDS each, starting from the committed
# seed corpus (tests/fuzz/corpus/<target>, replayed in full first: every crash ever found is kept
# there as a regression input). New inputs go to build-fuzz/run/<target>/corpus, crashes to
# build-fuzz/run/<target>/crashes/. Exits 1 when a target crashed, printing its report.
#   tests/fuzz/run.sh [SECONDS] [TARGET...]      (after make fuzz-build; in the build environment)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
secs=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_json_body fuzz_multipart fuzz_toml fuzz_media fuzz_grammar)
out=build-fuzz/run
mkdir -p "$out"
[ -f build-fuzz/tiny.gguf ] || python3 tests/fixtures/make_tiny_gguf.py build-fuzz/tiny.gguf >/dev/null
export STATIM_FUZZ_GGUF=$PWD/build-fuzz/tiny.gguf
failed=0
for t in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/$t
  [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz-build)" >&2; exit 2; }
  mkdir -p "$out/$t/corpus" "$out/$t/crashes"
  # The committed corpus first, alone: every input there (regressions included) must pass.
  if ! "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 "tests/fuzz/corpus/$t" >"$out/$t/replay.log" 2>&1; then
    failed=1
    echo "fuzz: FAIL: $t: an input of tests/fuzz/corpus/$t fails (a regression):" >&2
    grep -E '^==|^fuzz invariant|^SUMMARY|^Running|^ *#[0-9]+ .* in ' "$out/$t/replay.log" | tail -n 40 >&2
    continue
  fi
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$out/$t/crashes/" "$out/$t/corpus" "tests/fuzz/corpus/$t" >"$out/$t/log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t/log")
    cov=$(grep -o 'cov: [0-9]*' "$out/$t/log" | tail -n1)
    echo "fuzz: ok: $t: ${runs:-?} inputs in ${secs} s, $cov, corpus $(ls "$out/$t/corpus" | wc -l) new"
  else
    # A new find. With FUZZ_NEW_FINDS=warn (make test) it is reported, not failed on: a random
    # search must not turn CI red by luck; its input is saved for the next person to fix.
    [ "${FUZZ_NEW_FINDS:-fail}" = warn ] || failed=1
    echo "fuzz: FOUND: $t: a new failing input, in $out/$t/crashes/ (fix it, then add it to tests/fuzz/corpus/$t):" >&2
    grep -E '^==|^fuzz invariant|^SUMMARY|^artifact_prefix|^Base64|^ *#[0-9]+ .* in ' "$out/$t/log" | head -n 60 >&2
  fi
done
exit "$failed"
