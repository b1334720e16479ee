"""API keys and auth (auth.mode = required): every way a request can be refused (401, 403, 429) with
its message and headers, keys created and revoked by `statim keys` while the server runs, job
ownership between user keys, per-key rate limits and max_queued, what `statim keys list` shows,
and that the server's log names keys but never contains one."""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time

import pytest

from conftest import SLOW, Server, assert_error, served, wait_until

MISSING = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
KEY_RE = re.compile(r"sk-statim-[0-9a-f]{48}")


def random_key() -> str:
    return "sk-statim-" + secrets.token_hex(24)


def assert_401(r, message: str) -> dict:
    err = assert_error(r, 401, "unauthenticated", message)
    assert err["message"] == message, err
    assert err["type"] == "authentication_error", err
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    return err


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """Auth required. Keys: admin, alice and bob (users), echo-only (user, model echo only)."""
    s = Server(tmp_path_factory.mktemp("auth"), name="auth")
    s.enable_auth()
    s.add_model("echo", max_queue=1000, parallel=2)
    s.add_model("echo2", max_queue=1000, parallel=2)
    s.admin_key = s.create_key("admin", "--scope", "admin")
    s.alice = s.create_key("alice")
    s.bob = s.create_key("bob", "--scope", "user")
    s.echo_only = s.create_key("echo-only", "--models", "echo")
    s.key = s.admin_key
    s.start()
    yield from served(s)



# ----------------------------------------------------------------------------------------------
# 401


def test_no_key_is_401_with_www_authenticate(srv):
    for method, path, kw in (("GET", "/models", {}), ("GET", "/job", {}), ("GET", "/job/1", {}),
                             ("POST", "/job", {"json": {"model": "echo", "prompt": "no key"}}),
                             ("POST", "/v1/completions", {"json": {"model": "echo", "prompt": "no key"}}),
                             ("GET", "/v1/models", {}), ("GET", "/metrics", {}), ("GET", "/admin/audit", {})):
        r = srv.request(method, path, key=None, **kw)
        assert_401(r, MISSING)
    # Nothing was created by the refused POSTs.
    assert all(j["prompt"] != "no key" for j in srv.jobs(limit=1000)["jobs"])


def test_empty_credentials_count_as_missing(srv):
    assert_401(srv.get("/models", key=None, headers={"X-API-Key": ""}), MISSING)
    assert_401(srv.get("/models", key=None, headers={"Authorization": "Bearer "}), MISSING)


@pytest.mark.parametrize("presented", [
    "nonsense",
    "sk-statim-",
    "sk-statim-" + "z" * 48,           # right length, not hex
    "sk-statim-" + "ab" * 23,           # too short
    "sk-statim-" + "ab" * 25,           # too long
    "sk-other-" + "a" * 49,             # wrong prefix
])
def test_malformed_key_is_401(srv, presented):
    assert_401(srv.get("/models", key=presented), "invalid API key")
    assert_401(srv.get("/models", key=None, headers={"X-API-Key": presented}), "invalid API key")


def test_unknown_key_of_the_right_shape_is_401(srv):
    assert_401(srv.get("/models", key=random_key()), "invalid API key")
    # Same lookup prefix as a real key, different secret: the prefix finds the row, the hash refuses it.
    forged = srv.alice[:18] + ("0" if srv.alice[18] != "0" else "1") + srv.alice[19:]
    assert forged != srv.alice and forged[:18] == srv.alice[:18]
    assert_401(srv.get("/models", key=forged), "invalid API key")
    # Only the last character differs.
    last = srv.alice[:-1] + ("0" if srv.alice[-1] != "0" else "1")
    assert_401(srv.get("/models", key=last), "invalid API key")
    # Upper-case hex is another key, not the same one.
    upper = "sk-statim-" + srv.alice[len("sk-statim-"):].upper()
    if upper != srv.alice:
        assert_401(srv.get("/models", key=upper), "invalid API key")


