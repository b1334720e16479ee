"""The OpenAPI document (src/api/openapi/openapi.json) against an independent validator and against
the real server: every response the tests provoke must be one the document lists, with a body its
schema accepts; the security the document declares must be what the server enforces; and /docs
must render the document in a real browser from statim's own copy of Swagger UI (no CDN)."""
from __future__ import annotations

import base64
import json
import queue
import re
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator

from conftest import REPO, SLOW, Server, fail_on_sanitizer_reports, sse_events, statim_bin, wait_until

try:  # openapi-spec-validator >= 0.7
    from openapi_spec_validator import validate as validate_openapi
except ImportError:  # older releases
    from openapi_spec_validator import validate_spec as validate_openapi

DOC_PATH = REPO / "src" / "api" / "openapi" / "openapi.json"
DOCS_HTML = REPO / "src" / "api" / "openapi" / "docs.html"
SWAGGER_UI = REPO / "third_party" / "swagger-ui"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/version"), ("get", "/openapi.json"), ("get", "/docs"),
          ("get", "/docs/swagger-ui-bundle.js"), ("get", "/docs/swagger-ui.css"),
          ("get", "/ui"), ("get", "/ui/{page}"), ("get", "/ui/jobs/{id}"), ("get", "/ui/assets/{name}")}
ADMIN = {("get", "/metrics"), ("get", "/admin/audit"), ("get", "/admin/keys"), ("post", "/admin/keys"),
         ("delete", "/admin/keys/{id}")}
JOB_FIELDS = ["id", "model", "type", "prompt", "params", "priority", "status", "status_message", "timestamp",
              "created_at", "started_at", "finished_at", "result", "error", "attempts", "earlier_attempts", "inputs",
              "webhook"]
GREEDY = {"temperature": 0}


# ----------------------------------------------------------------------------------------------
# The document and validation against it


