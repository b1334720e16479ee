"""GET /job: pagination, filters, totals, newest first."""
import pytest


@pytest.fixture
def server(make_server):
    s = make_server("listing")
    s.add_model("echo", parallel=2)
    s.add_model("other", parallel=1)
    s.start()
    # 10 jobs: 6 on echo (job 4 fails), 4 on other.
    ids = []
    for i in range(10):
        model = "other" if i in (2, 3, 8, 9) else "echo"
        params = {"fail": "nope"} if i == 4 else None
        ids.append(s.submit(model, f"job {i}", params)["id"])
    for id in ids:
        s.wait_job(id)
    s.ids = ids
    return s


def ids_of(page):
    return [j["id"] for j in page["jobs"]]


def test_default_page_newest_first(server):
    page = server.jobs()
    assert page["total"] == 10 and page["limit"] == 50 and page["offset"] == 0
    assert ids_of(page) == sorted(server.ids, reverse=True)
    assert page["jobs"][0]["prompt"] == "job 9"
    # Each item is a full job, like GET /job/{id}.
    assert page["jobs"][0] == server.job(server.ids[-1])


def test_limit_and_offset_walk_all_pages(server):
    newest_first = sorted(server.ids, reverse=True)
    seen = []
    for offset in range(0, 10, 3):
        page = server.jobs(limit=3, offset=offset)
        assert page["total"] == 10 and page["limit"] == 3 and page["offset"] == offset
        assert ids_of(page) == newest_first[offset:offset + 3]
        seen += ids_of(page)
    assert seen == newest_first
    past = server.jobs(limit=5, offset=100)
    assert past["jobs"] == [] and past["total"] == 10
    assert ids_of(server.jobs(limit=1000)) == newest_first


def test_status_filter(server):
    failed = server.jobs(status="FAILED")
    assert failed["total"] == 1
    assert [j["prompt"] for j in failed["jobs"]] == ["job 4"]
    assert failed["jobs"][0]["error"] == "nope"
    completed = server.jobs(status="COMPLETED")
    assert completed["total"] == 9 and all(j["status"] == "COMPLETED" for j in completed["jobs"])
    assert server.jobs(status="QUEUED") == {"jobs": [], "total": 0, "limit": 50, "offset": 0}


def test_model_filter(server):
    other = server.jobs(model="other")
    assert other["total"] == 4
    assert [j["prompt"] for j in other["jobs"]] == ["job 9", "job 8", "job 3", "job 2"]
    assert all(j["model"] == "other" for j in other["jobs"])
    assert ids_of(other) == sorted(ids_of(other), reverse=True)
    echo = server.jobs(model="echo")
    assert echo["total"] == 6 and all(j["model"] == "echo" for j in echo["jobs"])
    assert server.jobs(model="missing")["total"] == 0


def test_status_and_model_filters_combine_with_paging(server):
    page = server.jobs(model="echo", status="COMPLETED", limit=2, offset=1)
    assert page["total"] == 5
    all_echo_completed = ids_of(server.jobs(model="echo", status="COMPLETED"))
    assert ids_of(page) == all_echo_completed[1:3]
    assert server.jobs(model="other", status="FAILED")["total"] == 0
