#!/usr/bin/env python3
"""File jobs (OCR, detection) through statim's job API from N concurrent clients.

    file_jobs.py --port P --model m --file IMAGE --jobs-per-client 20 --clients 2 [--wait 30 | --poll-ms 5]
    file_jobs.py --command "tesseract IMAGE stdout ..." --jobs-per-client 20 --clients 2

With --command, each job is that command run to its end instead (the direct baseline: no server).

Each client (one keep-alive connection) loops: POST /job?wait=SECONDS (multipart, the image), whose answer is the ended job;
or, with --wait 0, POST /job then GET /job/{id} every --poll-ms until COMPLETED. Per job it
records wall = POST sent -> COMPLETED seen, and server = the job's
created_at -> finished_at (the store's commits, the queue and the backend, without the client's
polling). One warm-up job first. Prints `RESULT jobs=.. jobs_per_s=.. p50_ms=.. p90_ms=..
server_p50_ms=.. server_p90_ms=.. run_p50_ms=..` (run: the backend's own result.duration_ms where
it reports one; jobs_per_s: all jobs / the wall time of the whole run).
"""
import argparse
import datetime
import http.client
import json
import subprocess
import threading
import time
import uuid

_local = threading.local()


def connection(port):
    """One keep-alive connection per client thread, as an HTTP client library keeps."""
    local = _local.__dict__
    if local.get("port") != port:
        local["conn"], local["port"] = http.client.HTTPConnection("127.0.0.1", port, timeout=90), port
    return local["conn"]


def request(port, method, path, body=None, headers=None):
    for attempt in (1, 2):
        conn = connection(port)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            _local.__dict__.clear()  # the server closed the idle connection: open another, once
            if attempt == 2:
                raise
    if r.status not in (200, 202):
        raise RuntimeError(f"{method} {path} -> {r.status}: {data[:500]!r}")
    return json.loads(data)


def post_file(port, model, name, data, wait):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    query = f"?wait={wait:g}" if wait > 0 else ""  # 200: the job ended within the wait; 202: poll
    return request(port, "POST", f"/job{query}", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def get_job(port, id):
    return request(port, "GET", f"/job/{id}")


def seconds(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def one_job(args, data):
    t0 = time.perf_counter()
    if args.command:
        r = subprocess.run(args.command, shell=True, capture_output=True)
        if r.returncode != 0:
            raise SystemExit(f"file_jobs: {args.command} -> {r.returncode}: {r.stderr.decode()[-500:]}")
        wall = (time.perf_counter() - t0) * 1000
        return wall, wall, wall
    job = post_file(args.port, args.model, args.file, data, args.wait)
    while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
        time.sleep(args.poll_ms / 1000)
        job = get_job(args.port, job["id"])
    wall = (time.perf_counter() - t0) * 1000
    if job["status"] != "COMPLETED":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job.get('error')}")
    server = (seconds(job["finished_at"]) - seconds(job["created_at"])) * 1000
    return wall, server, (job.get("result") or {}).get("duration_ms", server)


def quantile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int)
    ap.add_argument("--model")
    ap.add_argument("--file")
    ap.add_argument("--command")
    ap.add_argument("--jobs-per-client", type=int, default=20)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--wait", type=float, default=0, help="seconds the POST waits for the end (0: poll)")
    ap.add_argument("--poll-ms", type=float, default=5)
    args = ap.parse_args()
    data = open(args.file, "rb").read() if args.file else b""
    one_job(args, data)  # warm-up
    walls, servers, runs, lock = [], [], [], threading.Lock()

    errors = []

    def client():
        try:
            for _ in range(args.jobs_per_client):
                w, s, r = one_job(args, data)
                with lock:
                    walls.append(w)
                    servers.append(s)
                    runs.append(r)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread, which fails the run
            with lock:
                errors.append(f"{type(e).__name__}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"file_jobs: {len(errors)} client(s) failed: {errors[0]}")
    print(f"RESULT jobs={len(walls)} jobs_per_s={len(walls) / secs:.2f} p50_ms={quantile(walls, .5):.2f} "
          f"p90_ms={quantile(walls, .9):.2f} server_p50_ms={quantile(servers, .5):.2f} "
          f"server_p90_ms={quantile(servers, .9):.2f} run_p50_ms={quantile(runs, .5):.2f}")


if __name__ == "__main__":
    main()
