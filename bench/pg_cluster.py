#!/usr/bin/env python3
"""Echo jobs end to end on the shared PostgreSQL store, side by side with SQLite, in one run.

Layouts, each on a fresh database and fresh statim processes:
  sqlite            one node on SQLite (the default deployment)
  pg-1node          one node (role all) on PostgreSQL
  pg-api+2workers   one API node and two worker nodes on PostgreSQL, on this same machine
For each: `jobclient loop` (closed loop: POST /job, poll GET /job/{id} until COMPLETED; with
--wait, POST /job?wait=30 answers the ended job, no polls) at each
client count, jobs/s and latency p50/p99; on PostgreSQL also the claim latency (a job's
created_at -> started_at, from the rows) p50/p99. Then the time for a job on a killed worker to run
again on another one (lease 2 s).

PostgreSQL runs with fsync on (durable commits, like SQLite's synchronous=FULL): started by
scripts/pg-test-server with STATIM_PG_OPTIONS="-c fsync=on"; BENCH_PG_OPTIONS adds server settings
(e.g. "-c synchronous_commit=off", an upper bound that is not durable).

  bench/pg_cluster.py [--seconds 10] [--clients 1,32,256]     (re-runs itself in scripts/in-env)
Prints a markdown table (and the raw RESULT lines on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("STATIM_BIN", ROOT / "build" / "statim"))
CLIENT = ROOT / ".bench" / "jobclient"


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


class Node:
    def __init__(self, work: Path, name: str, env: dict, role: str | None = None, parallel: int = 2):
        self.dir = work / name
        (self.dir / "models").mkdir(parents=True)
        (self.dir / "models" / "echo.toml").write_text(
            f'id = "echo"\nbackend = "echo"\nparallel = {parallel}\nmax_queue = 1000000\n')
        self.port = free_port()
        e = {k: v for k, v in os.environ.items() if not k.startswith("STATIM_")}
        e.update({"STATIM_AUTH_MODE": "off", **env})
        if role:
            e["STATIM_NODE_ROLE"] = role
        self.role = role
        self.log = open(self.dir / "log", "wb")
        self.proc = subprocess.Popen([str(BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--data-dir", str(self.dir / "data"), "--models-dir", str(self.dir / "models"),
                                      "--log-level", "warn"], stdout=self.log, stderr=subprocess.STDOUT, env=e)
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(self.port, "/readyz")["models"].get("echo") == ("unloaded" if role == "api" else "ready"):
                    break
            except Exception:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"node {name} did not start: {(self.dir / 'log').read_text()[-2000:]}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


def jobclient(port: int, clients: int, seconds: int, wait: bool = False) -> dict:
    out = subprocess.run([str(CLIENT), "loop", "--port", str(port), "--clients", str(clients), "--seconds",
                          str(seconds), "--model", "echo", *(["--wait", "30"] if wait else [])],
                         capture_output=True, text=True, timeout=seconds + 120)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT")), None)
    if not line:
        raise SystemExit(f"jobclient failed: {out.stderr[-2000:]}")
    log(line)
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def psql(url: str, sql: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-XAtq", "-F", "\t", "-c", sql], capture_output=True, text=True, check=True)
    return [l.split("\t") for l in out.stdout.splitlines() if l]


def claim_latency(url: str) -> tuple[float, float]:
    rows = psql(url, "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - created_at),"
                     " percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - created_at)"
                     " FROM jobs WHERE started_at IS NOT NULL")
    return float(rows[0][0]) / 1000, float(rows[0][1]) / 1000


def cpu_seconds(nodes, pgdir: Path) -> tuple[float, float]:
    """CPU seconds used so far by the statim nodes, and by every PostgreSQL server process."""
    tick = os.sysconf("SC_CLK_TCK")

    def proc_cpu(pid: int) -> float:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(f[11]) + int(f[12])) / tick
        except OSError:
            return 0.0
    statim = sum(proc_cpu(n.proc.pid) for n in nodes)
    pg = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if Path(d / "exe").resolve().name == "postgres":
                    pg += proc_cpu(int(d.name))
            except OSError:
                pass
    return statim, pg


def cpu_idle_pct() -> int:
    def read():
        return [int(x) for x in open("/proc/stat").readline().split()[1:]]
    a = read(); time.sleep(2); b = read()
    total = sum(b) - sum(a)
    return round(100 * ((b[3] + b[4]) - (a[3] + a[4])) / max(total, 1))


def main() -> None:
    if not os.environ.get("STATIM_IN_ENV"):
        os.execvp(str(ROOT / "scripts" / "in-env"), [str(ROOT / "scripts" / "in-env"), "python3", *sys.argv])
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", default="1,32,256")
    ap.add_argument("--layouts", default="sqlite,pg-1node,pg-api+2workers")
    ap.add_argument("--no-rescue", action="store_true", help="skip the killed-worker measurement")
    ap.add_argument("--wait", action="store_true",
                    help="clients POST /job?wait=30 (the answer is the ended job) instead of polling GET /job/{id}")
    ap.add_argument("--cpu", action="store_true", help="print the CPU seconds of statim and of PostgreSQL per row")
    ap.add_argument("--parallel", type=int, default=2, help="the echo model's parallel on every node that runs it")
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    CLIENT.parent.mkdir(exist_ok=True)
    if not CLIENT.exists() or (ROOT / "bench/jobclient.cpp").stat().st_mtime > CLIENT.stat().st_mtime:
        subprocess.run(["g++", "-std=c++23", "-O2", "-o", str(CLIENT), str(ROOT / "bench/jobclient.cpp")], check=True)
    idle = cpu_idle_pct()
    log(f"machine idle before the run: {idle}%")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="statim-pgbench."))
    work.chmod(0o755)
    pgdir = work / "pg"
    env = dict(os.environ, STATIM_PG_OPTIONS=("-c fsync=on " + os.environ.get("BENCH_PG_OPTIONS", "")).strip())
    url = subprocess.run([str(ROOT / "scripts/pg-test-server"), "start", str(pgdir)], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()
    rows = []
    try:
        dbs = iter(range(1, 1000))

        def new_db() -> str:
            name = f"bench_{next(dbs)}"
            psql(url, f"CREATE DATABASE {name}")
            return url.replace("postgresql:///statim?", f"postgresql:///{name}?")

        layouts = args.layouts.split(",")
        for c in clients:
            for layout in layouts:
                nodes: list[Node] = []
                db = None
                lw = work / f"{layout}-{c}"
                if layout == "sqlite":
                    nodes.append(Node(lw, "node", {}, parallel=args.parallel))
                else:
                    db = new_db()
                    shared = {"STATIM_STORE_URL": db, "STATIM_STORE_FILES_DIR": str(lw / "files"),
                              "STATIM_WEBHOOKS_SECRET": "bench"}
                    if layout == "pg-1node":
                        nodes.append(Node(lw, "node", shared, parallel=args.parallel))
                    else:
                        nodes.append(Node(lw, "api", shared, role="api"))
                        nodes.append(Node(lw, "w1", shared, role="worker", parallel=args.parallel))
                        nodes.append(Node(lw, "w2", shared, role="worker", parallel=args.parallel))
                try:
                    cpu0 = cpu_seconds(nodes, pgdir)
                    r = jobclient(nodes[0].port, c, args.seconds, args.wait)
                    if args.cpu:
                        cpu1 = cpu_seconds(nodes, pgdir)
                        log(f"{layout} {c} clients: CPU s statim {cpu1[0] - cpu0[0]:.1f}, postgres {cpu1[1] - cpu0[1]:.1f}")
                    claim = claim_latency(db) if db else None
                finally:
                    for n in nodes:
                        n.stop()
                rows.append((layout, c, r, claim))

        # A job on a killed worker: how long until another worker runs it again (lease 2 s).
        rescue_s = None
        if args.no_rescue:
            raise StopIteration
        db = new_db()
        lw = work / "rescue"
        shared = {"STATIM_STORE_URL": db, "STATIM_STORE_FILES_DIR": str(lw / "files"), "STATIM_WEBHOOKS_SECRET": "b",
                  "STATIM_JOBS_LEASE_SECONDS": "2"}
        api = Node(lw, "api", shared, role="api")
        w1 = Node(lw, "w1", shared, role="worker")
        req = urllib.request.Request(f"http://127.0.0.1:{api.port}/job", method="POST",
                                     data=json.dumps({"model": "echo", "prompt": "x",
                                                      "params": {"delay_ms": 600000}}).encode())
        job = json.loads(urllib.request.urlopen(req, timeout=10).read())["id"]
        while get(api.port, f"/job/{job}")["status"] != "PROCESSING":
            time.sleep(0.01)
        w2 = Node(lw, "w2", shared, role="worker")
        killed = time.monotonic()
        w1.stop(signal.SIGKILL)
        while get(api.port, f"/job/{job}")["attempts"] < 2:
            time.sleep(0.01)
        rescue_s = time.monotonic() - killed
        for n in (w2, api):
            n.stop()
    except StopIteration:
        pass
    finally:
        subprocess.run([str(ROOT / "scripts/pg-test-server"), "stop", str(pgdir)], env=env)
        shutil.rmtree(work, ignore_errors=True)

    print(f"Checkout `{commit}`, {time.strftime('%Y-%m-%d')}, machine {idle}% idle before the run; "
          f"{args.seconds} s per row; PostgreSQL {psql_version()} with fsync on; clients "
          f"{'POST /job?wait=30 (no polls)' if args.wait else 'poll GET /job/{id}'}.\n")
    print("| layout | clients | jobs/s | p50 ms | p99 ms | vs sqlite | claim p50 ms | claim p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = {c: float(r["jobs_per_s"]) for (l, c, r, _) in rows if l == "sqlite"}
    ratio = lambda js, c: f"{js / base[c]:.2f}" if c in base else "-"
    for layout, c, r, claim in rows:
        js = float(r["jobs_per_s"])
        cl = f"{claim[0]:.2f} | {claim[1]:.2f}" if claim else "- | -"
        print(f"| {layout} | {c} | {js:.0f} | {float(r['p50_ms']):.2f} | {float(r['p99_ms']):.2f} | "
              f"{ratio(js, c)} | {cl} | {r['errors']} |")
    if rescue_s is not None:
        print(f"\nA job on a worker killed with SIGKILL ran again on another worker {rescue_s:.2f} s later "
              f"(lease 2 s, lease renewal every lease/3).")


def psql_version() -> str:
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    return subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True).stdout.split()[-1]


if __name__ == "__main__":
    main()
