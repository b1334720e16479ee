"""The audit log (GET /admin/audit): a row for every mutating request (accepted or refused) and for
every refused credential (401, 403) with who, what route, which job, the status and the request id
the client saw; none for reads; and the listing's filters (key, since), paging and errors.
Rows are written by the store's writer after the response, so tests poll for them."""
from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from conftest import ISO_Z_RE, Server, assert_error, served, iso_micros, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("audit"), name="audit")
    s.enable_auth()
    s.add_model("echo", max_queue=1000, parallel=2)
    s.add_model("echo2", max_queue=1000, parallel=2)
    s.admin_key = s.create_key("aud-admin", "--scope", "admin")
    s.user_key = s.create_key("aud-user")
    s.other_key = s.create_key("aud-other", "--models", "echo")
    s.key = s.admin_key
    s.start()
    yield from served(s)



def audit(srv: Server, **params) -> dict:
    r = srv.get("/admin/audit", params=params)  # srv.key: an admin key (or none with auth off)
    assert r.status_code == 200, r.text
    return r.json()


def all_rows(srv: Server) -> list[dict]:
    rows, offset = [], 0
    while True:
        page = audit(srv, limit=1000, offset=offset)
        rows += page["entries"]
        offset += len(page["entries"])
        if not page["entries"] or offset >= page["total"]:
            return rows


def row_for(srv: Server, request_id: str, timeout: float = 10) -> dict:
    """The audit row with this request id (polls: rows are written after the response)."""
    def find():
        rows = [e for e in all_rows(srv) if e["request_id"] == request_id]
        assert len(rows) <= 1, f"several rows for request {request_id}: {rows}"
        return rows[0] if rows else None
    return wait_until(find, timeout, f"the audit row of request {request_id}", 0.05)


def check_row(row: dict, *, key_name: str, method: str, route: str, path: str, job_id, status: int,
              request_id: str) -> None:
    assert set(row) == {"id", "time", "key_id", "key_name", "remote", "method", "route", "path", "job_id", "status",
                        "request_id"}, row
    want = {"key_name": key_name, "method": method, "route": route, "path": path, "job_id": job_id, "status": status,
            "request_id": request_id}
    got = {k: row[k] for k in want}
    assert got == want, f"audit row {row}\nexpected {want}"
    assert ISO_Z_RE.match(row["time"]), row
    now = time.time() * 1e6
    assert now - 120e6 < iso_micros(row["time"]) <= now + 5e6, row
    assert row["remote"] == "127.0.0.1", row
    if key_name:
        assert isinstance(row["key_id"], int) and row["key_id"] > 0, row
    else:
        assert row["key_id"] is None, row


def rid(r) -> str:
    v = r.headers.get("X-Request-Id")
    assert v, "every response carries X-Request-Id"
    return v


# ----------------------------------------------------------------------------------------------
# What is audited


def test_post_job_is_audited(srv):
    r = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "audited"})
    assert r.status_code == 202, r.text
    job = r.json()
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job", path="/job", job_id=job["id"],
              status=202, request_id=rid(r))


def test_client_request_id_is_the_audit_request_id(srv):
    r = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "with my id"},
                 headers={"X-Request-Id": "client-chosen-id-17"})
    assert r.status_code == 202, r.text
    assert rid(r) == "client-chosen-id-17"
    check_row(row_for(srv, "client-chosen-id-17"), key_name="aud-user", method="POST", route="/job", path="/job",
              job_id=r.json()["id"], status=202, request_id="client-chosen-id-17")


def test_unusable_client_request_id_is_replaced_in_both(srv):
    for given in ("x" * 200, "has space"):
        r = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "odd id"},
                     headers={"X-Request-Id": given})
        assert r.status_code == 202, r.text
        assert rid(r) != given, "an unusable X-Request-Id is replaced"
        check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job", path="/job",
                  job_id=r.json()["id"], status=202, request_id=rid(r))


def test_streaming_completion_is_audited(srv):
    with srv.post("/v1/completions", key=srv.user_key, stream=True, timeout=30,
                  json={"model": "echo", "prompt": "streamed", "stream": True}) as r:
        assert r.status_code == 200, r.text
        text = r.text
    assert "[DONE]" in text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/v1/completions",
              path="/v1/completions", job_id=int(r.headers["X-Statim-Job-Id"]), status=200, request_id=rid(r))


