#!/usr/bin/env python3
"""statim vs llama-server: streamed /v1/completions under concurrent load, side by side.

    scripts/in-env python3 bench/llm_vs_llama_server.py               # ~10 minutes; prints a markdown table
    scripts/in-env python3 bench/llm_vs_llama_server.py --seconds 5 --warmup 2 --repeats 1   # smoke test

Both servers load the same GGUF through the same libllama with the same threads (2) and the same
number of parallel slots (16), each with the same context per slot (512 tokens; statim's n_ctx is
per job, llama-server's -c is the total, so llama-server gets -c 16*512). They run one after the
other, never at the same time, each a fresh process (statim: an empty data dir) per run.

Load: N client threads (1, 4, 16), closed loop: each sends POST /v1/completions with
"stream": true, a distinct ~32-token prompt, max_tokens 64, temperature 0, and sends the next one
when the previous stream has ended. Clients start staggered (half a single-request latency apart)
so that they do not run in lockstep. Each run: --warmup seconds of load that are not counted,
then a --seconds measurement window; requests *sent* in the window count for the latencies, and
the window's generated tokens give the throughput (each request's 64 tokens are spread evenly
over its first-text -> [DONE] interval and the part inside the window is counted). No request is
sent after the window; those in flight are awaited. A new connection per request for both
servers (llama-server closes the connection after a streamed response anyway); --keep-alive
reuses connections where the server allows it.

Per run it measures
  tokens/s   aggregate generated tokens per second in the window;
  TTFT       POST sent -> first chunk with non-empty text (p50, p90);
  latency    POST sent -> "data: [DONE]" received (p50, p90);
  CPU        server process, this client process, and other (machine busy less both), % of one core.
Every request must end with exactly --max-tokens generated tokens, read from the final usage
chunk (stream_options.include_usage; llama-server also sends `timings.predicted_n`): a request
that does not is an error, and the run is reported with it. A run during which the server exits
(crashes) is dropped, run again (--retries) and counted under the table.

Orders alternate per level and per repeat (statim first at level 1 in repeat 1, llama-server first
at level 4, ...), so every level gets the orders AB, BA, AB, BA with the default --repeats 4.
The table shows the median over the repeats. Ratios: statim / llama-server for tokens/s, and
llama-server / statim for TTFT and latency, so ratio >= 1.0 always means statim is at least as good.

Fairness notes: llama-server gets "cache_prompt": false (the prompts are distinct, so a cache
would serve only their first tokens; statim's prompt cache, added later, is measured with
conversations in llm_conversations.py) and "ignore_eos": true (the fixture never samples EOS;
this only makes sure);
statim gets neither field (it refuses fields it does not know). Prompts are identical for both
servers: request k of client c at level N gets the same text on both.
"""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORDS = ("the a of and to in is was that for on with as by at from his her they this which one had "
         "river mountain small old village ship morning light garden window letter market winter "
         "bridge forest music paper stone road city island teacher doctor brother sister friend "
         "evening summer coffee table story answer question night language history water fire "
         "walked found said began turned opened watched carried remembered wrote asked").split()


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def prompt_for(level, client, k, n_words):
    """A distinct prompt, the same for both servers; about n_words * 1.1 tokens."""
    rng = random.Random(f"{level}/{client}/{k}")
    words = [rng.choice(WORDS) for _ in range(n_words)]
    return f"Story {level}-{client}-{k}: " + " ".join(words) + "."


# ---- CPU accounting ------------------------------------------------------------------------------

def machine_busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system (idle iowait) irq softirq steal
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def proc_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime stime (fields 14, 15)


def self_cpu_s():
    t = os.times()
    return t.user + t.system


class CpuWindow:
    def __init__(self, pid):
        self.pid = pid

    def start(self):
        self.t0, self.m0, self.s0, self.c0 = time.monotonic(), machine_busy_ticks(), proc_ticks(self.pid), self_cpu_s()

    def stop(self):
        t1, m1, s1, c1 = time.monotonic(), machine_busy_ticks(), proc_ticks(self.pid), self_cpu_s()
        dt = t1 - self.t0
        server = 100 * (s1 - self.s0) / TICK / dt
        client = 100 * (c1 - self.c0) / dt
        machine = 100 * (m1 - self.m0) / TICK / dt
        self.result = {"server_cpu": server, "client_cpu": client, "other_cpu": max(0.0, machine - server - client)}