class OpenApi:
    """The document, and checks of real HTTP exchanges against it."""

    def __init__(self, doc: dict):
        self.doc = doc

    def resolve(self, obj: dict) -> dict:
        """Follows a local $ref (#/components/...) to what it names."""
        while "$ref" in obj:
            assert obj["$ref"].startswith("#/"), obj
            node: Any = self.doc
            for part in obj["$ref"][2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            obj = node
        return obj

    def errors(self, schema: dict, instance: Any) -> list[str]:
        # The schema sits beside the document's components, so its "#/components/..." references
        # resolve within the document, as they do in an OpenAPI 3.1 reader.
        root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": self.doc["components"],
                "allOf": [schema]}
        v = Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)
        return [f"at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in sorted(v.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]

    def validate(self, schema: dict, instance: Any, what: str) -> None:
        errs = self.errors(schema, instance)
        assert not errs, f"{what} does not match the document:\n  " + "\n  ".join(errs[:20]) + \
            f"\ninstance: {json.dumps(instance)[:3000]}"

    def schema(self, name: str) -> dict:
        assert name in self.doc["components"]["schemas"], f"no schema {name}"
        return {"$ref": f"#/components/schemas/{name}"}

    def operation(self, method: str, path: str) -> dict:
        assert path in self.doc["paths"], f"the document has no path {path}"
        op = self.doc["paths"][path].get(method.lower())
        assert op, f"the document has no {method.upper()} {path}"
        return op

    def response(self, method: str, path: str, status: int) -> dict:
        op = self.operation(method, path)
        resp = op["responses"].get(str(status)) or op["responses"].get(f"{str(status)[0]}XX") or \
            op["responses"].get("default")
        assert resp, (f"{method.upper()} {path} answered {status}, which the document does not list "
                      f"(it lists {', '.join(op['responses'])})")
        return self.resolve(resp)

    def check(self, r: requests.Response, method: str, path: str) -> Any:
        """Checks a response against the operation `method path` (a path template); returns the
        JSON body (or the text). Streams are left unread unless they are JSON."""
        resp = self.response(method, path, r.status_code)
        what = f"{method.upper()} {path} -> {r.status_code}"
        assert r.headers.get("X-Request-Id"), f"{what}: every response carries X-Request-Id"
        content = resp.get("content", {})
        mime = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
        assert mime in content, f"{what}: Content-Type {mime!r} is not one the document lists ({list(content)})"
        if mime != "application/json":
            return None
        body = r.json()
        self.validate(content[mime]["schema"], body, what)
        return body


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(DOC_PATH.read_text())


@pytest.fixture(scope="module")
def api(doc) -> OpenApi:
    return OpenApi(doc)


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


# ----------------------------------------------------------------------------------------------
# Servers




def create_key(server: Server, name: str, *args: str) -> str:
    """`statim keys create` on the server's data dir; returns the key (printed alone on stdout)."""
    server.data_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([str(statim_bin()), "keys", "create", "--name", name, *args, "--data-dir", str(server.data_dir)],
                       capture_output=True, text=True, timeout=60 * SLOW, env=server._child_env())
    assert r.returncode == 0, f"statim keys create {name} -> {r.returncode}:\n{r.stdout}\n{r.stderr}"
    key = r.stdout.strip()
    assert re.fullmatch(r"sk-statim-[0-9a-f]{48}", key), f"unexpected key {key!r}"
    return key


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    """Auth off: echo, a tiny llama model (completion + chat), an embedding model, a failed model."""
    s = Server(tmp_path_factory.mktemp("openapi"), env={"STATIM_AUTH_MODE": "off"}, name="openapi")
    s.add_model("echo", max_queue=1000, parallel=2)
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=2, max_queue=100,
                params={"n_ctx": 512, "threads": 1})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 512, "threads": 1})
    s.add_model("gone", backend="llama", file=str(s.root / "no-such.gguf"))
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Auth required, with an admin key (the server's default), a user key and a key limited to echo."""
    s = Server(tmp_path_factory.mktemp("openapi-auth"), env={"STATIM_AUTH_MODE": "required"}, name="secured")
    s.add_model("echo", max_queue=1000, parallel=2)
    s.add_model("echo2", max_queue=1000)
    s.admin_key = create_key(s, "oa-admin", "--scope", "admin")
    s.user_key = create_key(s, "oa-user", "--scope", "user")
    s.echo_key = create_key(s, "oa-echo", "--scope", "user", "--models", "echo", "--rate", "2/m")
    s.key = s.admin_key
    s.start()
    s.admin_job = s.submit("echo", "owned by the admin key")["id"]
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(autouse=True)
def servers_stay_up(request):
    yield
    for name in ("server", "secured"):
        if name in request.fixturenames:
            assert request.getfixturevalue(name).running, f"the {name} server died"


# ----------------------------------------------------------------------------------------------
# The document itself


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"] == "3.1.0"
    validate_openapi(doc)  # raises with the reason


def test_every_operation_is_described(doc):
    tags = {t["name"] for t in doc["tags"]}
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids)), f"duplicate operationIds: {sorted(i for i in ids if ids.count(i) > 1)}"
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == {"bearer", "apiKey"}
    assert (schemes["bearer"]["type"], schemes["bearer"]["scheme"]) == ("http", "bearer")
    assert (schemes["apiKey"]["type"], schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == \
        ("apiKey", "header", "X-API-Key")
    assert {frozenset(req) for req in doc["security"]} == {frozenset({"bearer"}), frozenset({"apiKey"})}
    seen = set()
    for method, path, op in operations(doc):
        where = f"{method.upper()} {path}"
        seen.add((method, path))
        assert op.get("summary") and op.get("description"), f"{where}: summary and description"
        assert op.get("tags") and set(op["tags"]) <= tags, f"{where}: tags {op.get('tags')} must be declared"
        for p in re.findall(r"{(\w+)}", path):
            params = [OpenApi(doc).resolve(x) for x in doc["paths"][path].get("parameters", []) +
                      op.get("parameters", [])]
            assert any(x["in"] == "path" and x["name"] == p and x["required"] for x in params), \
                f"{where}: path parameter {p} is not declared"
        statuses = set(op["responses"])
        assert any(s.startswith("2") for s in statuses), f"{where}: no success response"
        for status, resp in op["responses"].items():
            resp = OpenApi(doc).resolve(resp)
            assert "X-Request-Id" in resp.get("headers", {}), f"{where} {status}: X-Request-Id is not documented"
            for mime, media in resp.get("content", {}).items():
                assert "schema" in media, f"{where} {status} {mime}: no schema"
            if status[0] in "45" and (method, path) not in {("get", "/healthz"), ("get", "/readyz")}:
                assert list(resp["content"]) == ["application/json"], f"{where} {status}: errors are JSON"
                # (Anthropic's route answers errors in Anthropic's shape.)
                schema = "AnthropicError" if path.startswith("/v1/messages") else "Error"
                assert resp["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{schema}"}, \
                    f"{where} {status}: errors use the {schema} schema"
        if (method, path) in PUBLIC:
            assert op.get("security") == [], f"{where} is public: security: []"
            assert "401" not in statuses
        else:
            assert "security" not in op or op["security"], f"{where} needs a key"
            assert {"401", "429", "500"} <= statuses, f"{where}: 401, 429 and 500 are possible"
        if (method, path) in ADMIN:
            assert "403" in statuses
            assert op["security"] == [{"bearer": ["admin"]}, {"apiKey": ["admin"]}], where
        # (Every POST that makes a job; counting tokens makes none.)
        if method == "post" and (path == "/job" or path.startswith("/v1/")) and path != "/v1/messages/count_tokens" \
                and not path.endswith("/cancel"):
            names = [OpenApi(doc).resolve(p)["name"] for p in op.get("parameters", [])]
            assert "Idempotency-Key" in names, f"{where}: Idempotency-Key"
            assert "409" in statuses, f"{where}: 409 for a reused Idempotency-Key"
    assert PUBLIC | ADMIN <= seen, f"missing: {(PUBLIC | ADMIN) - seen}"


def test_examples_match_their_schemas(doc, api):
    """Every example in the document is accepted by the schema it illustrates."""
    checked = 0

    def media_examples(media: dict, where: str):
        nonlocal checked
        if "schema" not in media:
            return
        found = ([media["example"]] if "example" in media else []) + \
            [api.resolve(e)["value"] for e in media.get("examples", {}).values()]
        for ex in found:
            if isinstance(ex, str) and media["schema"].get("type") == "string":
                continue
            api.validate(media["schema"], ex, f"the example at {where}")
            checked += 1

    for name, schema in doc["components"]["schemas"].items():
        for ex in schema.get("examples", []):
            api.validate({"$ref": f"#/components/schemas/{name}"}, ex, f"the example of schema {name}")
            checked += 1
    for name, resp in doc["components"]["responses"].items():
        for mime, media in resp.get("content", {}).items():
            media_examples(media, f"components/responses/{name} {mime}")
    for method, path, op in operations(doc):
        for status, resp in op["responses"].items():
            for mime, media in resp.get("content", {}).items():
                media_examples(media, f"{method.upper()} {path} {status} {mime}")
        for mime, media in op.get("requestBody", {}).get("content", {}).items():
            media_examples(media, f"{method.upper()} {path} request {mime}")
        for cb in op.get("callbacks", {}).values():
            for item in cb.values():
                for m in METHODS:
                    for mime, media in item.get(m, {}).get("requestBody", {}).get("content", {}).items():
                        media_examples(media, f"callback of {method.upper()} {path}")
    assert checked >= 30, f"only {checked} examples"


def test_job_schema_is_exactly_the_job_object(doc):
    job = doc["components"]["schemas"]["Job"]
    # (queue_position: GET /job/{id} of a queued job only, after the others)
    assert list(job["properties"]) == JOB_FIELDS + ["queue_position"], "the Job schema lists jobToJson's fields in its order"
    assert job["required"] == JOB_FIELDS and job["additionalProperties"] is False
    for f in ("started_at", "finished_at", "result", "error", "webhook"):
        assert not OpenApi(doc).errors(job["properties"][f], None), f"{f} is nullable"
    for f in ("id", "model", "type", "prompt", "params", "priority", "status", "status_message", "timestamp",
              "created_at", "attempts"):
        assert OpenApi(doc).errors(job["properties"][f], None), f"{f} is never null"


# ----------------------------------------------------------------------------------------------
# What the server serves


def test_served_document_is_the_repo_file(server, api, doc):
    r = server.get("/openapi.json")
    served = api.check(r, "get", "/openapi.json")
    assert served == doc, "GET /openapi.json serves src/api/openapi/openapi.json"
    validate_openapi(served)
    version = api.check(server.get("/version"), "get", "/version")
    assert doc["info"]["version"] == version["version"], "info.version is the server's version"


def test_job_routes_match_the_document(server, api):
    r = server.post("/job", json={"model": "echo", "prompt": "hello", "params": {"delay_ms": 1}, "priority": 3})
    assert r.status_code == 202, r.text
    job = api.check(r, "post", "/job")
    assert r.headers["Location"] == f"/job/{job['id']}"
    assert list(job) == JOB_FIELDS, "fields in the documented order"
    assert job["webhook"] is None
    server.wait_job(job["id"])
    r = server.get(f"/job/{job['id']}")
    done = api.check(r, "get", "/job/{id}")
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "hello"}, done
    assert list(done) == JOB_FIELDS

    page = api.check(server.get("/job", params={"limit": 5, "status": "completed", "model": "echo"}), "get", "/job")
    assert any(j["id"] == job["id"] for j in page["jobs"])
    assert page["limit"] == 5 and page["offset"] == 0

    # Cancelling: a finished job comes back unchanged; a queued/running one as it is then.
    assert api.check(server.post(f"/job/{job['id']}/cancel"), "post", "/job/{id}/cancel")["status"] == "COMPLETED"
    slow = server.submit("echo", "slow", params={"delay_ms": 60000})
    cancelled = api.check(server.request("DELETE", f"/job/{slow['id']}"), "delete", "/job/{id}")
    assert cancelled["id"] == slow["id"]
    final = server.wait_job(slow["id"])
    assert final["status"] == "CANCELLED"

    failed = server.submit("echo", "x", params={"fail": "on purpose"})
    server.wait_job(failed["id"])
    body = api.check(server.get(f"/job/{failed['id']}"), "get", "/job/{id}")
    assert body["status"] == "FAILED" and body["error"] == "on purpose"


