#!/usr/bin/env python3
"""The container image, run for real with podman (runc), following the documented steps:

- the image: its size, a non-root user, the HEALTHCHECK kept (Docker format);
- the first API key made as the README says (`... run --rm statim statim keys create ...`), in the
  data volume, and accepted by the server;
- the server in a read-only root filesystem (`--read-only`, a tmpfs for /tmp), with the data volume
  and the models mounted, and no network at all (`--network none`: every request goes through
  `podman exec ... curl` on the container's loopback, so no outgoing connection can succeed);
- one job per model kind through the API (LLM, OCR, detection, classification, TTS, echo), with
  their output checked;
- healthy by its healthcheck; restarted, every job read back as it was;
- compose.yaml with podman-compose: the README's key step and `up`, healthy.

Run on the host, as root, after scripts/build-image:  tests/image/test_image.py [IMAGE]
(make test-image does both). Prints one "ok:" line per check and a summary; exits 1 on failure.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("STATIM_SHARED_MODELS", REPO.parent / "shared" / "models")).resolve()
IMAGE = sys.argv[1] if len(sys.argv) > 1 else "statim:latest"
RUN_ID = f"{os.getpid()}"
NAME = f"statim-image-test-{RUN_ID}"
VOLUME = f"statim-image-test-data-{RUN_ID}"


def env() -> dict[str, str]:
    out = subprocess.run(["bash", "-c", "source scripts/env.sh; source scripts/containers.sh; statim_containers_ready "
                          ">&2; echo $CONTAINERS_CONF"], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"containers: {out.stderr}")
    return {**os.environ, "CONTAINERS_CONF": out.stdout.strip()}


ENV = env()


def sh(*args: str, check: bool = True, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, env=ENV, input=input, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {r.returncode}\n{r.stdout.decode(errors='replace')}"
                             f"\n{r.stderr.decode(errors='replace')}")
    return r


def ok(what: str) -> None:
    print(f"test_image: ok: {what}", flush=True)


def wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")


def logs() -> str:
    r = sh("podman", "logs", "--tail", "40", NAME, check=False)
    return (r.stdout + r.stderr).decode(errors="replace")


class Api:
    """HTTP to the server through `podman exec NAME curl` (the container has no network)."""

    def __init__(self, key: str):
        self.key = key

    def call(self, method: str, path: str, *curl_args: str, input: bytes | None = None, raw: bool = False):
        r = sh("podman", "exec", "-i", NAME, "curl", "-sS", "-X", method, "-H", f"Authorization: Bearer {self.key}",
               "-w", "\n%{http_code}", *curl_args, f"http://localhost:5000{path}", input=input)
        body, _, code = r.stdout.rpartition(b"\n")
        return int(code), body if raw else json.loads(body or b"null")

    def job(self, body: dict) -> dict:
        code, job = self.call("POST", "/job", "-H", "Content-Type: application/json", "-d", json.dumps(body))
        assert code == 202, (code, job)
        return self.wait(job["id"])

    def upload(self, model: str, field: str, path: Path) -> dict:
        code, job = self.call("POST", "/job", "-F", f"model={model}", "-F", f"{field}=@-;filename={path.name}",
                              input=path.read_bytes())
        assert code == 202, (code, job)
        return self.wait(job["id"])

    def wait(self, job_id: int) -> dict:
        def done():
            code, job = self.call("GET", f"/job/{job_id}")
            return job if code == 200 and job["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None
        job = wait(done, 120, f"job {job_id}")
        assert job["status"] == "COMPLETED", job
        return job


def run_server() -> None:
    sh("podman", "run", "-d", "--name", NAME, "--read-only", "--tmpfs", "/tmp", "--network", "none",
       "-v", f"{VOLUME}:/var/lib/statim", "-v", f"{SHARED}:/opt/statim/models-files:ro", IMAGE)


def healthy() -> None:
    def check():
        return sh("podman", "healthcheck", "run", NAME, check=False).returncode == 0
    wait(check, 120, "the healthcheck")
    status = sh("podman", "inspect", "--format", "{{.State.Health.Status}}", NAME).stdout.decode().strip()
    assert status == "healthy", status


def check_image() -> None:
    info = json.loads(sh("podman", "image", "inspect", IMAGE).stdout)[0]
    size = info["Size"]
    ok(f"image {IMAGE}: {size / 1e6:.0f} MB ({size} bytes)")
    cfg = info["Config"]
    assert cfg.get("User") == "statim", cfg.get("User")
    hc = json.dumps(info.get("Healthcheck") or cfg.get("Healthcheck") or {})
    assert "localhost:5000/healthz" in hc, f"no HEALTHCHECK in the image (built in OCI format?): {hc}"
    env = dict(e.split("=", 1) for e in cfg.get("Env", []))
    assert env.get("STATIM_DATA_DIR") == "/var/lib/statim", env
    ok("non-root user statim, HEALTHCHECK kept, STATIM_DATA_DIR set for every subcommand")


def first_key() -> str:
    # The README's step: docker compose run --rm statim statim keys create --name admin --scope admin
    r = sh("podman", "run", "--rm", "--network", "none", "-v", f"{VOLUME}:/var/lib/statim", IMAGE,
           "statim", "keys", "create", "--name", "admin", "--scope", "admin")
    key = r.stdout.decode().strip()
    assert re.fullmatch(r"sk-statim-[0-9a-f]{48}", key), key
    return key


def model_jobs(api: Api) -> dict[str, dict]:
    jobs = {}
    code, models = api.call("GET", "/models")
    assert code == 200, models
    states = {m["id"]: m["state"] for m in models["models"]}
    for m in ("stories260k", "ocr-tesseract", "yolox-nano", "mnist", "tts-espeak", "echo"):
        assert states.get(m) == "ready", states
    ok(f"models ready: {', '.join(sorted(i for i, s in states.items() if s == 'ready'))}")

    j = api.job({"prompt": "Once upon a time", "model": "stories260k", "params": {"temperature": 0, "max_tokens": 30}})
    assert j["result"]["text"].startswith(", there was a little girl named Lily."), j["result"]
    jobs["llm"] = j
    j = api.upload("ocr-tesseract", "page", SHARED / "ocr" / "ocr-test-hello-world.png")
    assert "hello" in j["result"]["text"].lower(), j["result"]
    jobs["ocr"] = j
    j = api.upload("yolox-nano", "image", SHARED / "onnx" / "yolox-test-dog.jpg")
    assert "dog" in {d["label"] for d in j["result"]["detections"]}, j["result"]
    jobs["detection"] = j
    j = api.upload("mnist", "image", SHARED / "onnx" / "mnist-digits" / "7.jpg")
    assert j["result"]["labels"][0]["label"] == "7", j["result"]
    jobs["classification"] = j
    j = api.job({"prompt": "Hello from the image", "model": "tts-espeak"})
    code, wav = api.call("GET", f"/job/{j['id']}/result", raw=True)
    assert code == 200 and wav[:4] == b"RIFF" and len(wav) > 10000, (code, wav[:16], len(wav))
    jobs["tts"] = j
    j = api.job({"prompt": "A cat in space", "model": "echo"})
    assert j["result"] == {"text": "A cat in space"}, j
    jobs["echo"] = j
    ok("one job per model kind: " + ", ".join(f"{k} #{v['id']}" for k, v in jobs.items()))
    return jobs


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def compose(tmp: Path) -> None:
    """compose.yaml with podman-compose: the README's key step (`compose run --rm statim statim keys
    create`), then `up -d`: the key works, the published port answers from the host, healthy. The
    file is used as written but for two lines: its `build:` block goes (podman-compose 1.0 would
    rebuild the image with `podman build`, whose OCI isolation does not work in this sandbox; the
    image is built already) and the published host port is a free one instead of 5000."""
    if not shutil.which("podman-compose"):
        ok("podman-compose is not installed: compose.yaml not exercised")
        return
    text = (REPO / "compose.yaml").read_text()
    text = re.sub(r"\n    build:\n(?:      .*\n)+", "\n", text)
    port = free_port()
    assert '"5000:5000"' in text and "build:" not in text, text
    (tmp / "compose.yaml").write_text(text.replace('"5000:5000"', f'"{port}:5000"'))
    project = f"statimcompose{RUN_ID}"
    base = ["podman-compose", "-p", project, "-f", str(tmp / "compose.yaml")]
    try:
        r = sh(*base, "run", "--rm", "statim", "statim", "keys", "create", "--name", "admin", "--scope", "admin")
        key = next(line for line in r.stdout.decode().splitlines() if line.startswith("sk-statim-"))
        sh(*base, "up", "-d", "--no-build")
        container = f"{project}_statim_1"

        def served():
            r = subprocess.run(["curl", "-sS", "-m", "5", "-H", f"Authorization: Bearer {key}",
                                f"http://127.0.0.1:{port}/models"], capture_output=True)
            return r.returncode == 0 and b'"models"' in r.stdout
        wait(served, 120, "the compose service on its published port, with the key made by `compose run`")
        wait(lambda: sh("podman", "healthcheck", "run", container, check=False).returncode == 0, 120,
             "the compose service's healthcheck")
        ok(f"compose.yaml: the key from `compose run --rm statim statim keys create` works on `compose up` "
           f"(published port {port}); healthy")
    finally:
        sh(*base, "down", "-v", check=False, timeout=120)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="statim-image-"))
    try:
        check_image()
        key = first_key()
        ok("first key created in the volume with `statim keys create`")
        run_server()
        healthy()
        ok("serving in a read-only root with --network none; healthcheck healthy")
        api = Api(key)
        code, body = Api("sk-statim-" + "0" * 48).call("GET", "/models")
        assert code == 401, (code, body)
        jobs = model_jobs(api)
        sh("podman", "restart", "--time", "35", NAME)
        healthy()
        for kind, before in jobs.items():
            code, after = api.call("GET", f"/job/{before['id']}")
            assert code == 200 and after == before, (kind, before, after)
        ok(f"restarted: all {len(jobs)} jobs read back unchanged from the volume")
        files = sh("podman", "run", "--rm", "--network", "none", "-v", f"{VOLUME}:/v", "--entrypoint", "ls", IMAGE,
                   "/v").stdout.decode().split()
        assert "statim.db" in files, files
        ok(f"the volume holds: {' '.join(files)}")
        compose(tmp)
        print("test_image: all checks passed")
        return 0
    except AssertionError as e:
        print(f"test_image: FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        sh("podman", "rm", "-f", "-t", "5", NAME, check=False)
        sh("podman", "volume", "rm", "-f", VOLUME, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
