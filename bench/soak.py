#!/usr/bin/env python3
"""Soak: a long run of mixed load, checking that the server's memory and open files stay flat,
that no job is stuck and that every accepted job ends in exactly one terminal state.

    scripts/in-env python3 bench/soak.py                    # 30 minutes (make soak); writes bench/soak.png
    scripts/in-env python3 bench/soak.py --minutes 1 --png ''   # the short form tests/e2e run

One statim process (build/statim or STATIM_BIN) with a random-weight llama model (4 slots, a short
queue so that bursts get 429), Tesseract OCR, YOLOX-Nano detection, espeak TTS and echo. Client
threads, each in a closed loop:
  stream     POST /v1/completions stream=true (64 tokens); a third hang up after a few chunks (of 400)
             (their job must end CANCELLED);
  ocr, detect  multipart uploads of the sample page / dog picture;
  tts        speech jobs, one at a time, whose webhooks go to a flaky receiver (30 % answer 500, 10 % hang 3 s,
             10 % close the connection at once);
  cancel     echo jobs of 0.5 s, half cancelled while queued or running;
  burst      20 llama jobs at once, over the queue's room: some answered 429 (counted).
Every 5 s: the server's RSS (VmRSS) and open file descriptors (/proc/PID/fd). Pass: after the
load, every accepted job ends (COMPLETED, FAILED or CANCELLED) - the backlog drains while it
makes progress; a job that has not moved for 60 s is stuck; each job with a
webhook has exactly one terminal event delivered or given up; the store holds exactly the
accepted jobs; RSS in the last third of the run is within 10 % (+8 MiB) of the middle third's
peak and open files within 10 of it. Writes a PNG of RSS and fds over time, and a JSON summary.
"""
from __future__ import annotations

import argparse
import http.server
import json
import os
import random
import socketserver
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from conftest import TERMINAL, Server, make_fixture, shared_models_dir, sse_events  # noqa: E402

SHARED = shared_models_dir()
PAGE = SHARED / "ocr" / "ocr-test-hello-world.png"
DOG = SHARED / "onnx" / "yolox-test-dog.jpg"
TERMINAL_EVENTS = {"completed", "failed", "cancelled"}


class FlakyReceiver:
    """A webhook receiver that fails in the ways real ones do."""

    def __init__(self, seed: int):
        rng = random.Random(seed)
        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                roll = rng.random()
                if roll < 0.1:  # close at once
                    self.close_connection = True
                    return
                if roll < 0.2:
                    time.sleep(3)
                code = 500 if roll < 0.5 else 200
                received.append({"code": code, "body": json.loads(body or b"{}")})
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


