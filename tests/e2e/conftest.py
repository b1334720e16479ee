"""Black-box e2e harness: starts the real `statim` binary and talks HTTP to it.

Every server gets its own free port, data dir and models dir under pytest's tmp_path, so tests
touch nothing outside their temp dirs (STYLE rule 10). Environment:
  STATIM_BIN             the binary (default: build/statim, relative to the repo root)
  STATIM_SANITIZED=1     the binary is an ASan/UBSan build: every timeout is stretched
  STATIM_SHARED_MODELS   where real models live (default: <repo>/../shared/models)
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
SANITIZED = os.environ.get("STATIM_SANITIZED", "") not in ("", "0")
SLOW = 5.0 if SANITIZED else 1.0  # timeout multiplier
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")  # "2024-04-07T15:22:05.813912"
ISO_Z_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def statim_bin() -> Path:
    p = Path(os.environ.get("STATIM_BIN", "build/statim"))
    if not p.is_absolute():
        p = (Path.cwd() / p) if (Path.cwd() / p).exists() else (REPO / p)
    return p


def shared_models_dir() -> Path:
    return Path(os.environ.get("STATIM_SHARED_MODELS", str(REPO.parent / "shared" / "models")))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Polls pred() until it returns something truthy; returns that value. timeout is pre-SLOW."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout * SLOW:.1f}s waiting for {what}")
        time.sleep(interval)


# ----------------------------------------------------------------------------------------------
# Model manifests


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string for our inputs
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def write_manifest(models_dir: Path, id: str, backend: str = "echo", params: dict | None = None,
                   filename: str | None = None, **fields: Any) -> Path:
    """Writes models_dir/<id>.toml; fields become top-level keys, params the [params] table."""
    models_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"id = {_toml_value(id)}", f"backend = {_toml_value(backend)}"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()]
    if params:
        lines.append("")
        lines.append("[params]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    path = models_dir / (filename or f"{id.replace('/', '_')}.toml")
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# The server


class ServerExited(AssertionError):
    pass


class Server:
    """One statim process. Its data and models dirs survive stop()/kill9(), so start() again is a
    restart on the same database."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, name: str = "statim"):
        self.root = root.resolve()
        self.name = name
        self.data_dir = self.root / "data"
        self.models_dir = self.root / "models"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.starts = 0
        self.log_paths: list[Path] = []
        self.returncode: int | None = None
        self.key: str | None = None  # sent as "Authorization: Bearer" unless a request sets its own

    # --- API keys ------------------------------------------------------------------------------
    def enable_auth(self) -> None:
        """auth.mode = required (the harness default is off, as for `make run`)."""
        self.env["STATIM_AUTH_MODE"] = "required"

    def keys_cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs `statim keys ...` on this server's data dir (works while it runs)."""
        r = subprocess.run([str(statim_bin()), "keys", *args, "--data-dir", str(self.data_dir)],
                           capture_output=True, text=True, env=self._child_env(), cwd=self.root, timeout=60 * SLOW)
        if check:
            assert r.returncode == 0, f"statim keys {' '.join(args)} failed ({r.returncode}): {r.stderr}"
        return r

    def create_key(self, name: str, *args: str) -> str:
        key = self.keys_cli("create", "--name", name, *args).stdout.strip()
        assert re.fullmatch(r"sk-statim-[0-9a-f]{48}", key), key
        return key

    # --- lifecycle -----------------------------------------------------------------------------

    def add_model(self, id: str, backend: str = "echo", **kw: Any) -> Path:
        return write_manifest(self.models_dir, id, backend, **kw)

    def _child_env(self) -> dict[str, str]:
        # Hermetic: no STATIM_* config and no proxies leak in from the caller's environment.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("STATIM_") and "proxy" not in k.lower()}
        env["STATIM_AUTH_MODE"] = "off"  # tests of auth call enable_auth()
        if SANITIZED:
            env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
        env.update(self.env)
        return env

    def start(self, wait_models: Iterable[str] | None = None, timeout: float = 20) -> "Server":
        """Starts the process and waits for /healthz and for models to leave "loading"
        (wait_models: those ids; None: all of them)."""
        assert self.proc is None, "already running"
        binary = statim_bin()
        if not binary.exists():
            pytest.fail(f"statim binary not found at {binary} (set STATIM_BIN)")
        for attempt in range(3):
            self.starts += 1
            self.port = free_port()
            log = self.root / f"{self.name}-{self.starts}.log"
            self.log_paths.append(log)
            with open(log, "wb") as f:
                self.proc = subprocess.Popen(
                    [str(binary), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                     "--data-dir", str(self.data_dir), "--models-dir", str(self.models_dir),
                     "--log-format", "json"],
                    stdout=f, stderr=subprocess.STDOUT, env=self._child_env(), cwd=self.root)
            try:
                wait_until(self._healthy, timeout, f"{self.name} /healthz on port {self.port}", 0.05)
                break
            except ServerExited:
                text = log.read_text(errors="replace")
                self.proc = None
                if "in use" in text.lower() and attempt < 2:
                    continue  # lost the race for the port: take another
                raise
        self.wait_models(wait_models, timeout)
        return self

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            rc = self.proc.returncode if self.proc else None
            raise ServerExited(f"{self.name} exited with {rc} before it was ready:\n{self.log_tail()}")
        try:
            return self.get("/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_models(self, ids: Iterable[str] | None = None, timeout: float = 30) -> dict[str, dict]:
        wanted = set(ids) if ids is not None else None

        def settled():
            if self.env.get("STATIM_NODE_ROLE") == "worker":
                # A worker node has no /models: /readyz lists its models' states.
                states = self.get("/readyz").json()["models"]
                return all(st != "loading" for i, st in states.items() if wanted is None or i in wanted)
            models = self.models()
            return all(m["state"] != "loading" for i, m in models.items() if wanted is None or i in wanted)
        wait_until(settled, timeout, "models to load")
        if self.env.get("STATIM_NODE_ROLE") == "worker":
            return {i: {"state": st} for i, st in self.get("/readyz").json()["models"].items()}
        return self.models()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        """Sends sig and waits for the process to exit; returns its exit code."""
        assert self.proc is not None, "not running"
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout * SLOW}s of signal {sig}")
        finally:
            self.returncode = self.proc.returncode
            self.proc = None
        return rc

    def kill9(self) -> None:
        assert self.proc is not None, "not running"
        self.proc.kill()
        self.proc.wait()
        self.returncode = self.proc.returncode
        self.proc = None

    def restart(self, **kw: Any) -> "Server":
        self.stop()
        return self.start(**kw)

    def cleanup(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, start: int | None = None) -> str:
        """The log of the last start (or of start number `start`, 1-based)."""
        if not self.log_paths:
            return ""
        path = self.log_paths[(start or len(self.log_paths)) - 1]
        return path.read_text(errors="replace") if path.exists() else ""

    def log_events(self, start: int | None = None) -> list[dict]:
        out = []
        for line in self.log_text(start).splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def log_tail(self, lines: int = 120) -> str:
        chunks = []
        for i, p in enumerate(self.log_paths, 1):
            if p.exists():
                text = p.read_text(errors="replace").splitlines()
                chunks.append(f"--- {self.name} start #{i} ({p}) ---\n" + "\n".join(text[-lines:]))
        return "\n".join(chunks)

    # --- HTTP ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, timeout: float = 10, key: Any = ...,
                **kw: Any) -> requests.Response:
        """key: ... sends self.key (if any) unless the headers carry credentials; None sends none;
        a string sends that key."""
        key = self.key if key is ... else key
        headers = dict(kw.pop("headers", None) or {})
        if key and not any(h.lower() in ("authorization", "x-api-key") for h in headers):
            headers["Authorization"] = f"Bearer {key}"
        kw["headers"] = headers
        with requests.Session() as s:
            s.trust_env = False  # never through a proxy
            return s.request(method, self.url + path, timeout=timeout * SLOW, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def models(self) -> dict[str, dict]:
        r = self.get("/models")
        assert r.status_code == 200, r.text
        return {m["id"]: m for m in r.json()["models"]}

    def submit_raw(self, model: str, prompt: str, params: dict | None = None,
                   priority: int | None = None) -> requests.Response:
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if params is not None:
            body["params"] = params
        if priority is not None:
            body["priority"] = priority
        return self.post("/job", json=body)

    def submit(self, model: str, prompt: str, params: dict | None = None,
               priority: int | None = None) -> dict:
        """POST /job, asserting 202; returns the job."""
        r = self.submit_raw(model, prompt, params, priority)
        assert r.status_code == 202, f"POST /job -> {r.status_code} {r.text}"
        return r.json()

    def job(self, id: int) -> dict:
        r = self.get(f"/job/{id}")
        assert r.status_code == 200, f"GET /job/{id} -> {r.status_code} {r.text}"
        return r.json()

    def jobs(self, **query: Any) -> dict:
        r = self.get("/job", params=query)
        assert r.status_code == 200, f"GET /job {query} -> {r.status_code} {r.text}"
        return r.json()

    def wait_job(self, id: int, timeout: float = 30, statuses: Iterable[str] = TERMINAL) -> dict:
        """Polls GET /job/{id} until its status is one of `statuses`; returns the job."""
        statuses = tuple(statuses)
        last: dict = {}

        def reached():
            nonlocal last
            last = self.job(id)
            return last if last["status"] in statuses else None
        try:
            return wait_until(reached, timeout, f"job {id} to reach {statuses}")
        except AssertionError as e:
            raise AssertionError(f"{e}; last seen: {json.dumps(last)}") from None

    def wait_running(self, id: int, timeout: float = 30) -> dict:
        return self.wait_job(id, timeout, ("PROCESSING",))

    def wait_queue(self, model: str, queued: int, running: int, timeout: float = 30) -> dict:
        """Waits until GET /models shows these counters for the model."""
        return wait_until(lambda: (m := self.models()[model])["queued"] == queued and m["running"] == running and m,
                          timeout, f"model {model} to show queued={queued} running={running}")


def sse_events(resp: requests.Response) -> Iterator[tuple[str, str]]:
    """The events of a text/event-stream response, as (event name, data) pairs, as they arrive.
    An event without an `event:` line is named "message" (the OpenAI routes send those)."""
    name, data = None, []
    for raw in resp.iter_lines():
        line = raw.decode("utf-8")
        if not line:
            if data or name:
                yield name or "message", "\n".join(data)
            name, data = None, []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
    if data or name:
        yield name or "message", "\n".join(data)


def iso_micros(text: str) -> int:
    """'2026-11-25T03:28:29.021308Z' -> microseconds since the epoch (for ordering job times)."""
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


_ANY = object()


def assert_error(r: requests.Response, status: int, code: str | None, message_has: str | Iterable[str] = (),
                 param: Any = _ANY) -> dict:
    """Checks an error response's status, JSON shape, code, message and (optionally) param."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.headers.get("X-Request-Id"), "every response carries X-Request-Id"
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"code", "type", "message", "param"}, err
    if code is not None:
        assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    for part in ([message_has] if isinstance(message_has, str) else message_has):
        assert part in err["message"], f"{part!r} not in message {err['message']!r}"
    if param is not _ANY:
        assert err["param"] == param, err
    return err


# ----------------------------------------------------------------------------------------------
# Fixtures


class ServerFactory:
    def __init__(self, root: Path):
        self.root = root
        self.servers: list[Server] = []

    def __call__(self, name: str = "statim", env: dict[str, str] | None = None) -> Server:
        s = Server(self.root / f"{name}-{len(self.servers)}", env=env, name=name)
        self.servers.append(s)
        return s

    def cleanup(self) -> None:
        for s in self.servers:
            s.cleanup()
        fail_on_sanitizer_reports(self.servers)


def served(s: Server) -> Iterator[Server]:
    """For module-scoped server fixtures: `yield from served(s)` hands out the started server,
    then stops it and fails on sanitizer reports in its log."""
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(autouse=True)
def srv_stays_up(request):
    """A test using a server fixture named `srv` fails when that server died during it."""
    yield
    if "srv" in request.fixturenames:
        assert request.getfixturevalue("srv").running, "the server died"


def fail_on_sanitizer_reports(servers: Iterable[Server]) -> None:
    """Under ASan/UBSan a report does not always crash the server: look for one in every log.
    Module-scoped servers call this after cleanup() (make_server's servers get it for free)."""
    found = []
    for s in servers:
        for path in s.log_paths:
            text = path.read_text(errors="replace") if path.exists() else ""
            for marker in SANITIZER_MARKERS:
                at = text.find(marker)
                if at >= 0:
                    found.append(f"{path}:\n{text[max(0, at - 200):at + 3000]}")
                    break
    if found:
        pytest.fail("sanitizer report in the server log:\n" + "\n\n".join(found))


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "WARNING: ThreadSanitizer")


@pytest.fixture
def make_server(tmp_path: Path):
    """make_server(name, env) -> an unstarted Server with its own dirs; killed at teardown."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def echo_server(make_server) -> Server:
    """A started server with one echo model ("echo", parallel 2)."""
    s = make_server("echo")
    s.add_model("echo", max_queue=10000, parallel=2)
    return s.start()


def make_fixture(script: str, out: Path, *args: str) -> Path:
    """Writes `out` with a generator from tests/fixtures (random weights in the real file format)."""
    gen = REPO / "tests" / "fixtures" / script
    r = subprocess.run([sys.executable, str(gen), str(out), *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.exists(), f"{script} failed:\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """The random-weight tiny llama GGUF from tests/fixtures/make_tiny_gguf.py."""
    return make_fixture("make_tiny_gguf.py", tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """The random-weight ggml whisper model from tests/fixtures/make_tiny_whisper.py."""
    return make_fixture("make_tiny_whisper.py", tmp_path_factory.mktemp("whisper") / "ggml-tiny-random.bin")


def stories_path() -> Path | None:
    """The real stories260K model beside the checkout, or None where it is absent."""
    path = shared_models_dir() / "llm" / "stories260K.gguf"
    return path if path.exists() else None


@pytest.fixture(scope="session")
def stories_gguf() -> Path:
    """The real stories260K GGUF (a TinyStories llama without a chat template); skips when absent."""
    path = stories_path()
    if path is None:
        pytest.skip(f"real model absent: {shared_models_dir() / 'llm' / 'stories260K.gguf'} "
                    "(set STATIM_SHARED_MODELS to the folder holding llm/stories260K.gguf)")
    return path


def _servers_of(item) -> list[Server]:
    found: list[Server] = []
    for v in getattr(item, "funcargs", {}).values():
        for s in v.servers if isinstance(v, ServerFactory) else [v] if isinstance(v, Server) else []:
            if all(s is not f for f in found):
                found.append(s)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for s in _servers_of(item):
            report.sections.append((f"statim log: {s.name} ({s.root})", s.log_tail()))
