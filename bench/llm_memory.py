#!/usr/bin/env python3
"""Memory of batched LLMs (issue #12, target 4): what one more 16-slot batch costs, and that the
weights are mapped once whatever the concurrency.

For each layout a fresh statim process (auth off, temp data dir) loads the 135M Q8_0 fixture and
runs one job per model; then /proc/PID/smaps_rollup is read:
  - slots: one model with parallel = 1, 4, 16 (n_ctx 512 per slot): the KV cache and compute
    buffers grow with the slots, the weights do not;
  - two models: two manifests on the same GGUF, 16 slots each: a second batch of the same weights.
RSS counts a file's pages once per mapping; PSS splits shared pages between processes; the
anonymous part (heap: KV cache, compute buffers) is what each batch adds for itself.

    scripts/in-env python3 bench/llm_memory.py
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llm_vs_llama_server as bench  # noqa: E402

GGUF = os.path.join(bench.ROOT, ".bench/small135m.gguf")
BIN = os.path.join(bench.ROOT, "build/statim")


def smaps(pid: int) -> dict:
    """MiB: Rss, Pss, Anonymous, the file-backed Rss (Rss - Anonymous)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0].rstrip(":") in ("Rss", "Pss", "Anonymous"):
                out[parts[0].rstrip(":")] = int(parts[1]) / 1024
    out["File"] = out["Rss"] - out["Anonymous"]
    return out


def run(models: dict[str, int]) -> dict:
    """models: id -> parallel, all on GGUF. Returns the process's memory after one job per model."""
    tmp = tempfile.mkdtemp(prefix="statim-mem.")
    try:
        os.makedirs(os.path.join(tmp, "models"))
        for mid, parallel in models.items():
            with open(os.path.join(tmp, "models", f"{mid}.toml"), "w") as f:
                f.write(f'id = "{mid}"\nbackend = "llama"\nfile = "{GGUF}"\nparallel = {parallel}\n'
                        f"[params]\nn_ctx = 512\nthreads = 2\n")
        port = bench.free_port()
        proc = subprocess.Popen([BIN, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                                 os.path.join(tmp, "data"), "--models-dir", os.path.join(tmp, "models"),
                                 "--log-level", "warn"], env={**os.environ, "STATIM_AUTH_MODE": "off"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url + "/models", timeout=2) as r:
                        states = {m["id"]: m["state"] for m in json.load(r)["models"]}
                    if all(states.get(m) == "ready" for m in models):
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            for mid, parallel in models.items():
                # As many jobs as slots at once, so that every sequence has been used.
                body = json.dumps({"model": mid, "prompt": "Once upon a time " * 20, "max_tokens": 32,
                                   "temperature": 0, "n": min(parallel, 16)}).encode()
                req = urllib.request.Request(url + "/v1/completions", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=300) as r:
                    assert len(json.load(r)["choices"]) == min(parallel, 16)
            time.sleep(0.5)
            return smaps(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if not os.path.exists(GGUF):
        subprocess.run([sys.executable, os.path.join(bench.ROOT, "tests/fixtures/make_tiny_gguf.py"), GGUF,
                        "--preset", "small135m"], check=True)
    size = os.path.getsize(GGUF) / 2**20
    rows = [("1 model, parallel 1", {"m": 1}), ("1 model, parallel 4", {"m": 4}),
            ("1 model, parallel 16", {"m": 16}), ("2 models on the same GGUF, 16 each", {"a": 16, "b": 16})]
    results = []
    for name, models in rows:
        mem = run(models)
        bench.log(name, mem)
        results.append((name, mem))
    print(f"GGUF {size:.1f} MiB (`{os.path.relpath(GGUF, bench.ROOT)}`), n_ctx 512 per slot\n")
    print("| layout | RSS MiB | PSS MiB | anonymous MiB | file-backed RSS MiB |")
    print("|---|---|---|---|---|")
    for name, m in results:
        print(f"| {name} | {m['Rss']:.1f} | {m['Pss']:.1f} | {m['Anonymous']:.1f} | {m['File']:.1f} |")
    one, sixteen, two = results[0][1], results[2][1], results[3][1]
    print(f"\nper extra slot (1 -> 16): {(sixteen['Anonymous'] - one['Anonymous']) / 15:.2f} MiB anonymous; "
          f"a second 16-slot batch of the same weights: +{two['Anonymous'] - sixteen['Anonymous']:.1f} MiB anonymous, "
          f"+{two['File'] - sixteen['File']:.1f} MiB file-backed")


if __name__ == "__main__":
    main()
