"""Idempotency-Key on POST /job and POST /v1/*: a retried request gets the original job (and says
so), a reused key with another request is a 409 naming the key and the job, keys are per API key,
and the record survives a restart."""
from __future__ import annotations

import threading
import time

import pytest

from conftest import SLOW, Server, assert_error, served, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("idem"), name="idem")
    s.add_model("echo", max_queue=1000, parallel=2)
    s.start()
    yield from served(s)



def ikey(name: str) -> str:
    return f"{name}-{time.time_ns()}"


def stored(s: Server, prompt: str) -> list[dict]:
    return [j for j in s.jobs(limit=1000)["jobs"] if j["prompt"] == prompt]


def test_retry_returns_the_same_job(srv):
    key = ikey("retry")
    body = {"model": "echo", "prompt": "once only", "params": {"delay_ms": 10}, "priority": 2}
    first = srv.post("/job", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    job = first.json()
    again = srv.post("/job", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 202, again.text
    assert again.headers.get("Idempotent-Replayed") == "true", again.headers
    assert again.headers["Location"] == first.headers["Location"] == f"/job/{job['id']}"
    replay = again.json()
    assert replay["id"] == job["id"]
    for f in ("model", "type", "prompt", "params", "priority", "created_at", "timestamp"):
        assert replay[f] == job[f], f
    assert len(stored(srv, "once only")) == 1
    # After it finished, a retry returns the finished job.
    done = srv.wait_job(job["id"])
    late = srv.post("/job", json=body, headers={"Idempotency-Key": key})
    assert late.status_code == 202 and late.headers.get("Idempotent-Replayed") == "true"
    assert late.json() == done
    assert len(stored(srv, "once only")) == 1


def test_without_a_key_every_post_is_a_new_job(srv):
    body = {"model": "echo", "prompt": "no key twice"}
    ids = {srv.post("/job", json=body).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_different_body_is_a_409_naming_the_key_and_the_job(srv):
    key = ikey("conflict")
    first = srv.post("/job", json={"model": "echo", "prompt": "original"}, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    jid = first.json()["id"]
    for body in ({"model": "echo", "prompt": "changed"},
                 {"model": "echo", "prompt": "original", "params": {"delay_ms": 1}},
                 {"model": "echo", "prompt": "original", "priority": 1}):
        r = srv.post("/job", json=body, headers={"Idempotency-Key": key})
        err = assert_error(r, 409, "conflict",
                           f"Idempotency-Key '{key}' was already used with a different request (job {jid})",
                           param="Idempotency-Key")
        assert err["type"] == "invalid_request_error", err
        assert "Idempotent-Replayed" not in r.headers
    assert stored(srv, "changed") == []
    # The same key on another route is another request too.
    r = srv.post("/v1/completions", json={"model": "echo", "prompt": "original"}, headers={"Idempotency-Key": key})
    assert r.status_code == 409, r.text
    assert f"Idempotency-Key '{key}' was already used with a different request (job {jid})" in \
        r.json()["error"]["message"], r.text
    # The original is untouched.
    assert srv.job(jid)["prompt"] == "original"


def test_a_refused_request_does_not_use_up_the_key(srv):
    key = ikey("refused")
    r = srv.post("/job", json={"model": "echo", "prompt": "x", "bogus": True}, headers={"Idempotency-Key": key})
    assert r.status_code == 400
    r = srv.post("/job", json={"model": "no-such-model", "prompt": "x"}, headers={"Idempotency-Key": key})
    assert r.status_code == 404
    r = srv.post("/job", json={"model": "echo", "prompt": "finally valid"}, headers={"Idempotency-Key": key})
    assert r.status_code == 202 and "Idempotent-Replayed" not in r.headers, r.text


@pytest.mark.parametrize("value", ["x" * 256, "caf\u00e9"])
def test_bad_idempotency_keys_are_400(srv, value):
    headers = {"Idempotency-Key": value.encode("latin-1") if not value.isascii() else value}
    r = srv.post("/job", json={"model": "echo", "prompt": "bad key"}, headers=headers)
    assert_error(r, 400, "invalid_request", "header 'Idempotency-Key' must be 1..255 printable ASCII characters",
                 param="Idempotency-Key")
    assert stored(srv, "bad key") == []


def test_longest_key_is_accepted(srv):
    key = ("k" * 240 + str(time.time_ns()))[-255:]
    body = {"model": "echo", "prompt": "long key"}
    a = srv.post("/job", json=body, headers={"Idempotency-Key": key})
    b = srv.post("/job", json=body, headers={"Idempotency-Key": key})
    assert (a.status_code, b.status_code) == (202, 202) and a.json()["id"] == b.json()["id"]


def test_concurrent_retries_make_one_job(srv):
    key = ikey("race")
    body = {"model": "echo", "prompt": "raced"}
    results: list = []

    def post():
        results.append(srv.post("/job", json=body, headers={"Idempotency-Key": key}))
    threads = [threading.Thread(target=post) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 202 for r in results), [r.text for r in results if r.status_code != 202]
    assert len({r.json()["id"] for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 11
    assert len(stored(srv, "raced")) == 1


def test_openai_retry_returns_the_same_completion(srv):
    key = ikey("v1")
    body = {"model": "echo", "prompt": "openai once"}
    a = srv.post("/v1/completions", json=body, headers={"Idempotency-Key": key}, timeout=30)
    b = srv.post("/v1/completions", json=body, headers={"Idempotency-Key": key}, timeout=30)
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert a.headers["X-Statim-Job-Id"] == b.headers["X-Statim-Job-Id"]
    assert a.json() == b.json()
    assert a.json()["choices"][0]["text"] == "openai once"
    assert len(stored(srv, "openai once")) == 1
    r = srv.post("/v1/completions", json={**body, "prompt": "other"}, headers={"Idempotency-Key": key})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "conflict"
    assert f"(job {a.headers['X-Statim-Job-Id']})" in r.json()["error"]["message"]


def test_openai_retry_while_the_job_runs_waits_for_the_same_job(srv):
    key = ikey("v1-slow")
    body = {"model": "echo", "prompt": "slow openai"}
    # echo takes its delay from params; the OpenAI route has no delay field, so block the model instead.
    blockers = [srv.submit("echo", "blocker", {"delay_ms": int(800 * SLOW)})["id"] for _ in range(2)]
    results: dict = {}

    def post(name):
        results[name] = srv.post("/v1/completions", json=body, headers={"Idempotency-Key": key}, timeout=60)
    t1 = threading.Thread(target=post, args=("a",))
    t1.start()
    wait_until(lambda: stored(srv, "slow openai"), 10, "the first request's job")
    t2 = threading.Thread(target=post, args=("b",))
    t2.start()
    t1.join()
    t2.join()
    a, b = results["a"], results["b"]
    assert (a.status_code, b.status_code) == (200, 200), (a.text, b.text)
    assert a.headers["X-Statim-Job-Id"] == b.headers["X-Statim-Job-Id"]
    assert a.json()["choices"][0]["text"] == b.json()["choices"][0]["text"] == "slow openai"
    assert len(stored(srv, "slow openai")) == 1
    for j in blockers:
        srv.wait_job(j)


def test_keys_of_different_api_keys_are_independent(make_server):
    s = make_server("idem-keys")
    s.enable_auth()
    s.add_model("echo", max_queue=1000)
    admin = s.create_key("idem-admin", "--scope", "admin")
    a = s.create_key("idem-a")
    b = s.create_key("idem-b")
    s.key = admin
    s.start()
    body = {"model": "echo", "prompt": "shared key"}
    ra = s.post("/job", key=a, json=body, headers={"Idempotency-Key": "same"})
    rb = s.post("/job", key=b, json=body, headers={"Idempotency-Key": "same"})
    assert (ra.status_code, rb.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in rb.headers
    assert ra.json()["id"] != rb.json()["id"]
    # B using the key with another body is not a conflict with A's request.
    rb2 = s.post("/job", key=b, json={"model": "echo", "prompt": "b's own"}, headers={"Idempotency-Key": "other"})
    ra2 = s.post("/job", key=a, json={"model": "echo", "prompt": "a's own"}, headers={"Idempotency-Key": "other"})
    assert (rb2.status_code, ra2.status_code) == (202, 202), (rb2.text, ra2.text)
    # Each replays its own, and cannot learn the other's job through the key.
    again = s.post("/job", key=b, json=body, headers={"Idempotency-Key": "same"})
    assert again.json()["id"] == rb.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"
    assert s.get(f"/job/{ra.json()['id']}", key=b).status_code == 404
    assert s.jobs(limit=100)["total"] == 4


def test_replay_is_not_refused_by_max_queued(make_server):
    """A client retrying a request whose job is still queued gets that job, not a 429."""
    s = make_server("idem-maxq")
    s.enable_auth()
    s.add_model("one", max_queue=1000, parallel=1)
    admin = s.create_key("root", "--scope", "admin")
    mq = s.create_key("mq1", "--max-queued", "1")
    s.key = admin
    s.start()
    blocker = s.submit("one", "blocker", {"delay_ms": int(2000 * SLOW)})["id"]
    s.wait_running(blocker)
    body = {"model": "one", "prompt": "queued behind"}
    first = s.post("/job", key=mq, json=body, headers={"Idempotency-Key": "retry-me"})
    assert first.status_code == 202
    again = s.post("/job", key=mq, json=body, headers={"Idempotency-Key": "retry-me"})
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"
    # A new request is over the limit.
    r = s.post("/job", key=mq, json={"model": "one", "prompt": "new"})
    assert r.status_code == 429, r.text


def test_replay_when_the_models_queue_is_full(make_server):
    """A retry of a request that was accepted gets its job even when the model's queue has since
    filled up: the retry adds nothing to the queue."""
    s = make_server("idem-full")
    s.add_model("one", max_queue=1, parallel=1)
    s.start()
    blocker = s.submit("one", "blocker", {"delay_ms": int(2000 * SLOW)})["id"]
    s.wait_running(blocker)
    body = {"model": "one", "prompt": "fills the queue"}
    first = s.post("/job", json=body, headers={"Idempotency-Key": "full"})
    assert first.status_code == 202, first.text
    again = s.post("/job", json=body, headers={"Idempotency-Key": "full"})
    assert again.status_code == 202, f"a retry of an accepted job was refused: {again.status_code} {again.text}"
    assert again.json()["id"] == first.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"
    # A new request is refused as before.
    assert s.post("/job", json={"model": "one", "prompt": "new"}).status_code == 429


def test_idempotency_survives_a_restart(make_server):
    s = make_server("idem-restart")
    s.add_model("echo", max_queue=100)
    s.start()
    body = {"model": "echo", "prompt": "before restart"}
    first = s.post("/job", json=body, headers={"Idempotency-Key": "durable"})
    assert first.status_code == 202
    done = s.wait_job(first.json()["id"])
    s.restart()
    again = s.post("/job", json=body, headers={"Idempotency-Key": "durable"})
    assert again.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true", again.text
    assert again.json() == done
    r = s.post("/job", json={**body, "prompt": "changed"}, headers={"Idempotency-Key": "durable"})
    assert_error(r, 409, "conflict", f"Idempotency-Key 'durable' was already used with a different request "
                                     f"(job {done['id']})")
    assert s.jobs()["total"] == 1


def test_replays_are_audited_with_the_original_job(make_server):
    s = make_server("idem-audit")
    s.add_model("echo")
    s.start()
    body = {"model": "echo", "prompt": "audit me"}
    rs = [s.post("/job", json=body, headers={"Idempotency-Key": "aud"}) for _ in range(2)]
    jid = rs[0].json()["id"]

    def rows():
        entries = s.get("/admin/audit", params={"limit": 100}).json()["entries"]
        got = [e for e in entries if e["request_id"] in {r.headers["X-Request-Id"] for r in rs}]
        return got if len(got) == 2 else None
    got = wait_until(rows, 10, "both audit rows")
    assert [(e["job_id"], e["status"]) for e in got] == [(jid, 202), (jid, 202)], got
