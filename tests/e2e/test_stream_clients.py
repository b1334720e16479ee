"""Streams for every kind of HTTP client: HTTP/1.1 kept alive (chunked), HTTP/1.1 with
"Connection: close", HTTP/1.0 (no chunked encoding: the events, then the connection closes),
Python's urllib, curl, and a real nginx in front of statim, with a stock `proxy_pass` (HTTP/1.0 to
statim) and with the usual SSE settings. Both stream routes: GET /job/{id}/events and the OpenAI
`stream: true` routes."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import requests

from conftest import SLOW, Server, free_port, served, sse_events, wait_until

PROMPT = "the cat sat on the mat"
CHAT = {"model": "chat", "stream": True, "max_tokens": 12, "temperature": 0,
        "messages": [{"role": "user", "content": "Tell me about the cat"}]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tiny_gguf):
    s = Server(tmp_path_factory.mktemp("streams"), name="streams")
    s.add_model("echo", parallel=4, max_queue=100)
    s.add_model("chat", backend="llama", file=str(tiny_gguf), parallel=2,
                params={"n_ctx": 512, "chat_template": "chatml", "threads": 1})
    s.add_model("long", backend="llama", file=str(tiny_gguf), parallel=1, params={"n_ctx": 32768, "threads": 1})
    s.start(timeout=60)
    yield from served(s)


@pytest.fixture(scope="module")
def chat_text(srv) -> str:
    """What the chat request answers without streaming (greedy: the stream must say the same)."""
    r = srv.post("/v1/chat/completions", json={**CHAT, "stream": False})
    assert r.status_code == 200, r.text
    text = r.json()["choices"][0]["message"]["content"]
    assert text, r.json()
    return text


# --- clients ------------------------------------------------------------------------------------

def raw_http(port: int, method: str, path: str, version: str, headers: list[str] = (),
             body: dict | None = None, on_first_event=None) -> tuple[str, dict[str, str], bytes]:
    """One request on a fresh socket; reads until the server closes the connection (a server that
    leaves it open fails the test by timeout). Returns (status line, headers, body).
    on_first_event(body so far) runs once, when the first blank-line-terminated event has come."""
    data = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{port}", *headers]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    with socket.create_connection(("127.0.0.1", port), timeout=30 * SLOW) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        buf = b""
        fired = on_first_event is None
        while chunk := sock.recv(65536):
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if not fired and sep and b"\n\n" in rest.replace(b"\r\n", b"\n").lstrip(b"\n"):
                fired = True
                on_first_event(rest)
    head, _, rest = buf.partition(b"\r\n\r\n")
    status, *header_lines = head.decode().split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return status, hdrs, rest


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event name, data) pairs of an SSE body; comments dropped; unnamed events are "message"."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, "\n".join(data)))
    return events


def chat_stream_text(events: list[tuple[str, str]]) -> str:
    datas = [d for _, d in events]
    assert datas and datas[-1] == "[DONE]", datas[-3:]
    chunks = [json.loads(d) for d in datas[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks[:2]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop"), chunks[-1]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


def check_job_stream(events: list[tuple[str, str]], job_id: int) -> None:
    names = [n for n, _ in events]
    assert names[0] == "state" and names[-1] == "completed", names
    done = json.loads(events[-1][1])["job"]
    assert done["id"] == job_id and done["status"] == "COMPLETED", done
    assert done["result"]["text"] == PROMPT, done


def slow_echo(srv: Server, delay_ms: int = 2500) -> int:
    """An echo job that runs for delay_ms: its stream stays open over keep-alive comments."""
    r = srv.post("/job", json={"model": "echo", "prompt": PROMPT, "params": {"delay_ms": delay_ms}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def assert_closing_stream(status: str, hdrs: dict[str, str], version: str) -> None:
    assert status.startswith(f"{version} 200"), status
    assert hdrs["content-type"] == "text/event-stream", hdrs
    assert hdrs.get("connection", "").lower() == "close", hdrs
    assert "transfer-encoding" not in hdrs and "content-length" not in hdrs, hdrs


# --- statim directly ------------------------------------------------------------------------------

CLOSING = [("HTTP/1.0", []), ("HTTP/1.1", ["Connection: close"]), ("HTTP/1.0", ["Connection: keep-alive"])]


@pytest.mark.parametrize("version,headers", CLOSING, ids=["1.0", "1.1-close", "1.0-keep-alive"])
def test_job_events_to_a_closing_connection(srv, version, headers):
    job_id = slow_echo(srv)
    seen_live = []

    def first(_):  # the job still runs when its first event arrives: the events are not held back
        seen_live.append(srv.get(f"/job/{job_id}").json()["status"])

    status, hdrs, body = raw_http(srv.port, "GET", f"/job/{job_id}/events", version, headers, on_first_event=first)
    assert_closing_stream(status, hdrs, version)
    text = body.decode()
    assert text.startswith("event: state\n"), text[:200]  # raw events: no chunk sizes
    assert ": keep-alive" in text, text  # the job ran past one keep-alive period
    check_job_stream(parse_sse(text), job_id)
    assert len(seen_live) == 1 and seen_live[0] in ("QUEUED", "PROCESSING"), seen_live


@pytest.mark.parametrize("version,headers", CLOSING, ids=["1.0", "1.1-close", "1.0-keep-alive"])
def test_chat_stream_to_a_closing_connection(srv, chat_text, version, headers):
    status, hdrs, body = raw_http(srv.port, "POST", "/v1/chat/completions", version, headers, body=CHAT)
    assert_closing_stream(status, hdrs, version)
    assert hdrs["x-statim-job-id"].isdigit(), hdrs
    assert chat_stream_text(parse_sse(body.decode())) == chat_text


def test_pipelined_requests_ending_with_a_closing_stream_are_answered_in_order(srv):
    """A client that pipelines requests and ends with a closing stream request gets each answer
    whole and in order: the answers to the jobs it posted (stored, then answered from the store's
    thread), then the stream's headers, then its events, then the connection closes."""
    done = slow_echo(srv, 0)
    srv.wait_job(done)
    posts = []
    for i in range(3):
        data = json.dumps({"model": "echo", "prompt": f"pipelined {i}"}).encode()
        posts.append(f"POST /job HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    for _ in range(20):  # the race this guards against needs an answer still pending: try a few
        stream = f"GET /job/{done}/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30 * SLOW) as sock:
            sock.sendall(b"".join(posts) + stream)
            buf = b""
            while chunk := sock.recv(65536):
                buf += chunk
        rest = buf
        for i in range(3):
            head, sep, rest = rest.partition(b"\r\n\r\n")
            assert sep and head.startswith(b"HTTP/1.1 202"), buf[:600]
            length = int(next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                              if k.strip().lower() == b"content-length"))
            body, rest = json.loads(rest[:length]), rest[length:]
            assert body["prompt"] == f"pipelined {i}", body
        head, sep, events = rest.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, buf[:600]
        assert events.startswith(b"event: state\n"), events[:200]
        check_job_stream(parse_sse(events.decode()), done)


