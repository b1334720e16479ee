"""Every documented error: status, code, message and param; the server stays healthy after each."""
import json

import pytest

from conftest import Server, assert_error

MAX_BODY = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Read-mostly: the tests here submit few jobs and never depend on counts, so one server is safe.
    s = Server(tmp_path_factory.mktemp("errors"), env={"STATIM_HTTP_MAX_BODY_BYTES": str(MAX_BODY)}, name="errors")
    s.add_model("echo", max_queue=10000, parallel=2)
    s.add_model("broken", backend="llama", file="/nonexistent/dir/broken.gguf")
    s.start()
    yield s
    s.cleanup()


@pytest.fixture(autouse=True)
def stays_healthy(server):
    yield
    assert server.running, "the server died"
    r = server.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    job = server.submit("echo", "still alive")
    assert server.wait_job(job["id"])["result"]["text"] == "still alive"


def post_raw(server, body: bytes | str, **kw):
    return server.post("/job", data=body, headers={"Content-Type": "application/json"}, **kw)


@pytest.mark.parametrize("body", ['{"model": "echo", "prompt": ', "{model: echo}", "not json at all",
                                  '{"model": "echo", "prompt": "x",}', '{"a": 1} trailing'])
def test_malformed_json(server, body):
    err = assert_error(post_raw(server, body), 400, "invalid_request", "malformed JSON")
    assert err["type"] == "invalid_request_error"


def test_empty_body(server):
    assert_error(post_raw(server, ""), 400, "invalid_request", "empty")


@pytest.mark.parametrize("body,kind", [("[1, 2]", "array"), ('"text"', "string"), ("42", "number"), ("null", "null")])
def test_body_not_an_object(server, body, kind):
    assert_error(post_raw(server, body), 400, "invalid_request", ["must be a JSON object", kind])


def test_unknown_model_lists_available(server):
    r = server.post("/job", json={"model": "nope", "prompt": "hi"})
    err = assert_error(r, 404, "model_not_found", ["unknown model 'nope'", "echo", "broken"], param="model")
    assert err["type"] == "not_found_error"


@pytest.mark.parametrize("body,param,message", [
    ({"model": "echo"}, "prompt", "'prompt' is required"),
    ({"model": "echo", "prompt": None}, "prompt", "'prompt' is required"),
    ({"model": "echo", "prompt": ""}, "prompt", "'prompt' must not be empty"),
    ({"model": "echo", "prompt": 5}, "prompt", "'prompt' must be a string"),
    ({"model": "echo", "prompt": ["a"]}, "prompt", "'prompt' must be a string"),
    ({"prompt": "hi"}, "model", "'model' is required"),
    ({"model": "", "prompt": "hi"}, "model", "'model' must not be empty"),
    ({"model": 7, "prompt": "hi"}, "model", "'model' must be a string"),
    ({"model": "m" * 129, "prompt": "hi"}, "model", "at most 128 bytes"),
    ({"model": "echo", "prompt": "hi", "params": "x"}, "params", "'params' must be an object"),
    ({"model": "echo", "prompt": "hi", "params": [1]}, "params", "'params' must be an object"),
    ({"model": "echo", "prompt": "hi", "priority": 101}, "priority", "between -100 and 100"),
    ({"model": "echo", "prompt": "hi", "priority": -101}, "priority", "between -100 and 100"),
    ({"model": "echo", "prompt": "hi", "priority": 1.5}, "priority", "must be an integer"),
    ({"model": "echo", "prompt": "hi", "priority": "high"}, "priority", "must be an integer"),
    ({"model": "echo", "prompt": "hi", "priority": 18446744073709551615}, "priority", "between -100 and 100"),
    ({"model": "echo", "prompt": "hi", "callback": "x"}, "callback", "unknown field 'callback'"),
    ({"model": "echo", "prompt": "hi", "params": {"bogus": 1}}, "params.bogus", "unknown field 'params.bogus'"),
    ({"model": "echo", "prompt": "hi", "params": {"delay_ms": "x"}}, "params.delay_ms", "must be an integer"),
    ({"model": "echo", "prompt": "hi", "params": {"delay_ms": -1}}, "params.delay_ms", "between 0 and 600000"),
    ({"model": "echo", "prompt": "hi", "params": {"delay_ms": 600001}}, "params.delay_ms", "between 0 and 600000"),
    ({"model": "echo", "prompt": "hi", "params": {"fail": 5}}, "params.fail", "must be a string"),
])
def test_invalid_job_bodies(server, body, param, message):
    err = assert_error(server.post("/job", json=body), 400, "invalid_request", message, param=param)
    assert err["type"] == "invalid_request_error"