# ---- servers -------------------------------------------------------------------------------------

class Server:
    def __init__(self, kind, args):
        self.kind, self.args = kind, args
        self.port = free_port()
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix=f"statim-vs-{kind}.")

    def start(self):
        a = self.args
        logf = open(os.path.join(self.tmp, "server.log"), "wb")
        if self.kind == "statim":
            models = os.path.join(self.tmp, "models")
            os.makedirs(models)
            with open(os.path.join(models, "m.toml"), "w") as f:
                f.write(f'id = "m"\nbackend = "llama"\nfile = "{a.gguf}"\nparallel = {a.parallel}\n'
                        f"[params]\nn_ctx = {a.n_ctx}\nthreads = {a.threads}\n")
            if a.with_others:
                for name, text in OTHERS.items():
                    with open(os.path.join(models, name + ".toml"), "w") as f:
                        f.write(f'id = "{name}"\n' + text)
            cmd = [a.statim_bin, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                   "--data-dir", os.path.join(self.tmp, "data"), "--models-dir", models, "--log-level", "warn"]
        else:
            cmd = ["llama-server", "-m", a.gguf, "--host", "127.0.0.1", "--port", str(self.port),
                   "-t", str(a.threads), "-tb", str(a.threads), "-np", str(a.parallel),
                   "-c", str(a.parallel * a.n_ctx)]
        self.cmd = cmd
        # llama-server runs without an API key here, so statim does too (auth.mode off).
        env = {**os.environ, "STATIM_AUTH_MODE": "off"}
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        sys.exit(f"bench: {self.kind} did not become ready; log:\n" + open(os.path.join(self.tmp, "server.log")).read())

    def ready(self):
        url = f"http://127.0.0.1:{self.port}"
        if self.kind == "statim":
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                models = {m["id"]: m for m in json.load(r)["models"]}
            state = models["m"]["state"]
            if state == "failed":
                raise SystemExit(f"bench: statim could not load the model: {models['m']}")
            return state == "ready"
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return False  # 503 while loading

    def body(self, prompt):
        b = {"model": "m", "prompt": prompt, "max_tokens": self.args.max_tokens,
             "temperature": getattr(self.args, "temperature", 0.0),
             "stream": True, "stream_options": {"include_usage": True}}
        if self.kind == "llama-server":
            b.update({"cache_prompt": False, "ignore_eos": True})
        return json.dumps(b).encode()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the client ----------------------------------------------------------------------------------

# --abrupt-close: close the connection as soon as "data: [DONE]" has arrived, without reading the
# chunked body's terminating chunk (a stress variant: statim before 403b681 could abort with
# `trantor::Channel::remove(): Assertion 'events_ == kNoneEvent' failed` under streaming load, with
# or without it; see bench/README.md). Off by default.
ABRUPT_CLOSE = False
KEEP_ALIVE = False  # --keep-alive


def one_request(conn, server, prompt):
    """POST, read the SSE stream to the end.
    Returns (t_send, t_first_text, t_end, generated tokens, text length, error, prompt tokens)."""
    body = server.body(prompt)
    t_send = time.monotonic()
    conn.request("POST", "/v1/completions", body=body,
                 headers={"Content-Type": "application/json", "Accept": "text/event-stream"})
    resp = conn.getresponse()
    if resp.status != 200:
        return t_send, None, time.monotonic(), 0, 0, f"HTTP {resp.status}: {resp.read()[:200]!r}", 0
    t_first = t_end = None
    tokens = None
    prompt_tokens = 0
    text_len = 0
    error = None
    while True:
        line = resp.readline()
        if not line:
            break
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            t_end = time.monotonic()
            break
        obj = json.loads(data)
        if "error" in obj:
            error = str(obj["error"])[:200]
            continue
        for ch in obj.get("choices") or ():
            text = ch.get("text") or ""
            if text:
                text_len += len(text)
                if t_first is None:
                    t_first = time.monotonic()
        usage = obj.get("usage")
        if usage and usage.get("completion_tokens") is not None:
            tokens = usage["completion_tokens"]
            prompt_tokens = usage.get("prompt_tokens", 0)
        elif tokens is None and obj.get("timings", {}).get("predicted_n") is not None:
            tokens = obj["timings"]["predicted_n"]
    if t_end is None:
        t_end = time.monotonic()
        error = error or "the stream ended without [DONE]"
    if not ABRUPT_CLOSE:
        # Read the response to its end (the chunked body's last, empty chunk) before closing, as an
        # HTTP client does: see --abrupt-close. Not part of the latency.
        try:
            resp.read()
        except (OSError, http.client.HTTPException):
            pass
    if tokens is None and error is None:
        error = "the stream ended without usage"
    return t_send, t_first, t_end, tokens, text_len, error, prompt_tokens


