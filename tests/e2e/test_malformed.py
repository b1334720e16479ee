"""Malformed requests, table-driven and black-box: each is answered with the right status, the
documented error body, a message that names the offending field (or byte, path, header) and the
rule it broke, and `param` naming the field. After each one the server is still healthy: it is
running, GET /healthz answers, a normal echo job completes, and the rejected request stored no job
(GET /job `total` is unchanged).

Requests go out through http.client, not requests: requests re-quotes paths (`%2e%2e` becomes
`..`), and these cases need the exact bytes on the wire.

The cases are written to what the server SHOULD answer (docs/api.md, .bench/issue4-spec.md for
`webhook`, `webhook_events` and `Idempotency-Key`). Decisions made here where the docs are silent:
  - JSON nested deeper than a fixed limit is refused at parse time with a 400 whose message says
    "nested" and names the limit in "levels" (10 000 levels must be refused; 64 must parse). Without
    a limit, 100 000 nested arrays in `params`, `messages` or `input` (a 200 KB body) crash the
    server (recursive copy of the parsed value).
  - A duplicate key in the body is refused (400, `param` the key), not last-one-wins: a proxy or
    client library that keeps the first value would see a different request than the one stored.
  - A number JSON cannot hold as a double (1e400) is a 400 naming the literal.
  - A path with a trailing slash is not a route: 404 "no route for ...", never a 405 whose Allow
    lists the very method that was refused.
  - On POST /job, the embedding input is named `input`, as the client sent it (not `params.input`).
  - Tolerated (tests at the end): a UTF-8 BOM before the body (RFC 8259 section 8.1 allows a parser
    to ignore it), U+0000 inside a string (valid JSON; it round-trips), leading zeros in a job id.
"""
from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from conftest import SLOW, Server, assert_error, fail_on_sanitizer_reports

MAX_BODY = 4 << 20        # http.max_body_bytes for this server: room for a prompt over 1 MiB
MAX_PROMPT = 1 << 20      # docs/api.md: a prompt is at most 1 MiB
MODELS = "available models: echo, emb, tiny"
HI = [{"role": "user", "content": "hi"}]
HOOK = "http://127.0.0.1:9/hook"
JSON_TYPES = {"Content-Type": "application/json"}


# ----------------------------------------------------------------------------------------------
# The server: echo for plumbing, tiny (completion + chat) and emb (embedding) on the random-weight
# GGUF for the chat/embedding shapes. Module-scoped; restarted if a case killed it, so one crash
# fails its own case and not every case after it.


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, tiny_gguf):
    s = Server(tmp_path_factory.mktemp("malformed"), env={"STATIM_HTTP_MAX_BODY_BYTES": str(MAX_BODY)},
               name="malformed")
    s.add_model("echo", max_queue=10000, parallel=2)
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), params={"n_ctx": 256, "threads": 1})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 256, "threads": 1})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


