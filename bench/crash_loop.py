#!/usr/bin/env python3
"""Crash loop: kill -9 at random moments under submission load, many times over; then every job
the server answered 2xx for must exist and end in a terminal state.

    scripts/in-env python3 bench/crash_loop.py                # 50 cycles (~3 minutes)
    scripts/in-env python3 bench/crash_loop.py --cycles 5     # what tests/e2e/test_crash_loop.py runs

One statim process (build/statim, or STATIM_BIN) with an echo model (jobs of 0-40 ms) and a
random-weight llama model (16-token jobs, 4 slots). Four client threads submit without pause
(POST /job and POST /v1/completions, a third of them with an Idempotency-Key that a retry after a
connection error reuses). Each cycle the server runs for a random 0.1-1.5 s of that load, then
gets SIGKILL; the next cycle starts it again on the same data dir. After the last cycle it is
started once more and left to finish. Printed (and with --json, written as JSON): accepted jobs,
how each ended, and the jobs lost (accepted but absent or never ended): must be 0.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import TERMINAL, Server, make_fixture  # noqa: E402


class Load:
    """Closed-loop submitters; remembers every job id answered 2xx."""

    def __init__(self, server: Server, threads: int, seed: int):
        self.server = server
        self.accepted: dict[int, str] = {}  # id -> how it was submitted
        self.errors = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.rng = random.Random(seed)
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def post(self, path: str, body: dict, headers: dict) -> dict | None:
        if self.server.port is None:
            return None
        req = urllib.request.Request(f"http://127.0.0.1:{self.server.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if 200 <= r.status < 300:
                    return {"status": r.status, "job_id": r.headers.get("X-Statim-Job-Id"),
                            "body": json.loads(r.read() or b"null")}
        except (urllib.error.URLError, ConnectionError, OSError, json.JSONDecodeError):
            with self.lock:
                self.errors += 1
        return None

    def run(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            kind = (n + i) % 3
            headers = {}
            if kind == 0:
                path, body = "/job", {"model": "echo", "prompt": f"c{n}-{i}",
                                      "params": {"delay_ms": (n * 7 + i) % 40}}
            elif kind == 1:
                path, body = "/job", {"model": "lm", "prompt": f"Once upon a time {n} {i}",
                                      "params": {"max_tokens": 16, "temperature": 0}}
            else:
                path, body = "/v1/completions", {"model": "lm", "prompt": f"The cat {n} {i}", "max_tokens": 8}
                headers = {"Idempotency-Key": f"crash-{n}-{i}"}
            for attempt in range(3 if headers else 1):  # a keyed request is retried after a crash
                r = self.post(path, body, headers)
                if r:
                    job_id = int(r["job_id"]) if r["job_id"] else r["body"]["id"]
                    with self.lock:
                        self.accepted[job_id] = path
                    break
                if self.stop.is_set():
                    break
                time.sleep(0.05)
            if self.server.port is None:
                time.sleep(0.02)


def crash_loop(cycles: int, seed: int, root: Path) -> dict:
    rng = random.Random(seed)
    server = Server(root / "srv", name="crash")
    server.add_model("echo", parallel=2, max_queue=100000)
    gguf = make_fixture("make_tiny_gguf.py", root / "tiny.gguf")
    server.add_model("lm", backend="llama", file=str(gguf), parallel=4, max_queue=100000,
                     params={"n_ctx": 512, "threads": 1})
    load = Load(server, 4, seed)
    kills = []
    try:
        server.start(timeout=60)
        for t in load.threads:
            t.start()
        for _ in range(cycles):
            time.sleep(rng.uniform(0.1, 1.5))
            accepted_before = len(load.accepted)
            server.kill9()
            kills.append(accepted_before)
            server.start(timeout=60)
        time.sleep(0.5)
        load.stop.set()
        for t in load.threads:
            t.join(timeout=20)
        # Left to finish: every accepted job must reach an end.
        pending = set(load.accepted)
        ends: dict[str, int] = {}
        reasons: dict[str, int] = {}
        lost = []
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for job_id in sorted(pending):
                r = server.get(f"/job/{job_id}")
                if r.status_code == 404:
                    lost.append(job_id)
                    pending.discard(job_id)
                    continue
                job = r.json()
                if job["status"] in TERMINAL:
                    pending.discard(job_id)
                    ends[job["status"]] = ends.get(job["status"], 0) + 1
                    if job["status"] != "COMPLETED":
                        reason = (job.get("error") or {}).get("message", "")[:80]
                        reasons[reason] = reasons.get(reason, 0) + 1
            if pending:
                time.sleep(0.2)
        total = server.jobs(limit=1)["total"]
    finally:
        load.stop.set()
        server.cleanup()
    return {"cycles": cycles, "seed": seed, "accepted": len(load.accepted), "jobs_in_store": total,
            "ends": ends, "not_completed_reasons": reasons, "lost": sorted(lost), "never_ended": sorted(pending),
            "client_errors": load.errors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--json", help="write the summary here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="statim-crash-") as tmp:
        t0 = time.monotonic()
        summary = crash_loop(args.cycles, args.seed, Path(tmp))
        summary["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    ok = not summary["lost"] and not summary["never_ended"]
    print(f"crash loop: {summary['cycles']} kill -9 cycles, {summary['accepted']} jobs accepted, "
          f"{summary['ends']}, lost {len(summary['lost'])}, never ended {len(summary['never_ended'])}: "
          f"{'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