def client_loop(server, level, client, start_at, stop_at, out):
    # By default a new connection per request, for both servers: llama-server closes the connection
    # after a streamed response anyway, and connecting to 127.0.0.1 costs ~0.1 ms (inside TTFT,
    # for both alike). With --keep-alive a connection is reused while the server keeps it open;
    # a request sent on a connection the server has closed is sent again on a new one.
    time.sleep(max(0.0, start_at - time.monotonic()))
    k = 0
    conn = None
    while time.monotonic() < stop_at:
        prompt = prompt_for(level, client, k, server.args.prompt_words)
        for attempt in (0, 1):
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
            try:
                out.append(one_request(conn, server, prompt))
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                conn.close()
                conn = None
                if reused and attempt == 0:
                    continue  # the server had closed the kept-alive connection: send it again
                out.append((time.monotonic(), None, time.monotonic(), 0, 0, f"{type(e).__name__}: {e}", 0))
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = None
                out.append((time.monotonic(), None, time.monotonic(), 0, 0, f"{type(e).__name__}: {e}", 0))
                break
        if out and out[-1][5] and server.proc.poll() is not None:
            return  # the server is gone: stop instead of spinning on refused connections
        if conn is not None and not KEEP_ALIVE:
            conn.close()
            conn = None
        k += 1
    if conn is not None:
        conn.close()


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[i]


# --with-others: the other models of a realistic deployment, loaded in statim's process beside "m",
# each of which runs one job before the measurement (set up in main()).
OTHERS = {}
OTHER_JOBS = []  # (model, form field or None, file)


def run_others(server):
    url = f"http://127.0.0.1:{server.port}"
    for model, field, path in OTHER_JOBS:
        if field is None:
            body = json.dumps({"model": model, "prompt": "Once upon a time", "params": {"max_tokens": 16}}).encode()
            req = urllib.request.Request(url + "/job", data=body, headers={"Content-Type": "application/json"})
            job = json.load(urllib.request.urlopen(req, timeout=60))
        else:
            out = subprocess.run(["curl", "-s", "-f", "-F", f"model={model}", "-F", f"{field}=@{path}", url + "/job"],
                                 capture_output=True, text=True, check=True).stdout
            job = json.loads(out)
        while job["status"] not in ("COMPLETED", "FAILED", "CANCELLED"):
            time.sleep(0.02)
            job = json.load(urllib.request.urlopen(f"{url}/job/{job['id']}", timeout=60))
        if job["status"] != "COMPLETED":
            sys.exit(f"bench: the {model} job did not complete: {job}")


