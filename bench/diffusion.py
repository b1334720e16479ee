#!/usr/bin/env python3
"""Image generation latency through the job API, on the tiny SD-Turbo fixture (or a real export).

    scripts/in-env python3 bench/diffusion.py [--export DIR] [--size 512] [--steps 1 4] [--runs 5]

Writes the fixture (tests/fixtures/make_tiny_diffusion.py --variant sd-turbo) unless --export
names a folder, starts a fresh statim (STATIM_BIN, default build/statim) on a free port with one
`diffusion` model, and per step count runs --runs jobs one at a time (after one warm-up), each
POST /job then GET /job/{id} every 20 ms until COMPLETED. Per configuration it prints medians of
  total_ms   POST sent -> COMPLETED seen (adds up to one poll interval)
  job_ms     the job's started_at -> finished_at (the worker's whole run, incl. the PNG and its store)
  step_ms    result.step_ms: denoising time per step (UNet, guidance, scheduler; the VAE decode
             is counted in the last step's share)
  encode_ms  result.encode_ms: the text encoder(s)
  png_ms     result.png_ms: encoding the PNG (libpng)
  store_ms   result.store_ms: storing it as the job's artifact (sha256, write, fsync)
as a markdown table row.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def call(port: int, method: str, path: str, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        return resp.status, json.loads(resp.read())


def seconds(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(port: int, model: str, params: dict) -> dict:
    t0 = time.perf_counter()
    status, job = call(port, "POST", "/job", {"model": model, "prompt": "A cat in space", "params": params})
    if status != 202:
        sys.exit(f"diffusion bench: POST /job -> {status} {job}")
    while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        time.sleep(0.02)
        _, job = call(port, "GET", f"/job/{job['id']}")
    total = (time.perf_counter() - t0) * 1000
    if job["status"] != "COMPLETED":
        sys.exit(f"diffusion bench: job ended {job['status']}: {job.get('error')}")
    r = job["result"]
    return {"total_ms": total, "job_ms": (seconds(job["finished_at"]) - seconds(job["started_at"])) * 1000,
            "step_ms": r["step_ms"], "encode_ms": r["encode_ms"], "png_ms": r["png_ms"], "store_ms": r["store_ms"]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", type=Path, help="a diffusers ONNX export folder (default: the tiny sd-turbo fixture)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    binary = Path(os.environ.get("STATIM_BIN", REPO / "build" / "statim"))
    with tempfile.TemporaryDirectory(prefix="statim-bench-diffusion-", dir=REPO / "build") as tmp:
        root = Path(tmp)
        export = a.export
        if export is None:
            export = root / "sd-turbo"
            subprocess.run([sys.executable, str(REPO / "tests/fixtures/make_tiny_diffusion.py"), str(export),
                            "--variant", "sd-turbo"], check=True, stdout=subprocess.DEVNULL)
        models = root / "models"
        models.mkdir()
        (models / "m.toml").write_text(
            f'id = "m"\nbackend = "diffusion"\nfile = "{export.resolve()}"\nparallel = 1\n\n[params]\n'
            f"threads = {a.threads}\nmax_width = {max(a.size, 1024)}\nmax_height = {max(a.size, 1024)}\n")
        port = free_port()
        log = open(root / "statim.log", "wb")
        proc = subprocess.Popen([str(binary), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                                 str(root / "data"), "--models-dir", str(models), "--log-level", "warn"],
                                stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "STATIM_AUTH_MODE": "off"})
        try:
            for _ in range(600):
                try:
                    _, body = call(port, "GET", "/models")
                    state = body["models"][0]["state"]
                    if state == "failed":
                        sys.exit(f"diffusion bench: the model failed: {body['models'][0].get('reason')}")
                    if state != "loading":
                        break
                except urllib.error.HTTPError as e:
                    sys.exit(f"diffusion bench: GET /models -> {e.code}")
                except OSError:
                    pass  # not listening yet
                time.sleep(0.1)
            print(f"| export | size | steps | runs | total ms (p50) | job ms (p50) | step ms (p50) | encode ms (p50) | png ms (p50) | store ms (p50) |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for steps in a.steps:
                params = {"width": a.size, "height": a.size, "steps": steps, "seed": 1}
                run_job(port, "m", params)  # warm-up: first-run allocations of ONNX Runtime
                rows = [run_job(port, "m", params) for _ in range(a.runs)]
                med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
                name = "tiny sd-turbo fixture" if a.export is None else a.export.name
                print(f"| {name} | {a.size}x{a.size} | {steps} | {a.runs} | {med['total_ms']:.1f} | {med['job_ms']:.1f} "
                      f"| {med['step_ms']:.2f} | {med['encode_ms']:.2f} | {med['png_ms']:.1f} | {med['store_ms']:.1f} |")
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
