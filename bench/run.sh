#!/usr/bin/env bash
# statim's benchmarks (see bench/README.md): the job API with the echo model and single-stream
# llama generation. Starts its own server on a free port with its own temp data dir and manifests,
# runs everything and prints a markdown table. Runs inside the build environment (scripts/in-env).
#
#   bench/run.sh                          # everything (about 3 minutes on 2 cores)
#   BENCH_SKIP_LLAMA=1 bench/run.sh       # job API only (BENCH_SKIP_API=1: llama only)
# Knobs: STATIM_BIN (build/statim), BENCH_SECONDS (10 per run), BENCH_CLIENTS ("1 32 256"),
#   BENCH_BATCH_JOBS (20000), BENCH_GGUF (.bench/small135m.gguf, generated when absent),
#   BENCH_GEN_TOKENS (128), BENCH_RUNS (5 llama jobs / llama-bench repetitions), BENCH_THREADS (2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${STATIM_IN_ENV:-}" ]; then exec scripts/in-env bench/run.sh "$@"; fi

BIN=${STATIM_BIN:-build/statim}
DURATION=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-"1 32 256"}
BATCH_JOBS=${BENCH_BATCH_JOBS:-20000}
GGUF=${BENCH_GGUF:-.bench/small135m.gguf}
GEN_TOKENS=${BENCH_GEN_TOKENS:-128}
RUNS=${BENCH_RUNS:-5}
THREADS=${BENCH_THREADS:-2}
SKIP_LLAMA=${BENCH_SKIP_LLAMA:-0}
SKIP_API=${BENCH_SKIP_API:-0}
CLIENT=.bench/jobclient
TICK=$(getconf CLK_TCK)

log() { echo "bench: $*" >&2; }
[ -x "$BIN" ] || { log "no $BIN (run make build first)"; exit 1; }
mkdir -p .bench

# The end-to-end client: rebuilt when its source is newer (a plain g++ command, not the project's CMake).
if [ ! -x "$CLIENT" ] || [ bench/jobclient.cpp -nt "$CLIENT" ]; then
  log "building $CLIENT"
  g++ -std=c++23 -O2 -Wall -Wextra -o "$CLIENT" bench/jobclient.cpp
fi
if [ "$SKIP_LLAMA" != 1 ] && [ ! -f "$GGUF" ]; then
  log "generating $GGUF (random weights, SmolLM-135M shape)"
  python3 tests/fixtures/make_tiny_gguf.py "$GGUF" --preset small135m >&2
fi

# The numbers are only worth something on an otherwise idle machine: measure how idle it is.
idle_pct() {
  local a b
  read -ra a < <(sed -n 's/^cpu  //p' /proc/stat); sleep 2; read -ra b < <(sed -n 's/^cpu  //p' /proc/stat)
  local total=0 i
  for i in "${!a[@]}"; do total=$((total + b[i] - a[i])); done
  echo $(( 100 * (b[3] + b[4] - a[3] - a[4]) / (total > 0 ? total : 1) ))
}
IDLE_BEFORE=$(idle_pct)
[ "$IDLE_BEFORE" -ge 90 ] || log "warning: the machine is only ${IDLE_BEFORE}% idle before the run; numbers will be low and noisy"

WORK=$(mktemp -d /tmp/statim-bench.XXXXXX)
SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  SERVER_PID=""
}
cleanup() { stop_server; rm -rf "$WORK"; }
trap cleanup EXIT

# Manifests: echo for the job API runs, m (the GGUF) for the llama run.
# max_queue is 1000000, not 100000: while wrk floods POST /job the echo workers fall far behind
# (see README), and at 30k submissions/s a 10 s run would otherwise end in 429s.
mkdir -p "$WORK/echo" "$WORK/llama"
printf 'id = "echo"\nbackend = "echo"\nmax_queue = 1000000\nparallel = 2\n' >"$WORK/echo/echo.toml"
printf 'id = "m"\nbackend = "llama"\nfile = "%s"\nparallel = 1\n[params]\nn_ctx = 2048\nthreads = %s\n' \
  "$(realpath "$GGUF")" "$THREADS" >"$WORK/llama/m.toml"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT

