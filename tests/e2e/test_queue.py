"""Admission control (429 when a model's queue is full), priority order, and failing jobs."""
from conftest import assert_error, wait_until


def test_queue_full_429_then_drains(make_server):
    s = make_server("queue")
    s.add_model("small", max_queue=2, parallel=1)
    s.start()
    blocker = s.submit("small", "blocker", {"delay_ms": 2500})["id"]
    s.wait_running(blocker)
    s.wait_queue("small", queued=0, running=1)  # the running job no longer counts as queued
    queued = [s.submit("small", f"queued {i}", {"delay_ms": 10})["id"] for i in range(2)]

    r = s.submit_raw("small", "one too many")
    err = assert_error(r, 429, "queue_full", ["model 'small' has 2 queued jobs (max_queue 2)", "retry later"])
    assert err["type"] == "rate_limit_error"
    assert r.headers.get("Retry-After", "").isdigit(), r.headers
    m = s.models()["small"]
    assert (m["queued"], m["running"], m["max_queue"]) == (2, 1, 2)
    assert s.jobs()["total"] == 3, "the rejected submission left no job behind"

    for id in [blocker] + queued:
        assert s.wait_job(id)["status"] == "COMPLETED"
    s.wait_queue("small", queued=0, running=0)
    again = [s.submit("small", f"again {i}")["id"] for i in range(2)]
    for i, id in enumerate(again):
        assert s.wait_job(id)["result"]["text"] == f"again {i}"


def test_queue_limit_is_per_model(make_server):
    s = make_server("queue2")
    s.add_model("small", max_queue=1, parallel=1)
    s.add_model("big", max_queue=100, parallel=1)
    s.start()
    blocker = s.submit("small", "blocker", {"delay_ms": 1000})["id"]
    s.wait_running(blocker)
    s.wait_queue("small", queued=0, running=1)
    s.submit("small", "fills it")
    assert_error(s.submit_raw("small", "rejected"), 429, "queue_full", "model 'small'")
    job = s.submit("big", "other model is fine")
    assert s.wait_job(job["id"])["result"]["text"] == "other model is fine"


def test_priority_order_then_fifo(make_server):
    s = make_server("priority")
    s.add_model("echo", parallel=1)
    s.start()
    blocker = s.submit("echo", "blocker", {"delay_ms": 2000})["id"]
    s.wait_running(blocker)
    plan = [("low-1", -5), ("mid-1", 0), ("high-1", 10), ("low-2", -5), ("high-2", 10), ("mid-2", None),
            ("top", 100), ("bottom", -100)]
    ids = {name: s.submit("echo", name, priority=p)["id"] for name, p in plan}
    assert s.job(blocker)["status"] == "PROCESSING", \
        "the blocker finished before every job was queued; the order below would prove nothing"
    jobs = {name: s.wait_job(id) for name, id in ids.items()}
    assert all(j["status"] == "COMPLETED" for j in jobs.values())
    by_start = sorted(jobs, key=lambda n: (jobs[n]["started_at"], jobs[n]["id"]))
    assert by_start == ["top", "high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2", "bottom"], by_start
    # With one worker, each job starts after the previous one finished.
    ordered = [jobs[n] for n in by_start]
    assert all(a["finished_at"] <= b["started_at"] for a, b in zip(ordered, ordered[1:]))
    assert s.job(blocker)["finished_at"] <= ordered[0]["started_at"]


def test_priority_accepts_the_whole_range(make_server):
    s = make_server("priority-range")
    s.add_model("echo")
    s.start()
    for p in (-100, -1, 0, 1, 42, 100):
        r = s.submit_raw("echo", f"p={p}", priority=p)
        assert r.status_code == 202, f"priority {p}: {r.status_code} {r.text}"
        assert r.json()["priority"] == p


def test_negative_priorities_order(make_server):
    # The same ordering check with priorities <= -1 only.
    s = make_server("priority-neg")
    s.add_model("echo", parallel=1)
    s.start()
    blocker = s.submit("echo", "blocker", {"delay_ms": 1000})["id"]
    s.wait_running(blocker)
    plan = [("low-1", -50), ("mid-1", -10), ("high-1", -1), ("low-2", -50), ("high-2", -1), ("mid-2", -10)]
    ids = {name: s.submit("echo", name, priority=p)["id"] for name, p in plan}
    assert s.job(blocker)["status"] == "PROCESSING", "the blocker finished too early"
    jobs = {name: s.wait_job(id) for name, id in ids.items()}
    by_start = sorted(jobs, key=lambda n: (jobs[n]["started_at"], jobs[n]["id"]))
    assert by_start == ["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"], by_start


def test_failing_job_then_the_worker_keeps_serving(make_server):
    s = make_server("failure")
    s.add_model("echo", parallel=1)
    s.start()
    bad = s.submit("echo", "doomed", {"fail": "boom"})["id"]
    good = s.submit("echo", "next one")["id"]
    failed = s.wait_job(bad)
    assert failed["status"] == "FAILED", failed
    assert failed["error"] == "boom"
    assert failed["status_message"] == "failed"
    assert failed["result"] is None
    assert failed["attempts"] == 1, "a backend failure is final, not retried"
    assert failed["started_at"] is not None and failed["finished_at"] is not None
    ok = s.wait_job(good)
    assert ok["status"] == "COMPLETED" and ok["result"] == {"text": "next one"} and ok["error"] is None
    # After a delay the failure is the same; and the worker still serves.
    slow_bad = s.wait_job(s.submit("echo", "slow doom", {"fail": "boom after a nap", "delay_ms": 50})["id"])
    assert slow_bad["status"] == "FAILED" and slow_bad["error"] == "boom after a nap"
    assert s.wait_job(s.submit("echo", "still here")["id"])["result"]["text"] == "still here"
    assert s.jobs(status="FAILED")["total"] == 2
    wait_until(lambda: s.models()["echo"]["running"] == 0, 5, "worker to go idle")


def test_empty_failure_message_still_explains(echo_server):
    # fail="" is either refused up front or still leaves an error on the FAILED job.
    r = echo_server.submit_raw("echo", "silent doom", {"fail": ""})
    if r.status_code != 400:
        assert r.status_code == 202, r.text
        silent = echo_server.wait_job(r.json()["id"])
        assert silent["status"] == "FAILED" and silent["error"], f"a FAILED job must say why: {silent}"
