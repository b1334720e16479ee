"""What the web dashboard needs from the API, checked as any client sees it: GET /events (every
job's lifecycle, only the caller's jobs for a user key), API keys over HTTP (/admin/keys), GET
/me, the job list's type / time / text filters, a queued job's queue_position, a job's input
files, and /ui itself (served without a key, with a strict CSP). The dashboard in a browser is
tested in ui/tests (make test-ui)."""
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests

from conftest import assert_error, sse_events

KEY_RE = re.compile(r"sk-statim-[0-9a-f]{48}")


@pytest.fixture
def keyed(make_server):
    s = make_server("keyed")
    s.enable_auth()
    s.add_model("echo")
    s.add_model("slow", parallel=1)
    admin = s.create_key("root", "--scope", "admin")
    alice = s.create_key("alice")
    bob = s.create_key("bob")
    s.key = admin
    s.start()
    return s, admin, alice, bob


class Collector:
    """Reads an SSE stream on a thread, keeping (event, data) pairs."""

    def __init__(self, s, path, key):
        self.events: list[tuple[str, dict]] = []
        self.resp = s.get(path, key=key, stream=True, timeout=30)
        assert self.resp.status_code == 200, self.resp.text
        assert self.resp.headers["Content-Type"].startswith("text/event-stream")
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "the stream starts with a ready event"

    def _run(self):
        try:
            for name, data in sse_events(self.resp):
                if name == "ready":
                    self.ready.set()
                    continue
                self.events.append((name, json.loads(data)))
        except Exception:  # noqa: BLE001 - close() ends the read mid-stream
            pass

    def of(self, job_id):
        return [(n, d) for n, d in self.events if d["job_id"] == job_id]

    def close(self):
        self.resp.close()


def test_events_tell_each_key_of_its_own_jobs_and_an_admin_of_all(keyed):
    s, admin, alice, bob = keyed
    everyone = Collector(s, "/events", admin)
    alices = Collector(s, "/events", alice)
    try:
        a = s.post("/job", json={"model": "echo", "prompt": "alice's"}, key=alice).json()
        b = s.post("/job", json={"model": "echo", "prompt": "bob's"}, key=bob).json()
        deadline = time.time() + 10
        while time.time() < deadline and (len(everyone.of(b["id"])) < 3 or len(alices.of(a["id"])) < 3):
            time.sleep(0.05)
        for c in (everyone, alices):
            got = c.of(a["id"])
            assert [n for n, _ in got] == ["queued", "started", "completed"], got
            queued, started, completed = (d for _, d in got)
            assert queued == {"job_id": a["id"], "status": "QUEUED", "model": "echo"}
            assert started == {"job_id": a["id"], "status": "PROCESSING", "model": "echo", "attempt": 1}
            assert completed["status"] == "COMPLETED"
            assert completed["job"]["result"]["text"] == "alice's", "an end carries the ended job"
        assert [n for n, _ in everyone.of(b["id"])] == ["queued", "started", "completed"]
        assert alices.of(b["id"]) == [], "a user key hears nothing of another key's job"
        assert not any(n == "token" for n, _ in everyone.events), "no tokens on the list stream"
    finally:
        everyone.close()
        alices.close()


def test_an_events_stream_ends_when_its_key_is_revoked(keyed):
    s, admin, alice, bob = keyed
    made = s.post("/admin/keys", json={"name": "watcher"}).json()
    stream = Collector(s, "/events", made["key"])
    others = Collector(s, "/events", alice)
    try:
        assert s.request("DELETE", f"/admin/keys/{made['id']}").status_code == 200
        stream.thread.join(timeout=10)
        assert not stream.thread.is_alive(), "the revoked key's stream ended"
        assert others.thread.is_alive(), "another key's stream goes on"
        job = s.post("/job", json={"model": "echo", "prompt": "still heard"}, key=alice).json()
        deadline = time.time() + 10
        while time.time() < deadline and not others.of(job["id"]):
            time.sleep(0.05)
        assert others.of(job["id"]), "alice's stream still hears her jobs"
    finally:
        stream.close()
        others.close()


def test_events_refuses_unknown_parameters_and_needs_a_key(keyed):
    s, admin, alice, bob = keyed
    assert_error(s.get("/events?model=echo"), 400, "invalid_request", "model")
    assert_error(s.get("/events", key=None), 401, None)


