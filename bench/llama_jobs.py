#!/usr/bin/env python3
"""Single-stream llama throughput through the job API: one job at a time.

    llama_jobs.py --port P --model m --runs 3 --max-tokens 128 [--prompt TEXT] [--warmup 1]

Each job is POST /job (temperature 0, so greedy and repeatable) then GET /job/{id} every
--poll-ms until it is COMPLETED. Per run it records
  server_tps  result.tokens_per_s: generated tokens / (first sampled token -> last), the backend's figure;
  job_tps     tokens_out / the job's created_at -> finished_at: adds the store's commits, the claim
              and the prompt (time_to_first_token);
  wall_tps    tokens_out / (POST sent -> COMPLETED seen by this client): adds up to one poll delay.
The poll is slow (100 ms) on purpose: on a 2-core machine with threads=2 every GET preempts one of
the two ggml threads, and polling every 5 ms cost about 10% of the generation speed.
Prints `RESULT key=value ...` with medians, for bench/run.sh.
"""
import argparse
import datetime
import json
import statistics
import sys
import time
import urllib.request

DEFAULT_PROMPT = ("Once upon a time, in a small village near the sea, there lived an old man who "
                  "told stories to the children every evening. One day he said:")


def call(port, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, json.loads(resp.read())


def iso_seconds(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def run_job(args):
    t0 = time.perf_counter()
    status, job = call(args.port, "POST", "/job", {
        "model": args.model, "prompt": args.prompt,
        "params": {"max_tokens": args.max_tokens, "temperature": 0}})
    if status != 202:
        sys.exit(f"llama_jobs: POST /job -> {status} {job}")
    while True:
        time.sleep(args.poll_ms / 1000)
        _, job = call(args.port, "GET", f"/job/{job['id']}")
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            break
    wall = time.perf_counter() - t0
    if job["status"] != "COMPLETED":
        sys.exit(f"llama_jobs: job {job['id']} {job['status']}: {job.get('error')}")
    r = job["result"]
    job_s = iso_seconds(job["finished_at"]) - iso_seconds(job["created_at"])
    return {"server_tps": r["tokens_per_s"], "job_tps": r["tokens_out"] / job_s, "job_s": job_s,
            "wall_tps": r["tokens_out"] / wall, "wall_s": wall,
            "tokens_in": r["tokens_in"], "tokens_out": r["tokens_out"],
            "ttft_ms": r.get("time_to_first_token_ms", 0.0), "duration_ms": r.get("duration_ms", 0.0)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="m")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt", default=DEFAULT_PROMPT)
    ap.add_argument("--poll-ms", type=float, default=100)
    args = ap.parse_args()
    for _ in range(args.warmup):
        run_job(args)
    runs = [run_job(args) for _ in range(args.runs)]
    for i, r in enumerate(runs):
        print(f"llama_jobs: run {i + 1}: " + " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in r.items()), file=sys.stderr)
    med = {k: (statistics.median_low if isinstance(runs[0][k], int) else statistics.median)(r[k] for r in runs)
           for k in runs[0]}
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in med.items()))


if __name__ == "__main__":
    main()