def test_long_paths_are_cut_in_the_row(srv):
    path = "/job/" + "9" * 3000 + "/cancel"
    r = srv.post(path, key=srv.user_key)
    assert r.status_code == 400, r.text
    row = row_for(srv, rid(r))
    assert row["route"] == "/job/{id}/cancel" and row["status"] == 400, row
    assert len(row["path"]) <= 1024 and path.startswith(row["path"]), len(row["path"])


def test_cancel_and_delete_are_audited_with_route_patterns(srv):
    ids = [srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": f"to cancel {i}",
                                                      "params": {"delay_ms": 2000}}).json()["id"] for i in range(2)]
    r = srv.post(f"/job/{ids[0]}/cancel", key=srv.user_key)
    assert r.status_code == 200, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job/{id}/cancel",
              path=f"/job/{ids[0]}/cancel", job_id=ids[0], status=200, request_id=rid(r))
    r = srv.request("DELETE", f"/job/{ids[1]}", key=srv.admin_key)
    assert r.status_code == 200, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-admin", method="DELETE", route="/job/{id}",
              path=f"/job/{ids[1]}", job_id=ids[1], status=200, request_id=rid(r))


def test_refused_mutations_are_audited(srv):
    # A bad body.
    r = srv.post("/job", key=srv.user_key, data=b'{"model": "echo", "prompt": ')
    assert r.status_code == 400, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job", path="/job", job_id=None,
              status=400, request_id=rid(r))
    r = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "x", "bogus": 1})
    assert r.status_code == 400, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job", path="/job", job_id=None,
              status=400, request_id=rid(r))
    # An unknown model.
    r = srv.post("/job", key=srv.user_key, json={"model": "nope", "prompt": "x"})
    assert r.status_code == 404, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/job", path="/job", job_id=None,
              status=404, request_id=rid(r))
    # Cancelling a job that is not there.
    r = srv.post("/job/999999/cancel", key=srv.user_key)
    assert r.status_code == 404, r.text
    row = row_for(srv, rid(r))
    assert (row["route"], row["path"], row["status"], row["key_name"]) == \
        ("/job/{id}/cancel", "/job/999999/cancel", 404, "aud-user"), row
    # A bad job id.
    r = srv.request("DELETE", "/job/abc", key=srv.user_key)
    assert r.status_code == 400, r.text
    row = row_for(srv, rid(r))
    assert (row["method"], row["route"], row["path"], row["status"]) == ("DELETE", "/job/{id}", "/job/abc", 400), row


def test_openai_completion_is_audited(srv):
    r = srv.post("/v1/completions", key=srv.user_key, json={"model": "echo", "prompt": "openai audited"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "openai audited"
    job_id = int(r.headers["X-Statim-Job-Id"])
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/v1/completions",
              path="/v1/completions", job_id=job_id, status=200, request_id=rid(r))
    r = srv.post("/v1/completions", key=srv.user_key, json={"model": "echo", "prompt": "x", "n": 2})
    assert r.status_code == 400, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="POST", route="/v1/completions",
              path="/v1/completions", job_id=None, status=400, request_id=rid(r))


def test_auth_failures_are_audited(srv):
    # No key: nobody's row.
    r = srv.get("/models", key=None)
    assert r.status_code == 401
    check_row(row_for(srv, rid(r)), key_name="", method="GET", route="/models", path="/models", job_id=None,
              status=401, request_id=rid(r))
    # An unknown key.
    r = srv.post("/job", key="sk-statim-" + "0" * 48, json={"model": "echo", "prompt": "x"})
    assert r.status_code == 401
    check_row(row_for(srv, rid(r)), key_name="", method="POST", route="/job", path="/job", job_id=None, status=401,
              request_id=rid(r))
    # A user key on an admin route: the key is named.
    r = srv.get("/admin/audit", key=srv.user_key)
    assert r.status_code == 403
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="GET", route="/admin/audit", path="/admin/audit",
              job_id=None, status=403, request_id=rid(r))
    r = srv.get("/metrics", key=srv.user_key)
    assert r.status_code == 403
    check_row(row_for(srv, rid(r)), key_name="aud-user", method="GET", route="/metrics", path="/metrics",
              job_id=None, status=403, request_id=rid(r))
    # A model the key may not use.
    r = srv.post("/job", key=srv.other_key, json={"model": "echo2", "prompt": "x"})
    assert r.status_code == 403
    check_row(row_for(srv, rid(r)), key_name="aud-other", method="POST", route="/job", path="/job", job_id=None,
              status=403, request_id=rid(r))
    # A revoked key is named.
    doomed = srv.create_key("aud-doomed")
    srv.keys_cli("revoke", "aud-doomed")
    r = srv.get("/job", key=doomed)
    assert r.status_code == 401
    check_row(row_for(srv, rid(r)), key_name="aud-doomed", method="GET", route="/job", path="/job", job_id=None,
              status=401, request_id=rid(r))