def test_kept_alive_connection_streams_chunked_and_serves_the_next_request(srv, chat_text):
    with requests.Session() as s:
        s.trust_env = False
        with s.post(f"{srv.url}/v1/chat/completions", json=CHAT, stream=True, timeout=30 * SLOW) as r:
            assert r.status_code == 200 and r.headers["transfer-encoding"] == "chunked", r.headers
            assert "close" not in r.headers.get("connection", "")
            assert chat_stream_text(list(sse_events(r))) == chat_text
        job_id = slow_echo(srv, 300)
        with s.get(f"{srv.url}/job/{job_id}/events", stream=True, timeout=30 * SLOW) as r:
            check_job_stream(list(sse_events(r)), job_id)


def test_urllib(srv, chat_text):
    """urllib sends "Connection: close" and HTTP/1.1."""
    req = urllib.request.Request(f"{srv.url}/v1/chat/completions", data=json.dumps(CHAT).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30 * SLOW) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        assert chat_stream_text(parse_sse(r.read().decode())) == chat_text
    job_id = slow_echo(srv, 300)
    with urllib.request.urlopen(f"{srv.url}/job/{job_id}/events", timeout=30 * SLOW) as r:
        check_job_stream(parse_sse(r.read().decode()), job_id)


@pytest.mark.parametrize("flags", [["--http1.0"], ["-H", "Connection: close"], []],
                         ids=["http1.0", "connection-close", "keep-alive"])
