"""Graceful SIGTERM: running jobs finish, queued ones wait for the next start."""
import signal
import time

from conftest import SLOW


def test_sigterm_finishes_running_job_and_keeps_queued(make_server):
    s = make_server("sigterm")
    s.add_model("echo", parallel=1)
    s.start()
    running = s.submit("echo", "finish me", {"delay_ms": 1500})["id"]
    queued = [s.submit("echo", f"later {i}")["id"] for i in range(3)]
    s.wait_running(running)

    t0 = time.monotonic()
    assert s.stop(signal.SIGTERM) == 0
    took = time.monotonic() - t0
    assert took < 20 * SLOW, f"shutdown took {took:.1f}s"
    stopped = [e for e in s.log_events() if e.get("msg") == "statim: stopped"]
    assert stopped and stopped[0]["all_jobs_finished"] is True, stopped

    # Restart with the model unusable, so nothing runs: the database shows what shutdown left.
    s.add_model("echo", backend="no-such-backend")
    s.start()
    assert s.models()["echo"]["state"] == "failed"
    done = s.job(running)
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "finish me"}, done
    assert done["attempts"] == 1
    for id in queued:
        j = s.job(id)
        assert j["status"] == "QUEUED" and j["attempts"] == 0 and j["started_at"] is None, j
    s.stop()

    # A normal start runs them.
    s.add_model("echo", parallel=1)
    s.start()
    for i, id in enumerate(queued):
        j = s.wait_job(id)
        assert j["status"] == "COMPLETED" and j["result"] == {"text": f"later {i}"} and j["attempts"] == 1, j


def test_sigint_is_graceful_too(make_server):
    s = make_server("sigint")
    s.add_model("echo", parallel=1)
    s.start()
    running = s.submit("echo", "finish me too", {"delay_ms": 800})["id"]
    s.wait_running(running)
    assert s.stop(signal.SIGINT) == 0
    s.start()
    j = s.job(running)
    assert j["status"] == "COMPLETED" and j["attempts"] == 1, j


def test_grace_period_over_leaves_job_for_the_next_start(make_server):
    s = make_server("grace", env={"STATIM_JOBS_SHUTDOWN_GRACE_SECONDS": "0.3"})
    s.add_model("echo", parallel=1)
    s.start()
    long = s.submit("echo", "too long for the grace", {"delay_ms": 2500})["id"]
    s.wait_running(long)
    assert s.stop(signal.SIGTERM) == 0
    msgs = [e["msg"] for e in s.log_events()]
    assert "scheduler: grace period over, stopping running jobs" in msgs, msgs
    assert "job: interrupted by shutdown, will be requeued" in msgs, msgs

    s.start()
    j = s.wait_job(long)
    assert j["status"] == "COMPLETED" and j["result"] == {"text": "too long for the grace"}, j
    assert j["attempts"] == 2, j


def test_restart_after_sigterm_accepts_new_jobs(make_server):
    s = make_server("again")
    s.add_model("echo")
    s.start()
    first = s.wait_job(s.submit("echo", "one")["id"])
    assert s.stop() == 0
    s.start()
    second = s.wait_job(s.submit("echo", "two")["id"])
    assert second["id"] > first["id"] and second["result"] == {"text": "two"}
