"""Waiting for a job's end in one request: POST /job?wait= and GET /job/{id}?wait= (a long poll).

The answer comes when the job ends (POST: 200 with the ended job) or when the wait runs out (POST:
202 with the job as it is then, exactly as without wait; GET: 200 with the job as it is then)."""
import json
import socket
import subprocess
import threading
import time

from conftest import SLOW, assert_error, wait_until


def test_post_with_wait_answers_the_completed_job(echo_server):
    r = echo_server.post("/job?wait=true", json={"model": "echo", "prompt": "A cat in space"})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "COMPLETED" and job["result"] == {"text": "A cat in space"}, job
    assert job["finished_at"] and job["error"] is None
    assert r.headers["Location"] == f"/job/{job['id']}"
    # The answer is the stored job, as GET /job/{id} shows it.
    assert echo_server.job(job["id"]) == job


def test_post_with_wait_answers_a_failed_job_with_its_error(echo_server):
    r = echo_server.post("/job?wait=10", json={"model": "echo", "prompt": "x", "params": {"fail": "disk on fire"}})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["status"] == "FAILED" and "disk on fire" in job["error"], job


def test_a_wait_that_runs_out_answers_202_then_a_long_poll_gets_the_end(echo_server):
    t0 = time.monotonic()
    r = echo_server.post("/job?wait=0.5", json={"model": "echo", "prompt": "slow", "params": {"delay_ms": 2500}})
    waited = time.monotonic() - t0
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("QUEUED", "PROCESSING") and job["result"] is None, job
    assert r.headers["Location"] == f"/job/{job['id']}"
    assert 0.45 <= waited < 2.4, waited
    # GET ?wait= that runs out answers the job as it is (still running)...
    r = echo_server.get(f"/job/{job['id']}?wait=0.2")
    assert r.status_code == 200 and r.json()["status"] == "PROCESSING", r.text
    # ...and one long enough answers when it ends, not a poll interval later.
    r = echo_server.get(f"/job/{job['id']}?wait=20")
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    assert r.json()["result"] == {"text": "slow"}
    assert time.monotonic() - t0 < 2.5 + 3 * SLOW
    # An ended job answers at once, whatever the wait.
    t1 = time.monotonic()
    assert echo_server.get(f"/job/{job['id']}?wait=20").json()["status"] == "COMPLETED"
    assert time.monotonic() - t1 < 2 * SLOW


def test_a_cancel_ends_the_wait_with_the_cancelled_job(echo_server):
    out = {}

    def waiter():
        out["r"] = echo_server.post("/job?wait=30", json={"model": "echo", "prompt": "long",
                                                           "params": {"delay_ms": 60000}})

    t = threading.Thread(target=waiter)
    t.start()
    job = wait_until(lambda: next(iter(echo_server.get("/job?status=PROCESSING").json()["jobs"]), None), 10 * SLOW,
                     "the job to start")
    assert echo_server.post(f"/job/{job['id']}/cancel").status_code == 200
    t.join(10 * SLOW)
    assert not t.is_alive(), "the waiting request answers when the job is cancelled"
    r = out["r"]
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED" and r.json()["id"] == job["id"], r.text


def test_bad_wait_values_are_refused_and_create_no_job(make_server):
    s = make_server("wait-limits", env={"STATIM_JOBS_MAX_WAIT_SECONDS": "2"})
    s.add_model("echo")
    s.start()
    for bad in ("yes", "-1", "2.5", "nan", "1e9", ""):
        r = s.post(f"/job?wait={bad}", json={"model": "echo", "prompt": "x"})
        assert_error(r, 400, "invalid_request",
                     ["query parameter 'wait' must be true, false or a number of seconds from 0 to 2",
                      "jobs.max_wait_seconds", f"(got '{bad}')"])
        assert_error(s.get(f"/job/1?wait={bad}"), 400, "invalid_request", "query parameter 'wait'")
    assert s.get("/job").json()["total"] == 0, "a refused request stores nothing"
    # wait=true is the configured longest wait; wait=false and wait=0 do not wait.
    assert s.post("/job?wait=true", json={"model": "echo", "prompt": "x"}).json()["status"] == "COMPLETED"
    for no in ("false", "0"):
        r = s.post(f"/job?wait={no}", json={"model": "echo", "prompt": "x", "params": {"delay_ms": 1000}})
        assert r.status_code == 202 and r.json()["status"] in ("QUEUED", "PROCESSING"), r.text
    # A wait on an unknown job is 404 as without it.
    assert_error(s.get("/job/999?wait=1"), 404, "not_found", "job 999 not found")