def test_key_revoked_while_the_server_runs_is_refused_at_once(srv):
    key = srv.create_key("short-lived")
    assert srv.get("/models", key=key).status_code == 200
    r = srv.post("/job", key=key, json={"model": "echo", "prompt": "before revoke"})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    out = srv.keys_cli("revoke", "short-lived")
    assert "revoked key 'short-lived'" in out.stderr, out.stderr
    # The very next request is refused, on every route.
    assert_401(srv.get("/models", key=key), "API key 'short-lived' was revoked")
    assert_401(srv.get(f"/job/{job_id}", key=key), "API key 'short-lived' was revoked")
    assert_401(srv.post("/job", key=key, json={"model": "echo", "prompt": "after revoke"}),
               "API key 'short-lived' was revoked")
    # Revoking it again fails and says so.
    again = srv.keys_cli("revoke", "short-lived", check=False)
    assert again.returncode != 0 and "no active key 'short-lived'" in again.stderr, again
    # Its job is still there for an admin.
    assert srv.job(job_id)["prompt"] == "before revoke"


def test_revoke_by_id(srv):
    key = srv.create_key("revoke-by-id")
    listed = json.loads(srv.keys_cli("list", "--json").stdout)
    kid = next(k["id"] for k in listed if k["name"] == "revoke-by-id" and k["revoked_at"] is None)
    srv.keys_cli("revoke", str(kid))
    assert_401(srv.get("/models", key=key), "API key 'revoke-by-id' was revoked")


def test_key_created_while_the_server_runs_works_at_once(srv):
    key = srv.create_key("newcomer")
    r = srv.post("/job", key=key, json={"model": "echo", "prompt": "hello from a new key"})
    assert r.status_code == 202, r.text
    assert srv.wait_job(r.json()["id"])["status"] == "COMPLETED"
    assert srv.get(f"/job/{r.json()['id']}", key=key).json()["result"]["text"] == "hello from a new key"


# ----------------------------------------------------------------------------------------------
# 403


@pytest.mark.parametrize("path", ["/admin/audit", "/metrics"])
def test_user_key_on_admin_routes_is_403_naming_the_scope(srv, path):
    for name in ("alice", "echo-only"):
        key = srv.alice if name == "alice" else srv.echo_only
        r = srv.get(path, key=key)
        err = assert_error(r, 403, "permission_denied",
                           f"key '{name}' has scope 'user'; GET {path} needs scope 'admin'")
        assert err["type"] == "permission_error"
        assert "WWW-Authenticate" not in r.headers
    assert srv.get(path, key=srv.admin_key).status_code == 200


@pytest.mark.parametrize("path", ["/METRICS", "/Metrics", "/ADMIN/AUDIT", "/Admin/Audit", "/admin/AUDIT",
                                  "/admin/audit/", "//admin/audit"])
def test_admin_routes_cannot_be_reached_by_spelling_them_differently(srv, path):
    """The HTTP router matches paths case-insensitively: every spelling that reaches an admin
    handler must get the admin check, so a user key never reads /metrics or the audit log."""
    r = srv.get(path, key=srv.alice)
    assert r.status_code in (403, 404), \
        f"GET {path} with a user key answered {r.status_code}: {r.text[:200]}"
    assert "statim_" not in r.text and '"entries"' not in r.text, r.text[:200]
    if r.status_code == 403:
        assert_error(r, 403, "permission_denied", "key 'alice' has scope 'user'")
    # Without a key: 401, as for any non-public route.
    assert srv.get(path, key=None).status_code == 401


