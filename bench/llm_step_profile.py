#!/usr/bin/env python3
"""Where a batched LLM's decode steps spend their time (issue #12, target 1): statim with the 135M
fixture under N closed-loop streaming clients (as bench/llm_vs_llama_server.py runs them), and the
per-step phases from GET /metrics (statim_batch_step_seconds_total{phase}) over the window:

  decode  llama_decode: the model's graph (ggml), for every sequence's token and prompt chunks
  sample  llama_sampler_sample (+ logprobs) for every sequence that produced logits
  text    detokenizing, stop strings, tool-call triggers, what is safe to stream
  events  token events to streams, and the jobs that ended (their results handed to the store)
  media   encoding images and audio (0 here)
  outside time between steps (the scheduler's loop: joining new jobs, claims, the compute budget)

    scripts/in-env python3 bench/llm_step_profile.py                  # levels 1, 4, 16; ~1 minute
    scripts/in-env python3 bench/llm_step_profile.py --levels 16 --seconds 20 --with-llama-bench

--with-llama-bench adds llama-bench's pp16 / tg1 rate on the same GGUF and threads (the engine's
speed on one 16-token batch, without a server) for comparison.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm_vs_llama_server as bench  # noqa: E402

PHASES = ("decode", "sample", "text", "events", "media")


def scrape(port: int) -> dict:
    """The batch counters of model "m": {"steps", "tokens", phase: seconds}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {"steps": 0.0, "tokens": 0.0, **{p: 0.0 for p in PHASES}}
    for line in text.splitlines():
        m = re.match(r'(statim_batch_\w+)\{([^}]*)\} (\S+)$', line)
        if not m or 'model="m"' not in m.group(2):
            continue
        name, labels, value = m.group(1), m.group(2), float(m.group(3))
        if name == "statim_batch_steps_total":
            out["steps"] = value
        elif name == "statim_batch_step_tokens_total":
            out["tokens"] = value
        elif name == "statim_batch_step_seconds_total":
            phase = re.search(r'phase="(\w+)"', labels).group(1)
            out[phase] = value
    return out


def run_level(args, level: int) -> dict:
    server = bench.Server("statim", args)
    server.start()
    try:
        conn = bench.http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        r = bench.one_request(conn, server, "Warm up: " + bench.prompt_for(0, 0, 0, args.prompt_words))
        conn.close()
        if r[5]:
            sys.exit(f"bench: warm-up request failed: {r[5]}")
        single = r[2] - r[0]
        gap = min(single / 2, 0.8 * args.warmup / max(1, level - 1))
        t_start = time.monotonic()
        t0, t1 = t_start + args.warmup, t_start + args.warmup + args.seconds
        outs = [[] for _ in range(level)]
        threads = [threading.Thread(target=bench.client_loop, args=(server, level, c, t_start + c * gap, t1, outs[c]))
                   for c in range(level)]
        for t in threads:
            t.start()
        time.sleep(max(0.0, t0 - time.monotonic()))
        before, w0 = scrape(server.port), time.monotonic()
        time.sleep(max(0.0, t1 - time.monotonic()))
        after, w1 = scrape(server.port), time.monotonic()
        for t in threads:
            t.join()
    finally:
        server.stop()
    d = {k: after[k] - before[k] for k in after}
    window = w1 - w0
    steps = max(d["steps"], 1.0)
    inside = sum(d[p] for p in PHASES)
    errors = sum(1 for o in outs for x in o if x[5])
    res = {"level": level, "window_s": window, "steps_per_s": d["steps"] / window, "tokens_per_step": d["tokens"] / steps,
           **{f"{p}_ms": 1000 * d[p] / steps for p in PHASES},
           "outside_ms": 1000 * max(0.0, window - inside) / steps, "step_ms": 1000 * window / steps,
           "decode_share": d["decode"] / window, "errors": errors,
           "generated_per_s": sum(x[3] for o in outs for x in o if not x[5] and t0 <= x[0] < t1) / args.seconds}
    bench.log(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}))
    return res


def llama_bench(args) -> dict:
    """llama-bench's pp16 and tg1 tokens/s on the same GGUF and threads."""
    out = subprocess.run(["llama-bench", "-m", args.gguf, "-t", str(args.threads), "-p", "16", "-n", "16", "-r", "3",
                          "-o", "json"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    return {("pp16" if r["n_prompt"] else "tg16"): r["avg_ts"] for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="0: greedy; above: the server's default chain (top_k 40, top_p 0.95, min_p 0.05)")
    ap.add_argument("--prompt-words", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--gguf", default=os.path.join(bench.ROOT, ".bench/small135m.gguf"))
    ap.add_argument("--statim-bin", default=os.path.join(bench.ROOT, "build/statim"))
    ap.add_argument("--with-llama-bench", action="store_true")
    args = ap.parse_args()
    args.with_others = False
    args.gguf = os.path.abspath(args.gguf)
    if not os.path.exists(args.gguf):
        subprocess.run([sys.executable, os.path.join(bench.ROOT, "tests/fixtures/make_tiny_gguf.py"), args.gguf,
                        "--preset", "small135m"], check=True)
    rows = [run_level(args, int(x)) for x in args.levels.split(",")]
    print("| clients | steps/s | tokens/step | decode ms | sample ms | text ms | events ms | outside ms | "
          "step ms | decode share | generated tokens/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['level']} | {r['steps_per_s']:.1f} | {r['tokens_per_step']:.1f} | {r['decode_ms']:.2f} | "
              f"{r['sample_ms']:.3f} | {r['text_ms']:.3f} | {r['events_ms']:.3f} | {r['outside_ms']:.3f} | "
              f"{r['step_ms']:.2f} | {100 * r['decode_share']:.1f} % | {r['generated_per_s']:.1f} |")
    if args.with_llama_bench:
        lb = llama_bench(args)
        print(f"\nllama-bench (same GGUF, -t {args.threads}): pp16 {lb.get('pp16', 0):.1f} tokens/s, "
              f"tg16 {lb.get('tg16', 0):.1f} tokens/s")


if __name__ == "__main__":
    main()