def test_reads_are_not_audited(srv):
    job = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "read me"}).json()
    srv.wait_job(job["id"])
    reads = []
    for path in (f"/job/{job['id']}", "/job", "/models", "/v1/models", f"/job/{job['id']}/webhooks",
                 f"/job/{job['id']}/events", "/healthz", "/version", "/readyz", "/admin/audit", "/metrics"):
        key = srv.admin_key if path in ("/admin/audit", "/metrics") else srv.user_key
        r = srv.get(path, key=key)
        assert r.status_code == 200, (path, r.text)
        reads.append(rid(r))
    r = srv.get("/job/999999", key=srv.user_key)  # a 404 read is still a read
    assert r.status_code == 404
    reads.append(rid(r))
    # Rows are written in order: once a later POST's row is there, an earlier GET's would be too.
    marker = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "marker"})
    row_for(srv, rid(marker))
    logged = {e["request_id"] for e in all_rows(srv)}
    assert not logged & set(reads), f"reads were audited: {logged & set(reads)}"


def test_rate_limited_mutation_is_audited(srv):
    key = srv.create_key("aud-rate", "--rate", "1/h")
    assert srv.post("/job", key=key, json={"model": "echo", "prompt": "first"}).status_code == 202
    r = srv.post("/job", key=key, json={"model": "echo", "prompt": "second"})
    assert r.status_code == 429, r.text
    check_row(row_for(srv, rid(r)), key_name="aud-rate", method="POST", route="/job", path="/job", job_id=None,
              status=429, request_id=rid(r))


# ----------------------------------------------------------------------------------------------
# Listing


def test_filter_by_key(srv):
    key = srv.create_key("aud-filter")
    rids = []
    for i in range(3):
        r = srv.post("/job", key=key, json={"model": "echo", "prompt": f"filtered {i}"})
        assert r.status_code == 202
        rids.append(rid(r))
    row_for(srv, rids[-1])
    page = audit(srv, key="aud-filter")
    assert page["total"] == 3, page
    assert [e["request_id"] for e in page["entries"]] == rids[::-1], "newest first"
    assert all(e["key_name"] == "aud-filter" for e in page["entries"])
    ids = [e["id"] for e in page["entries"]]
    assert ids == sorted(ids, reverse=True)
    assert audit(srv, key="no-such-key") == {"entries": [], "total": 0, "limit": 50, "offset": 0}
    # Requests without a key are found with an empty key name.
    anon = audit(srv, key="", limit=1000)
    assert anon["total"] >= 1 and all(e["key_name"] == "" for e in anon["entries"]), anon