def test_job_with_chat_embedding_and_llama_results_match(server, api):
    ids = []
    for body in ({"model": "tiny", "prompt": "The cat", "params": {"max_tokens": 8, **GREEDY, "stop": ["zzz"]}},
                 {"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "params": {"max_tokens": 4}},
                 {"model": "emb", "input": ["one text", "another text"]}):
        r = server.post("/job", json=body)
        assert r.status_code == 202, r.text
        ids.append(api.check(r, "post", "/job")["id"])
    for id in ids:
        server.wait_job(id, timeout=60)
        job = api.check(server.get(f"/job/{id}"), "get", "/job/{id}")
        assert job["status"] == "COMPLETED", job
    completion, chat, emb = (server.job(i) for i in ids)
    assert set(completion["result"]) >= {"text", "tokens_in", "tokens_out", "finish_reason"}
    assert chat["type"] == "chat" and emb["type"] == "embedding"
    assert len(emb["result"]["embeddings"]) == 2


ERRORS = [
    # (method, request path, documented path, kwargs, status, code)
    ("post", "/job", "/job", {"data": b'{"model": "echo",'}, 400, "invalid_request"),
    ("post", "/job", "/job", {"json": {"model": "echo", "prompt": "x", "priority": 1000}}, 400, "invalid_request"),
    ("post", "/job", "/job", {"json": {"model": "echo", "prompt": "x", "colour": 1}}, 400, "invalid_request"),
    ("post", "/job", "/job", {"json": {"model": "echo", "prompt": "x", "webhook": "ftp://example.com/x"}}, 400,
     "invalid_request"),
    ("post", "/job", "/job", {"json": {"model": "echo", "prompt": "x", "webhook_events": ["completed"]}}, 400,
     "invalid_request"),
    ("post", "/job", "/job", {"json": {"model": "nope", "prompt": "x"}}, 404, "model_not_found"),
    ("post", "/job", "/job", {"json": {"model": "gone", "prompt": "x"}}, 503, "model_unavailable"),
    ("get", "/job/abc", "/job/{id}", {}, 400, "invalid_request"),
    ("get", "/job/999999", "/job/{id}", {}, 404, "not_found"),
    ("get", "/job?limit=0", "/job", {}, 400, "invalid_request"),
    ("get", "/job?colour=red", "/job", {}, 400, "invalid_request"),
    ("post", "/job/999999/cancel", "/job/{id}/cancel", {}, 404, "not_found"),
    ("delete", "/job/0", "/job/{id}", {}, 400, "invalid_request"),
    ("get", "/job/999999/events", "/job/{id}/events", {}, 404, "not_found"),
    ("get", "/job/999999/webhooks", "/job/{id}/webhooks", {}, 404, "not_found"),
    ("get", "/admin/audit?limit=0", "/admin/audit", {}, 400, "invalid_request"),
    ("post", "/v1/completions", "/v1/completions", {"json": {"model": "echo", "prompt": "x", "suffix": "y"}}, 400,
     "invalid_request"),
    ("post", "/v1/completions", "/v1/completions", {"json": {"model": "nope", "prompt": "x"}}, 404, "model_not_found"),
    ("post", "/v1/chat/completions", "/v1/chat/completions", {"json": {"model": "tiny", "messages": []}}, 400,
     "invalid_request"),
    ("post", "/v1/embeddings", "/v1/embeddings", {"json": {"model": "emb", "input": "x", "dimensions": 8}}, 400,
     "invalid_request"),
]


@pytest.mark.parametrize("method,path,template,kw,status,code", ERRORS,
                         ids=[f"{m} {p} {s}" for m, p, _, _, s, _ in ERRORS])
def test_errors_match_the_document(server, api, method, path, template, kw, status, code):
    r = server.request(method.upper(), path, **kw)
    assert r.status_code == status, r.text
    body = api.check(r, method, template)
    assert body["error"]["code"] == code, body


HELLO = [{"role": "user", "content": "Hi"}]
BODIES = [
    # (path, body, accepted): the request schema and the server agree on each.
    ("/job", {"model": "echo", "prompt": "x"}, True),
    ("/job", {"model": "echo", "prompt": "x", "params": None, "priority": None}, True),
    ("/job", {"model": "echo", "prompt": "x", "params": {"delay_ms": 0}, "priority": -100,
              "webhook": "http://127.0.0.1:9/hook", "webhook_events": ["failed"]}, True),
    ("/job", {"model": "tiny", "messages": HELLO, "params": {"max_tokens": 1}}, True),
    ("/job", {"model": "emb", "input": ["a", "b"]}, True),
    ("/job", {"prompt": "x"}, False),
    ("/job", {"model": "echo"}, False),
    ("/job", {"model": "echo", "prompt": ""}, False),
    ("/job", {"model": "echo", "prompt": 7}, False),
    ("/job", {"model": "echo", "prompt": "x", "messages": HELLO}, False),
    ("/job", {"model": "echo", "prompt": "x", "priority": 101}, False),
    ("/job", {"model": "echo", "prompt": "x", "priority": 1.5}, False),
    ("/job", {"model": "echo", "prompt": "x", "params": []}, False),
    ("/job", {"model": "echo", "prompt": "x", "colour": "red"}, False),
    ("/job", {"model": "tiny", "messages": []}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": "ftp://example.com/x"}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": "https://example.com/" + "x" * 2048}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": None, "webhook_events": None}, True),
    ("/job", {"model": "echo", "prompt": "x", "webhook_events": ["completed"]}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": None, "webhook_events": ["completed"]}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": "https://example.com/x", "webhook_events": []}, False),
    ("/job", {"model": "echo", "prompt": "x", "webhook": "https://example.com/x", "webhook_events": ["done"]}, False),
    ("/v1/completions", {"model": "tiny", "prompt": ["x"], "max_tokens": 1, "n": 1, "logprobs": None,
                         "user": "u", "stream": False}, True),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "max_tokens": 3, "logprobs": 2}, True),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "logprobs": 6}, False),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 3, "logprobs": True,
                              "top_logprobs": 2}, True),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "logprobs": True, "top_logprobs": 21}, False),
    ("/v1/completions", {"model": "tiny", "prompt": ["x", "y"]}, False),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 17}, False),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "n": 2, "max_tokens": 2}, True),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "echo": True}, False),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "repeat_last_n": 8, "max_tokens": 2}, True),
    ("/v1/completions", {"model": "tiny", "prompt": "x", "stream": "yes"}, False),
    ("/v1/chat/completions", {"model": "tiny", "max_completion_tokens": 1,
                              "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}, True),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "tools": [{"type": "function"}]}, False),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "tool_choice": "auto"}, True),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 4, "tool_choice": "none",
                              "tools": [{"type": "function", "function": {"name": "f"}}]}, True),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "tool_choice": "sometimes"}, False),
    ("/v1/chat/completions", {"model": "tiny", "messages": HELLO, "functions": []}, False),
    ("/v1/embeddings", {"model": "emb", "input": "x", "encoding_format": "base64"}, True),
    ("/v1/embeddings", {"model": "emb", "input": "x", "encoding_format": "hex"}, False),
    ("/v1/embeddings", {"model": "emb"}, False),
]


