#!/usr/bin/env bash
# The table of statim's ratios against its peers and targets (issue #12 and #9), each from a short
# run of the benchmark that measures it (see bench/README.md for the full runs and their method):
#
#   LLM serving        bench/llm_vs_llama_server.py   statim / llama-server, tokens/s and TTFT (1, 4, 16 clients)
#   shared prompt      bench/llm_conversations.py     llama-server / statim, cached-request TTFT (1, 8 clients)
#   detection, OCR     bench/onnx_ocr.sh              statim job API / the work done directly (1, 2 clients)
#   echo jobs          bench/pg_cluster.py --wait     jobs/s end to end on SQLite against 1,500 / 10,000
#   PostgreSQL         bench/pg_cluster.py --wait     jobs/s with PostgreSQL (1 node; API + 2 workers) / SQLite
#
#   bench/compare.sh                 # ~15 minutes on 2 cores; prints a markdown table
#   COMPARE_ONLY="llm onnx" bench/compare.sh   # a subset: llm, prompt, onnx, echo, pg
#
# Short runs mean a wide spread: a ratio within ~10 % of its goal says "run the full benchmark".
# Runs inside the build environment (scripts/in-env). Needs build/statim (make build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${STATIM_IN_ENV:-}" ]; then exec scripts/in-env bench/compare.sh "$@"; fi

ONLY=${COMPARE_ONLY:-llm prompt onnx echo pg}
W=$(mktemp -d /tmp/statim-compare.XXXXXX)
trap 'rm -rf "$W"' EXIT
log() { echo "compare: $*" >&2; }
want() { [[ " $ONLY " == *" $1 "* ]]; }
ROWS=()
# row WHAT MEASURED GOAL: GOAL "x>=1.25" marks the ratio met or not.
row() {
  local met
  met=$(awk -v v="$2" -v g="${3#*>=}" 'BEGIN {print (v + 0 >= g + 0) ? "yes" : "**no**"}')
  ROWS+=("| $1 | $2 | ${3#*>=} | $met |")
}

if want llm; then
  log "LLM serving against llama-server (1 run per level, 8 s windows)"
  python3 bench/llm_vs_llama_server.py --seconds 8 --warmup 3 --repeats 1 --json "$W/llm.json" >"$W/llm.out"
  while read -r level tps ttft; do
    row "LLM tokens/s, $level clients, statim / llama-server" "$tps" ">=$([ "$level" = 16 ] && echo 1.25 || echo 1.0)"
    row "LLM TTFT p50, $level clients, llama-server / statim" "$ttft" ">=1.0"
  done < <(python3 - "$W/llm.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))
runs = runs["runs"] if isinstance(runs, dict) else runs
by = {(r["server"], r["level"]): r for r in runs}
for level in sorted({r["level"] for r in runs}):
    s, l = by[("statim", level)], by[("llama-server", level)]
    print(level, f"{s['tps'] / l['tps']:.2f}", f"{l['ttft_p50'] / s['ttft_p50']:.2f}")
EOF
)
fi

if want prompt; then
  for c in 1 8; do
    log "shared system prompt, $c client(s)"
    python3 bench/llm_conversations.py --shared-system --clients "$c" --conversations 4 --parallel 8 \
      --no-cache-run >"$W/prompt$c.out" 2>/dev/null
    r=$(sed -n 's/.*later-turn TTFT p50 \([0-9.]*\).*/\1/p' "$W/prompt$c.out")
    row "cached-prompt TTFT p50, $c client(s), llama-server / statim" "$r" ">=1.0"
  done
fi

if want onnx; then
  log "detection and OCR against the work done directly"
  BENCH_JOBS=20 bench/onnx_ocr.sh >"$W/onnx.out" 2>/dev/null
  for c in 1 2; do
    line=$(grep "throughput ratio statim/direct, $c client" "$W/onnx.out")
    row "YOLOX-Nano detection jobs/s, $c client(s), statim / ORT direct" "$(sed -n 's/.*detection \([0-9.]*\).*/\1/p' <<<"$line")" ">=0.9"
    row "OCR jobs/s, $c client(s), statim / libtesseract direct" "$(sed -n 's/.*: OCR \([0-9.]*\) .*/\1/p' <<<"$line")" ">=0.9"
  done
fi

if want echo || want pg; then
  layouts=sqlite
  want pg && layouts=sqlite,pg-1node,pg-api+2workers
  log "echo jobs end to end ($layouts)"
  python3 bench/pg_cluster.py --wait --seconds 6 --clients 1,32,256 --layouts "$layouts" --no-rescue >"$W/pg.out"
  # | layout | clients | jobs/s | p50 | p99 | vs sqlite | ...
  rate() { awk -F'|' -v l="$1" -v c="$2" '{gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4)} $2 == l && $3 == c {print $4}' "$W/pg.out"; }
  if want echo; then
    row "echo jobs/s end to end, 1 client (target 1,500): measured / target" \
      "$(awk -v r="$(rate sqlite 1)" 'BEGIN {printf "%.2f", r / 1500}')" ">=1.0"
    row "echo jobs/s end to end, 256 clients (target 10,000): measured / target" \
      "$(awk -v r="$(rate sqlite 256)" 'BEGIN {printf "%.2f", r / 10000}')" ">=1.0"
    # The same with 16 echo slots: with 2, each slot's claim -> run -> claim cycle is the limit.
    log "echo jobs end to end, echo parallel 16"
    python3 bench/pg_cluster.py --wait --seconds 6 --clients 256 --layouts sqlite --no-rescue --parallel 16 >"$W/pg16.out"
    r16=$(awk -F'|' '{gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4)} $2 == "sqlite" && $3 == 256 {print $4}' "$W/pg16.out")
    row "echo jobs/s end to end, 256 clients, echo parallel 16 (target 10,000): measured / target" \
      "$(awk -v r="$r16" 'BEGIN {printf "%.2f", r / 10000}')" ">=1.0"
  fi
  if want pg; then
    for c in 32 256; do
      row "PostgreSQL 1 node jobs/s, $c clients (target 3,000): measured / target" \
        "$(awk -v r="$(rate pg-1node "$c")" 'BEGIN {printf "%.2f", r / 3000}')" ">=1.0"
      row "PostgreSQL API + 2 workers / 1 node, $c clients (same machine)" \
        "$(awk -v a="$(rate pg-api+2workers "$c")" -v b="$(rate pg-1node "$c")" 'BEGIN {printf "%.2f", a / b}')" ">=1.0"
    done
  fi
fi

echo "statim $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores"
echo
echo "| ratio | measured | goal | met |"
echo "|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