def test_filter_since(srv):
    r1 = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "before"})
    first = row_for(srv, rid(r1))
    time.sleep(1.1)  # the next row's second differs
    r2 = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "after"})
    second = row_for(srv, rid(r2))
    t2 = iso_micros(second["time"])
    # ISO with microseconds (the row's own time): that row and later ones.
    page = audit(srv, since=second["time"], limit=1000)
    got = {e["request_id"] for e in page["entries"]}
    assert rid(r2) in got and rid(r1) not in got, page
    assert page["total"] == len(page["entries"])
    assert all(iso_micros(e["time"]) >= t2 for e in page["entries"])
    # ISO without fraction or Z.
    whole = datetime.fromtimestamp(t2 // 1_000_000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    for since in (whole, whole + "Z"):
        got = {e["request_id"] for e in audit(srv, since=since, limit=1000)["entries"]}
        assert rid(r2) in got and rid(r1) not in got, since
    # Unix seconds.
    got = {e["request_id"] for e in audit(srv, since=str(t2 // 1_000_000), limit=1000)["entries"]}
    assert rid(r2) in got and rid(r1) not in got
    first_s = str(iso_micros(first["time"]) // 1_000_000)
    got = {e["request_id"] for e in audit(srv, since=first_s, limit=1000)["entries"]}
    assert {rid(r1), rid(r2)} <= got
    assert audit(srv, since=str(int(time.time()) + 3600))["total"] == 0
    assert audit(srv, since="0")["total"] == audit(srv)["total"]
    # Combined with key.
    page = audit(srv, since=second["time"], key="aud-user", limit=1000)
    assert all(e["key_name"] == "aud-user" for e in page["entries"])
    assert rid(r2) in {e["request_id"] for e in page["entries"]}


@pytest.mark.parametrize("since", ["9223372036854775807", "18446744073709", "99999999999999999"])
def test_since_far_in_the_future(srv, since):
    """Unix seconds too large to be a time: a 400 naming `since`, or an empty page, never rows
    from the past (seconds * 10^6 must not overflow)."""
    r = srv.post("/job", key=srv.user_key, json={"model": "echo", "prompt": "before the far future"})
    row_for(srv, rid(r))
    r = srv.get("/admin/audit", params={"since": since})
    if r.status_code == 400:
        assert_error(r, 400, "invalid_request", "query parameter 'since'", param="since")
    else:
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 0 and page["entries"] == [], \
            f"since={since} (far beyond any real time) returned {page['total']} rows, e.g. {page['entries'][:1]}"


def test_limit_offset_and_total(srv):
    for i in range(5):
        srv.post("/job", key=srv.admin_key, json={"model": "echo", "prompt": f"page {i}"})
    marker = srv.post("/job", key=srv.admin_key, json={"model": "echo", "prompt": "page end"})
    row_for(srv, rid(marker))
    full = audit(srv, limit=1000)
    total = full["total"]
    assert total == len(full["entries"]) >= 6
    p1 = audit(srv, limit=2)
    p2 = audit(srv, limit=2, offset=2)
    assert (p1["limit"], p1["offset"], p2["limit"], p2["offset"]) == (2, 0, 2, 2)
    assert p1["total"] == p2["total"] == total
    ids = [e["id"] for e in full["entries"]]
    assert [e["id"] for e in p1["entries"]] == ids[:2] and [e["id"] for e in p2["entries"]] == ids[2:4]
    assert audit(srv, offset=total)["entries"] == []
    assert audit(srv)["limit"] == 50


@pytest.mark.parametrize("params,param,message", [
    ({"limit": "0"}, "limit", "query parameter 'limit' must be an integer between 1 and 1000 (got '0')"),
    ({"limit": "abc"}, "limit", "query parameter 'limit' must be an integer"),
    ({"limit": "1001"}, "limit", "between 1 and 1000"),
    ({"offset": "-1"}, "offset", "query parameter 'offset' must be an integer"),
    ({"since": "yesterday"}, "since",
     "query parameter 'since' must be an ISO-8601 UTC time or Unix seconds (got 'yesterday')"),
    ({"since": "-5"}, "since", "query parameter 'since'"),
    ({"since": "2026-13-01T00:00:00Z"}, "since", "query parameter 'since'"),
    ({"since": "2026-11-25"}, "since", "query parameter 'since'"),
    ({"user": "x"}, "user", "unknown query parameter 'user' (allowed: limit, offset, key, since)"),
])
def test_bad_query_params_are_400_naming_the_param(srv, params, param, message):
    r = srv.get("/admin/audit", key=srv.admin_key, params=params)
    assert_error(r, 400, "invalid_request", message, param=param)


def test_auth_off_rows_have_no_key(make_server):
    s = make_server("audit-open")
    s.add_model("echo")
    s.start()
    r = s.post("/job", json={"model": "echo", "prompt": "anonymous"})
    assert r.status_code == 202
    check_row(row_for(s, rid(r)), key_name="", method="POST", route="/job", path="/job", job_id=r.json()["id"],
              status=202, request_id=rid(r))


def test_audit_survives_a_restart(make_server):
    s = make_server("audit-restart")
    s.add_model("echo")
    s.start()
    r = s.post("/job", json={"model": "echo", "prompt": "durable"})
    before = row_for(s, rid(r))
    s.restart()
    after = [e for e in all_rows(s) if e["request_id"] == rid(r)]
    assert after == [before]