# A fresh server (empty data dir) per run, so no run inherits another's backlog or table size.
# warn: no per-request access log lines (at info every request writes one to stderr).
# AUTH=required: a key is created first and wrk sends it (the cost of authenticating each request).
start_server() {  # MODELS_SUBDIR
  stop_server
  rm -rf "$WORK/data"
  KEY=""
  if [ "${AUTH:-off}" = required ]; then
    KEY=$("$BIN" keys create --name bench --data-dir "$WORK/data" 2>/dev/null)
  fi
  STATIM_AUTH_MODE=${AUTH:-off} "$BIN" serve --host 127.0.0.1 --port "$PORT" --data-dir "$WORK/data" --models-dir "$WORK/$1" \
    --log-level warn >>"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 300); do curl -fsS "$URL/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  log "server did not start"; cat "$WORK/server.log" >&2; exit 1
}

# A model's field from GET /models.
model_field() {
  curl -fsS ${KEY:+-H "Authorization: Bearer $KEY"} "$URL/models" | python3 -c "import json, sys; m = {x['id']: x for x in json.load(sys.stdin)['models']}; print(m['$1']['$2'])"
}
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
# Busy CPU ticks of the whole machine (user nice system irq softirq steal): what is left after the
# server and the client is other load, which spoils a run on a 2-core machine.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
other_pct() {  # M0 M1 S0 S1 T0 T1 CLIENT_PCT -> machine - server - client, % of one core
  local o
  o=$(awk -v m0="$1" -v m1="$2" -v s0="$3" -v s1="$4" -v t0="$5" -v t1="$6" -v c="$7" -v hz="$TICK" \
    'BEGIN {o = 100 * ((m1 - m0) - (s1 - s0)) / hz / (t1 - t0) - c; printf "%.0f", o < 0 ? 0 : o}')
  [ "$o" -le 10 ] || touch "$WORK/disturbed"  # called in $(...): a file, not a variable
  echo "$o"
}
now() { date +%s.%N; }
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<<" $2"; }  # key=value from a RESULT line
pct() { awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$TICK" 'BEGIN {printf "%.0f", 100 * (b - a) / hz / (t1 - t0)}'; }

ROWS=()
row() { local r="|" cell; for cell in "$@"; do r+=" $cell |"; done; ROWS+=("$r"); }

# --- (a) durable submissions: wrk POST /job --------------------------------------------------------
[ "$SKIP_API" = 1 ] && CLIENTS=""
for c in $CLIENTS; do
 for AUTH in off required; do
  [ "$AUTH" = off ] || [ "$c" -gt 1 ] || continue
  t=$((c < 2 ? 1 : 2))
  start_server echo
  auth_header=()
  label="(a) submit: POST /job → 202 (wrk)"
  if [ "$AUTH" = required ]; then
    auth_header=(-H "Authorization: Bearer $KEY")
    label="(a) submit with an API key (auth.mode required)"
  fi
  log "(a) wrk POST /job: $c connections, $t threads, ${DURATION}s, auth $AUTH"
  m0=$(machine_ticks); s0=$(server_ticks); t0=$(now)
  out=$( { TIMEFORMAT='%3U %3S'; time wrk -t"$t" -c"$c" -d"${DURATION}s" --timeout 10s --latency "${auth_header[@]}" -s bench/submit.lua "$URL/job" >"$WORK/wrk.out" 2>&1; } 2>&1 )
  t1=$(now); s1=$(server_ticks); m1=$(machine_ticks)
  backlog=$(model_field echo queued)
  res=$(grep '^RESULT' "$WORK/wrk.out") || { cat "$WORK/wrk.out" >&2; exit 1; }
  client_cpu=$(awk -v u="${out% *}" -v s="${out#* }" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", 100 * (u + s) / (t1 - t0)}')
  row "$label" "$c" "$(field rps "$res") req/s" "$(field p50_ms "$res")" "$(field p99_ms "$res")" \
    "$(pct "$s0" "$s1" "$t0" "$t1")%" "${client_cpu}%" "$(other_pct "$m0" "$m1" "$s0" "$s1" "$t0" "$t1" "$client_cpu")%" \
    "errors $(( $(field non2xx "$res") + $(field socket_errors "$res") )); echo jobs still queued at the end: $backlog"
  log "$res"
 done
done
AUTH=off

# --- (b) end to end: submit, poll until COMPLETED -------------------------------------------------
for c in $CLIENTS; do
  start_server echo
  log "(b) jobclient loop: $c clients, ${DURATION}s"
  m0=$(machine_ticks); s0=$(server_ticks); t0=$(now)
  res=$("$CLIENT" loop --port "$PORT" --clients "$c" --seconds "$DURATION" | grep '^RESULT')
  t1=$(now); s1=$(server_ticks); m1=$(machine_ticks)
  row "(b) end to end: POST, poll GET /job/{id} → COMPLETED" "$c" "$(field jobs_per_s "$res") jobs/s" "$(field p50_ms "$res")" "$(field p99_ms "$res")" \
    "$(pct "$s0" "$s1" "$t0" "$t1")%" "$(field client_cpu_pct "$res")%" \
    "$(other_pct "$m0" "$m1" "$s0" "$s1" "$t0" "$t1" "$(field client_cpu_pct "$res")")%" \
    "server-side created→finished p50 $(field server_p50_ms "$res") / p99 $(field server_p99_ms "$res") ms; $(field gets_per_job "$res") GETs/job; errors $(field errors "$res")"
  log "$res"
done
for c in $CLIENTS; do
  [ "$c" -gt 1 ] || continue
  start_server echo
  log "(b) jobclient batch: $BATCH_JOBS jobs over $c connections"
  m0=$(machine_ticks); s0=$(server_ticks); t0=$(now)
  res=$("$CLIENT" batch --port "$PORT" --clients "$c" --jobs "$BATCH_JOBS" | grep '^RESULT')
  t1=$(now); s1=$(server_ticks); m1=$(machine_ticks)
  row "(b) end to end: submit $BATCH_JOBS, wait until all COMPLETED" "$c" "$(field jobs_per_s "$res") jobs/s" "$(field submit_p50_ms "$res")" "$(field submit_p99_ms "$res")" \
    "$(pct "$s0" "$s1" "$t0" "$t1")%" "$(field client_cpu_pct "$res")%" \
    "$(other_pct "$m0" "$m1" "$s0" "$s1" "$t0" "$t1" "$(field client_cpu_pct "$res")")%" \
    "latencies are the POSTs'; all $BATCH_JOBS submitted after $(field submit_seconds "$res") s; errors $(field errors "$res")"
  log "$res"
done

# --- llama: single stream, statim vs llama-bench ---------------------------------------------------
LLAMA_ROWS=()
if [ "$SKIP_LLAMA" != 1 ]; then
  start_server llama
  for _ in $(seq 600); do
    case "$(model_field m state)" in ready | failed) break ;; esac
    sleep 0.1
  done
  [ "$(model_field m state)" = ready ] || { log "llama model not ready"; cat "$WORK/server.log" >&2; exit 1; }
  log "statim: $RUNS llama jobs of $GEN_TOKENS tokens, one at a time"
  m0=$(machine_ticks); s0=$(server_ticks); t0=$(now)
  res=$(python3 bench/llama_jobs.py --port "$PORT" --model m --runs "$RUNS" --max-tokens "$GEN_TOKENS" | grep '^RESULT')
  t1=$(now); s1=$(server_ticks); m1=$(machine_ticks)
  statim_other=$(other_pct "$m0" "$m1" "$s0" "$s1" "$t0" "$t1" 0)
  log "$res"
  n_in=$(field tokens_in "$res")
  statim_tps=$(field server_tps "$res")
  stop_server
  log "llama-bench -m $GGUF -p $n_in -n $GEN_TOKENS -t $THREADS -r $RUNS"
  m0=$(machine_ticks); t0=$(now)
  lb_cpu=$( { TIMEFORMAT='%3U %3S'; time llama-bench -m "$GGUF" -p "$n_in" -n "$GEN_TOKENS" -t "$THREADS" -r "$RUNS" -o json \
    >"$WORK/llama-bench.json" 2>"$WORK/llama-bench.err"; } 2>&1 ) || { cat "$WORK/llama-bench.err" >&2; exit 1; }
  t1=$(now); m1=$(machine_ticks)
  lb_pct=$(awk -v u="${lb_cpu% *}" -v s="${lb_cpu#* }" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.0f", 100 * (u + s) / (t1 - t0)}')
  lb_other=$(other_pct "$m0" "$m1" 0 0 "$t0" "$t1" "$lb_pct")
  read -r pp_tps tg_tps < <(python3 -c "
import json
r = json.load(open('$WORK/llama-bench.json'))
pp = [x['avg_ts'] for x in r if x['n_prompt'] > 0 and x['n_gen'] == 0]
tg = [x['avg_ts'] for x in r if x['n_gen'] > 0 and x['n_prompt'] == 0]
print(f'{pp[0]:.2f} {tg[0]:.2f}')")
  ratio=$(awk -v a="$statim_tps" -v b="$tg_tps" 'BEGIN {printf "%.2f", a / b}')
  LLAMA_ROWS+=("| statim job, result.tokens_per_s (median of $RUNS) | $(printf %.2f "$statim_tps") | $n_in-token prompt, $GEN_TOKENS generated, temperature 0; other CPU ${statim_other}% |")
  LLAMA_ROWS+=("| statim job, tokens_out / job time (created_at → finished_at) | $(printf %.2f "$(field job_tps "$res")") | $(printf %.3f "$(field job_s "$res")") s incl. the prompt ($(printf %.0f "$(field ttft_ms "$res")") ms to first token) and the store's commits |")
  LLAMA_ROWS+=("| statim job, tokens_out / client wall time (POST → COMPLETED seen) | $(printf %.2f "$(field wall_tps "$res")") | $(printf %.3f "$(field wall_s "$res")") s; adds up to one 100 ms poll |")
  LLAMA_ROWS+=("| llama-bench tg$GEN_TOKENS (\`-p $n_in -n $GEN_TOKENS -t $THREADS\`) | $tg_tps | pp$n_in: $pp_tps tokens/s; other CPU ${lb_other}% |")
  LLAMA_ROWS+=("| **ratio statim / llama-bench (generation)** | **$ratio** | |")
fi

# --- report ----------------------------------------------------------------------------------------
echo
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "statim $("$BIN" --version 2>/dev/null | awk '{print $2}') (checkout $rev, binary built $(date -u -r "$BIN" +%H:%MZ)), $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1)), $(date -u +%Y-%m-%d)"
echo "server: --log-level warn, a fresh one (empty data dir) per run; echo parallel=2 max_queue=1000000; ${DURATION}s per run; SQLite WAL synchronous=FULL on $(df -PT "$WORK" | awk 'NR == 2 {print $2}'); CPU ${IDLE_BEFORE}% idle before the run"
if [ ${#ROWS[@]} -gt 0 ]; then
  echo
  echo "| benchmark | clients | throughput | p50 ms | p99 ms | server CPU | client CPU | other CPU | notes |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${ROWS[@]}"
fi
if [ ${#LLAMA_ROWS[@]} -gt 0 ]; then
  echo
  echo "Single-stream llama generation, $GGUF (random weights, SmolLM-135M shape, Q8_0), threads=$THREADS, n_ctx=2048:"
  echo
  echo "| measure | tokens/s | notes |"
  echo "|---|---|---|"
  printf '%s\n' "${LLAMA_ROWS[@]}"
fi
echo
echo "server/client CPU: % of one core over the run; other CPU: the machine's busy time less server and client (other load: above 10% the run was disturbed)."
[ ! -e "$WORK/disturbed" ] || { echo; echo "**warning: other load above 10% of a core during some runs; rerun on an idle machine.**"; }
