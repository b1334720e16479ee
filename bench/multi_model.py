#!/usr/bin/env python3
"""Many models in one statim process: does using one model slow the others down?

    scripts/in-env python3 bench/multi_model.py                 # ~6 minutes; prints a markdown table
    scripts/in-env python3 bench/multi_model.py --seconds 5 --warmup 2   # quicker, noisier

One statim process serves a realistic deployment: the ~135M-parameter Q8_0 fixture ("lm", 16
slots, 2 threads), a second llama model of the same shape and another seed ("lm-b"), the
random-weight whisper fixture, YOLOX-Nano and Tesseract OCR (the last two from ../shared/models,
skipped with a note where absent). Load: N client threads, closed loop, each sending
POST /v1/completions (64 tokens, temperature 0, a distinct prompt) and the next one when the answer
arrives; tokens/s counts each request's tokens spread over its send -> answer interval, the part
inside the --seconds window (after --warmup seconds of load).

It measures, in this order, on the same process:
  solo          "lm" at 1 and 16 clients, nothing else has run yet;
  after X       the same, after one job of model X (each other kind in turn);
  together      "lm" and "lm-b" under 16 clients each at once: the aggregate tokens/s;
  lifecycle     time to load and unload each model (POST /models/{id}/load|unload) and the
                process's RSS before the load, after it, and after the unload (when the server
                has the lifecycle routes); then "lm" once more, with every other model unloaded.
Ratios are against the solo figure of the same run (after/solo, together/solo).
Targets (issue #7): after others >= 0.95; together >= 0.9.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("STATIM_SHARED_MODELS", os.path.join(os.path.dirname(ROOT), "shared", "models"))
WORDS = ("river mountain small old village ship morning light garden window letter market winter bridge "
         "forest music paper stone road city island teacher doctor brother sister friend evening summer").split()


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def fixture(path, script, *args):
    """Writes `path` with a fixture generator from tests/fixtures unless it exists."""
    if not os.path.exists(path):
        log(f"generating {path}")
        subprocess.run([sys.executable, script, path, *args], check=True, stdout=subprocess.DEVNULL)
    return path


class Statim:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="statim-multi.")
        self.models = os.path.join(self.tmp, "models")
        os.makedirs(self.models)
        self.port = None
        self.proc = None

    def manifest(self, id, text):
        with open(os.path.join(self.models, id + ".toml"), "w") as f:
            f.write(f'id = "{id}"\n' + text)

    def start(self):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        logf = open(os.path.join(self.tmp, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [self.args.statim_bin, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--data-dir",
             os.path.join(self.tmp, "data"), "--models-dir", self.models, "--log-level", "warn"],
            stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "STATIM_AUTH_MODE": "off"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                models = self.get("/models")["models"]
                if all(m["state"] not in ("loading",) for m in models):
                    return {m["id"]: m for m in models}
            except OSError:
                pass
            time.sleep(0.2)
        sys.exit("bench: statim did not start; log:\n" + open(os.path.join(self.tmp, "server.log")).read())

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=60) as r:
            return json.load(r)

    def post(self, path, body=None, files=None, timeout=600):
        if files:
            cmd = ["curl", "-s", "-f", self.url + path, "-F", f"model={body['model']}"]
            for field, p in files.items():
                cmd += ["-F", f"{field}=@{p}"]
            return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        req = urllib.request.Request(self.url + path, data=json.dumps(body or {}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)

    def wait(self, job_id):
        while True:
            j = self.get(f"/job/{job_id}")
            if j["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return j
            time.sleep(0.02)

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def load(srv, models, clients, seconds, warmup):
    """Closed-loop clients on each model in `models` at once; tokens/s per model in the window."""
    t_start = time.monotonic()
    t0, t1 = t_start + warmup, t_start + warmup + seconds
    spans = {m: [] for m in models}
    errors = []

    def client(model, c):
        k = 0
        while time.monotonic() < t1:
            words = " ".join(WORDS[(c * 7 + k * 3 + i) % len(WORDS)] for i in range(8))
            body = json.dumps({"model": model, "prompt": f"Client {c} request {k}: {words}", "max_tokens": 64,
                               "temperature": 0}).encode()
            sent = time.monotonic()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
                conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = json.loads(r.read())
                conn.close()
                n = data["usage"]["completion_tokens"]
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return
            spans[model].append((sent, time.monotonic(), n))
            k += 1

    threads = [threading.Thread(target=client, args=(m, c)) for m in models for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"bench: {len(errors)} requests failed, first: {errors[0]}")
    out = {}
    for m, ss in spans.items():
        tokens = sum(n * max(0.0, min(e, t1) - max(s, t0)) / (e - s) for s, e, n in ss if e > s)
        out[m] = tokens / seconds
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--levels", default="1,16")
    ap.add_argument("--gguf", default=os.path.join(ROOT, ".bench/small135m.gguf"))
    ap.add_argument("--statim-bin", default=os.path.join(ROOT, "build/statim"))
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    gen = os.path.join(ROOT, "tests/fixtures/make_tiny_gguf.py")
    fixture(args.gguf, gen, "--preset", "small135m")
    gguf_b = fixture(os.path.join(ROOT, ".bench/small135m-seed2.gguf"), gen, "--preset", "small135m", "--seed", "2")
    whisper = fixture(os.path.join(ROOT, ".bench/whisper-tiny-random.bin"), os.path.join(ROOT, "tests/fixtures/make_tiny_whisper.py"))

    srv = Statim(args)
    llm = 'backend = "llama"\nfile = "{}"\nparallel = 16\n[params]\nn_ctx = 512\nthreads = 2\n'
    srv.manifest("lm", llm.format(os.path.abspath(args.gguf)))
    srv.manifest("lm-b", llm.format(gguf_b))
    srv.manifest("whisper", f'backend = "whisper"\nfile = "{whisper}"\n')
    others = {"lm-b": None, "whisper": ("audio", os.path.join(SHARED, "audio", "jfk.wav"))}
    yolox, dog = os.path.join(SHARED, "onnx", "yolox_nano.onnx"), os.path.join(SHARED, "onnx", "yolox-test-dog.jpg")
    if os.path.exists(yolox):
        text = open(os.path.join(ROOT, "models", "yolox-nano.toml")).read().replace("../../shared/models", SHARED)
        text = text.replace('labels = "coco-labels.txt"', f'labels = "{os.path.join(ROOT, "models", "coco-labels.txt")}"')
        with open(os.path.join(srv.models, "yolox-nano.toml"), "w") as f:
            f.write(text)
        others["yolox-nano"] = ("image", dog)
    tess, page = os.path.join(SHARED, "ocr", "tesseract", "eng.traineddata"), os.path.join(SHARED, "ocr", "ocr-test-hello-world.png")
    if os.path.exists(tess):
        srv.manifest("ocr", f'backend = "ocr"\nfile = "{tess}"\n')
        others["ocr"] = ("page", page)
    missing = [m for m in ("yolox-nano", "ocr") if m not in others]
    if missing:
        log(f"note: {missing} absent under {SHARED}: not measured")
    if not os.path.exists(others["whisper"][1]):
        sys.exit(f"bench: {others['whisper'][1]} is needed for the whisper job")

    rows = []
    try:
        states = srv.start()
        bad = {m: s.get("reason") for m, s in states.items() if s["state"] != "ready"}
        if bad:
            sys.exit(f"bench: models not ready: {bad}")
        srv.post("/v1/completions", {"model": "lm", "prompt": "warm up", "max_tokens": 8})
        # Solo twice: the second row shows how much two runs of the same thing differ.
        solo = {n: load(srv, ["lm"], n, args.seconds, args.warmup)["lm"] for n in levels}
        log(f"solo: {solo}")
        again = {n: load(srv, ["lm"], n, args.seconds, args.warmup)["lm"] for n in levels}
        log(f"solo again: {again}")
        rows.append(("solo", solo, None))
        rows.append(("solo, again (noise)", again, {n: again[n] / solo[n] for n in levels}))
        for other, files in others.items():
            if files is None:
                j = srv.post("/job", {"model": other, "prompt": "Once upon a time", "params": {"max_tokens": 16}})
            else:
                j = srv.post("/job", {"model": other}, files={files[0]: files[1]})
            done = srv.wait(j["id"])
            if done["status"] != "COMPLETED":
                sys.exit(f"bench: the {other} job did not complete: {done}")
            after = {n: load(srv, ["lm"], n, args.seconds, args.warmup)["lm"] for n in levels}
            log(f"after {other}: {after}")
            rows.append((f"after one {other} job", after, {n: after[n] / solo[n] for n in levels}))
        both = load(srv, ["lm", "lm-b"], 16, args.seconds, args.warmup)
        log(f"together: {both}")
        together = sum(both.values())
        lifecycle = []
        for m in ["lm-b", "whisper"] + [m for m in ("yolox-nano", "ocr") if m in others]:
            try:
                before = srv.rss_mib()
                t = time.monotonic()
                srv.post(f"/models/{m}/unload?wait=true")
                unload_s = time.monotonic() - t
                unloaded = srv.rss_mib()
                t = time.monotonic()
                srv.post(f"/models/{m}/load?wait=true")
                load_s = time.monotonic() - t
                loaded = srv.rss_mib()
                srv.post(f"/models/{m}/unload?wait=true")
                again = srv.rss_mib()
                lifecycle.append((m, load_s, unload_s, before, unloaded, loaded, again))
            except urllib.error.HTTPError as e:
                log(f"lifecycle of {m}: {e.code} {e.read()[:200]!r} (no lifecycle routes in this build?)")
                break
        if lifecycle:
            # Every other model is unloaded now: is "lm" back to its solo speed?
            alone = {n: load(srv, ["lm"], n, args.seconds, args.warmup)["lm"] for n in levels}
            log(f"the others unloaded: {alone}")
            rows.append(("the others unloaded again", alone, {n: alone[n] / solo[n] for n in levels}))
    finally:
        srv.stop()

    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"\nstatim {rev} ({args.statim_bin}), {os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d %H:%MZ', time.gmtime())}, "
          f"window {args.seconds:g} s after {args.warmup:g} s of warm-up\n")
    head = " | ".join(f"{n} client{'s' if n > 1 else ''} tok/s (ratio)" for n in levels)
    print(f"| 'lm' (135M Q8_0, 16 slots) | {head} |")
    print("|---|" + "---|" * len(levels))
    for name, tps, ratio in rows:
        cells = " | ".join(f"{tps[n]:.1f}" + (f" ({ratio[n]:.2f})" if ratio else "") for n in levels)
        print(f"| {name} | {cells} |")
    best = max(solo.values())
    print(f"\ntwo LLMs under 16 clients each at once: lm {both['lm']:.1f} + lm-b {both['lm-b']:.1f} = "
          f"{together:.1f} tok/s, {together / best:.2f}x the better solo figure ({best:.1f})")
    if lifecycle:
        print("\n| model | load s | unload s | RSS MiB loaded -> unloaded | RSS after load -> after unload | back within |")
        print("|---|---|---|---|---|---|")
        for m, ls, us, before, unloaded, loaded, again in lifecycle:
            print(f"| {m} | {ls:.2f} | {us:.2f} | {before:.0f} -> {unloaded:.0f} | {loaded:.0f} -> {again:.0f} | "
                  f"{100 * abs(again - unloaded) / max(unloaded, 1):.1f}% |")


if __name__ == "__main__":
    main()