def test_keys_are_created_listed_and_revoked_over_http(keyed):
    s, admin, alice, bob = keyed
    r = s.post("/admin/keys", json={"name": "ci-bot", "scope": "user", "models": ["echo"], "rate": "5/s",
                                    "max_queued": 3})
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    made = r.json()
    assert KEY_RE.fullmatch(made["key"]), made
    assert made["name"] == "ci-bot" and made["scope"] == "user" and made["models"] == ["echo"]
    assert made["rate"] == "5/s" and made["max_queued"] == 3 and made["revoked_at"] is None
    assert made["prefix"] == made["key"][:18] + "..."
    # The new key works at once, as a user key limited to echo.
    me = s.get("/me", key=made["key"]).json()
    assert me == {"auth": "required", "admin": False, "key": {k: v for k, v in made.items() if k != "key"}}
    assert_error(s.post("/job", json={"model": "slow", "prompt": "x"}, key=made["key"]), 403, None, "slow")
    # Listed without the secret; the CLI sees it too.
    listed = {k["name"]: k for k in s.get("/admin/keys").json()["keys"]}
    assert set(listed) == {"root", "alice", "bob", "ci-bot"}
    assert "key" not in listed["ci-bot"] and made["key"] not in json.dumps(listed)
    cli = {k["name"]: k for k in json.loads(s.keys_cli("list", "--json").stdout)}
    assert cli["ci-bot"] == listed["ci-bot"]
    # Revoked by id: refused from then on; the name is free again.
    r = s.request("DELETE", f"/admin/keys/{made['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None
    assert_error(s.get("/me", key=made["key"]), 401, None)
    assert_error(s.request("DELETE", f"/admin/keys/{made['id']}"), 404, None)
    assert s.post("/admin/keys", json={"name": "ci-bot"}).status_code == 201
    # By id only: a key named like another key's id is not the one revoked.
    alice_id = s.get("/me", key=alice).json()["key"]["id"]
    digits = s.post("/admin/keys", json={"name": str(alice_id)}).json()
    assert s.request("DELETE", f"/admin/keys/{alice_id}").json()["name"] == "alice"
    assert_error(s.get("/me", key=alice), 401, None)
    assert s.get("/me", key=digits["key"]).json()["key"]["name"] == str(alice_id)
    assert_error(s.request("DELETE", "/admin/keys/ci-bot"), 400, "invalid_request",
                 "a key id is a positive integer (got 'ci-bot'", param="id")


@pytest.mark.parametrize("body,param,message", [
    ({}, "name", "'name' is required"),
    ({"name": "bad name!"}, "name", "'name' must be 1..64 characters"),
    ({"name": "x", "scope": "root"}, "scope", "'scope' must be 'user' or 'admin' (got 'root')"),
    ({"name": "x", "rate": "fast"}, "rate", "rate 'fast' must look like"),
    ({"name": "x", "max_queued": 0}, "max_queued", "'max_queued' must be >= 1"),
    ({"name": "x", "max_queued": "3"}, "max_queued", "'max_queued' must be an integer, not string"),
    ({"name": "x", "models": "echo"}, "models", "'models' must be a list of model ids"),
    ({"name": "x", "models": []}, "models", "'models' needs at least one model id"),
    ({"name": "x", "expires": "never"}, "expires", "unknown field 'expires'"),
])
def test_a_bad_key_request_names_its_field_and_creates_nothing(keyed, body, param, message):
    s, admin, alice, bob = keyed
    assert_error(s.post("/admin/keys", json=body), 400, "invalid_request", message, param=param)
    assert {k["name"] for k in s.get("/admin/keys").json()["keys"]} == {"root", "alice", "bob"}


def test_key_routes_are_for_admin_keys_only_and_names_stay_unique(keyed):
    s, admin, alice, bob = keyed
    assert_error(s.get("/admin/keys", key=alice), 403, None)
    assert_error(s.post("/admin/keys", json={"name": "mine"}, key=alice), 403, None)
    assert_error(s.request("DELETE", "/admin/keys/bob", key=alice), 403, None)
    assert_error(s.post("/admin/keys", json={"name": "alice"}), 409, None, "an active key named 'alice' exists")
    assert_error(s.post("/admin/keys", data="{not json", headers={"Content-Type": "application/json"}), 400, None)
    me = s.get("/me", key=alice).json()
    assert me["admin"] is False and me["key"]["name"] == "alice" and me["auth"] == "required"


def test_me_without_auth_is_an_anonymous_admin(echo_server):
    assert echo_server.get("/me").json() == {"auth": "off", "admin": True, "key": None}


def test_the_job_list_filters_by_type_time_and_prompt_text(make_server):
    s = make_server("filters")
    s.add_model("echo")
    s.add_model("tts", backend="tts")
    s.start()
    ids = [s.submit("echo", p)["id"] for p in ("A cat in space", "a dog", "100% CAT", "under_score")]
    ids.append(s.submit("tts", "cat speech")["id"])
    for i in ids:
        s.wait_job(i)

    def listed(**query):
        r = s.get("/job", params=query)
        assert r.status_code == 200, r.text
        return [j["prompt"] for j in r.json()["jobs"]]

    assert listed(q="cat") == ["cat speech", "100% CAT", "A cat in space"]
    assert listed(q="cat", type="completion") == ["100% CAT", "A cat in space"]
    assert listed(type="speech") == ["cat speech"]
    assert listed(type="speech", model="echo") == []
    assert listed(q="0% c") == ["100% CAT"]
    assert listed(q="r_s") == ["under_score"]
    assert listed(q="%") == ["100% CAT"]
    assert listed(q="nothing like it") == []
    first = s.job(ids[0])["created_at"]
    t0 = datetime.fromisoformat(first.replace("Z", "+00:00"))
    assert len(listed(since=first)) == 5
    assert listed(until=first) == []
    later = (t0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert listed(since=later) == []
    assert len(listed(since=str(int(t0.timestamp())), until=later)) == 5, "Unix seconds work too"
    assert_error(s.get("/job?since=yesterday"), 400, "invalid_request",
                 "query parameter 'since' must be an ISO-8601 UTC time or Unix seconds (got 'yesterday')", param="since")
    assert_error(s.get("/job", params={"q": "x" * 1025}), 400, "invalid_request", "at most 1024 bytes", param="q")
    assert_error(s.get("/job?text=cat"), 400, "invalid_request", "text")


def test_a_queued_job_says_where_it_stands(make_server):
    s = make_server("position")
    s.add_model("slow", parallel=1)
    s.start()
    running = s.submit("slow", "first", params={"delay_ms": 30000})["id"]
    s.wait_running(running)
    q = [s.submit("slow", f"q{i}")["id"] for i in range(3)]
    urgent = s.submit("slow", "urgent", priority=5)["id"]
    assert "queue_position" not in s.job(running)
    assert [s.job(i)["queue_position"] for i in q] == [2, 3, 4]
    assert s.job(urgent)["queue_position"] == 1, "a higher priority goes first"
    assert s.post(f"/job/{q[0]}/cancel").status_code == 200
    assert [s.job(i)["queue_position"] for i in q[1:]] == [2, 3]
    assert "queue_position" not in s.job(q[0])
    assert "queue_position" not in s.get("/job").json()["jobs"][0], "only GET /job/{id} counts"
    s.post(f"/job/{running}/cancel")


def test_the_dashboard_is_served_without_a_key_with_a_strict_policy(keyed):
    s, admin, alice, bob = keyed
    for path in ("/ui", "/ui/jobs", "/ui/try", "/ui/models", "/ui/admin", "/ui/jobs/42"):
        r = s.get(path, key=None)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<div id="app"></div>' in r.text
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self';" in csp and "connect-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["Cache-Control"] == "no-cache"
    page = s.get("/ui", key=None).text
    assets = re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', page)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets), page
    for a in assets:
        r = s.get(a, key=None)
        assert r.status_code == 200 and len(r.content) > 1000, a
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert r.headers["Content-Type"].startswith("text/javascript" if a.endswith(".js") else "text/css")
    assert "http://" not in s.get(next(a for a in assets if a.endswith(".js")), key=None).text.replace(
        "http://www.w3.org", ""), "the app loads nothing from elsewhere"
    assert s.get("/ui/favicon.svg", key=None).headers["Content-Type"] == "image/svg+xml"
    assert_error(s.get("/ui/nope", key=None), 404, None, "no dashboard page 'nope'")
    assert_error(s.get("/ui/index.html", key=None), 404, None)
    assert_error(s.get("/ui/assets/index-missing.js", key=None), 404, None, "no dashboard asset")
    # The page itself is public; what it shows needs a key.
    assert_error(s.get("/job", key=None), 401, None)


def test_models_describe_each_job_types_params_with_ranges_and_defaults(make_server, tmp_path):
    s = make_server("params")
    s.add_model("echo")
    s.add_model("tts", backend="tts", params={"voice": "de"})
    s.start()
    models = s.models()
    echo = models["echo"]["job_types"]
    assert echo == {"completion": {"input_types": [], "params": {
        "delay_ms": {"type": "integer", "minimum": 0, "maximum": 600000, "default": 0,
                     "description": "milliseconds to wait before answering"},
        "fail": {"type": "string", "maxLength": 4096, "description": "fail the job with this message"}}}}
    tts = models["tts"]["job_types"]["speech"]["params"]
    assert tts["voice"]["default"] == "de", "the manifest's voice is the default shown"
    assert tts["speed"] == {"type": "integer", "minimum": 80, "maximum": 450, "default": 175,
                            "description": "words per minute"}
    assert set(tts["format"]["enum"]) >= {"wav", "mp3", "ogg", "flac"} and tts["format"]["default"] == "wav"
    # What is described is what is checked: the bounds given are the bounds enforced.
    assert_error(s.submit_raw("tts", "hi", params={"speed": 451}), 400, "invalid_request",
                 "'params.speed' must be between 80 and 450 (words per minute)", param="params.speed")
    assert s.submit_raw("tts", "hi", params={"speed": 450}).status_code == 202
    assert_error(s.submit_raw("echo", "hi", params={"delay_ms": -1}), 400, "invalid_request",
                 "'params.delay_ms' must be between 0 and 600000", param="params.delay_ms")
    assert_error(s.submit_raw("echo", "hi", params={"nope": 1}), 400, "invalid_request",
                 "unknown field 'params.nope' (allowed: delay_ms, fail)", param="params.nope")