def test_rejected_requests_create_no_jobs(server):
    before = server.jobs()["total"]
    server.post("/job", json={"model": "echo", "prompt": ""})
    server.post("/job", json={"model": "nope", "prompt": "x"})
    post_raw(server, "{")
    assert server.jobs()["total"] == before


def test_body_over_the_limit_is_413(server):
    body = json.dumps({"model": "echo", "prompt": "x" * (MAX_BODY * 2)})
    err = assert_error(post_raw(server, body), 413, "payload_too_large", str(MAX_BODY))
    assert "http.max_body_bytes" in err["message"]
    # Just under the limit still works.
    small = json.dumps({"model": "echo", "prompt": "y" * (MAX_BODY - 100)})
    assert len(small) <= MAX_BODY
    r = post_raw(server, small)
    assert r.status_code == 202, r.text


def test_huge_body_is_refused_and_the_server_survives(server):
    # Far past the limit the HTTP layer answers 413 itself and closes the connection.
    body = json.dumps({"model": "echo", "prompt": "x" * (3 << 20)})
    r = post_raw(server, body, timeout=60)
    assert r.status_code == 413, r.text


def test_unknown_job_is_404(server):
    err = assert_error(server.get("/job/999999"), 404, "not_found", "job 999999 not found")
    assert err["type"] == "not_found_error"


@pytest.mark.parametrize("bad", ["abc", "0", "-1", "1.5", "1e3", "0x10", "99999999999999999999999"])
def test_bad_job_id_is_400(server, bad):
    assert_error(server.get(f"/job/{bad}"), 400, "invalid_request",
                 f"job id must be a positive integer (got '{bad}')", param="id")


def test_signed_job_id_is_400(server):
    # The path decoder turns '+' into a space, so only the start of the message is stable.
    assert_error(server.get("/job/+1"), 400, "invalid_request", "job id must be a positive integer", param="id")


def test_failed_model_is_503(server):
    m = server.models()["broken"]
    assert m["state"] == "failed" and "/nonexistent/dir/broken.gguf" in m["reason"]
    r = server.post("/job", json={"model": "broken", "prompt": "hi"})
    err = assert_error(r, 503, "model_unavailable", ["model 'broken' failed to load", "/nonexistent/dir/broken.gguf"],
                       param="model")
    assert err["type"] == "unavailable_error"
    assert r.headers.get("Retry-After"), r.headers


@pytest.mark.parametrize("method,path", [("GET", "/nope"), ("GET", "/jobs"), ("POST", "/v1/job"),
                                         ("GET", "/job/1/extra"), ("GET", "/")])
def test_unknown_route_is_json_404(server, method, path):
    r = server.request(method, path)
    assert_error(r, 404, "not_found", f"no route for {method} {path}")


@pytest.mark.parametrize("query,param,message", [
    ("limit=0", "limit", "between 1 and 1000"),
    ("limit=1001", "limit", "between 1 and 1000"),
    ("limit=x", "limit", "'limit' must be an integer"),
    ("offset=-1", "offset", "'offset' must be an integer"),
    ("offset=1.5", "offset", "'offset' must be an integer"),
    ("status=DONE", "status", "must be one of QUEUED, PROCESSING, COMPLETED, FAILED, CANCELLED (got 'DONE')"),
    ("bogus=1", "bogus", "unknown query parameter 'bogus'"),
    ("limit=5&sort=asc", "sort", "unknown query parameter 'sort'"),
])
def test_bad_list_queries(server, query, param, message):
    assert_error(server.get(f"/job?{query}"), 400, "invalid_request", message, param=param)


@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/healthz", "GET"), ("DELETE", "/healthz", "GET"), ("POST", "/version", "GET"),
    ("POST", "/models", "GET"), ("PUT", "/job", "GET, POST"), ("DELETE", "/job", "GET, POST"),
    ("PUT", "/job/1", "GET, DELETE"), ("POST", "/job/1", "GET, DELETE"), ("GET", "/job/1/cancel", "POST"),
])
def test_wrong_method_on_a_known_path_is_405(server, method, path, allow):
    r = server.request(method, path)
    err = assert_error(r, 405, "method_not_allowed", f"method {method} is not allowed on {path}")
    assert err["param"] is None
    assert {m.strip() for m in r.headers.get("Allow", "").split(",")} == {m.strip() for m in allow.split(",")}, r.headers


def test_every_error_carries_request_id(server):
    for r in (server.get("/nope", headers={"X-Request-Id": "e-1"}),
              server.get("/job/abc", headers={"X-Request-Id": "e-1"}),
              server.post("/job", json={"model": "nope", "prompt": "x"}, headers={"X-Request-Id": "e-1"})):
        assert r.headers["X-Request-Id"] == "e-1"
