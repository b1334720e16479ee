#!/usr/bin/env python3
"""Where the time to first token goes under N streaming clients, for statim or llama-server.

Same servers, requests and closed-loop clients as llm_vs_llama_server.py (whose Server class and
prompts it uses), one server at a time:

  scripts/in-env python3 bench/llm_ttft_breakdown.py --kind statim --clients 16
  scripts/in-env python3 bench/llm_ttft_breakdown.py --kind llama-server --clients 16

statim: each stream's X-Statim-Job-Id header names its job; after the run GET /job/{id} gives
created_at, finished_at and the result's duration_ms and time_to_first_token_ms, so each request's
TTFT splits into
  create   POST sent -> the job's row (created_at): HTTP, checks, the insert
  join     created_at -> the job joins the batch (finished_at - duration_ms; the end's commit
           comes after the last token, so this reads up to ~1 ms late)
  prefill  joining -> first token sampled (the step that carries the prompt)
  deliver  the rest: the token's way to the client (negative when `join` reads late).
llama-server: its final chunk's timings.prompt_ms (from when its slot starts on the prompt to the
first token) and TTFT minus that (waiting for a slot's turn, HTTP).
The first quarter of the requests (warm-up) is left out.
"""
import argparse
import datetime
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm_vs_llama_server as bench  # noqa: E402


def request(server, prompt):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    wall, t0 = time.time(), time.monotonic()
    conn.request("POST", "/v1/completions", body=server.body(prompt), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    job_id, t_first, timings = resp.getheader("X-Statim-Job-Id"), None, None
    while line := resp.readline():
        if not line.startswith(b"data: ") or line[6:].strip() == b"[DONE]":
            continue
        obj = json.loads(line[6:])
        if t_first is None and any(c.get("text") for c in obj.get("choices") or ()):
            t_first = time.monotonic()
        timings = obj.get("timings") or timings
    conn.close()
    return {"wall": wall, "ttft": t_first - t0, "job_id": job_id, "timings": timings}


def pct(xs, p):
    xs = sorted(xs)
    return xs[int(p / 100 * (len(xs) - 1))]


def show(name, xs_ms):
    print(f"  {name:10s} p10 {pct(xs_ms, 10):7.1f}  p50 {pct(xs_ms, 50):7.1f}  p90 {pct(xs_ms, 90):7.1f}  "
          f"mean {statistics.mean(xs_ms):7.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=["statim", "llama-server"], default="statim")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=16)
    ap.add_argument("--statim-bin", default=os.path.join(bench.ROOT, "build/statim"))
    ap.add_argument("--gguf", default=os.path.join(bench.ROOT, ".bench/small135m.gguf"))
    a = ap.parse_args()
    args = argparse.Namespace(seconds=a.seconds, warmup=0, max_tokens=64, prompt_words=10, threads=2, parallel=16,
                              n_ctx=512, gguf=os.path.abspath(a.gguf), statim_bin=os.path.abspath(a.statim_bin),
                              keep_alive=False, abrupt_close=False, with_others=False)
    server = bench.Server(a.kind, args)
    server.start()
    try:
        records, stop = [], time.monotonic() + a.seconds

        def client(c):
            time.sleep(c * 0.15)  # staggered, as the main benchmark does
            k = 0
            while time.monotonic() < stop:
                records.append(request(server, bench.prompt_for(a.clients, c, k, args.prompt_words)))
                k += 1

        threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        records = records[len(records) // 4:]
        print(f"{a.kind}, {a.clients} clients, {len(records)} requests")
        show("TTFT", [1000 * r["ttft"] for r in records])
        if a.kind == "statim":
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            parts = {"create": [], "join": [], "prefill": [], "deliver": []}
            for r in records:
                conn.request("GET", f"/job/{r['job_id']}")
                job = json.loads(conn.getresponse().read())
                ts = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()  # noqa: E731
                created, joined = ts(job["created_at"]), ts(job["finished_at"]) - job["result"]["duration_ms"] / 1000
                prefill = job["result"]["time_to_first_token_ms"] / 1000
                parts["create"].append(1000 * (created - r["wall"]))
                parts["join"].append(1000 * (joined - created))
                parts["prefill"].append(1000 * prefill)
                parts["deliver"].append(1000 * (r["ttft"] - (joined - r["wall"]) - prefill))
            for name, xs in parts.items():
                show(name, xs)
        else:
            timed = [r for r in records if r["timings"]]
            show("prompt_ms", [r["timings"]["prompt_ms"] for r in timed])
            show("TTFT-prompt", [1000 * r["ttft"] - r["timings"]["prompt_ms"] for r in timed])
    finally:
        server.stop()


if __name__ == "__main__":
    main()