def test_an_idempotent_replay_with_wait_answers_the_ended_job(echo_server):
    headers = {"Idempotency-Key": "wait-replay-1"}
    first = echo_server.post("/job?wait=10", json={"model": "echo", "prompt": "once"}, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "COMPLETED", first.text
    again = echo_server.post("/job?wait=10", json={"model": "echo", "prompt": "once"}, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["id"] == first.json()["id"] and again.json()["status"] == "COMPLETED"
    # Without wait a replay is 202, as it always was, even though the job has ended.
    plain = echo_server.post("/job", json={"model": "echo", "prompt": "once"}, headers=headers)
    assert plain.status_code == 202 and plain.json()["status"] == "COMPLETED", plain.text


def test_curl_http10_waits_for_the_result(echo_server):
    r = subprocess.run(["curl", "-sS", "--http1.0", "--noproxy", "*", "-X", "POST", "-H", "Content-Type: application/json",
                        "-d", '{"model": "echo", "prompt": "over HTTP/1.0"}',
                        f"{echo_server.url}/job?wait=true"], capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["status"] == "COMPLETED" and job["result"]["text"] == "over HTTP/1.0", job


def test_a_client_that_leaves_while_waiting_loses_nothing(echo_server):
    body = json.dumps({"model": "echo", "prompt": "left", "params": {"delay_ms": 500}}).encode()
    with socket.create_connection(("127.0.0.1", echo_server.port)) as sock:
        sock.sendall(b"POST /job?wait=30 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        wait_until(lambda: echo_server.get("/job").json()["total"] == 1, 10 * SLOW, "the job to be stored")
    job = echo_server.get("/job").json()["jobs"][0]
    done = echo_server.wait_job(job["id"])
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "left"}
    assert echo_server.post("/job?wait=5", json={"model": "echo", "prompt": "next"}).json()["status"] == "COMPLETED"


def test_many_clients_waiting_at_once_each_get_their_own_job(echo_server):
    results: dict[int, dict] = {}
    errors: list = []

    def client(i: int):
        try:
            for k in range(10):
                prompt = f"client {i} job {k}"
                r = echo_server.post("/job?wait=true", json={"model": "echo", "prompt": prompt})
                assert r.status_code == 200, r.text
                assert r.json()["result"] == {"text": prompt}, r.text
                results[r.json()["id"]] = r.json()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120 * SLOW)
    assert not errors, errors[:3]
    assert len(results) == 240 and all(j["status"] == "COMPLETED" for j in results.values())


def test_a_waited_job_outlives_a_crash_of_the_server_and_runs_after_restart(make_server):
    # A waiting client hears of its job only at the end, so the job's worker starts it as soon as
    # its creation is committed, while the log is flushed. The job is there after kill -9 and runs
    # again.
    s = make_server("waitcrash")
    s.add_model("echo", parallel=1)
    s.start()
    body = json.dumps({"model": "echo", "prompt": "outlives", "params": {"delay_ms": 1500}}).encode()
    with socket.create_connection(("127.0.0.1", s.port)) as sock:
        sock.sendall(b"POST /job?wait=30 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        job = wait_until(lambda: (p := s.get("/job").json())["total"] == 1 and p["jobs"][0], 10 * SLOW,
                         "the waited job to be stored")
        s.wait_running(job["id"])
        s.kill9()
    s.start()
    done = s.wait_job(job["id"], timeout=30)
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "outlives"}, done
    assert done["attempts"] == 2, done


def test_a_wait_that_runs_out_answers_an_id_the_store_keeps(make_server):
    # The 202 of a wait that ran out names the job, so that answer waits for a flush of the
    # store (SqliteStoreSync.ACreationAnsweredAtItsEndIsDeliveredThenFlushed counts one); here:
    # that path answers, and the job it names is kept across a restart.
    s = make_server("waitsync", env={"STATIM_JOBS_SHUTDOWN_GRACE_SECONDS": "0.3"})
    s.add_model("echo", parallel=1)
    s.start()
    r = s.post("/job?wait=0.3", json={"model": "echo", "prompt": "kept", "params": {"delay_ms": 60000}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "PROCESSING" and job["result"] is None, job
    assert s.stop() == 0
    s.start()
    again = s.job(job["id"])
    assert again["prompt"] == "kept" and again["status"] in ("QUEUED", "PROCESSING"), again
