#!/usr/bin/env bash
# The build environment shows the host paths a command names (scripts/env.sh,
# statim_env_user_binds): `make run` with a data dir and a models dir outside the checkout (under
# /tmp) serves the models there and writes the database there, where it is found again after a
# restart; scripts/in-env commands given absolute paths read and write the host's files; a path the
# environment cannot show is refused with a message. Runs on the host (make test calls it first).
#   tests/env/test_paths.sh          (after make build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

t=$(mktemp -d /tmp/statim-paths.XXXXXX)
pid=""
# Stops `make run` and waits for the server itself to be gone: make may exit on the signal
# before statim has finished its shutdown (and closed the database).
stop() {
  if [ -n "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || break
      sleep 0.1
    done
    while pgrep -f "statim serve --port $port " >/dev/null 2>&1; do sleep 0.1; done
  fi
  pid=""
}
trap 'stop; rm -rf "$t"' EXIT
fail() { echo "tests/env/test_paths.sh: FAIL: $*" >&2; [ -f "$t/run.log" ] && tail -20 "$t/run.log" >&2; exit 1; }
ok() { echo "tests/env/test_paths.sh: ok: $*"; }

# --- scripts/in-env with absolute paths -----------------------------------------------------------
echo 'answer = 42' >"$t/given.toml"
[ "$(scripts/in-env cat "$t/given.toml")" = "answer = 42" ] || fail "in-env cannot read $t/given.toml"
scripts/in-env mkdir -p "$t/made/by/env"
[ -d "$t/made/by/env" ] || fail "in-env mkdir -p $t/made/by/env did not make it on the host"
scripts/in-env sh -c 'echo written >"$1"' sh "$t/made/out.txt"
[ "$(cat "$t/made/out.txt")" = written ] || fail "a file written inside the environment is not on the host"
(cd "$t/made" && "$OLDPWD/scripts/in-env" sh -c 'pwd >where.txt')
[ "$(cat "$t/made/where.txt")" = "$t/made" ] || fail "a command run from $t/made did not run there"
ok "in-env reads, makes and writes host paths under /tmp, and runs in a cwd there"
if statim_env_is_native; then
  echo "tests/env/test_paths.sh: note: native mode (no environment root): nothing to refuse"
else
  if out=$(scripts/in-env true /var/lib/statim-no-such-dir-$$ 2>&1); then fail "a path under /var/lib that does not exist was not refused"; fi
  [[ $out == *"cannot make /var/lib/statim-no-such-dir-$$ visible"*"mkdir -p"* ]] || fail "unclear refusal: $out"
  ok "a path that would cover the environment's /var/lib is refused: $out"
fi

# --- make run DATA_DIR=/tmp/... MODELS_DIR=/tmp/... -------------------------------------------------
mkdir -p "$t/models"
printf 'id = "outside"\nbackend = "echo"\n' >"$t/models/outside.toml"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run() {
  setsid make --no-print-directory run PORT="$port" DATA_DIR="$t/data" MODELS_DIR="$t/models" >>"$t/run.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || fail "make run exited"
    sleep 0.1
  done
  fail "make run did not answer /healthz"
}
run
models=$(curl -fsS "http://127.0.0.1:$port/models")
[[ $models == *'"id":"outside"'* ]] || fail "the model in $t/models is not served: $models"
job=$(curl -fsS -X POST "http://127.0.0.1:$port/job" -d '{"prompt": "kept where I said", "model": "outside"}')
id=$(sed -n 's/.*"id":\([0-9]*\).*/\1/p' <<<"$job")
[ -n "$id" ] || fail "no job id in $job"
for _ in $(seq 1 100); do
  [[ $(curl -fsS "http://127.0.0.1:$port/job/$id") == *'"status":"COMPLETED"'* ]] && break
  sleep 0.1
done
stop
[ -f "$t/data/statim.db" ] || fail "no database at $t/data/statim.db: $(ls -la "$t/data" 2>&1)"
# Committed: in the database file, or in its write-ahead log beside it.
grep -aqs "kept where I said" "$t/data/statim.db" "$t/data/statim.db-wal" ||
  fail "the job is not in $t/data/statim.db (or its -wal): $(ls -la "$t/data")"
[ ! -e uploads ] || fail "the server made an uploads/ folder in the checkout"
ok "make run serves the models of $t/models and keeps the jobs in $t/data/statim.db"
run
again=$(curl -fsS "http://127.0.0.1:$port/job/$id")
[[ $again == *'"prompt":"kept where I said"'*'"status":"COMPLETED"'* ]] || fail "after a restart: $again"
stop
ok "after a restart the job is read back from $t/data"