def run_level(kind, args, level):
    server = Server(kind, args)
    server.start()
    try:
        # One request alone first: page the weights in, first-time allocations.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        r = one_request(conn, server, "Warm up: " + prompt_for(0, 0, 0, args.prompt_words))
        conn.close()
        if r[5]:
            sys.exit(f"bench: {kind} warm-up request failed: {r[5]}")
        if kind == "statim" and args.with_others:
            run_others(server)
        # Staggered starts: clients that all start at once would stay in lockstep (every request
        # has the same 64 tokens), prefilling 16 prompts in one step and finishing together, again
        # and again. Starting them half a single-request latency apart spreads the arrivals as
        # they would be in steady state (the request rate at N clients is near 2/single latency).
        single = r[2] - r[0]
        gap = min(single / 2, 0.8 * args.warmup / max(1, level - 1))
        t_start = time.monotonic()
        t0 = t_start + args.warmup
        t1 = t0 + args.seconds
        outs = [[] for _ in range(level)]
        threads = [threading.Thread(target=client_loop, args=(server, level, c, t_start + c * gap, t1, outs[c]))
                   for c in range(level)]
        for t in threads:
            t.start()
        cpu = CpuWindow(server.proc.pid)
        time.sleep(max(0.0, t0 - time.monotonic()))
        cpu.start()
        time.sleep(max(0.0, t1 - time.monotonic()))
        cpu.stop()
        for t in threads:
            t.join()
        died = server.proc.poll()  # exited (crashed) during the run
        if died is not None:
            tail = open(os.path.join(server.tmp, "server.log"), errors="replace").read()[-1500:]
            log(f"{kind} exited during the run (status {died}); the end of its log:\n{tail}")
    finally:
        server.stop()
    reqs = [r for o in outs for r in o]
    errors = [r for r in reqs if r[5] or r[1] is None]
    wrong = [r for r in reqs if not r[5] and r[3] != args.max_tokens]
    window = [r for r in reqs if t0 <= r[0] < t1 and not r[5] and r[1] is not None]
    tokens_in_window = 0.0
    for s, f, e, n, _, err, _ in reqs:
        if err or f is None or not n:
            continue
        span = e - f
        overlap = max(0.0, min(e, t1) - max(f, t0))
        tokens_in_window += n * (overlap / span if span > 0 else (1.0 if t0 <= e < t1 else 0.0))
    res = {
        "server": kind, "level": level, "cmd": server.cmd, "crashed": died is not None,
        "tps": tokens_in_window / args.seconds,
        "ttft_p50": 1000 * pct([r[1] - r[0] for r in window], 50),
        "ttft_p90": 1000 * pct([r[1] - r[0] for r in window], 90),
        "lat_p50": 1000 * pct([r[2] - r[0] for r in window], 50),
        "lat_p90": 1000 * pct([r[2] - r[0] for r in window], 90),
        "requests": len(window), "errors": len(errors), "wrong_count": len(wrong),
        "tokens_min": min((r[3] or 0 for r in reqs if not r[5]), default=0),
        "tokens_max": max((r[3] or 0 for r in reqs if not r[5]), default=0),
        "prompt_tokens": statistics.mean(r[6] for r in reqs if not r[5]) if any(not r[5] for r in reqs) else 0,
        **cpu.result,
    }
    if errors:
        log(f"{kind} level {level}: {len(errors)} errors, first: {errors[0][5]}")
    log(f"{kind:12s} clients={level:2d}: {res['tps']:7.1f} tok/s  ttft p50 {res['ttft_p50']:7.1f} ms  "
        f"latency p50 {res['lat_p50']:7.1f} ms  requests {res['requests']}  tokens/request "
        f"{res['tokens_min']}-{res['tokens_max']} (prompt {res['prompt_tokens']:.1f})  errors {res['errors']}  CPU server {res['server_cpu']:.0f}% "
        f"client {res['client_cpu']:.1f}% other {res['other_cpu']:.1f}%")
    return res


