"""Many clients at once: every submission is accepted once, gets its own id and completes."""
from concurrent.futures import ThreadPoolExecutor

N = 200


def test_200_concurrent_submissions(make_server):
    s = make_server("concurrency")
    s.add_model("echo", max_queue=10000, parallel=4)
    s.start()

    def submit(i):
        r = s.submit_raw("echo", f"concurrent {i}")
        return i, r.status_code, r.json()

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(submit, range(N)))
    bad = [(i, code, body) for i, code, body in results if code != 202]
    assert not bad, bad[:5]
    ids = {body["id"]: i for i, _, body in results}
    assert len(ids) == N, "job ids must be distinct"
    assert all(body["prompt"] == f"concurrent {i}" for i, _, body in results)

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(lambda id: s.wait_job(id, timeout=60), ids))
    for job in done:
        assert job["status"] == "COMPLETED", job
        assert job["result"] == {"text": f"concurrent {ids[job['id']]}"}
        assert job["attempts"] == 1
    page = s.jobs(limit=1000)
    assert page["total"] == N and sorted(j["id"] for j in page["jobs"]) == sorted(ids)
    assert s.models()["echo"]["queued"] == 0 and s.models()["echo"]["running"] == 0


def test_concurrent_reads_while_jobs_run(make_server):
    s = make_server("reads")
    s.add_model("echo", parallel=2)
    s.start()
    ids = [s.submit("echo", f"r{i}", {"delay_ms": 20})["id"] for i in range(20)]

    def read(k):
        page = s.jobs(limit=5, offset=k % 10)
        return page["total"], s.job(ids[k % len(ids)])["id"], s.get("/healthz").status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        out = list(pool.map(read, range(100)))
    assert all(total == 20 and code == 200 for total, _, code in out)
    assert [o[1] for o in out] == [ids[k % len(ids)] for k in range(100)]
    for id in ids:
        assert s.wait_job(id)["status"] == "COMPLETED"