@pytest.mark.parametrize("path,body,accepted", BODIES, ids=[f"{p} {i}" for i, (p, _, _) in enumerate(BODIES)])
def test_request_schemas_agree_with_the_server(server, api, doc, path, body, accepted):
    schema = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    errors = api.errors(schema, body)
    r = server.post(path, json=body, timeout=60)
    api.check(r, "post", path)
    if accepted:
        assert not errors, f"the document refuses a body the server accepts: {errors}"
        assert r.status_code in (200, 202), r.text
    else:
        assert errors, f"the document accepts a body the server refuses: {body}"
        assert r.status_code == 400, r.text


def test_unrouted_errors_use_the_error_schema(server, api):
    r = server.request("PUT", "/job")
    assert r.status_code == 405 and "POST" in r.headers["Allow"], r.text
    api.validate(api.schema("Error"), r.json(), "405")
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = server.get("/no/such/route")
    assert r.status_code == 404
    api.validate(api.schema("Error"), r.json(), "404 for an unknown route")


def test_models_and_system_routes_match(server, api):
    models = {m["id"]: m for m in api.check(server.get("/models"), "get", "/models")["models"]}
    assert models["gone"]["state"] == "failed" and models["gone"]["reason"], models["gone"]
    assert models["tiny"]["state"] == "ready" and "n_ctx" in models["tiny"]["details"]
    assert api.check(server.get("/healthz"), "get", "/healthz")["status"] == "ok"
    assert api.check(server.get("/version"), "get", "/version")["name"] == "statim"
    listed = api.check(server.get("/v1/models"), "get", "/v1/models")
    assert {m["id"] for m in listed["data"]} == {"echo", "tiny", "emb"}, "failed models are not offered"
    r = server.get("/readyz")
    ready = api.check(r, "get", "/readyz")
    assert (r.status_code, ready["status"], ready["reasons"]) == (200, "ready", []), ready  # none is required
    assert ready["models"]["tiny"] == "ready"


