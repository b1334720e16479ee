#!/usr/bin/env python3
"""Agent-style conversations: statim vs llama-server on /v1/chat/completions, where each request
re-sends the whole conversation so far (what chat clients and agents do).

    scripts/in-env python3 bench/llm_conversations.py                 # ~4 minutes; prints a markdown table
    scripts/in-env python3 bench/llm_conversations.py --clients 1 --conversations 1 --turns 3   # smoke test
    scripts/in-env python3 bench/llm_conversations.py --shared-system --clients 8 --parallel 8 --conversations 4
                                        # one shared system prompt, one question per request

Each client runs --conversations conversations one after the other; a conversation is a distinct
system prompt of --system-words words (~1.3 tokens a word with this GGUF), then --turns turns: a new
user message of ~20 words, the answer streamed (--max-tokens tokens, temperature 0), the answer
appended to the history as the assistant's turn. Both servers load the same GGUF (the SmolLM-135M
shape, random weights) with the same threads and slots (--parallel, --n-ctx per slot), one after
the other, each a fresh process (statim: an empty data dir, every request a durable job).

llama-server keeps its defaults: "cache_prompt" on (a slot keeps the KV of its last prompt and the
next request picks the slot most like it), so the next turn decodes only what follows the earlier
ones. statim does the same since its prompt cache (tokens_cached, usage.prompt_tokens_details).
The run "llama-server, cache_prompt off" shows what every turn costs without a cache.

Per server: TTFT of the first turn and of the later turns (p50, p90: the later turns are where a
cache helps), the wall time of all conversations, and the prompt tokens decoded vs sent (statim:
usage prompt_tokens - cached_tokens; llama-server: timings.prompt_n). Ratios llama-server / statim
(>= 1.0: statim at least as fast).

--shared-system: every request of every client is the same system prompt (--system-words words)
and a new ~20-word question, one turn each (--conversations requests per client): the system
prompt is the prefix a cache can serve, across clients. "TTFT turn 1" is then each client's first
request, "later turns" the rest.
"""
import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llm_vs_llama_server import ROOT, Server, idle_pct, log, pct  # noqa: E402

WORDS = ("time cat river stone light garden window paper music bread winter market story green "
         "silver yellow quiet little mountain letter friend morning evening forest ocean city road").split()


def words(rng, n):
    return " ".join(rng.choice(WORDS) for _ in range(n))


def chat(conn, server, messages, max_tokens, cache_prompt):
    body = {"model": "m", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    if server.kind == "llama-server":
        body.update({"cache_prompt": cache_prompt, "ignore_eos": True})
    t0 = time.monotonic()
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    text, ttft, usage, timings = "", None, {}, {}
    while True:
        line = resp.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        obj = json.loads(data)
        for ch in obj.get("choices") or ():
            piece = (ch.get("delta") or {}).get("content") or ""
            if piece and ttft is None:
                ttft = time.monotonic() - t0
            text += piece
        usage = obj.get("usage") or usage
        timings = obj.get("timings") or timings
    resp.read()
    sent = usage.get("prompt_tokens", 0)
    if server.kind == "statim":
        decoded = sent - (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    else:
        decoded = timings.get("prompt_n", sent)
    return text, ttft if ttft is not None else time.monotonic() - t0, sent, decoded


def client(server, args, c, out):
    rng = random.Random(1000 + c)
    shared = "Shared. " + words(random.Random(7), args.system_words)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    for conv in range(args.conversations):
        system = shared if args.shared_system else f"Conversation {c}.{conv}. " + words(rng, args.system_words)
        messages = [{"role": "system", "content": system}]
        for turn in range(1 if args.shared_system else args.turns):
            messages.append({"role": "user", "content": words(rng, 20) + "?"})
            conn.close()  # a new connection per request (llama-server closes streamed ones anyway)
            text, ttft, sent, decoded = chat(conn, server, messages, args.max_tokens, server.cache_prompt)
            out.append({"turn": conv if args.shared_system else turn, "ttft": ttft, "sent": sent, "decoded": decoded})
            messages.append({"role": "assistant", "content": text})


def run(kind, args, cache_prompt=True):
    server = Server(kind, SimpleNamespace(**vars(args), with_others=False))
    server.cache_prompt = cache_prompt
    server.start()
    try:
        # One warm-up request (not counted).
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        chat(conn, server, [{"role": "user", "content": "hello"}], 4, cache_prompt)
        out, threads = [], []
        t0 = time.monotonic()
        for c in range(args.clients):
            t = threading.Thread(target=client, args=(server, args, c, out))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
    finally:
        server.stop()
    first = [r["ttft"] * 1000 for r in out if r["turn"] == 0]
    later = [r["ttft"] * 1000 for r in out if r["turn"] > 0]
    return {"server": kind if cache_prompt else f"{kind}, cache_prompt off", "wall_s": wall,
            "first_p50": pct(first, 50), "later_p50": pct(later, 50), "later_p90": pct(later, 90),
            "sent": sum(r["sent"] for r in out), "decoded": sum(r["decoded"] for r in out), "requests": len(out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--conversations", type=int, default=2, help="per client, one after the other")
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--system-words", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--n-ctx", type=int, default=2048, help="context per slot")
    ap.add_argument("--gguf", default=os.path.join(ROOT, ".bench/small135m.gguf"))
    ap.add_argument("--statim-bin", default=os.path.join(ROOT, "build/statim"))
    ap.add_argument("--no-cache-run", action="store_true", help="skip the llama-server run without its cache")
    ap.add_argument("--shared-system", action="store_true",
                    help="one system prompt shared by every request, one question per request (see above)")
    args = ap.parse_args()
    args.gguf = os.path.abspath(args.gguf)
    if not os.path.exists(args.gguf):
        log(f"generating {args.gguf}")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_tiny_gguf.py"), args.gguf,
                        "--preset", "small135m"], check=True)
    log(f"machine idle before the run: {idle_pct():.0f}%")
    rows = [run("statim", args), run("llama-server", args)]
    if not args.no_cache_run:
        rows.append(run("llama-server", args, cache_prompt=False))
    what = "requests, one shared system prompt" if args.shared_system else f"conversations x {args.turns} turns"
    print(f"\n{args.clients} clients x {args.conversations} {what}, system prompt "
          f"{args.system_words} words, {args.max_tokens} tokens per answer, {args.parallel} slots of {args.n_ctx}\n")
    print("| server | wall s | TTFT turn 1 p50 ms | TTFT later turns p50 ms | later p90 ms | prompt tokens sent | "
          "decoded | requests |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['server']} | {r['wall_s']:.2f} | {r['first_p50']:.0f} | {r['later_p50']:.0f} | "
              f"{r['later_p90']:.0f} | {r['sent']} | {r['decoded']} | {r['requests']} |")
    s, l = rows[0], rows[1]
    print(f"\nratios llama-server / statim: wall {l['wall_s'] / s['wall_s']:.2f}, later-turn TTFT p50 "
          f"{l['later_p50'] / s['later_p50']:.2f}, first-turn TTFT p50 {l['first_p50'] / s['first_p50']:.2f}")


if __name__ == "__main__":
    main()
