#!/usr/bin/env bash
# File-job benchmarks (see bench/README.md, "ONNX detection and OCR"): per-job latency (p50/p90)
# and jobs/s at 1 and 2 concurrent clients for
#   OCR:       statim `ocr-tesseract` on ocr-test-hello-world.png  vs  bench/tess_ocr.cpp (libtesseract direct)
#              and, for reference, the tesseract CLI (a process per page)
#   detection: statim `yolox-nano` on yolox-test-dog.jpg           vs  bench/ort_detect.cpp (ORT direct)
# Starts its own server on a free port with a temp data dir; manifests as models/ but parallel = 2.
# Runs inside the build environment (scripts/in-env). Prints a markdown table.
#
#   bench/onnx_ocr.sh
# Knobs: STATIM_BIN (build/statim), BENCH_JOBS (tesseract CLI jobs per client, and file_jobs.py's with
#   BENCH_CLIENT=python, 20), BENCH_THREADS (ORT threads, 2),
#   BENCH_ROUNDS (alternating pairs, statim then the direct program, 3), BENCH_SECONDS (per statim run, 5),
#   BENCH_CLIENT (jobclient: bench/jobclient.cpp, one epoll thread in C++; python: bench/file_jobs.py),
#   BENCH_DIRECT_JOBS (ort_detect's and tess_ocr's jobs per run, 200),
#   BENCH_WAIT (seconds a statim client's POST /job?wait= waits for the end, 30 (jobs.max_wait_seconds); 0: poll every 5 ms),
#   STATIM_SHARED_MODELS (../shared/models).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${STATIM_IN_ENV:-}" ]; then exec scripts/in-env bench/onnx_ocr.sh "$@"; fi

BIN=${STATIM_BIN:-build/statim}
JOBS=${BENCH_JOBS:-20}
THREADS=${BENCH_THREADS:-2}
WAIT=${BENCH_WAIT:-30}
ROUNDS=${BENCH_ROUNDS:-3}
DIRECT_JOBS=${BENCH_DIRECT_JOBS:-200}  # ort_detect's and tess_ocr's jobs per run, shared by their clients
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
CLIENT=${BENCH_CLIENT:-jobclient}
JOBCLIENT=.bench/jobclient
SHARED=$(realpath "${STATIM_SHARED_MODELS:-../shared/models}")
OCR_IMG=$SHARED/ocr/ocr-test-hello-world.png
DOG=$SHARED/onnx/yolox-test-dog.jpg
YOLOX=$SHARED/onnx/yolox_nano.onnx
TESSDATA=$SHARED/ocr/tesseract
DIRECT=.bench/ort_detect
TESS_DIRECT=.bench/tess_ocr

log() { echo "bench: $*" >&2; }
[ "$ROUNDS" -ge 1 ] 2>/dev/null || { log "BENCH_ROUNDS must be 1 or more (got '$ROUNDS')"; exit 2; }
[ -x "$BIN" ] || { log "no $BIN (run make build first)"; exit 1; }
mkdir -p .bench
if [ ! -x "$DIRECT" ] || [ bench/ort_detect.cpp -nt "$DIRECT" ] || [ src/backends/onnx/image.cpp -nt "$DIRECT" ] || [ src/backends/media/image.cpp -nt "$DIRECT" ]; then
  log "building $DIRECT"
  g++ -std=c++23 -O2 -Wall -Isrc -Iinclude -I/usr/include/onnxruntime -o "$DIRECT" bench/ort_detect.cpp \
    src/backends/media/image.cpp src/backends/onnx/image.cpp src/backends/onnx/postprocess.cpp -lonnxruntime
fi

if [ ! -x "$TESS_DIRECT" ] || [ bench/tess_ocr.cpp -nt "$TESS_DIRECT" ]; then
  log "building $TESS_DIRECT"
  # shellcheck disable=SC2046
  g++ -std=c++23 -O2 -Wall -o "$TESS_DIRECT" bench/tess_ocr.cpp -fopenmp $(pkg-config --cflags --libs tesseract lept)
fi

if [ ! -x "$JOBCLIENT" ] || [ bench/jobclient.cpp -nt "$JOBCLIENT" ]; then
  log "building $JOBCLIENT"
  g++ -std=c++23 -O2 -Wall -Wextra -o "$JOBCLIENT" bench/jobclient.cpp
fi

WORK=$(mktemp -d /tmp/statim-bench-onnx.XXXXXX)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/models"
cp models/coco-labels.txt "$WORK/models/"
for m in ocr-tesseract yolox-nano; do
  sed -e "s#\.\./\.\./shared/models#$SHARED#" -e 's/^parallel = 1/parallel = 2/' -e "s/^threads = .*/threads = $THREADS/" \
    "models/$m.toml" >"$WORK/models/$m.toml"