def answers(server: Server) -> bool:
    try:
        return server.running and server.get("/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def server(module_server: Server) -> Server:
    if not answers(module_server):
        module_server.cleanup()  # kills what is left of it
        module_server.start(timeout=60)
    return module_server


# ----------------------------------------------------------------------------------------------
# Raw HTTP


class RawResponse:
    """The parts of a requests.Response that assert_error reads."""

    def __init__(self, resp: http.client.HTTPResponse):
        self.status_code = resp.status
        self.headers = resp.headers  # case-insensitive .get()
        self.content = resp.read()
        self.text = self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


def send(server: Server, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> RawResponse:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60 * SLOW)
    try:
        conn.request(method, path, body=body, headers=headers)
        return RawResponse(conn.getresponse())
    finally:
        conn.close()


def total_jobs(server: Server) -> int:
    return server.jobs(limit=1)["total"]


def assert_healthy(server: Server) -> None:
    assert server.running, f"the server died:\n{server.log_tail(60)}"
    r = server.get("/healthz")
    assert r.status_code == 200 and r.json().get("status") == "ok", r.text
    job = server.submit("echo", "still alive")
    assert server.wait_job(job["id"])["result"]["text"] == "still alive"


# ----------------------------------------------------------------------------------------------
# The table


@dataclass
class Case:
    id: str
    method: str
    path: str
    body: bytes | None
    status: int
    code: str
    message: tuple[str, ...]      # substrings the message must hold
    param: Any = None             # the expected `param` (None: JSON null)
    headers: dict[str, str] = field(default_factory=dict)
    allow: str | None = None      # for 405: the Allow header, as a set of methods

    def as_param(self):
        return pytest.param(self, id=self.id)


def j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def post_job(id, obj, status, code, message, param=None, **kw) -> Case:
    """POST /job with a JSON body (dict: serialised; bytes: sent as they are)."""
    body = obj if isinstance(obj, bytes) else j(obj)
    return Case(id, "POST", "/job", body, status, code, tuple([message] if isinstance(message, str) else message),
                param, headers=dict(JSON_TYPES, **kw.pop("headers", {})), **kw)


def bad(id, obj, message, param=None, **kw) -> Case:
    return post_job(id, obj, 400, "invalid_request", message, param, **kw)


def echo(**fields) -> dict:
    return {"model": "echo", "prompt": "x", **fields}


def get(id, path, status, code, message, param=None, method="GET", **kw) -> Case:
    return Case(id, method, path, None, status, code, tuple([message] if isinstance(message, str) else message),
                param, **kw)


def v1(id, route, obj, status, code, message, param=None, **kw) -> Case:
    body = obj if isinstance(obj, bytes) else j(obj)
    return Case(id, "POST", f"/v1/{route}", body, status, code,
                tuple([message] if isinstance(message, str) else message), param,
                headers=dict(JSON_TYPES, **kw.pop("headers", {})), **kw)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


NESTED = ("nested", "levels")  # the depth limit's message: "JSON nested more than N levels deep ..."
ID_RULE = "job id must be a positive integer"
LIMIT_RANGE = "between 1 and 1000"

CASES = [
    # --- JSON syntax: 400 with the byte offset and nlohmann's description of what is wrong ------
    bad("json-truncated-string", b'{"model":"echo","prompt":"x', ("malformed JSON at byte 28", "missing closing quote")),
    bad("json-truncated-object", b'{"model": "echo", "prompt": "x"',
        ("malformed JSON at byte 32", "unexpected end of input")),
    bad("json-trailing-garbage", b'{"model":"echo","prompt":"x"} x', ("malformed JSON at byte 31", "end of input")),
    bad("json-two-documents", b'{"model":"echo","prompt":"x"}{}', ("malformed JSON at byte 30", "end of input")),
    bad("json-nan", b'{"model":"echo","prompt":"x","priority":NaN}', ("malformed JSON at byte 41", "invalid literal")),
    bad("json-infinity", b'{"model":"echo","prompt":"x","priority":Infinity}',
        ("malformed JSON at byte 41", "invalid literal")),
    bad("json-block-comment", b'{"model":"echo", /* c */ "prompt":"x"}', ("malformed JSON at byte 18",)),
    bad("json-line-comment", b'{"model":"echo", // c\n "prompt":"x"}', ("malformed JSON at byte 18",)),
    bad("json-single-quotes", b"{'model': 'echo', 'prompt': 'x'}", ("malformed JSON at byte 2",)),
    bad("json-unquoted-key", b'{model: "echo"}', ("malformed JSON at byte 2",)),
    bad("json-trailing-comma", b'{"model":"echo","prompt":"x",}', ("malformed JSON",)),
    bad("json-raw-tab-in-string", b'{"model":"echo","prompt":"tab\there"}', ("malformed JSON", "U+0009")),
    bad("json-whitespace-only", b"   \n ", ("malformed JSON", "unexpected end of input")),
    bad("json-empty-body", b"", ("the request body is empty",)),
    bad("json-form-urlencoded", b"model=echo&prompt=x", ("malformed JSON at byte 1",),
        headers={"Content-Type": "application/x-www-form-urlencoded"}),
    bad("json-body-array", b"[]", ("must be a JSON object", "array")),
    bad("json-body-string", b'"echo"', ("must be a JSON object", "string")),
    bad("json-body-null", b"null", ("must be a JSON object", "null")),
    # Nesting: refused at parse time above a fixed depth (see the module docstring).
    bad("json-nested-10k-top-level", nested(10_000), NESTED),
    bad("json-nested-10k-in-prompt", b'{"model":"echo","prompt":' + nested(10_000) + b"}", NESTED),
    bad("json-nested-100k-in-params", b'{"model":"echo","prompt":"x","params":{"a":' + nested(100_000) + b"}}",
        NESTED),
    bad("json-nested-100k-in-messages", b'{"model":"tiny","messages":[{"role":"user","content":"hi","name":'
        + nested(100_000) + b"}]}", NESTED),
    bad("json-nested-100k-in-input", b'{"model":"emb","input":[' + nested(100_000) + b"]}", NESTED),
    bad("json-nested-64-is-an-ordinary-type-error", b'{"model":"echo","prompt":' + nested(64) + b"}",
        "'prompt' must be a string, not array", "prompt"),
    bad("json-duplicate-key", b'{"model":"echo","prompt":"a","prompt":"b"}', ("duplicate", "'prompt'"), "prompt"),
    # Numbers a double cannot hold are still a 400 naming the literal (not an exception turned 500).
    bad("json-number-overflow-priority", b'{"model":"echo","prompt":"x","priority":1e400}', "1e400"),
    bad("json-number-overflow-negative", b'{"model":"echo","prompt":"x","priority":-1e400}', "1e400"),
    bad("json-number-overflow-delay-ms", b'{"model":"echo","prompt":"x","params":{"delay_ms":1e400}}', "1e400"),

    # --- Unicode ---------------------------------------------------------------------------------
    bad("unicode-lone-high-surrogate", b'{"model":"echo","prompt":"\\ud800"}', ("malformed JSON", "surrogate U+D800")),
    bad("unicode-lone-low-surrogate", b'{"model":"echo","prompt":"\\udc00"}', ("malformed JSON", "surrogate U+DC00")),
    bad("utf8-overlong-slash", b'{"model":"echo","prompt":"\xc0\xaf"}', ("malformed JSON at byte 27", "UTF-8")),
    bad("utf8-encoded-surrogate", b'{"model":"echo","prompt":"\xed\xa0\x80"}', ("malformed JSON", "UTF-8")),
    bad("utf8-invalid-byte-ff", b'{"model":"echo","prompt":"\xff"}', ("malformed JSON", "UTF-8")),
    bad("utf8-truncated-sequence", b'{"model":"echo","prompt":"\xe2\x82"}', ("malformed JSON", "UTF-8")),
    post_job("model-rtl-override", {"model": "\u202eohce", "prompt": "x"}, 404, "model_not_found",
        ("unknown model '\u202eohce'", MODELS), "model"),
    post_job("model-emoji", {"model": "\U0001f999", "prompt": "x"}, 404, "model_not_found",
        ("unknown model '\U0001f999'", MODELS), "model"),
    post_job("model-nul", b'{"model":"ech\\u0000o","prompt":"x"}', 404, "model_not_found",
        ("unknown model 'ech\x00o'", MODELS), "model"),
    post_job("model-fullwidth", {"model": "\uff45cho", "prompt": "x"}, 404, "model_not_found",
        ("unknown model '\uff45cho'", MODELS), "model"),
    post_job("model-uppercase", {"model": "ECHO", "prompt": "x"}, 404, "model_not_found", ("unknown model 'ECHO'", MODELS),
        "model"),
    post_job("model-trailing-space", {"model": "echo ", "prompt": "x"}, 404, "model_not_found",
        ("unknown model 'echo '", MODELS), "model"),

    # --- model -----------------------------------------------------------------------------------
    bad("model-missing", {"prompt": "x"}, "'model' is required", "model"),
    bad("model-null", {"model": None, "prompt": "x"}, "'model' is required", "model"),
    bad("model-empty", {"model": "", "prompt": "x"}, "'model' must not be empty", "model"),
    bad("model-number", {"model": 7, "prompt": "x"}, "'model' must be a string, not number", "model"),
    bad("model-bool", {"model": True, "prompt": "x"}, "'model' must be a string, not boolean", "model"),
    bad("model-list", {"model": ["echo"], "prompt": "x"}, "'model' must be a string, not array", "model"),
    bad("model-object", {"model": {}, "prompt": "x"}, "'model' must be a string, not object", "model"),
    bad("model-129-bytes", {"model": "m" * 129, "prompt": "x"}, "'model' must be at most 128 bytes", "model"),
    bad("model-100k-bytes", {"model": "m" * 100_000, "prompt": "x"}, "'model' must be at most 128 bytes", "model"),

    # --- prompt ----------------------------------------------------------------------------------
    bad("prompt-missing", {"model": "echo"}, "'prompt' is required", "prompt"),
    bad("prompt-null", {"model": "echo", "prompt": None}, "'prompt' is required", "prompt"),
    bad("prompt-empty", {"model": "echo", "prompt": ""}, "'prompt' must not be empty", "prompt"),
    bad("prompt-number", {"model": "echo", "prompt": 5}, "'prompt' must be a string, not number", "prompt"),
    bad("prompt-bool", {"model": "echo", "prompt": False}, "'prompt' must be a string, not boolean", "prompt"),
    bad("prompt-list", {"model": "echo", "prompt": ["a"]}, "'prompt' must be a string, not array", "prompt"),
    bad("prompt-object", {"model": "echo", "prompt": {}}, "'prompt' must be a string, not object", "prompt"),
    bad("prompt-over-1mib", {"model": "echo", "prompt": "p" * (MAX_PROMPT + 1)},
        f"'prompt' must be at most {MAX_PROMPT} bytes", "prompt"),
    bad("prompt-and-messages", {"model": "tiny", "prompt": "x", "messages": HI},
        "give only one of 'prompt', 'messages' and 'input'", "prompt"),

    # --- messages --------------------------------------------------------------------------------
    bad("messages-string", {"model": "tiny", "messages": "hi"}, "'messages' must be a non-empty list", "messages"),
    bad("messages-object", {"model": "tiny", "messages": HI[0]}, "'messages' must be a non-empty list", "messages"),
    bad("messages-null", {"model": "tiny", "messages": None}, "'messages' must be a non-empty list", "messages"),
    bad("messages-empty-list", {"model": "tiny", "messages": []}, "'messages' must be a non-empty list", "messages"),
    bad("messages-entry-string", {"model": "tiny", "messages": ["hi"]}, "'messages[0]' must be an object",
        "messages[0]"),
    bad("messages-role-unknown", {"model": "tiny", "messages": [{"role": "wizard", "content": "hi"}]},
        ("'messages[0].role' must be one of system, user, assistant, tool", "(got 'wizard')"), "messages[0].role"),
    bad("messages-content-number", {"model": "tiny", "messages": [{"role": "user", "content": 5}]},
        "'messages[0].content' must be a string", "messages[0].content"),
    bad("messages-for-echo", {"model": "echo", "messages": HI}, "model 'echo' does not serve chat jobs", "model"),

    # --- input -----------------------------------------------------------------------------------
    bad("input-number", {"model": "emb", "input": 5},
        "'input' must be a non-empty string or a list of 1..2048 non-empty strings", "input"),
    bad("input-empty-list", {"model": "emb", "input": []},
        "'input' must be a non-empty string or a list of 1..2048 non-empty strings", "input"),
    bad("input-for-echo", {"model": "echo", "input": "x"}, "model 'echo' does not serve embedding jobs", "model"),

    # --- params ----------------------------------------------------------------------------------
    bad("params-string", echo(params="x"), "'params' must be an object, not string", "params"),
    bad("params-list", echo(params=[1]), "'params' must be an object, not array", "params"),
    bad("params-number", echo(params=5), "'params' must be an object, not number", "params"),
    bad("params-bool", echo(params=True), "'params' must be an object, not boolean", "params"),
    bad("params-unknown-key", echo(params={"bogus": 1}), ("unknown field 'params.bogus'", "delay_ms, fail"),
        "params.bogus"),
    bad("params-messages-inside", echo(params={"messages": HI}), "give 'messages' at the top level", "params.messages"),
    bad("params-delay-ms-string", echo(params={"delay_ms": "soon"}), "'params.delay_ms' must be an integer",
        "params.delay_ms"),
    bad("params-delay-ms-null", echo(params={"delay_ms": None}), "'params.delay_ms' must be an integer",
        "params.delay_ms"),
    bad("params-delay-ms-float", echo(params={"delay_ms": 1.5}), "'params.delay_ms' must be an integer",
        "params.delay_ms"),
    bad("params-delay-ms-negative", echo(params={"delay_ms": -1}), "'params.delay_ms' must be between 0 and 600000",
        "params.delay_ms"),
    bad("params-delay-ms-over-max", echo(params={"delay_ms": 600_001}),
        "'params.delay_ms' must be between 0 and 600000", "params.delay_ms"),
    bad("params-delay-ms-uint64-max", echo(params={"delay_ms": 2**64 - 1}),
        "'params.delay_ms' must be between 0 and 600000", "params.delay_ms"),
    bad("params-delay-ms-2pow64", echo(params={"delay_ms": 2**64}), "'params.delay_ms' must be an integer",
        "params.delay_ms"),
    bad("params-fail-number", echo(params={"fail": 5}), "'params.fail' must be a string", "params.fail"),
    bad("params-fail-too-long", echo(params={"fail": "f" * 4097}), "'params.fail' must be at most 4096 bytes",
        "params.fail"),

    # --- priority --------------------------------------------------------------------------------
    bad("priority-101", echo(priority=101), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-minus-101", echo(priority=-101), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-float", echo(priority=1.5), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-float-integral", b'{"model":"echo","prompt":"x","priority":1.0}',
        "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-string", echo(priority="high"), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-bool", echo(priority=True), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-list", echo(priority=[1]), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-2pow64", echo(priority=2**64), "'priority' must be an integer between -100 and 100", "priority"),
    bad("priority-uint64-max", echo(priority=2**64 - 1), "'priority' must be an integer between -100 and 100",
        "priority"),
    bad("priority-below-int64-min", echo(priority=-(2**63) - 1), "'priority' must be an integer between -100 and 100",
        "priority"),

    # --- unknown fields --------------------------------------------------------------------------
    bad("field-unknown", echo(callback="x"), ("unknown field 'callback'", "allowed: model, prompt"), "callback"),
    bad("field-wrong-case", echo(Model="echo"), "unknown field 'Model'", "Model"),

    # --- sizes -----------------------------------------------------------------------------------
    post_job("body-over-limit", {"model": "echo", "prompt": "p" * (MAX_BODY + 1)}, 413, "payload_too_large",
        (f"limit of {MAX_BODY} bytes", "http.max_body_bytes")),
    post_job("body-3x-over-limit", {"model": "echo", "prompt": "p" * (3 * MAX_BODY)}, 413, "payload_too_large",
        (f"limit of {MAX_BODY} bytes", "http.max_body_bytes")),

    # --- webhook, webhook_events (.bench/issue4-spec.md) ------------------------------------------
    bad("webhook-not-a-url", echo(webhook="not a url"), ("'webhook'", "http"), "webhook"),
    bad("webhook-ftp-scheme", echo(webhook="ftp://example.com/hook"), ("'webhook'", "http", "ftp"), "webhook"),
    bad("webhook-empty", echo(webhook=""), ("'webhook'", "http"), "webhook"),
    bad("webhook-number", echo(webhook=5), ("'webhook'", "URL"), "webhook"),
    bad("webhook-over-2048-chars", echo(webhook="http://example.com/" + "a" * 2048), ("'webhook'", "2048"), "webhook"),
    bad("webhook-events-unknown", echo(webhook=HOOK, webhook_events=["completed", "exploded"]),
        ("'webhook_events'", "'exploded'", "queued, started, completed, failed, cancelled"), "webhook_events"),
    bad("webhook-events-empty", echo(webhook=HOOK, webhook_events=[]), ("'webhook_events'", "empty"),
        "webhook_events"),
    bad("webhook-events-not-a-list", echo(webhook=HOOK, webhook_events="completed"), ("'webhook_events'", "list"),
        "webhook_events"),
    bad("webhook-events-without-webhook", echo(webhook_events=["completed"]), ("'webhook_events'", "'webhook'"),
        "webhook_events"),

    # --- Idempotency-Key (1..255 printable ASCII) -------------------------------------------------
    bad("idempotency-key-empty", echo(), ("Idempotency-Key", "255"), "Idempotency-Key",
        headers={"Idempotency-Key": ""}),
    bad("idempotency-key-300-chars", echo(), ("Idempotency-Key", "255"), "Idempotency-Key",
        headers={"Idempotency-Key": "k" * 300}),
    bad("idempotency-key-non-ascii", echo(), ("Idempotency-Key", "ASCII"), "Idempotency-Key",
        headers={"Idempotency-Key": "caf\xe9"}),
    v1("idempotency-key-300-chars-v1", "completions", {"model": "tiny", "prompt": "x", "max_tokens": 1}, 400,
       "invalid_request", ("Idempotency-Key", "255"), "Idempotency-Key", headers={"Idempotency-Key": "k" * 300}),

    # --- job ids in paths ------------------------------------------------------------------------
    get("id-zero", "/job/0", 400, "invalid_request", f"{ID_RULE} (got '0')", "id"),
    get("id-zeros", "/job/00000", 400, "invalid_request", f"{ID_RULE} (got '00000')", "id"),
    get("id-negative", "/job/-1", 400, "invalid_request", f"{ID_RULE} (got '-1')", "id"),
    get("id-float", "/job/1.5", 400, "invalid_request", f"{ID_RULE} (got '1.5')", "id"),
    get("id-exponent", "/job/1e3", 400, "invalid_request", f"{ID_RULE} (got '1e3')", "id"),
    get("id-word", "/job/abc", 400, "invalid_request", f"{ID_RULE} (got 'abc')", "id"),
    get("id-encoded-dotdot", "/job/%2e%2e", 400, "invalid_request", f"{ID_RULE} (got '..')", "id"),
    get("id-encoded-space", "/job/%20", 400, "invalid_request", f"{ID_RULE} (got ' ')", "id"),
    get("id-encoded-nul", "/job/1%00", 400, "invalid_request", ID_RULE, "id"),
    get("id-over-int64", "/job/9223372036854775808", 400, "invalid_request", f"{ID_RULE} (got '9223372036854775808')",
        "id"),
    get("id-20-digits", "/job/99999999999999999999", 400, "invalid_request",
        f"{ID_RULE} (got '99999999999999999999')", "id"),
    get("id-int64-max-unknown", "/job/9223372036854775807", 404, "not_found", "job 9223372036854775807 not found"),
    get("id-encoded-slash-traversal", "/job/..%2fetc", 404, "not_found", "no route for GET /job/../etc"),
    get("id-encoded-slash", "/job/1%2f2", 404, "not_found", "no route for GET /job/1/2"),
    get("id-bad-on-delete", "/job/abc", 400, "invalid_request", f"{ID_RULE} (got 'abc')", "id", method="DELETE"),
    get("id-bad-on-cancel", "/job/-5/cancel", 400, "invalid_request", f"{ID_RULE} (got '-5')", "id", method="POST"),
    get("id-bad-on-events", "/job/0/events", 400, "invalid_request", f"{ID_RULE} (got '0')", "id"),
    # Trailing slashes are not routes (today: 405 "GET is not allowed ... (allowed: GET, DELETE)").
    get("path-job-id-trailing-slash", "/job/1/", 404, "not_found", "no route for GET /job/1/"),
    get("path-healthz-trailing-slash", "/healthz/", 404, "not_found", "no route for GET /healthz/"),
    get("path-post-job-trailing-slash", "/job/", 404, "not_found", "no route for POST /job/", method="POST"),

    # --- GET /job query parameters ---------------------------------------------------------------
    get("query-limit-zero", "/job?limit=0", 400, "invalid_request", f"'limit' must be an integer {LIMIT_RANGE}",
        "limit"),
    get("query-limit-word", "/job?limit=abc", 400, "invalid_request", ("'limit' must be an integer", "(got 'abc')"),
        "limit"),
    get("query-limit-100000", "/job?limit=100000", 400, "invalid_request",
        (f"'limit' must be an integer {LIMIT_RANGE}", "(got '100000')"), "limit"),
    get("query-limit-empty", "/job?limit=", 400, "invalid_request", ("'limit' must be an integer", "(got '')"), "limit"),
    get("query-limit-float", "/job?limit=1.5", 400, "invalid_request", "'limit' must be an integer", "limit"),
    get("query-offset-negative", "/job?offset=-1", 400, "invalid_request", ("'offset' must be an integer", "(got '-1')"),
        "offset"),
    get("query-offset-over-int32", "/job?offset=99999999999", 400, "invalid_request",
        ("'offset' must be an integer between 0 and 2147483647",), "offset"),
    get("query-unknown", "/job?bogus=1", 400, "invalid_request",
        ("unknown query parameter 'bogus'", "limit, offset, status, model"), "bogus"),
    get("query-status-bogus", "/job?status=bogus", 400, "invalid_request",
        ("'status' must be one of QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED", "(got 'bogus')"), "status"),
    get("query-status-empty", "/job?status=", 400, "invalid_request", ("'status' must be one of", "(got '')"), "status"),

    # --- methods ---------------------------------------------------------------------------------
    get("method-put-job", "/job", 405, "method_not_allowed", "method PUT is not allowed on /job", method="PUT",
        allow="GET, POST"),
    get("method-patch-job-id", "/job/1", 405, "method_not_allowed", "method PATCH is not allowed on /job/1",
        method="PATCH", allow="GET, DELETE"),
    get("method-delete-models", "/models", 405, "method_not_allowed", "method DELETE is not allowed on /models",
        method="DELETE", allow="GET"),
    get("method-get-v1-completions", "/v1/completions", 405, "method_not_allowed",
        "method GET is not allowed on /v1/completions", allow="POST"),

    # --- OpenAI routes ---------------------------------------------------------------------------
    v1("v1-completions-no-model", "completions", {"prompt": "x"}, 400, "invalid_request", "'model' is required",
       "model"),
    v1("v1-completions-model-number", "completions", {"model": 5, "prompt": "x"}, 400, "invalid_request",
       "'model' must be a string", "model"),
    v1("v1-completions-unknown-model", "completions", {"model": "nope", "prompt": "x"}, 404, "model_not_found",
       ("unknown model 'nope'", MODELS), "model"),
    v1("v1-completions-n-17", "completions", {"model": "tiny", "prompt": "x", "n": 17}, 400, "invalid_request",
       "'n' must be between 1 and 16", "n"),
    v1("v1-completions-logprobs", "completions", {"model": "tiny", "prompt": "x", "logprobs": 6}, 400,
       "invalid_request", "'logprobs' must be an integer from 0 to 5 (or null)", "logprobs"),
    v1("v1-completions-stream-yes", "completions", {"model": "tiny", "prompt": "x", "stream": "yes"}, 400,
       "invalid_request", "'stream' must be true or false", "stream"),
    v1("v1-completions-max-tokens-negative", "completions", {"model": "tiny", "prompt": "x", "max_tokens": -1}, 400,
       "invalid_request", "'max_tokens' must be between 1 and 32768", "max_tokens"),
    v1("v1-completions-max-tokens-string", "completions", {"model": "tiny", "prompt": "x", "max_tokens": "lots"}, 400,
       "invalid_request", "'max_tokens' must be an integer", "max_tokens"),
    v1("v1-completions-max-tokens-1e400", "completions", b'{"model":"tiny","prompt":"x","max_tokens":1e400}', 400,
       "invalid_request", "1e400"),
    v1("v1-completions-prompt-two-strings", "completions", {"model": "tiny", "prompt": ["a", "b"]}, 400,
       "invalid_request", "'prompt' must be a string (or a list of one string)", "prompt"),
    v1("v1-completions-malformed-json", "completions", b'{"model":"tiny","prompt":"x"', 400, "invalid_request",
       ("malformed JSON at byte 29",)),
    v1("v1-chat-messages-string", "chat/completions", {"model": "tiny", "messages": "hi"}, 400, "invalid_request",
       "'messages' must be a non-empty list", "messages"),
    v1("v1-chat-messages-object", "chat/completions", {"model": "tiny", "messages": HI[0]}, 400, "invalid_request",
       "'messages' must be a non-empty list", "messages"),
    v1("v1-chat-role-unknown", "chat/completions", {"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]},
       400, "invalid_request", ("'messages[0].role' must be one of", "(got 'wizard')"), "messages[0].role"),
    v1("v1-chat-content-number", "chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": 5}]},
       400, "invalid_request", "'messages[0].content' must be a string", "messages[0].content"),
    v1("v1-chat-stream-options-number", "chat/completions",
       {"model": "tiny", "messages": HI, "stream": True, "stream_options": 5}, 400, "invalid_request",
       "'stream_options' must be an object", "stream_options"),
    v1("v1-embeddings-input-empty-list", "embeddings", {"model": "emb", "input": []}, 400, "invalid_request",
       "'input' must be a non-empty string or a list of 1..2048 non-empty strings", "input"),
    v1("v1-embeddings-input-missing", "embeddings", {"model": "emb"}, 400, "invalid_request", "'input' is required",
       "input"),
    v1("v1-embeddings-model-missing", "embeddings", {"input": "a"}, 400, "invalid_request", "'model' is required",
       "model"),
    v1("v1-embeddings-encoding-number", "embeddings", {"model": "emb", "input": "a", "encoding_format": 5}, 400,
       "invalid_request", "'encoding_format' must be float or base64", "encoding_format"),
]


