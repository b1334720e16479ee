"""Webhooks: a local HTTP receiver records what statim POSTs. One signed delivery per event with the
job as it ended, the events a job asked for in order, retries with backoff until delivered or
given up (GET /job/{id}/webhooks shows each attempt), a receiver that never answers holds up
nothing else, and the outbox survives a restart."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

from conftest import SLOW, Server, assert_error, free_port, iso_micros, wait_until

SECRET = "test-webhook-secret-0123456789"
DEFAULT_EVENTS = ["completed", "failed", "cancelled"]
FAST_RETRY = {"STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "0.2", "STATIM_WEBHOOKS_SECRET": SECRET}


class Receiver:
    """An HTTP server in a thread. `plan(n, request)` (n = 1 for the first request) gives
    (status, delay_s) for each request; every request is recorded as a dict (t, path, headers, body)
    when it arrives."""

    def __init__(self, plan: Callable[[int, dict], tuple[int, float]] | None = None, port: int = 0):
        self.plan = plan or (lambda n, req: (200, 0.0))
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = {"t": time.time(), "path": self.path,
                       "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with me.lock:
                    me.requests.append(req)
                    n = len(me.requests)
                status, delay = me.plan(n, req)
                if delay:
                    time.sleep(delay)
                try:
                    payload = b'{"ok": true}'
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up

            def log_message(self, *args):
                pass

        class Httpd(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 256  # statim may open many connections at once

        self.httpd = Httpd(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def wait(self, n: int, timeout: float = 20) -> list[dict]:
        def enough():
            with self.lock:
                return list(self.requests) if len(self.requests) >= n else None
        return wait_until(enough, timeout, f"{n} webhook request(s) at the receiver", 0.02)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(plan=None, port=0) -> Receiver:
        r = Receiver(plan, port)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def echo_server(make_server, env: dict | None = None, name: str = "hooks", parallel: int = 2) -> Server:
    s = make_server(name, env={"STATIM_WEBHOOKS_SECRET": SECRET, **(env or {})})
    s.add_model("echo", max_queue=1000, parallel=parallel)
    return s.start()


def submit_hooked(s: Server, url: str, prompt: str = "hooked", params: dict | None = None,
                  events: list[str] | None = None) -> dict:
    body: dict = {"model": "echo", "prompt": prompt, "webhook": url}
    if params is not None:
        body["params"] = params
    if events is not None:
        body["webhook_events"] = events
    r = s.post("/job", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def deliveries(s: Server, job_id: int) -> list[dict]:
    r = s.get(f"/job/{job_id}/webhooks")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["job_id"] == job_id
    return page["deliveries"]


def wait_deliveries(s: Server, job_id: int, pred: Callable[[list[dict]], bool], what: str, timeout: float = 20):
    return wait_until(lambda: (d := deliveries(s, job_id)) and pred(d) and d, timeout, what, 0.05)


def signature(secret: str, request: dict) -> str:
    ts = request["headers"]["x-statim-timestamp"].encode()
    return "sha256=" + hmac.new(secret.encode(), ts + b"." + request["body"], hashlib.sha256).hexdigest()


def check_signed(secret: str, request: dict) -> None:
    h = request["headers"]
    assert h["x-statim-signature"] == signature(secret, request), "the signature does not verify"
    ts = h["x-statim-timestamp"]
    assert ts.isdigit(), ts
    assert abs(int(ts) - request["t"]) <= 5, f"timestamp {ts} is not close to now ({request['t']:.0f})"


# ----------------------------------------------------------------------------------------------
# One delivery, signed


def test_completed_job_gets_one_signed_delivery(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server)
    job = submit_hooked(s, rx.url, "signed")
    assert job["webhook"] == {"url": rx.url, "events": DEFAULT_EVENTS}
    final = s.wait_job(job["id"])
    assert final["status"] == "COMPLETED"
    (req,) = rx.wait(1)
    page = wait_deliveries(s, job["id"], lambda d: d[0]["status"] == "delivered", "the delivery recorded")
    time.sleep(0.5 * SLOW)
    assert len(rx.requests) == 1, "exactly one request: queued and started were not asked for"

    assert req["path"] == "/hook"
    body = json.loads(req["body"])
    assert list(body) == ["event", "delivery_id", "job"], body
    assert body["event"] == "completed"
    assert body["job"] == s.job(job["id"]) == final, "the body carries the final job"
    h = req["headers"]
    assert h["content-type"].startswith("application/json"), h
    assert h["x-statim-event"] == "completed"
    assert h["x-statim-delivery"] == str(body["delivery_id"]) == str(page[0]["id"])
    assert h["user-agent"].startswith("statim-webhooks/"), h
    check_signed(SECRET, req)
    # A signature made with another secret, or over another body, does not verify.
    assert h["x-statim-signature"] != signature("other", req)

    (d,) = page
    assert (d["event"], d["url"], d["status"], d["attempts"], d["last_status_code"], d["last_error"]) == \
        ("completed", rx.url, "delivered", 1, 200, ""), d
    assert d["next_attempt_at"] is None and d["delivered_at"], d
    assert len(d["history"]) == 1 and d["history"][0]["status_code"] == 200 and d["history"][0]["error"] == ""
    assert d["history"][0]["duration_ms"] >= 0
    assert iso_micros(d["delivered_at"]) >= iso_micros(final["finished_at"])


def test_secret_from_the_data_dir_when_none_is_configured(make_server, receivers):
    rx = receivers()
    s = make_server("gen-secret")  # no STATIM_WEBHOOKS_SECRET
    s.add_model("echo")
    s.start()
    path = s.data_dir / "webhook_secret"
    assert path.exists(), "a secret is generated into the data dir"
    secret = path.read_text().strip()
    assert len(secret) >= 32, secret
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, oct(os.stat(path).st_mode)
    assert secret not in s.log_text(), "the secret is not logged"
    job = submit_hooked(s, rx.url, "generated secret")
    (req,) = rx.wait(1)
    check_signed(secret, req)
    assert json.loads(req["body"])["job"]["id"] == job["id"]
    # The same secret after a restart.
    s.restart()
    assert path.read_text().strip() == secret
    submit_hooked(s, rx.url, "after restart")
    req = rx.wait(2)[1]
    check_signed(secret, req)


def test_configured_secret_wins_over_the_file(make_server, receivers):
    rx = receivers()
    s = make_server("cfg-secret")
    s.add_model("echo")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    (s.data_dir / "webhook_secret").write_text("file-secret\n")
    s.env["STATIM_WEBHOOKS_SECRET"] = SECRET
    s.start()
    submit_hooked(s, rx.url)
    (req,) = rx.wait(1)
    check_signed(SECRET, req)


def test_url_path_and_query_are_kept(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server)
    url = f"http://127.0.0.1:{rx.port}/hooks/statim?token=abc&x=1"
    job = submit_hooked(s, url)
    (req,) = rx.wait(1)
    assert req["path"] == "/hooks/statim?token=abc&x=1"
    assert json.loads(req["body"])["job"]["webhook"]["url"] == url
    assert s.wait_job(job["id"])["webhook"]["url"] == url


def test_requested_events_are_delivered_and_recorded_in_order(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server)
    job = submit_hooked(s, rx.url, "three events", params={"delay_ms": 300}, events=["queued", "started", "completed"])
    assert job["webhook"]["events"] == ["queued", "started", "completed"]
    reqs = rx.wait(3)
    page = wait_deliveries(s, job["id"], lambda d: len(d) == 3 and all(x["status"] == "delivered" for x in d),
                           "three deliveries delivered")
    time.sleep(0.3 * SLOW)
    assert len(rx.requests) == 3
    bodies = sorted((json.loads(r["body"]) for r in reqs), key=lambda b: b["delivery_id"])
    assert [b["event"] for b in bodies] == ["queued", "started", "completed"], "delivery ids follow the events"
    assert sorted(r["headers"]["x-statim-event"] for r in reqs) == ["completed", "queued", "started"]
    assert [d["event"] for d in page] == ["queued", "started", "completed"], page
    assert [d["id"] for d in page] == [b["delivery_id"] for b in bodies]
    for r in reqs:
        check_signed(SECRET, r)
    assert all(b["job"]["id"] == job["id"] for b in bodies)
    assert bodies[-1]["job"]["status"] == "COMPLETED"


def test_a_jobs_events_arrive_in_order(make_server, receivers):
    """A job's events reach the receiver one after another: "started" is not sent while "queued"
    is still unanswered, so a receiver that tracks state never sees them reversed. The receiver
    here takes 0.7 s to answer "queued"."""
    rx = receivers(lambda n, req: (200, 0.7 if req["headers"]["x-statim-event"] == "queued" else 0.0))
    s = echo_server(make_server)
    job = submit_hooked(s, rx.url, "ordered", events=["queued", "started", "completed"])
    reqs = rx.wait(3)
    assert [json.loads(r["body"])["event"] for r in reqs] == ["queued", "started", "completed"], \
        [(json.loads(r["body"])["event"], round(r["t"] - reqs[0]["t"], 3)) for r in reqs]
    assert reqs[1]["t"] - reqs[0]["t"] >= 0.6, "started was sent before queued was answered"
    assert s.wait_job(job["id"])["status"] == "COMPLETED"


def test_failed_and_cancelled_jobs_deliver_their_event(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server, parallel=1)
    failed = submit_hooked(s, rx.url, "doomed", params={"fail": "boom"})
    blocker = s.submit("echo", "blocker", {"delay_ms": int(1500 * SLOW)})
    s.wait_running(blocker["id"])
    queued = submit_hooked(s, rx.url, "to be cancelled")
    r = s.post(f"/job/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
    reqs = rx.wait(2)
    by_job = {json.loads(x["body"])["job"]["id"]: x for x in reqs}
    f = json.loads(by_job[failed["id"]]["body"])
    assert (f["event"], f["job"]["status"], f["job"]["error"]) == ("failed", "FAILED", "boom"), f
    assert by_job[failed["id"]]["headers"]["x-statim-event"] == "failed"
    c = json.loads(by_job[queued["id"]]["body"])
    assert (c["event"], c["job"]["status"]) == ("cancelled", "CANCELLED"), c
    for x in reqs:
        check_signed(SECRET, x)
    s.post(f"/job/{blocker['id']}/cancel")
    # A running job cancelled mid-way delivers "cancelled" too.
    running = submit_hooked(s, rx.url, "cancel me running", params={"delay_ms": int(5000 * SLOW)})
    s.wait_running(running["id"])
    s.request("DELETE", f"/job/{running['id']}")
    req = rx.wait(3)[2]
    body = json.loads(req["body"])
    assert (body["event"], body["job"]["id"], body["job"]["status"]) == ("cancelled", running["id"], "CANCELLED")
    time.sleep(0.3 * SLOW)
    assert len(rx.requests) == 3


# ----------------------------------------------------------------------------------------------
# Retries


def test_retries_until_delivered(make_server, receivers):
    rx = receivers(lambda n, req: (500 if n <= 2 else 200, 0.0))
    s = echo_server(make_server, FAST_RETRY)
    job = submit_hooked(s, rx.url, "retried")
    reqs = rx.wait(3)
    (d,) = wait_deliveries(s, job["id"], lambda d: d[0]["status"] == "delivered", "delivered after retries")
    assert d["attempts"] == 3, d
    assert [a["status_code"] for a in d["history"]] == [500, 500, 200], d["history"]
    assert d["history"][0]["error"] == d["history"][1]["error"] == "the receiver answered HTTP 500", d["history"]
    assert d["history"][2]["error"] == ""
    assert d["last_status_code"] == 200 and d["delivered_at"] and d["next_attempt_at"] is None, d
    ats = [iso_micros(a["at"]) for a in d["history"]]
    assert ats == sorted(ats)
    # One delivery id, sent three times, each signed afresh.
    assert len({r["headers"]["x-statim-delivery"] for r in reqs}) == 1
    assert {json.loads(r["body"])["delivery_id"] for r in reqs} == {d["id"]}
    for r in reqs:
        check_signed(SECRET, r)
    # Exponential backoff: 0.2 s, then 0.4 s.
    gaps = [reqs[1]["t"] - reqs[0]["t"], reqs[2]["t"] - reqs[1]["t"]]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.35, gaps
    assert gaps[0] < 3 * SLOW and gaps[1] < 3 * SLOW, gaps
    time.sleep(0.5 * SLOW)
    assert len(rx.requests) == 3


def test_gives_up_after_max_attempts(make_server, receivers):
    rx = receivers(lambda n, req: (500, 0.0))
    s = echo_server(make_server, {**FAST_RETRY, "STATIM_WEBHOOKS_MAX_ATTEMPTS": "3"})
    job = submit_hooked(s, rx.url, "never delivered")
    (d,) = wait_deliveries(s, job["id"], lambda d: d[0]["status"] == "failed", "the delivery to fail")
    assert d["attempts"] == 3 and [a["status_code"] for a in d["history"]] == [500, 500, 500], d
    assert d["last_status_code"] == 500 and d["last_error"] == "the receiver answered HTTP 500", d
    assert d["delivered_at"] is None and d["next_attempt_at"] is None, d
    time.sleep(1.0 * SLOW)
    assert len(rx.requests) == 3, "no attempt after giving up"
    assert s.job(job["id"])["status"] == "COMPLETED", "the job is unaffected"
    assert any(e.get("msg") == "webhooks: giving up" and e.get("delivery_id") == d["id"] for e in s.log_events())


def test_unreachable_receiver_records_the_error(make_server):
    port = free_port()  # nothing listens there
    s = echo_server(make_server, {**FAST_RETRY, "STATIM_WEBHOOKS_MAX_ATTEMPTS": "2"})
    job = submit_hooked(s, f"http://127.0.0.1:{port}/hook", "nobody home")
    (d,) = wait_deliveries(s, job["id"], lambda d: d[0]["status"] == "failed", "the delivery to fail")
    assert d["attempts"] == 2 and d["last_status_code"] is None, d
    assert all(a["status_code"] is None and a["error"] for a in d["history"]), d["history"]
    assert d["last_error"], d


def test_slow_receiver_times_out_and_holds_up_nothing(make_server, receivers):
    hang = receivers(lambda n, req: (200, 30.0))
    quick = receivers()
    s = echo_server(make_server, {**FAST_RETRY, "STATIM_WEBHOOKS_TIMEOUT_SECONDS": "1",
                                  "STATIM_WEBHOOKS_MAX_ATTEMPTS": "2"})
    stuck = [submit_hooked(s, hang.url, f"to the void {i}") for i in range(3)]
    hang.wait(3)
    t0 = time.monotonic()
    posts, others = [], []
    for i in range(20):
        t = time.monotonic()
        others.append(submit_hooked(s, quick.url, f"other {i}"))
        posts.append(time.monotonic() - t)
    for j in others:
        assert s.wait_job(j["id"], timeout=10)["status"] == "COMPLETED"
    elapsed = time.monotonic() - t0
    assert max(posts) < 0.5 * SLOW, f"POST /job took up to {max(posts):.2f}s while a receiver hung"
    assert elapsed < 5 * SLOW, f"20 jobs took {elapsed:.1f}s while a receiver hung"
    # Other receivers are served meanwhile.
    quick.wait(20, timeout=10)
    assert sorted(json.loads(r["body"])["job"]["id"] for r in quick.requests) == sorted(j["id"] for j in others)
    # The hanging deliveries time out (after about 1 s each), are retried once, then fail.
    for j in stuck:
        (d,) = wait_deliveries(s, j["id"], lambda d: d[0]["status"] == "failed", "the hung delivery to fail", 20)
        assert d["attempts"] == 2 and d["last_status_code"] is None and d["last_error"], d
        assert all(0.8e3 <= a["duration_ms"] <= 5e3 * SLOW for a in d["history"]), d["history"]


def test_pending_deliveries_survive_a_restart(make_server, receivers):
    """The outbox is durable: a delivery still being retried when the server stops is sent after
    the next start."""
    state = {"ok": False}
    rx = receivers(lambda n, req: (200 if state["ok"] else 503, 0.0))
    s = echo_server(make_server, {**FAST_RETRY, "STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "1"})
    job = submit_hooked(s, rx.url, "durable hook")
    rx.wait(1)
    s.stop()
    state["ok"] = True
    s.start()
    (d,) = wait_deliveries(s, job["id"], lambda d: d[0]["status"] == "delivered", "delivered after the restart")
    assert d["attempts"] >= 2 and d["history"][0]["status_code"] == 503 and d["history"][-1]["status_code"] == 200, d
    body = json.loads(rx.requests[-1]["body"])
    assert body["event"] == "completed" and body["job"]["id"] == job["id"]


# ----------------------------------------------------------------------------------------------
# Request validation


@pytest.mark.parametrize("extra,param,message", [
    ({"webhook_events": ["completed"]}, "webhook_events", "'webhook_events' needs 'webhook'"),
    ({"webhook": "ftp://example.com/x"}, "webhook", "scheme 'ftp' is not allowed"),
    ({"webhook": "example.com/hook"}, "webhook", "'webhook' must be an http:// or https:// URL"),
    ({"webhook": 5}, "webhook", "'webhook' must be a URL string"),
    ({"webhook": "http://example.com/" + "a" * 2040}, "webhook", "at most 2048 characters"),
    ({"webhook": "http://user:pw@example.com/"}, "webhook", "no user name or password"),
    ({"webhook": "http://example.com/", "webhook_events": []}, "webhook_events", "must be a non-empty list"),
    ({"webhook": "http://example.com/", "webhook_events": "completed"}, "webhook_events", "must be a non-empty list"),
    ({"webhook": "http://example.com/", "webhook_events": ["done"]}, "webhook_events",
     "'webhook_events' has 'done'; allowed events: queued, started, completed, failed, cancelled"),
])
def test_bad_webhook_fields_are_400(make_server, extra, param, message):
    s = make_server("hook-validation")
    s.add_model("echo")
    s.start()
    r = s.post("/job", json={"model": "echo", "prompt": "x", **extra})
    assert_error(r, 400, "invalid_request", message, param=param)
    assert s.jobs()["total"] == 0


def test_an_idempotent_replay_sends_no_second_delivery(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server)
    body = {"model": "echo", "prompt": "hooked once", "webhook": rx.url, "webhook_events": ["queued", "completed"]}
    ids = {s.post("/job", json=body, headers={"Idempotency-Key": "hook-once"}).json()["id"] for _ in range(3)}
    assert len(ids) == 1
    (jid,) = ids
    s.wait_job(jid)
    rx.wait(2)
    time.sleep(0.5 * SLOW)
    assert sorted(json.loads(r["body"])["event"] for r in rx.requests) == ["completed", "queued"]
    assert len(deliveries(s, jid)) == 2


def test_events_are_deduplicated_and_a_job_without_webhook_has_none(make_server, receivers):
    rx = receivers()
    s = echo_server(make_server)
    job = submit_hooked(s, rx.url, "dups", events=["completed", "completed"])
    assert job["webhook"]["events"] == ["completed"]
    rx.wait(1)
    plain = s.submit("echo", "plain")
    s.wait_job(plain["id"])
    time.sleep(0.3 * SLOW)
    assert len(rx.requests) == 1
    assert deliveries(s, plain["id"]) == []
    assert s.job(plain["id"])["webhook"] is None
    r = s.get("/job/999999/webhooks")
    assert_error(r, 404, "not_found", "job 999999 not found")