done
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
STATIM_AUTH_MODE=off "$BIN" serve --host 127.0.0.1 --port "$PORT" --data-dir "$WORK/data" --models-dir "$WORK/models" \
  --log-level warn >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 600); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && \
    [ "$(curl -fsS "http://127.0.0.1:$PORT/models" | python3 -c 'import json,sys; print(all(m["state"] != "loading" for m in json.load(sys.stdin)["models"]))')" = True ] && break
  sleep 0.1
done

field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }
ROWS=()
declare -A RATE
# One statim run of `model` on `file` at c clients: a table row's cells after "how | clients", and
# the rate in $STATIM_RATE.
statim_run() {
  local model=$1 file=$2 c=$3 r notes
  if [ "$CLIENT" = python ]; then
    r=$(python3 bench/file_jobs.py --port "$PORT" --model "$model" --file "$file" --jobs-per-client "$JOBS" --clients "$c" --wait "$WAIT")
    notes="server $(field server_p50_ms "$r") / $(field server_p90_ms "$r"), run $(field run_p50_ms "$r"); Python client"
  else
    local waiting=()
    [ "$WAIT" != 0 ] && waiting=(--wait "$WAIT")  # else it polls GET /job/{id}
    r=$("$JOBCLIENT" loop --port "$PORT" --clients "$c" --seconds "$SECONDS_PER_RUN" --model "$model" --file "$file" \
      "${waiting[@]}")
    notes="server $(field server_p50_ms "$r") / p99 $(field server_p99_ms "$r"); C++ client (jobclient)"
  fi
  STATIM_RATE=$(field jobs_per_s "$r")
  STATIM_ROW="$STATIM_RATE | $(field p50_ms "$r") | $(field p90_ms "$r") | $notes"
}
median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : sprintf("%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
for c in 1 2; do
  # Jobs of ~20 ms, where run-to-run noise of +-1 ms matters: ROUNDS alternating pairs (statim, then
  # the same work done directly); the ratio is the median of the pairs'.
  OCR_RATIOS=()
  OCR_RATES=()
  DET_RATIOS=()
  for round in $(seq "$ROUNDS"); do
    log "OCR via statim, $c client(s), round $round ($CLIENT client)"
    statim_run ocr-tesseract "$OCR_IMG" "$c"
    s=$STATIM_RATE
    OCR_RATES+=("$s")
    ROWS+=("| OCR | statim job API | $c | $STATIM_ROW |")
    log "OCR via tess_ocr (libtesseract direct), $c client(s), round $round"
    r=$("$TESS_DIRECT" "$TESSDATA" eng "$OCR_IMG" "$((DIRECT_JOBS / c))" "$c" 2>"$WORK/tess_ocr.err") ||
      { cat "$WORK/tess_ocr.err" >&2; log "tess_ocr failed"; exit 1; }
    d=$(field jobs_per_s "$r")
    [ -n "$d" ] || { log "tess_ocr printed no rate: $r"; exit 1; }
    ROWS+=("| OCR | tess_ocr (libtesseract direct) | $c | $d | $(field p50_ms "$r") | $(field p90_ms "$r") | $(field words "$r") words |")
    OCR_RATIOS+=("$(awk -v a="$s" -v b="$d" 'BEGIN {printf "%.2f", a / b}')")

    log "detection via statim, $c client(s), round $round ($CLIENT client)"
    statim_run yolox-nano "$DOG" "$c"
    s=$STATIM_RATE
    ROWS+=("| detection | statim job API | $c | $STATIM_ROW |")
    log "detection via ort_detect, $c client(s), round $round"
    r=$("$DIRECT" "$YOLOX" "$DOG" "$((DIRECT_JOBS / c))" "$c" "$THREADS" 2>"$WORK/ort_detect.err") ||  # libonnx duplicate-schema noise
      { cat "$WORK/ort_detect.err" >&2; log "ort_detect failed"; exit 1; }
    d=$(field jobs_per_s "$r")
    [ -n "$d" ] || { log "ort_detect printed no rate: $r"; exit 1; }
    ROWS+=("| detection | ort_detect (ORT direct) | $c | $d | $(field p50_ms "$r") | $(field p90_ms "$r") | $(field detections "$r") detections |")
    DET_RATIOS+=("$(awk -v a="$s" -v b="$d" 'BEGIN {printf "%.2f", a / b}')")
  done
  RATE[ocr_pairs_$c]="${OCR_RATIOS[*]}"
  RATE[ocr_ratio_$c]=$(printf '%s\n' "${OCR_RATIOS[@]}" | median)
  RATE[det_pairs_$c]="${DET_RATIOS[*]}"
  RATE[det_ratio_$c]=$(printf '%s\n' "${DET_RATIOS[@]}" | median)
  log "OCR via the tesseract CLI, $c client(s)"
  r=$(python3 bench/file_jobs.py --command "tesseract $OCR_IMG stdout --tessdata-dir $TESSDATA -l eng --oem 1 --psm 3" \
    --jobs-per-client "$JOBS" --clients "$c")
  RATE[ocr_cli_$c]=$(awk -v a="$(printf '%s\n' "${OCR_RATES[@]}" | median)" -v b="$(field jobs_per_s "$r")" 'BEGIN {printf "%.2f", a / b}')
  ROWS+=("| OCR | tesseract CLI | $c | $(field jobs_per_s "$r") | $(field p50_ms "$r") | $(field p90_ms "$r") | a process per page (loads eng.traineddata each time; OpenMP on) |")
done
echo "| work | how | clients | jobs/s | p50 ms | p90 ms | notes |"
echo "|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
for c in 1 2; do
  echo "throughput ratio statim/direct, $c client(s): OCR ${RATE[ocr_ratio_$c]} (median of the pairs ${RATE[ocr_pairs_$c]}), detection ${RATE[det_ratio_$c]} (median of the pairs ${RATE[det_pairs_$c]}); OCR statim / tesseract CLI ${RATE[ocr_cli_$c]}"
done