def idle_pct(seconds=2.0):
    with open("/proc/stat") as f:
        a = [int(x) for x in f.readline().split()[1:]]
    time.sleep(seconds)
    with open("/proc/stat") as f:
        b = [int(x) for x in f.readline().split()[1:]]
    d = [y - x for x, y in zip(a, b)]
    return 100 * (d[3] + d[4]) / max(1, sum(d))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,4,16", help="concurrent clients per level (comma-separated)")
    ap.add_argument("--seconds", type=float, default=15, help="measurement window per run")
    ap.add_argument("--warmup", type=float, default=5, help="load before the window, not counted")
    ap.add_argument("--repeats", type=int, default=4, help="runs per server and level (orders alternate: ABBA...)")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-words", type=int, default=10, help="words per prompt (10: ~32 tokens with this GGUF)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=16)
    ap.add_argument("--n-ctx", type=int, default=512, help="context per slot")
    ap.add_argument("--gguf", default=os.path.join(ROOT, ".bench/small135m.gguf"))
    ap.add_argument("--statim-bin", default=os.path.join(ROOT, "build/statim"))
    ap.add_argument("--servers", default="statim,llama-server")
    ap.add_argument("--json", help="also write every run's numbers here")
    ap.add_argument("--retries", type=int, default=3,
                    help="a run during which the server exits is dropped and run again, up to this many times")
    ap.add_argument("--keep-alive", action="store_true",
                    help="reuse each client's connection while the server keeps it open (default: a new one per request)")
    ap.add_argument("--with-others", action="store_true",
                    help="statim also loads a second 135M llama, the whisper fixture, YOLOX-Nano and Tesseract "
                         "(those present under ../shared/models), each running one job before the measurement")
    ap.add_argument("--abrupt-close", action="store_true",
                    help="close each connection right after [DONE] (stress; see README)")
    args = ap.parse_args()
    global ABRUPT_CLOSE, KEEP_ALIVE
    ABRUPT_CLOSE = args.abrupt_close
    KEEP_ALIVE = args.keep_alive
    args.gguf = os.path.abspath(args.gguf)
    levels = [int(x) for x in args.levels.split(",")]
    servers = args.servers.split(",")
    if not os.path.exists(args.gguf):
        log(f"generating {args.gguf}")
        subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_tiny_gguf.py"), args.gguf,
                        "--preset", "small135m"], check=True)
    if args.with_others:
        shared = os.environ.get("STATIM_SHARED_MODELS", os.path.join(os.path.dirname(ROOT), "shared", "models"))
        gguf_b = os.path.join(ROOT, ".bench/small135m-seed2.gguf")
        whisper = os.path.join(ROOT, ".bench/whisper-tiny-random.bin")
        if not os.path.exists(gguf_b):
            subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_tiny_gguf.py"), gguf_b,
                            "--preset", "small135m", "--seed", "2"], check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(whisper):
            subprocess.run([sys.executable, os.path.join(ROOT, "tests/fixtures/make_tiny_whisper.py"), whisper],
                           check=True, stdout=subprocess.DEVNULL)
        OTHERS["lm-b"] = f'backend = "llama"\nfile = "{gguf_b}"\nparallel = {args.parallel}\n[params]\nn_ctx = {args.n_ctx}\nthreads = {args.threads}\n'
        OTHER_JOBS.append(("lm-b", None, None))
        jfk = os.path.join(shared, "audio", "jfk.wav")
        if os.path.exists(jfk):
            OTHERS["whisper"] = f'backend = "whisper"\nfile = "{whisper}"\n'
            OTHER_JOBS.append(("whisper", "audio", jfk))
        yolox = os.path.join(shared, "onnx", "yolox_nano.onnx")
        if os.path.exists(yolox):
            text = open(os.path.join(ROOT, "models", "yolox-nano.toml")).read().replace("../../shared/models", shared)
            OTHERS["yolox-nano"] = text.split("\n", 2)[2].replace(
                'labels = "coco-labels.txt"', f'labels = "{os.path.join(ROOT, "models", "coco-labels.txt")}"')
            OTHER_JOBS.append(("yolox-nano", "image", os.path.join(shared, "onnx", "yolox-test-dog.jpg")))
        tess = os.path.join(shared, "ocr", "tesseract", "eng.traineddata")
        if os.path.exists(tess):
            OTHERS["ocr"] = f'backend = "ocr"\nfile = "{tess}"\n'
            OTHER_JOBS.append(("ocr", "page", os.path.join(shared, "ocr", "ocr-test-hello-world.png")))
        log(f"statim also serves {sorted(OTHERS)}, one job each before every measurement")
    bin_mtime = os.path.getmtime(args.statim_bin)
    idle_before = idle_pct()
    if idle_before < 90:
        log(f"warning: the machine is only {idle_before:.0f}% idle before the run; numbers will be low and noisy")

    runs = []
    crashes = []  # runs during which the server exited (see README: a statim crash)
    for rep in range(args.repeats):
        for li, level in enumerate(levels):
            order = servers if (rep + li) % 2 == 0 else servers[::-1]
            for kind in order:
                for attempt in range(1 + args.retries):
                    res = run_level(kind, args, level)
                    if not res["crashed"]:
                        break
                    crashes.append(dict(res, repeat=rep))
                    log(f"{kind} crashed during the run: its numbers are dropped"
                        + ("; running it again" if attempt < args.retries else ""))
                runs.append(dict(res, repeat=rep))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "crashed_runs": crashes}, f, indent=1)

    def med(kind, level, key):
        return statistics.median(r[key] for r in runs if r["server"] == kind and r["level"] == level)

    def mx(kind, level, key):
        return max(r[key] for r in runs if r["server"] == kind and r["level"] == level)

    print()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    ver = subprocess.run(["llama-server", "--version"], capture_output=True, text=True)
    ver = next((l for l in (ver.stdout + ver.stderr).splitlines() if l.startswith("version")), "?")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"statim checkout {rev or 'unknown'} (binary built "
          f"{time.strftime('%H:%M:%SZ', time.gmtime(bin_mtime))}), llama-server {ver}, "
          f"{os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d %H:%MZ', time.gmtime())}")
    print(f"{os.path.basename(args.gguf)}; threads={args.threads}, {args.parallel} slots of {args.n_ctx} tokens; "
          f"{args.max_tokens} generated tokens per request, distinct prompts of "
          f"{statistics.mean(r['prompt_tokens'] for r in runs):.1f} tokens on average; {args.warmup:g} s warm-up + "
          f"{args.seconds:g} s window per run; median of {args.repeats} run(s) per cell, orders alternating; "
          f"CPU {idle_before:.0f}% idle before the run")
    print()
    print("| clients | server | tokens/s | TTFT p50 ms | latency p50 ms | TTFT p90 ms | latency p90 ms | requests "
          "| tokens/request | errors | server CPU | client CPU | other CPU (max) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for level in levels:
        for kind in servers:
            rs = [r for r in runs if r["server"] == kind and r["level"] == level]
            tmin, tmax = min(r["tokens_min"] for r in rs), max(r["tokens_max"] for r in rs)
            print(f"| {level} | {kind} | {med(kind, level, 'tps'):.1f} | {med(kind, level, 'ttft_p50'):.1f} | "
                  f"{med(kind, level, 'lat_p50'):.1f} | {med(kind, level, 'ttft_p90'):.1f} | "
                  f"{med(kind, level, 'lat_p90'):.1f} | {sum(r['requests'] for r in rs)} | "
                  f"{tmin if tmin == tmax else f'{tmin}-{tmax}'} | {sum(r['errors'] + r['wrong_count'] for r in rs)} | "
                  f"{med(kind, level, 'server_cpu'):.0f}% | {med(kind, level, 'client_cpu'):.1f}% | "
                  f"{mx(kind, level, 'other_cpu'):.1f}% |")
    if servers == ["statim", "llama-server"] or servers == ["llama-server", "statim"]:
        print()
        print("Ratios (>= 1.0: statim at least as good): tokens/s statim / llama-server; TTFT and latency "
              "llama-server / statim.")
        print()
        print("| clients | tokens/s ratio | TTFT p50 ratio | latency p50 ratio |")
        print("|---|---|---|---|")
        for level in levels:
            s = lambda key: med("statim", level, key)
            l = lambda key: med("llama-server", level, key)
            print(f"| {level} | **{s('tps') / l('tps'):.2f}** | **{l('ttft_p50') / s('ttft_p50'):.2f}** | "
                  f"**{l('lat_p50') / s('lat_p50'):.2f}** |")
    other = max(r["other_cpu"] for r in runs)
    if os.path.getmtime(args.statim_bin) != bin_mtime:
        print(f"\n**warning: {args.statim_bin} was rebuilt during the run: its runs mix two binaries.**")
    if crashes:
        by = {}
        for r in crashes:
            by.setdefault((r["server"], r["level"]), 0)
            by[(r["server"], r["level"])] += 1
        print()
        print(f"**{len(crashes)} run(s) ended with the server exiting (crash) and were run again: "
              + ", ".join(f"{k[0]} at {k[1]} clients: {v}" for k, v in sorted(by.items())) + ".**")
    print()
    print("server/client CPU: % of one core over the window (the machine has "
          f"{os.cpu_count() * 100}%); other CPU: machine busy time less server and client, the largest of the runs.")
    if other > 10:
        print(f"\n**warning: other load reached {other:.0f}% of a core during some runs; rerun on an idle machine.**")
    bad = sum(r["errors"] + r["wrong_count"] for r in runs)
    if bad:
        print(f"\n**warning: {bad} requests failed or did not generate exactly {args.max_tokens} tokens.**")
        sys.exit(1)


if __name__ == "__main__":
    main()