def test_events_match_the_document(server, api):
    schemas = {"state": "JobStateEvent", "queued": "JobQueuedEvent", "started": "JobStartedEvent",
               "token": "JobTokenEvent", "completed": "JobFinalEvent", "failed": "JobFinalEvent",
               "cancelled": "JobFinalEvent"}
    # Model "tiny" runs two at once: two long jobs hold both slots, so a third waits in the queue
    # until the stream is open and one of them is cancelled; the stream then sees it start and
    # generate. On a loaded machine both may end before the stream opens: then try again.
    for attempt in range(3):
        blockers = [server.submit("tiny", "The cat", params={"max_tokens": 480, **GREEDY}) for _ in range(2)]
        third = server.submit("tiny", "The bird", params={"max_tokens": 6, **GREEDY})
        seen = []
        with server.request("GET", f"/job/{third['id']}/events", stream=True, timeout=60) as r:
            assert r.status_code == 200
            api.check(r, "get", "/job/{id}/events")
            for name, data in sse_events(r):
                assert name in schemas, f"event {name!r} is not documented"
                api.validate(api.schema(schemas[name]), json.loads(data), f"event {name}")
                seen.append(name)
                if name == "state":
                    server.request("POST", f"/job/{blockers[1]['id']}/cancel")
        for j in blockers:
            server.request("POST", f"/job/{j['id']}/cancel")
        assert seen[0] == "state" and seen[-1] == "completed", seen
        if "started" in seen and "token" in seen:
            break
    assert "token" in seen, seen