def test_curl(srv, chat_text, flags):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    base = ["curl", "-sS", "-N", "--fail", "--max-time", str(int(60 * SLOW)), *flags]
    out = subprocess.run([*base, "-H", "Content-Type: application/json", "-d", json.dumps(CHAT),
                          f"{srv.url}/v1/chat/completions"], capture_output=True, text=True, timeout=90 * SLOW)
    assert out.returncode == 0, out.stderr
    assert chat_stream_text(parse_sse(out.stdout)) == chat_text
    job_id = slow_echo(srv, 300)
    out = subprocess.run([*base, f"{srv.url}/job/{job_id}/events"], capture_output=True, text=True,
                         timeout=90 * SLOW)
    assert out.returncode == 0, out.stderr
    check_job_stream(parse_sse(out.stdout), job_id)


def test_a_closing_client_that_leaves_cancels_its_openai_job(srv):
    """The OpenAI stream's job is cancelled when its client hangs up, on a closing connection too."""
    body = {"model": "long", "prompt": "Hello, the cat", "stream": True, "max_tokens": 30000, "temperature": 0}
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30 * SLOW) as sock:
        sock.sendall(f"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        buf = b""
        while b"data: " not in buf.partition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    head = buf.partition(b"\r\n\r\n")[0].decode().lower()
    job_id = int(head.split("x-statim-job-id:")[1].split("\r\n")[0])
    done = srv.wait_job(job_id, timeout=30 * SLOW)
    assert done["status"] == "CANCELLED", done


# --- nginx in front -----------------------------------------------------------------------------

# nginx 1.29.7 and later (Debian forky's 1.30) proxy with HTTP/1.1 and keep-alive by default;
# before, the stock proxy_pass spoke HTTP/1.0 with "Connection: close" to statim (Debian bookworm's
# 1.22, trixie's 1.26): both are tested.
NGINX_STOCK = "location / { proxy_pass http://127.0.0.1:%d; }"
NGINX_HTTP10 = "location / { proxy_pass http://127.0.0.1:%d; proxy_http_version 1.0; }"
# The usual advice for Server-Sent Events behind nginx (docs/deploy.md).
NGINX_SSE = """location / {
      proxy_pass http://127.0.0.1:%d;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
    }"""


class Nginx:
    def __init__(self, root: Path, location: str):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (root / "nginx.conf").write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  server {{
    listen 127.0.0.1:{self.port};
    {location}
  }}
}}
""")
        self.proc = subprocess.Popen([shutil.which("nginx"), "-p", str(root), "-c", str(root / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(root / "stderr.log", "wb"))

        def up():
            assert self.proc.poll() is None, (root / "stderr.log").read_text() + (root / "error.log").read_text()
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False
        wait_until(up, 20 * SLOW, "nginx")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module", params=["stock", "http1.0", "sse-settings"])
def nginx(request, srv, tmp_path_factory):
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (Debian package nginx)")
    location = {"stock": NGINX_STOCK, "http1.0": NGINX_HTTP10, "sse-settings": NGINX_SSE}[request.param] % srv.port
    n = Nginx(tmp_path_factory.mktemp(f"nginx-{request.param}"), location)
    yield n
    n.stop()


def test_nginx_job_events_arrive_as_they_happen(srv, nginx):
    job_id = slow_echo(srv)
    with requests.Session() as s:
        s.trust_env = False
        with s.get(f"{nginx.url}/job/{job_id}/events", stream=True, timeout=30 * SLOW) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream", r.headers
            events = []
            for name, data in sse_events(r):
                if not events:  # not held back by the proxy: the job still runs
                    assert srv.get(f"/job/{job_id}").json()["status"] in ("QUEUED", "PROCESSING")
                events.append((name, data))
    check_job_stream(events, job_id)


def test_nginx_chat_stream(srv, nginx, chat_text):
    with requests.post(f"{nginx.url}/v1/chat/completions", json=CHAT, stream=True, timeout=30 * SLOW) as r:
        assert r.status_code == 200, r.text
        assert chat_stream_text(list(sse_events(r))) == chat_text
    # and through nginx to a client that closes, too
    status, hdrs, body = raw_http(nginx.port, "POST", "/v1/chat/completions", "HTTP/1.0", body=CHAT)
    assert status.startswith("HTTP/1.1 200") or status.startswith("HTTP/1.0 200"), status
    assert chat_stream_text(parse_sse(body.decode())) == chat_text


def test_nginx_many_streams_at_once(srv, nginx, chat_text):
    results: list[str] = []
    errors: list[BaseException] = []

    def one():
        try:
            with requests.post(f"{nginx.url}/v1/chat/completions", json=CHAT, stream=True, timeout=60 * SLOW) as r:
                results.append(chat_stream_text(list(sse_events(r))))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == [chat_text] * 8
