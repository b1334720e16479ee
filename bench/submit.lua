-- wrk script: durable submissions. Every request is POST /job for the echo model; statim answers
-- 202 only after the job's row is committed to SQLite (WAL, synchronous=FULL), so requests/s here
-- is committed jobs/s. Any other status counts as an error (wrk: "Non-2xx or 3xx responses").
--   wrk -t2 -c32 -d10s --latency -s bench/submit.lua http://127.0.0.1:PORT/job
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"echo","prompt":"hello from wrk","params":{}}'

-- One machine-readable line for bench/run.sh (latencies in ms).
function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
    summary.requests, s, summary.requests / s, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
