"""Jobs survive restarts and crashes: clean restart, kill -9 mid-job, max_attempts exhaustion."""
from conftest import wait_until


def test_restart_keeps_every_job(make_server):
    s = make_server("persist")
    s.add_model("echo", parallel=2)
    s.start()
    ids = [s.submit("echo", f"persist {i}")["id"] for i in range(5)]
    failed = s.submit("echo", "will fail", {"fail": "kaput"})["id"]
    before = {id: s.wait_job(id) for id in ids + [failed]}
    assert s.stop() == 0

    s.start()
    after = {id: s.job(id) for id in before}
    assert after == before, "jobs changed across a restart"
    assert after[failed]["status"] == "FAILED" and after[failed]["error"] == "kaput"
    assert all(after[id]["result"]["text"] == f"persist {i}" for i, id in enumerate(ids))
    page = s.jobs()
    assert page["total"] == 6 and [j["id"] for j in page["jobs"]] == sorted(before, reverse=True)
    # Ids keep growing after a restart; the new job runs.
    new = s.submit("echo", "after restart")
    assert new["id"] > max(before)
    assert s.wait_job(new["id"])["result"]["text"] == "after restart"


def test_kill9_interrupted_jobs_complete_after_restart(make_server):
    s = make_server("crash2")
    s.add_model("echo", parallel=2)
    s.start()
    interrupted = [s.submit("echo", f"interrupted {i}", {"delay_ms": 2000})["id"] for i in range(2)]
    waiting = [s.submit("echo", f"waiting {i}", {"delay_ms": 10})["id"] for i in range(4)]
    first_start = {id: s.wait_running(id)["started_at"] for id in interrupted}
    assert [s.job(id)["status"] for id in waiting] == ["QUEUED"] * 4
    s.kill9()
    assert s.returncode == -9

    s.start()
    for i, id in enumerate(interrupted):
        job = s.wait_job(id, timeout=30)
        assert job["status"] == "COMPLETED", job
        assert job["result"] == {"text": f"interrupted {i}"}
        assert job["attempts"] >= 2, job
        assert job["error"] is None
        # The lost attempt stays in the job's history, with when it started and who ran it.
        lost = job["earlier_attempts"][0]
        assert lost["attempt"] == 1 and lost["started_at"] == first_start[id], job
        assert lost["worker"] and lost["requeued_at"] > lost["started_at"], job
    for i, id in enumerate(waiting):
        job = s.wait_job(id, timeout=30)
        assert job["status"] == "COMPLETED" and job["result"] == {"text": f"waiting {i}"}
        assert job["attempts"] == 1 and job["earlier_attempts"] == [], job
    assert s.jobs(status="COMPLETED")["total"] == 6
    warn = [e for e in s.log_events() if e.get("msg") == "scheduler: recovered interrupted jobs"]
    assert warn and sorted(warn[0]["requeued"]) == sorted(interrupted), warn


def test_max_attempts_exhausted_fails_as_abandoned(make_server):
    s = make_server("abandon", env={"STATIM_JOBS_MAX_ATTEMPTS": "2"})
    s.add_model("echo", parallel=1)
    s.start()
    doomed = s.submit("echo", "crashes every time", {"delay_ms": 600000})["id"]
    behind = s.submit("echo", "behind it")["id"]

    s.wait_running(doomed)
    s.kill9()
    s.start()
    job = wait_until(lambda: (j := s.job(doomed))["status"] == "PROCESSING" and j["attempts"] == 2 and j,
                     30, "the second start of the doomed job")
    assert s.job(behind)["status"] == "QUEUED"
    s.kill9()

    s.start()
    job = s.wait_job(doomed)
    assert job["status"] == "FAILED", job
    assert "abandoned" in job["error"], job
    assert "2 times" in job["error"] and "jobs.max_attempts = 2" in job["error"], job
    assert job["attempts"] == 2
    assert job["result"] is None and job["finished_at"] is not None
    # The job behind it never started, so it is not penalised: it runs now.
    after = s.wait_job(behind)
    assert after["status"] == "COMPLETED" and after["attempts"] == 1
    assert after["result"]["text"] == "behind it"


def test_max_attempts_one_fails_at_first_restart(make_server):
    s = make_server("abandon1", env={"STATIM_JOBS_MAX_ATTEMPTS": "1"})
    s.add_model("echo", parallel=1)
    s.start()
    doomed = s.submit("echo", "once", {"delay_ms": 600000})["id"]
    s.wait_running(doomed)
    s.kill9()
    s.start()
    job = s.wait_job(doomed, timeout=10)
    assert job["status"] == "FAILED" and job["error"].startswith("abandoned"), job
    assert "jobs.max_attempts = 1" in job["error"]
    assert s.jobs(status="FAILED")["total"] == 1


def test_long_job_outlives_its_lease(make_server):
    # Heartbeats renew the lease, so a job longer than jobs.lease_seconds is neither requeued nor
    # run twice.
    s = make_server("lease", env={"STATIM_JOBS_LEASE_SECONDS": "0.3"})
    s.add_model("echo", parallel=2)
    s.start()
    id = s.submit("echo", "longer than the lease", {"delay_ms": 1500})["id"]
    job = s.wait_job(id)
    assert job["status"] == "COMPLETED" and job["attempts"] == 1, job
    assert job["result"] == {"text": "longer than the lease"}
    msgs = [e["msg"] for e in s.log_events()]
    assert "scheduler: requeued jobs with expired leases" not in msgs
    assert msgs.count("job: started") == 1, msgs