class Soak:
    def __init__(self, server: Server, receiver: FlakyReceiver, seed: int):
        self.s = server
        self.receiver = receiver
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted: dict[int, str] = {}  # job id -> client kind
        self.webhook_jobs: set[int] = set()
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def accept(self, job_id: int, kind: str) -> None:
        with self.lock:
            self.accepted[job_id] = kind

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        return s

    def submit(self, http: requests.Session, kind: str, **kw) -> dict | None:
        r = http.post(f"{self.s.url}/job", timeout=60, **kw)
        if r.status_code == 429:
            self.count("429")
            time.sleep(0.2)
            return None
        if r.status_code != 202:
            self.count(f"{kind} {r.status_code}")
            return None
        job = r.json()
        self.accept(job["id"], kind)
        return job

    def loop(self, fn) -> None:
        http = self.session()
        while not self.stop.is_set():
            try:
                fn(http)
            except requests.RequestException as e:
                self.count(f"client error {type(e).__name__}")
                time.sleep(0.2)

    def stream(self, http: requests.Session) -> None:
        prompt = f"Once upon a time {self.rng.random()}"
        hang_up = self.rng.random() < 1 / 3
        # A stream that hangs up asks for more tokens: the tiny model makes 64 in a few ms, which
        # can end the job before the server has read the client's close (the job then completes,
        # rightly). 400 give the close ~30 ms or more to arrive, on a model that never stops early.
        body = {"model": "lm", "prompt": prompt, "max_tokens": 400 if hang_up else 64, "stream": True}
        with http.post(f"{self.s.url}/v1/completions", json=body, stream=True, timeout=60) as r:
            if r.status_code == 429:
                self.count("429")
                time.sleep(0.2)
                return
            assert r.status_code == 200, r.text
            job_id = int(r.headers["X-Statim-Job-Id"])
            self.accept(job_id, "stream-hangup" if hang_up else "stream")
            for n, _ in enumerate(sse_events(r)):
                if hang_up and n >= 3:
                    break  # leaving closes the connection: the job is cancelled
        self.count("streams")

    def upload(self, model: str, field: str, path: Path, kind: str):
        data = path.read_bytes()

        def one(http: requests.Session) -> None:
            self.submit(http, kind, data={"model": model}, files={field: (path.name, data)})
            time.sleep(0.05)
        return one

    def tts(self, http: requests.Session) -> None:
        job = self.submit(http, "tts", json={"model": "tts", "prompt": "The soak goes on.",
                                              "webhook": self.receiver.url})
        if job:
            with self.lock:
                self.webhook_jobs.add(job["id"])
            # Closed loop, as a client that waits for its audio: the one-slot model sets the pace.
            end = time.monotonic() + 120
            while not self.stop.is_set() and time.monotonic() < end:
                if http.get(f"{self.s.url}/job/{job['id']}", timeout=30).json()["status"] in TERMINAL:
                    break
                time.sleep(0.2)

    def cancel(self, http: requests.Session) -> None:
        job = self.submit(http, "cancel", json={"model": "echo", "prompt": "c", "params": {"delay_ms": 500}})
        if job and self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0, 0.6))
            http.post(f"{self.s.url}/job/{job['id']}/cancel", timeout=30)
            self.count("cancels sent")

    def burst(self, http: requests.Session) -> None:
        threads = [threading.Thread(target=lambda: self.submit(
            self.session(), "burst", json={"model": "lm", "prompt": "burst", "params": {"max_tokens": 8}}))
            for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(5)


def sample(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def run(minutes: float, seed: int, root: Path) -> dict:
    receiver = FlakyReceiver(seed)
    s = Server(root / "srv", name="soak", env={"STATIM_WEBHOOKS_MAX_ATTEMPTS": "3",
                                               "STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "0.2",
                                               "STATIM_WEBHOOKS_RETRY_MAX_SECONDS": "1",
                                               "STATIM_WEBHOOKS_TIMEOUT_SECONDS": "1"})
    gguf = make_fixture("make_tiny_gguf.py", root / "tiny.gguf")
    s.add_model("lm", backend="llama", file=str(gguf), parallel=4, max_queue=12, params={"n_ctx": 512, "threads": 1})
    s.add_model("echo", parallel=2, max_queue=1000)
    s.add_model("tts", backend="tts", type="speech", parallel=1, max_queue=1000)
    kinds = ["stream", "stream", "tts", "cancel", "burst"]
    # The OCR and detection models as shipped (models/*.toml), their files from ../shared/models.
    for manifest, kind in (("ocr-tesseract.toml", "ocr"), ("yolox-nano.toml", "detect")):
        text = (ROOT / "models" / manifest).read_text().replace('"../../shared/models/', f'"{SHARED}/')
        text = text.replace('labels = "coco-labels.txt"', f'labels = "{ROOT / "models" / "coco-labels.txt"}"')
        if (PAGE if kind == "ocr" else DOG).exists():
            (s.models_dir / manifest).write_text(text.replace("max_input_bytes", "max_queue = 1000\nmax_input_bytes"))
            kinds.append(kind)
    s.start(timeout=60)
    soak = Soak(s, receiver, seed)
    fns = {"stream": soak.stream, "tts": soak.tts, "cancel": soak.cancel, "burst": soak.burst,
           "ocr": soak.upload("ocr-tesseract", "page", PAGE, "ocr"),
           "detect": soak.upload("yolox-nano", "image", DOG, "detect")}
    threads = [threading.Thread(target=soak.loop, args=(fns[k],), daemon=True) for k in kinds]
    samples: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    try:
        for t in threads:
            t.start()
        end = t0 + minutes * 60
        while time.monotonic() < end:
            rss, fds = sample(s.proc.pid)
            samples.append((time.monotonic() - t0, rss, fds))
            assert s.running, "the server died"
            time.sleep(min(5, max(0.5, end - time.monotonic())))
        soak.stop.set()
        for t in threads:
            t.join(timeout=90)
        load_end = time.monotonic() - t0
        # Every accepted job ends: the backlog drains for as long as it makes progress; what has
        # not moved for 60 s is stuck.
        pending, ends, by_kind = set(soak.accepted), {}, {}
        last_progress = time.monotonic()
        while pending and time.monotonic() - last_progress < 60:
            before = len(pending)
            for job_id in sorted(pending):
                job = s.job(job_id)
                if job["status"] in TERMINAL:
                    pending.discard(job_id)
                    ends[job["status"]] = ends.get(job["status"], 0) + 1
                    key = f"{soak.accepted[job_id]} {job['status']}"
                    by_kind[key] = by_kind.get(key, 0) + 1
            if len(pending) < before:
                last_progress = time.monotonic()
            if pending:
                time.sleep(0.5)
        drain_seconds = round(time.monotonic() - t0 - load_end, 1)
        # Exactly one terminal webhook event per job with a webhook (delivered or given up).
        wait_webhooks = time.monotonic() + 60
        bad_webhooks = {}
        for job_id in sorted(soak.webhook_jobs - pending):
            while True:
                deliveries = s.get(f"/job/{job_id}/webhooks").json()["deliveries"]
                terminal = [d for d in deliveries if d["event"] in TERMINAL_EVENTS]
                if all(d["status"] != "pending" for d in terminal) or time.monotonic() > wait_webhooks:
                    break
                time.sleep(0.5)
            if len(terminal) != 1:
                bad_webhooks[job_id] = [(d["event"], d["status"]) for d in terminal]
        stored = s.jobs(limit=1)["total"]
        rss, fds = sample(s.proc.pid)
        samples.append((time.monotonic() - t0, rss, fds))
    finally:
        soak.stop.set()
        s.cleanup()
        receiver.stop()
    # Flat: the last third of the load against the middle third (the first is warm-up: models,
    # caches, pools). The sample taken after the checks (which read every job back) is reported
    # apart: reading tens of thousands of rows grows SQLite's page caches, which is not a leak.
    after_checks = samples.pop()
    n = len(samples)
    mid = samples[n // 3: 2 * n // 3] or samples
    last = samples[2 * n // 3:] or samples
    rss_mid, rss_last = max(x[1] for x in mid), max(x[1] for x in last)
    fd_mid, fd_last = max(x[2] for x in mid), max(x[2] for x in last)
    return {
        "minutes": minutes, "seed": seed, "accepted": len(soak.accepted), "stored": stored, "ends": ends,
        "by_kind": by_kind, "stuck": sorted(pending), "bad_webhooks": bad_webhooks, "counts": soak.counts,
        "webhook_requests": len(receiver.received),
        "drain_seconds": drain_seconds,
        "rss_mib": {"middle_peak": round(rss_mid / 2**20, 1), "last_peak": round(rss_last / 2**20, 1),
                    "after_checks": round(after_checks[1] / 2**20, 1)},
        "fds": {"middle_peak": fd_mid, "last_peak": fd_last},
        "rss_flat": rss_last <= rss_mid * 1.10 + 8 * 2**20, "fds_flat": fd_last <= fd_mid + 10,
        "samples": samples,
    }


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [x[0] / 60 for x in summary["samples"]]  # during the load
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, [x[1] / 2**20 for x in summary["samples"]], color="tab:blue", label="RSS (MiB)")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)", color="tab:blue")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(t, [x[2] for x in summary["samples"]], color="tab:orange", label="open fds")
    ax2.set_ylabel("open file descriptors", color="tab:orange")
    ax2.set_ylim(bottom=0)
    ax.set_title(f"statim soak: {summary['accepted']} jobs in {summary['minutes']:g} min, mixed load")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--png", default=str(ROOT / "bench" / "soak.png"), help="'' for no plot")
    ap.add_argument("--json", help="write the summary here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="statim-soak-") as tmp:
        summary = run(args.minutes, args.seed, Path(tmp))
    if args.png:
        plot(summary, args.png)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    ok = (not summary["stuck"] and not summary["bad_webhooks"] and summary["stored"] == summary["accepted"]
          and summary["rss_flat"] and summary["fds_flat"])
    printable = {k: v for k, v in summary.items() if k != "samples"}
    print(json.dumps(printable, indent=2))
    print(f"soak: {'OK' if ok else 'FAIL'}: {summary['accepted']} jobs in {args.minutes:g} min, ends {summary['ends']}; "
          f"RSS peak {summary['rss_mib']['middle_peak']} -> {summary['rss_mib']['last_peak']} MiB, "
          f"fds {summary['fds']['middle_peak']} -> {summary['fds']['last_peak']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