def test_model_not_allowed_is_403_naming_the_allowed_models(srv):
    r = srv.post("/job", key=srv.echo_only, json={"model": "echo2", "prompt": "x"})
    err = assert_error(r, 403, "permission_denied", "key 'echo-only' may not use model 'echo2' (allowed: echo)",
                       param="model")
    assert err["type"] == "permission_error"
    r = srv.post("/v1/completions", key=srv.echo_only, json={"model": "echo2", "prompt": "x"})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "permission_denied", err
    assert "key 'echo-only' may not use model 'echo2' (allowed: echo)" in err["message"], err
    # Nothing was stored for echo2.
    assert srv.jobs(model="echo2", limit=1000)["total"] == 0
    # The allowed model works on both APIs.
    r = srv.post("/job", key=srv.echo_only, json={"model": "echo", "prompt": "allowed"})
    assert r.status_code == 202, r.text
    r = srv.post("/v1/completions", key=srv.echo_only, json={"model": "echo", "prompt": "allowed too"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "allowed too"


def test_model_list_with_several_allowed_models(srv):
    key = srv.create_key("two-models", "--models", "echo,echo2")
    r = srv.post("/job", key=key, json={"model": "stories", "prompt": "x"})
    # An unknown model: either 404 (unknown) or 403 (not allowed); the message must help either way.
    assert r.status_code in (403, 404), r.text
    assert "echo" in r.json()["error"]["message"], r.text
    one = srv.create_key("one-model", "--models", "echo2")
    r = srv.post("/job", key=one, json={"model": "echo", "prompt": "x"})
    assert_error(r, 403, "permission_denied", "key 'one-model' may not use model 'echo' (allowed: echo2)")
    assert srv.post("/job", key=key, json={"model": "echo2", "prompt": "x"}).status_code == 202


def test_models_lists_only_allowed_models(srv):
    assert [m["id"] for m in srv.get("/models", key=srv.echo_only).json()["models"]] == ["echo"]
    assert [m["id"] for m in srv.get("/v1/models", key=srv.echo_only).json()["data"]] == ["echo"]
    for key in (srv.alice, srv.admin_key):
        assert sorted(m["id"] for m in srv.get("/models", key=key).json()["models"]) == ["echo", "echo2"]
        assert sorted(m["id"] for m in srv.get("/v1/models", key=key).json()["data"]) == ["echo", "echo2"]


# ----------------------------------------------------------------------------------------------
# Ways to send a key; public routes


def test_x_api_key_and_bearer_both_work(srv):
    for headers in ({"X-API-Key": srv.alice}, {"Authorization": f"Bearer {srv.alice}"},
                    {"x-api-key": srv.alice}, {"authorization": f"bearer {srv.alice}"}):
        r = srv.get("/models", key=None, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    r = srv.post("/job", key=None, headers={"X-API-Key": srv.alice}, json={"model": "echo", "prompt": "via header"})
    assert r.status_code == 202, r.text
    # The job belongs to alice whichever header carried the key.
    assert srv.get(f"/job/{r.json()['id']}", key=srv.alice).status_code == 200
    assert srv.get(f"/job/{r.json()['id']}", key=srv.bob).status_code == 404


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/version", "/openapi.json", "/docs",
                                  "/docs/swagger-ui.css"])
def test_public_routes_need_no_key(srv, path):
    r = srv.get(path, key=None)
    assert r.status_code == 200, r.text
    assert "WWW-Authenticate" not in r.headers
    # A bad key on a public route is ignored, not refused.
    assert srv.get(path, key=random_key()).status_code == 200


def test_unknown_route_without_key_is_401_not_404(srv):
    """A client without a key learns nothing about the routes."""
    assert_401(srv.get("/no/such/route", key=None), MISSING)


# ----------------------------------------------------------------------------------------------
# Ownership


def test_user_keys_see_only_their_own_jobs(make_server):
    s = make_server("owners")
    s.enable_auth()
    s.add_model("echo", max_queue=1000, parallel=1)
    admin = s.create_key("root", "--scope", "admin")
    a = s.create_key("user-a")
    b = s.create_key("user-b")
    s.key = admin
    s.start()

    # A's job runs long enough for cancel attempts to matter.
    ra = s.post("/job", key=a, json={"model": "echo", "prompt": "A's secret", "params": {"delay_ms": 3000}})
    assert ra.status_code == 202, ra.text
    ja = ra.json()["id"]
    more_a = [s.post("/job", key=a, json={"model": "echo", "prompt": f"A {i}"}).json()["id"] for i in range(2)]
    jb = s.post("/job", key=b, json={"model": "echo", "prompt": "B's"}).json()["id"]

    for method, path in (("GET", f"/job/{ja}"), ("POST", f"/job/{ja}/cancel"), ("DELETE", f"/job/{ja}"),
                         ("GET", f"/job/{ja}/events"), ("GET", f"/job/{ja}/webhooks")):
        r = s.request(method, path, key=b, stream=path.endswith("/events"))
        with r:
            assert_error(r, 404, "not_found", f"job {ja} not found")
            assert "A's secret" not in r.text
    # B's cancel attempts did nothing.
    job = s.get(f"/job/{ja}", key=a).json()
    assert job["status"] in ("QUEUED", "PROCESSING") and job["status_message"] != "cancelling", job
    # A nonexistent job reads the same as another key's.
    r = s.get(f"/job/{jb + 1000}", key=b)
    assert_error(r, 404, "not_found", f"job {jb + 1000} not found")

    page_a = s.get("/job", key=a, params={"limit": 100}).json()
    page_b = s.get("/job", key=b, params={"limit": 100}).json()
    assert sorted(j["id"] for j in page_a["jobs"]) == sorted([ja, *more_a]) and page_a["total"] == 3, page_a
    assert [j["id"] for j in page_b["jobs"]] == [jb] and page_b["total"] == 1, page_b
    # Filters keep the scope.
    assert s.get("/job", key=b, params={"model": "echo", "status": "QUEUED"}).json()["total"] <= 1
    assert all(j["id"] == jb for j in s.get("/job", key=b, params={"model": "echo"}).json()["jobs"])
    page_admin = s.get("/job", key=admin, params={"limit": 100}).json()
    assert sorted(j["id"] for j in page_admin["jobs"]) == sorted([ja, jb, *more_a]) and page_admin["total"] == 4
    assert s.get(f"/job/{jb}", key=admin).status_code == 200

    # The owner may cancel; so may the admin.
    r = s.post(f"/job/{more_a[1]}/cancel", key=admin)
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
    r = s.request("DELETE", f"/job/{ja}", key=a)
    assert r.status_code == 200, r.text
    assert s.wait_job(ja)["status"] == "CANCELLED"
    # B still cannot see it, finished or not.
    assert s.get(f"/job/{ja}", key=b).status_code == 404


# ----------------------------------------------------------------------------------------------
# Rate limits and max_queued


def test_rate_limit_is_per_key(make_server):
    s = make_server("rate")
    s.enable_auth()
    s.add_model("echo", max_queue=1000, parallel=2)
    limited = s.create_key("limited", "--rate", "3/m")
    other = s.create_key("other")
    s.key = other
    s.start()
    for i in range(3):
        r = s.post("/job", key=limited, json={"model": "echo", "prompt": f"ok {i}"})
        assert r.status_code == 202, (i, r.text)
    r = s.post("/job", key=limited, json={"model": "echo", "prompt": "one too many"})
    err = assert_error(r, 429, "rate_limited", "key 'limited' exceeded its rate limit of 3/m; retry in ")
    assert err["type"] == "rate_limit_error"
    retry = r.headers.get("Retry-After", "")
    assert retry.isdigit() and 1 <= int(retry) <= 60, r.headers
    assert err["message"].endswith(f"retry in {retry} s"), (err, retry)
    # GETs count too (the limit is on requests).
    assert s.get("/models", key=limited).status_code == 429
    # Other keys are unaffected.
    for i in range(6):
        assert s.post("/job", key=other, json={"model": "echo", "prompt": f"other {i}"}).status_code == 202
    # The refused request created no job.
    assert all(j["prompt"] != "one too many" for j in s.jobs(limit=100)["jobs"])


def test_rate_limit_refills(make_server):
    s = make_server("refill")
    s.enable_auth()
    s.add_model("echo")
    key = s.create_key("fast", "--rate", "2/s")
    s.key = key
    s.start()
    statuses = [s.get("/models").status_code for _ in range(5)]
    assert 429 in statuses, statuses
    wait_until(lambda: s.get("/models").status_code == 200, 5, "the bucket to refill")


def test_fractional_rate_lets_requests_through(make_server):
    """--rate 0.5/s (one request every 2 s) either is refused by `statim keys create` or works;
    it must not create a key that is refused forever."""
    s = make_server("half-rate")
    s.enable_auth()
    s.add_model("echo")
    r = s.keys_cli("create", "--name", "half", "--rate", "0.5/s", check=False)
    if r.returncode != 0:
        assert "rate" in r.stderr and r.stdout.strip() == "", r
        return
    key = r.stdout.strip()
    s.key = key
    s.wait_models = lambda *a, **kw: {}  # the start must not spend the key's one request
    s.start()
    first = s.get("/models", key=key)
    assert first.status_code == 200, f"the first request of a 0.5/s key was refused: {first.text}"
    second = s.get("/models", key=key)
    assert second.status_code == 429, second.text
    time.sleep(int(second.headers["Retry-After"]) + 0.1)
    third = s.get("/models", key=key)
    assert third.status_code == 200, f"refused again after waiting Retry-After: {third.text}"


def test_max_queued(make_server):
    s = make_server("maxq")
    s.enable_auth()
    s.add_model("slow", max_queue=1000, parallel=1)
    admin = s.create_key("root", "--scope", "admin")
    mq = s.create_key("mq", "--max-queued", "2")
    s.key = admin
    s.start()

    def submit(prompt, key=mq, params=None):
        return s.post("/job", key=key, json={"model": "slow", "prompt": prompt, "params": params or {"delay_ms": 50}})

    blocker = submit("blocker", params={"delay_ms": int(2500 * SLOW)})
    assert blocker.status_code == 202, blocker.text
    s.wait_running(blocker.json()["id"])  # running jobs do not count as queued
    q = [submit(f"queued {i}") for i in range(2)]
    assert [r.status_code for r in q] == [202, 202], [r.text for r in q]
    r = submit("third")
    err = assert_error(r, 429, "rate_limited",
                       "key 'mq' already has 2 queued jobs (max_queued 2); retry when one starts")
    assert err["type"] == "rate_limit_error"
    assert r.headers.get("Retry-After", "").isdigit(), r.headers
    # Also through the OpenAI route.
    r = s.post("/v1/completions", key=mq, json={"model": "slow", "prompt": "via v1"})
    assert r.status_code == 429 and "already has 2 queued jobs" in r.json()["error"]["message"], r.text
    # Another key is not limited by mq's queue.
    assert submit("admin's", key=admin).status_code == 202
    # Once they run, mq may submit again.
    for j in [blocker, *q]:
        s.wait_job(j.json()["id"])
    r = submit("after")
    assert r.status_code == 202, r.text
    assert all(j["prompt"] != "third" for j in s.jobs(limit=100)["jobs"])


# ----------------------------------------------------------------------------------------------
# The CLI


def test_keys_list_never_shows_a_key_or_its_hash(make_server):
    s = make_server("list")
    keys = {"lister-admin": s.create_key("lister-admin", "--scope", "admin"),
            "lister-user": s.create_key("lister-user", "--models", "echo,echo2", "--rate", "10/s",
                                        "--max-queued", "5")}
    s.keys_cli("revoke", "lister-user")
    text = s.keys_cli("list")
    raw_json = s.keys_cli("list", "--json")
    for out in (text, raw_json):
        for key in keys.values():
            secret = key[len("sk-statim-"):]
            for needle in (key, secret, secret[8:], hashlib.sha256(key.encode()).hexdigest()):
                assert needle not in out.stdout and needle not in out.stderr, f"{needle} leaked:\n{out.stdout}"
    lines = text.stdout.splitlines()
    header = lines[0].split()
    for col in ("NAME", "SCOPE", "STATUS", "PREFIX"):
        assert col in header, lines[0]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert set(rows) == set(keys), text.stdout
    admin_row, user_row = rows["lister-admin"].split(), rows["lister-user"].split()
    assert "admin" in admin_row and "active" in admin_row, admin_row
    assert "user" in user_row and "revoked" in user_row, user_row
    assert admin_row[-1] == keys["lister-admin"][:18] + "...", admin_row
    assert user_row[-1] == keys["lister-user"][:18] + "...", user_row

    listed = {k["name"]: k for k in json.loads(raw_json.stdout)}
    assert set(listed) == set(keys)
    a, u = listed["lister-admin"], listed["lister-user"]
    assert (a["scope"], a["revoked_at"], a["models"], a["rate"], a["max_queued"]) == ("admin", None, None, None, None)
    assert (u["scope"], u["models"], u["rate"], u["max_queued"]) == ("user", ["echo", "echo2"], "10/s", 5), u
    assert u["revoked_at"] is not None
    assert a["prefix"] == keys["lister-admin"][:18] + "..." and u["prefix"] == keys["lister-user"][:18] + "..."
    for k in listed.values():
        assert not ({"key", "hash", "secret"} & set(k)), k


def test_key_name_clash_is_refused(make_server):
    s = make_server("clash")
    first = s.create_key("dup")
    r = s.keys_cli("create", "--name", "dup", check=False)
    assert r.returncode != 0, r
    assert r.stdout.strip() == "", "no key is printed when creation fails"
    assert "an active key named 'dup' exists; revoke it first or pick another name" in r.stderr, r.stderr
    # After a revoke the name is free again, and the new key is a different key.
    s.keys_cli("revoke", "dup")
    second = s.create_key("dup")
    assert second != first
    names = [k["name"] for k in json.loads(s.keys_cli("list", "--json").stdout)]
    assert names.count("dup") == 2


@pytest.mark.parametrize("args,message", [
    (["--name", "bad name!"], "--name must be 1..64 characters"),
    (["--name", "x", "--rate", "10/d"], "rate '10/d' must look like"),
    (["--name", "x", "--rate", "fast"], "rate 'fast' must look like"),
    (["--name", "x", "--max-queued", "0"], "--max-queued must be >= 1"),
    (["--name", "x", "--scope", "root"], "--scope"),
])
def test_keys_create_refuses_bad_options(make_server, args, message):
    s = make_server("badopts")
    r = s.keys_cli("create", *args, check=False)
    assert r.returncode != 0, r
    assert r.stdout.strip() == "", r.stdout
    assert message in r.stderr, r.stderr


def test_keys_create_prints_only_the_key_on_stdout(make_server):
    s = make_server("create")
    r = s.keys_cli("create", "--name", "ci", "--scope", "admin", "--models", "echo", "--rate", "5/s")
    assert KEY_RE.fullmatch(r.stdout.strip()), r.stdout
    assert r.stdout.count("\n") == 1
    assert "created key 'ci'" in r.stderr and "scope admin" in r.stderr, r.stderr
    assert r.stdout.strip() not in r.stderr


# ----------------------------------------------------------------------------------------------
# Logs


def test_json_logs_name_the_key_but_never_contain_it(make_server):
    s = make_server("logs")
    s.enable_auth()
    s.add_model("echo", max_queue=1000)
    key = s.create_key("logger", "--scope", "admin")
    doomed = s.create_key("doomed")
    s.key = key
    s.start()
    job = s.submit("echo", "logged")
    s.wait_job(job["id"])
    assert s.get("/models", key=None, headers={"X-API-Key": key}).status_code == 200
    # A wrong key (with the real one's lookup prefix) and a revoked key are logged without the key.
    forged = key[:-4] + ("0000" if key[-4:] != "0000" else "1111")
    assert s.get("/models", key=forged).status_code == 401
    assert s.get("/models", key=doomed).status_code == 200
    s.keys_cli("revoke", "doomed")
    assert s.get("/models", key=doomed).status_code == 401
    assert s.get("/models", key=key, headers={"X-Request-Id": "log-probe"}).status_code == 200

    def probe_logged():
        return [e for e in s.log_events() if e.get("msg") == "http" and e.get("request_id") == "log-probe"]
    wait_until(probe_logged, 5, "the request line")
    events = s.log_events()
    http = [e for e in events if e.get("msg") == "http"]
    posts = [e for e in http if e.get("method") == "POST" and e.get("path") == "/job"]
    assert posts and posts[0]["key"] == "logger" and posts[0]["job_id"] == job["id"], posts
    assert probe_logged()[0]["key"] == "logger"
    revoked = [e for e in http if e.get("key") == "doomed" and e.get("status") == 401]
    assert revoked, "the request with the revoked key names its key"
    assert any(e.get("status") == 401 and "key" not in e for e in http), "the forged key names nobody"
    text = "\n".join(s.log_text(i) for i in range(1, s.starts + 1))
    for secret in (key, doomed, forged, key[len("sk-statim-"):], doomed[len("sk-statim-"):]):
        assert secret not in text, f"the log contains a key: {secret}"
    for k in (key, doomed):
        assert hashlib.sha256(k.encode()).hexdigest() not in text, "the log contains a key's hash"


def test_auth_off_needs_no_key(make_server):
    s = make_server("open")
    s.add_model("echo")
    s.start()
    assert s.get("/metrics", key=None).status_code == 200
    assert s.get("/admin/audit", key=None).status_code == 200
    assert s.post("/job", key=None, json={"model": "echo", "prompt": "x"}).status_code == 202
    assert any("auth.mode is off" in e.get("msg", "") for e in s.log_events())


def test_revoke_revokes_exactly_one_key(make_server):
    """`statim keys revoke X` takes a name or an id; when X is both one key's name and another key's
    id, it must not revoke both."""
    s = make_server("revoke-one")
    s.create_key("first")   # id 1
    s.create_key("second")  # id 2
    s.create_key("1")       # id 3, named like key 1's id
    r = s.keys_cli("revoke", "1", check=False)
    listed = {k["name"]: k for k in json.loads(s.keys_cli("list", "--json").stdout)}
    revoked = sorted(n for n, k in listed.items() if k["revoked_at"] is not None)
    assert len(revoked) <= 1, f"`statim keys revoke 1` revoked {revoked} (stderr: {r.stderr.strip()})"
    if r.returncode == 0:
        assert len(revoked) == 1 and f"revoked key '{revoked[0]}'" in r.stderr, (revoked, r.stderr)
    else:
        assert not revoked and "1" in r.stderr, (revoked, r.stderr)


def test_keys_cli_works_while_the_server_is_busy(make_server):
    import threading
    s = make_server("busy")
    s.enable_auth()
    s.add_model("echo", max_queue=10000, parallel=2)
    s.key = s.create_key("busy-admin", "--scope", "admin")
    s.start()
    stop = threading.Event()
    statuses: list[int] = []

    def hammer():
        while not stop.is_set():
            statuses.append(s.post("/job", json={"model": "echo", "prompt": "load"}).status_code)
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        made = [s.create_key(f"busy-{i}") for i in range(5)]
        for i in range(0, 5, 2):
            s.keys_cli("revoke", f"busy-{i}")
        for i, key in enumerate(made):
            r = s.get("/models", key=key)
            assert r.status_code == (401 if i % 2 == 0 else 200), (i, r.text)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert statuses and set(statuses) == {202}, set(statuses)
