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
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$out/$t/crashes/" "$out/$t/corpus" "tests/fuzz/corpus/$t" >"$out/$t/log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t/log")
    cov=$(grep -o 'cov: [0-9]*' "$out/$t/log" | tail -n1)
    echo "fuzz: ok: $t: ${runs:-?} inputs in ${secs} s, $cov, corpus $(ls "$out/$t/corpus" | wc -l) new"
  else
    failed=1
    echo "fuzz: FAIL: $t crashed; the input is in $out/$t/crashes/ (add it to tests/fuzz/corpus/$t once fixed):" >&2
    grep -E '^==|^fuzz invariant|^SUMMARY|^artifact_prefix|^Base64|^ *#[0-9]+ .* in ' "$out/$t/log" | head -n 60 >&2
  fi
done
exit "$failed"