def openai_chunks(api: OpenApi, r: requests.Response, schema: str) -> list[dict]:
    chunks, done = [], False
    for name, data in sse_events(r):
        assert name == "message" and not done, (name, data)
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        api.validate(api.schema("StreamError" if "error" in chunk else schema), chunk, "a stream chunk")
        chunks.append(chunk)
    assert done, "the stream ends with [DONE]"
    return chunks


def test_openai_routes_match_the_document(server, api):
    r = server.post("/v1/completions", json={"model": "tiny", "prompt": "The cat", "max_tokens": 5, **GREEDY},
                    timeout=60)
    body = api.check(r, "post", "/v1/completions")
    assert body["id"] == f"cmpl-{r.headers['X-Statim-Job-Id']}"
    r = server.post("/v1/chat/completions", timeout=60,
                    json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    api.check(r, "post", "/v1/chat/completions")
    for fmt in ("float", "base64"):
        r = server.post("/v1/embeddings", json={"model": "emb", "input": ["a", "b c"], "encoding_format": fmt},
                        timeout=60)
        body = api.check(r, "post", "/v1/embeddings")
        first = body["data"][0]["embedding"]
        assert isinstance(first, list) if fmt == "float" else len(base64.b64decode(first)) % 4 == 0

    with server.post("/v1/completions", stream=True, timeout=60, json={
            "model": "tiny", "prompt": "The cat", "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        api.check(r, "post", "/v1/completions")
        chunks = openai_chunks(api, r, "CompletionChunk")
    assert chunks[-1]["usage"]["completion_tokens"] == 5
    with server.post("/v1/chat/completions", stream=True, timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}) as r:
        api.check(r, "post", "/v1/chat/completions")
        chunks = openai_chunks(api, r, "ChatCompletionChunk")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


class Receiver:
    """A local webhook receiver: every POST is queued as (headers, body)."""

    def __init__(self):
        self.got: queue.Queue = queue.Queue()
        got = self.got

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got.put(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_webhooks_match_the_document(server, api, doc):
    receiver = Receiver()
    try:
        r = server.post("/job", json={"model": "echo", "prompt": "hook", "webhook": receiver.url,
                                      "webhook_events": ["started", "completed"]})
        job = api.check(r, "post", "/job")
        assert job["webhook"] == {"url": receiver.url, "events": ["started", "completed"]}
        callback = doc["paths"]["/job"]["post"]["callbacks"]["jobWebhook"]["{$request.body#/webhook}"]["post"]
        events = []
        for _ in range(2):
            headers, body = receiver.got.get(timeout=30 * SLOW)
            payload = json.loads(body)
            api.validate(callback["requestBody"]["content"]["application/json"]["schema"], payload, "a webhook body")
            assert headers["content-type"].startswith("application/json")
            for p in callback["parameters"]:
                name = p["name"].lower()
                assert name in headers, f"webhook header {p['name']} is missing"
                api.validate(p["schema"], headers[name], f"webhook header {p['name']}")
            assert payload["job"]["id"] == job["id"]
            events.append(payload["event"])
        assert sorted(events) == ["completed", "started"]

        def delivered():
            page = api.check(server.get(f"/job/{job['id']}/webhooks"), "get", "/job/{id}/webhooks")
            return page if all(d["status"] == "delivered" for d in page["deliveries"]) and \
                len(page["deliveries"]) == 2 else None
        page = wait_until(delivered, 30, "both deliveries recorded as delivered")
        assert all(d["history"] and d["history"][-1]["status_code"] == 204 for d in page["deliveries"]), page
    finally:
        receiver.close()
    plain = server.submit("echo", "no hook")
    page = api.check(server.get(f"/job/{plain['id']}/webhooks"), "get", "/job/{id}/webhooks")
    assert page["deliveries"] == [] and page["job_id"] == plain["id"], page


def test_idempotency_matches_the_document(server, api):
    key = f"oa-{time.time_ns()}"
    body = {"model": "echo", "prompt": "once"}
    first = server.post("/job", json=body, headers={"Idempotency-Key": key})
    again = server.post("/job", json=body, headers={"Idempotency-Key": key})
    a, b = api.check(first, "post", "/job"), api.check(again, "post", "/job")
    assert (first.status_code, again.status_code) == (202, 202) and a["id"] == b["id"]
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert "Idempotent-Replayed" not in first.headers
    other = server.post("/job", json={**body, "prompt": "twice"}, headers={"Idempotency-Key": key})
    assert other.status_code == 409, other.text
    assert api.check(other, "post", "/job")["error"]["code"] == "conflict"


def test_waiting_for_a_job_matches_the_document(server, api):
    done = api.check(server.post("/job?wait=true", json={"model": "echo", "prompt": "waited"}), "post", "/job")
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "waited"}
    assert api.check(server.get(f"/job/{done['id']}?wait=5"), "get", "/job/{id}")["id"] == done["id"]
    bad = server.post("/job?wait=soon", json={"model": "echo", "prompt": "x"})
    assert api.check(bad, "post", "/job")["error"]["param"] == "wait"


def test_metrics_and_audit_match_the_document(server, api):
    r = server.get("/metrics")
    assert r.status_code == 200, r.text
    api.check(r, "get", "/metrics")
    assert "version=0.0.4" in r.headers["Content-Type"], r.headers["Content-Type"]
    api.check(server.get("/admin/audit", params={"limit": 10, "since": "0"}), "get", "/admin/audit")


# ----------------------------------------------------------------------------------------------
# Security: what the document declares is what the server enforces


def test_security_matches_what_the_server_enforces(secured, api, doc):
    # The dashboard's script, by the name the page gives it (a content hash).
    script = re.search(r'src="/ui/assets/([^"]+)"', secured.get("/ui", key=None).text).group(1)
    for method, path, op in operations(doc):
        url = path.replace("{id}", str(secured.admin_job)).replace("{page}", "jobs")
        if path == "/ui/assets/{name}":
            url = path.replace("{name}", script)
        body = {"json": {}} if method == "post" else {}
        r = secured.request(method.upper(), url, key=None, stream=True, **body)
        with r:
            if op.get("security") == []:
                assert r.status_code == 200, f"{method.upper()} {path} is public but answered {r.status_code}"
                api.check(r, method, path)
            else:
                assert r.status_code == 401, f"{method.upper()} {path} without a key answered {r.status_code}"
                err = api.check(r, method, path)
                if path.startswith("/v1/messages"):
                    assert err["error"]["type"] == "authentication_error", err
                else:
                    assert err["error"]["code"] == "unauthenticated"
                assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_both_security_schemes_work(secured, api):
    for headers in ({"Authorization": f"Bearer {secured.user_key}"}, {"X-API-Key": secured.user_key}):
        r = secured.request("GET", "/models", key=None, headers=headers)
        api.check(r, "get", "/models")
        assert r.status_code == 200
    r = secured.request("GET", "/models", key="sk-statim-" + "0" * 48)
    assert r.status_code == 401
    assert api.check(r, "get", "/models")["error"]["code"] == "unauthenticated"


def test_admin_routes_refuse_user_keys_as_documented(secured, api):
    r = secured.request("POST", "/job", key=secured.user_key, json={"model": "echo", "prompt": "audited"})
    assert r.status_code == 202, r.text
    for path in ("/metrics", "/admin/audit"):
        r = secured.request("GET", path, key=secured.user_key)
        assert r.status_code == 403, r.text
        assert api.check(r, "get", path)["error"]["code"] == "permission_denied"
        r = secured.request("GET", path, key=secured.admin_key)
        assert r.status_code == 200, r.text
        api.check(r, "get", path)
    # Audit rows are written in the store's next group commit, not before the response: wait.
    page = wait_until(lambda: (lambda p: p if p["entries"] else None)(
        api.check(secured.get("/admin/audit", params={"key": "oa-user"}), "get", "/admin/audit")),
        10, "the user key's audit rows")
    assert all(e["key_name"] == "oa-user" for e in page["entries"]), page


def test_model_limits_and_rates_are_documented_errors(secured, api):
    r = secured.request("POST", "/job", key=secured.echo_key, json={"model": "echo2", "prompt": "x"})
    assert r.status_code == 403, r.text
    assert api.check(r, "post", "/job")["error"]["code"] == "permission_denied"
    # The key allows 2 requests a minute (the 403 above was one).
    statuses = []
    for _ in range(3):
        r = secured.request("POST", "/job", key=secured.echo_key, json={"model": "echo", "prompt": "x"})
        statuses.append(r.status_code)
        api.check(r, "post", "/job")
    assert statuses[-1] == 429, statuses
    assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
    # Another key's job is not found.
    r = secured.request("GET", f"/job/{secured.admin_job}", key=secured.user_key)
    assert r.status_code == 404
    api.check(r, "get", "/job/{id}")


# ----------------------------------------------------------------------------------------------
# /docs


def test_docs_page_uses_only_local_assets(secured, api):
    r = secured.request("GET", "/docs", key=None)
    assert r.status_code == 200
    api.check(r, "get", "/docs")
    assert r.content == DOCS_HTML.read_bytes(), "GET /docs serves src/api/openapi/docs.html"
    html = r.text
    assert 'src="/docs/swagger-ui-bundle.js"' in html and 'href="/docs/swagger-ui.css"' in html
    assert '"/openapi.json"' in html
    external = re.findall(r'(?:src|href)\s*=\s*["\'](?:https?:)?//[^"\']*', html)
    assert not external, f"the docs page loads outside assets: {external}"


@pytest.mark.parametrize("asset,mime", [("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")])
def test_swagger_ui_assets_are_served(secured, api, asset, mime):
    r = secured.request("GET", f"/docs/{asset}", key=None)
    assert r.status_code == 200
    assert mime in r.headers["Content-Type"], r.headers["Content-Type"]
    api.check(r, "get", f"/docs/{asset}")
    assert r.content == (SWAGGER_UI / asset).read_bytes(), f"/docs/{asset} is third_party/swagger-ui/{asset}"


def test_docs_render_in_a_browser(secured, doc, tmp_path):
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium is not installed (Debian package `chromium`): cannot render /docs")
    # Auth is required on this server: the page and everything it loads must be public.
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
           "--virtual-time-budget=10000", f"{secured.url}/docs"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120 * SLOW,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    dom = p.stdout
    assert p.returncode == 0 and dom, f"chromium -> {p.returncode}:\n{p.stderr[-3000:]}"
    assert "Failed to load API definition" not in dom and "errors-wrapper" not in dom, dom[:5000]
    for method, path, op in operations(doc):
        assert f'data-path="{path}"' in dom, f"{path} is not rendered"
        assert f'opblock-summary-operation-id">{op["operationId"]}<' in dom, \
            f"{method.upper()} {path} ({op['operationId']}) is not rendered"
    methods = re.findall(r'opblock-summary-method">([A-Z]+)<', dom)
    assert methods.count("POST") == sum(1 for m, _, _ in operations(doc) if m == "post")
    assert methods.count("GET") == sum(1 for m, _, _ in operations(doc) if m == "get")