def test_there_are_enough_cases():
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", [c.as_param() for c in CASES])
def test_malformed_request(server: Server, case: Case):
    before = total_jobs(server)
    try:
        r = send(server, case.method, case.path, case.body, case.headers)
    except (ConnectionError, http.client.HTTPException) as e:
        for _ in range(40):  # a crashed process takes a moment to be reaped
            if not server.running:
                break
            time.sleep(0.05)
        pytest.fail(f"{case.method} {case.path}: no answer ({type(e).__name__}: {e}); "
                    f"server running: {server.running}\n{server.log_tail(40)}")
    stored = total_jobs(server) - before
    assert_healthy(server)

    err = assert_error(r, case.status, case.code, case.message, param=case.param)
    assert err["type"] == {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                           413: "invalid_request_error"}[case.status], err
    if case.allow is not None:
        allowed = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
        assert allowed == {m.strip() for m in case.allow.split(",")}, r.headers
    assert stored == 0, f"a rejected request stored {stored} job(s)"


# ----------------------------------------------------------------------------------------------
# Edges that are accepted: pinned so that tightening them is a decision, not an accident.


def test_a_utf8_bom_before_the_body_is_ignored(server: Server):
    r = send(server, "POST", "/job", b'\xef\xbb\xbf{"model":"echo","prompt":"bom"}', JSON_TYPES)
    assert r.status_code == 202, r.text
    assert server.wait_job(r.json()["id"])["result"]["text"] == "bom"


def test_nul_inside_a_prompt_round_trips(server: Server):
    r = send(server, "POST", "/job", b'{"model":"echo","prompt":"a\\u0000b"}', JSON_TYPES)
    assert r.status_code == 202, r.text
    done = server.wait_job(r.json()["id"])
    assert done["prompt"] == "a\x00b" and done["result"]["text"] == "a\x00b", done


def test_a_prompt_of_exactly_1_mib_is_accepted(server: Server):
    r = send(server, "POST", "/job", j({"model": "echo", "prompt": "p" * MAX_PROMPT}), JSON_TYPES)
    assert r.status_code == 202, r.text[:300]
    assert len(server.wait_job(r.json()["id"])["result"]["text"]) == MAX_PROMPT


def test_leading_zeros_in_a_job_id_name_the_same_job(server: Server):
    job = server.submit("echo", "zeros")
    r = server.get(f"/job/000{job['id']}")
    assert r.status_code == 200 and r.json()["id"] == job["id"], r.text


def test_the_server_is_healthy_after_all_of_it(server: Server):
    assert_healthy(server)
