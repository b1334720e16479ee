"""Operations: /readyz (required models), the retention sweep for finished jobs and audit rows, and
configuration the server refuses to start with."""
from __future__ import annotations

import subprocess
import time

import pytest

from conftest import SLOW, Server, assert_error, statim_bin, wait_until


# ----------------------------------------------------------------------------------------------
# /readyz


def test_readyz_lists_every_model(make_server, tiny_gguf):
    s = make_server("ready")
    s.add_model("echo")
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), params={"n_ctx": 256, "threads": 1}, required=True)
    s.add_model("optional-gone", backend="llama", file=str(s.root / "missing.gguf"))  # not required
    s.start(timeout=60)
    r = s.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "store": "ok",
                        "models": {"echo": "ready", "tiny": "ready", "optional-gone": "failed"}, "reasons": []}
    assert r.headers.get("X-Request-Id")


def test_readyz_is_503_when_a_required_model_failed(make_server):
    s = make_server("not-ready")
    s.add_model("echo")
    missing = s.root / "nowhere" / "model.gguf"
    s.add_model("needed", backend="llama", file=str(missing), required=True)
    s.start()
    assert s.get("/healthz").status_code == 200, "alive, though not ready"
    r = s.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "not_ready" and body["store"] == "ok", body
    assert body["models"] == {"echo": "ready", "needed": "failed"}, body
    assert len(body["reasons"]) == 1, body
    reason = body["reasons"][0]
    assert reason.startswith("model 'needed' is required and is failed"), reason
    assert str(missing) in reason or "model.gguf" in reason, f"the reason says which file is missing: {reason}"
    # The model list explains too, and the other model still serves.
    assert s.models()["needed"]["required"] is True
    assert s.wait_job(s.submit("echo", "still serving")["id"])["status"] == "COMPLETED"


def test_readyz_names_every_required_model_that_failed(make_server):
    s = make_server("not-ready-2")
    s.add_model("a", backend="llama", file=str(s.root / "a.gguf"), required=True)
    s.add_model("b", backend="llama", file=str(s.root / "b.gguf"), required=True)
    s.add_model("c", backend="llama", file=str(s.root / "c.gguf"), required=False)
    s.start()
    body = s.get("/readyz").json()
    assert body["status"] == "not_ready"
    assert sorted(r.split("'")[1] for r in body["reasons"]) == ["a", "b"], body
    assert all("is required" in r for r in body["reasons"]), body


@pytest.mark.parametrize("manifest,why", [
    ({"backend": "nosuchbackend"}, "unknown backend 'nosuchbackend'"),
    ({"backend": "echo", "type": "embedding"}, "backend 'echo' has no job type 'embedding'"),
])
def test_required_model_with_a_bad_manifest_is_not_ready(make_server, manifest, why):
    """A manifest that parses but names an unknown backend or a type its backend lacks is still
    `required`: the server is not ready without it."""
    s = make_server("required-bad")
    s.add_model("echo")
    s.add_model("needed", required=True, **manifest)
    s.start()
    m = s.models()["needed"]
    assert m["state"] == "failed" and why in m["reason"], m
    assert m["required"] is True, f"GET /models shows the manifest's required = true: {m}"
    r = s.get("/readyz")
    assert r.status_code == 503, f"a required model failed, yet /readyz answered {r.status_code}: {r.text}"
    assert r.json()["reasons"] == [f"model 'needed' is required and is failed: {m['reason']}"], r.json()


def test_required_must_be_a_boolean(make_server):
    s = make_server("bad-required")
    s.add_model("echo")
    s.add_model("weird", required="yes")
    s.start()
    m = s.models()["weird"]
    assert m["state"] == "failed" and "'required' must be true or false" in m["reason"], m


# ----------------------------------------------------------------------------------------------
# Retention

RETENTION_DAYS = 0.00003  # 2.6 s


def retention_env(**extra: str) -> dict[str, str]:
    return {"STATIM_JOBS_RETENTION_DAYS": str(RETENTION_DAYS), "STATIM_JOBS_SWEEP_INTERVAL_SECONDS": "0.2", **extra}


def gone(s: Server, job_id: int) -> bool:
    r = s.get(f"/job/{job_id}")
    if r.status_code == 404:
        assert_error(r, 404, "not_found", f"job {job_id} not found")
        return True
    assert r.status_code == 200, r.text
    return False


def test_finished_jobs_expire_and_unfinished_never_do(make_server):
    retention_s = RETENTION_DAYS * 86400
    s = make_server("retention", env=retention_env())
    s.add_model("echo", max_queue=100, parallel=2)
    s.add_model("one", max_queue=100, parallel=1)
    s.start()
    t0 = time.monotonic()
    blocker = s.submit("one", "long runner", {"delay_ms": int(retention_s * 1000 + 2500)})["id"]
    s.wait_running(blocker)
    waiting = s.submit("one", "long waiter")["id"]
    quick = s.wait_job(s.submit("echo", "short lived")["id"])
    failed = s.wait_job(s.submit("echo", "short failure", {"fail": "boom"})["id"])
    assert (quick["status"], failed["status"]) == ("COMPLETED", "FAILED")
    assert not gone(s, quick["id"]), "a finished job stays for the retention period"
    wait_until(lambda: gone(s, quick["id"]) and gone(s, failed["id"]), retention_s + 5, "the finished jobs to expire")
    assert time.monotonic() - t0 >= retention_s * 0.9, "deleted before its retention period was up"
    # Older than the retention period, but not finished: kept.
    assert time.monotonic() - t0 > retention_s
    assert s.job(blocker)["status"] == "PROCESSING"
    assert s.job(waiting)["status"] == "QUEUED"
    # Every route treats an expired job as unknown.
    for method, path in (("GET", f"/job/{quick['id']}/events"), ("GET", f"/job/{quick['id']}/webhooks"),
                         ("POST", f"/job/{quick['id']}/cancel")):
        r = s.request(method, path)
        assert_error(r, 404, "not_found", f"job {quick['id']} not found")
    listed = {j["id"] for j in s.jobs(limit=100)["jobs"]}
    assert listed == {blocker, waiting}, listed
    assert s.jobs()["total"] == 2

    # The waiter was created long ago, but retention counts from when a job finished.
    done = s.wait_job(waiting, timeout=30)
    assert done["status"] == "COMPLETED"
    assert not gone(s, waiting), "deleted at once although it had just finished"
    assert not gone(s, blocker)
    wait_until(lambda: gone(s, waiting) and gone(s, blocker), retention_s + 5, "the other jobs to expire")

    lines = [e for e in s.log_events() if e.get("msg") == "retention: deleted expired jobs"]
    deleted = {i for e in lines for i in e["job_ids"]}
    assert {quick["id"], failed["id"], waiting, blocker} <= deleted, lines
    assert all(e["count"] >= len(e["job_ids"]) and e["retention_days"] == RETENTION_DAYS for e in lines), lines
    # Ids are never reused after a deletion.
    assert s.submit("echo", "new")["id"] > max(deleted)


def test_cancelled_jobs_expire_too(make_server):
    s = make_server("retention-cancel", env=retention_env())
    s.add_model("one", max_queue=100, parallel=1)
    s.start()
    blocker = s.submit("one", "blocker", {"delay_ms": 60000})["id"]
    s.wait_running(blocker)
    queued = s.submit("one", "cancel me")["id"]
    s.post(f"/job/{queued}/cancel")
    wait_until(lambda: gone(s, queued), RETENTION_DAYS * 86400 + 5, "the cancelled job to expire")
    assert s.job(blocker)["status"] == "PROCESSING"
    s.post(f"/job/{blocker}/cancel")


def test_no_retention_by_default(make_server):
    s = make_server("keep", env={"STATIM_JOBS_SWEEP_INTERVAL_SECONDS": "0.2"})
    s.add_model("echo")
    s.start()
    job = s.wait_job(s.submit("echo", "kept")["id"])
    time.sleep(1.0)
    assert not gone(s, job["id"])
    assert not [e for e in s.log_events() if e.get("msg", "").startswith("retention:")]


def test_audit_rows_expire(make_server):
    s = make_server("audit-retention", env={"STATIM_AUDIT_RETENTION_DAYS": "0.00002",  # 1.7 s
                                            "STATIM_JOBS_SWEEP_INTERVAL_SECONDS": "0.2"})
    s.add_model("echo")
    s.start()
    r = s.post("/job", json={"model": "echo", "prompt": "audited, briefly"})
    rid = r.headers["X-Request-Id"]

    def rows():
        return [e for e in s.get("/admin/audit", params={"limit": 1000}).json()["entries"] if e["request_id"] == rid]
    wait_until(rows, 5, "the audit row")
    wait_until(lambda: not rows(), 10, "the audit row to expire")
    assert s.wait_job(r.json()["id"])["status"] == "COMPLETED", "jobs are kept (jobs.retention_days is 0)"
    assert any(e.get("msg") == "retention: deleted old audit rows" and e["count"] >= 1 for e in s.log_events())


# ----------------------------------------------------------------------------------------------
# Configuration the server refuses


def run_statim(tmp_path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Runs the binary with the harness's hermetic environment plus `env`; a value None removes
    the variable (the harness sets STATIM_AUTH_MODE=off, which would hide a config file's value)."""
    s = Server(tmp_path, env={k: v for k, v in env.items() if v is not None})
    cmd = [str(statim_bin()), *args]
    if args and args[0] == "serve":
        cmd += ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(s.data_dir), "--models-dir",
                str(s.models_dir)]
    else:
        cmd += ["--data-dir", str(s.data_dir)]
    try:
        child_env = {k: v for k, v in s._child_env().items() if env.get(k, "") is not None}
        return subprocess.run(cmd, capture_output=True, text=True, env=child_env, timeout=20 * SLOW)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"statim {' '.join(args)} kept running with {env}: {e.stdout}{e.stderr}") from None


@pytest.mark.parametrize("env,message", [
    ({"STATIM_AUTH_MODE": "maybe"}, "config auth.mode must be 'required' or 'off'"),
    ({"STATIM_AUTH_MODE": "Required"}, "config auth.mode must be 'required' or 'off'"),
    ({"STATIM_AUTH_MODE": ""}, "config auth.mode must be 'required' or 'off'"),
    ({"STATIM_JOBS_RETENTION_DAYS": "-1"}, "jobs.retention_days"),
    ({"STATIM_AUDIT_RETENTION_DAYS": "-0.5"}, "audit.retention_days"),
    ({"STATIM_JOBS_SWEEP_INTERVAL_SECONDS": "0"}, "jobs.sweep_interval_seconds must be > 0"),
    ({"STATIM_WEBHOOKS_MAX_ATTEMPTS": "0"}, "webhooks.max_attempts must be >= 1"),
    ({"STATIM_WEBHOOKS_TIMEOUT_SECONDS": "0"}, "webhooks.timeout_seconds must be > 0"),
    ({"STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "0"}, "webhooks.retry_base_seconds"),
    ({"STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "10", "STATIM_WEBHOOKS_RETRY_MAX_SECONDS": "5"},
     "webhooks.retry_base_seconds must be > 0 and <= webhooks.retry_max_seconds"),
    ({"STATIM_WEBHOOKS_RETRY_BASE_SECONDS": "soon"},
     "config webhooks.retry_base_seconds: 'soon' is not a valid number (from STATIM_WEBHOOKS_RETRY_BASE_SECONDS)"),
    ({"STATIM_JOBS_RETENTION_DAYS": "30d"}, "config jobs.retention_days: '30d' is not a valid number"),
    ({"STATIM_STORE_URL": "mysql://db/statim"},
     "config store.url must be empty (SQLite in the data dir), sqlite:PATH or postgresql://"),
    ({"STATIM_NODE_ROLE": "leader"}, "config node.role must be 'all', 'api' or 'worker'"),
    ({"STATIM_NODE_ROLE": "worker"},
     "config node.role 'worker' needs a store shared by several nodes (store.url = postgresql://...); "
     "with SQLite one node does everything"),
    ({"STATIM_NODE_ROLE": "api", "STATIM_STORE_URL": "sqlite:/tmp/x.db"}, "config node.role 'api' needs a store shared"),
    ({"STATIM_JOBS_MAX_WAIT_SECONDS": "-1"}, "config jobs.max_wait_seconds must be 0..3600 (0 turns ?wait= off)"),
    ({"STATIM_JOBS_MAX_WAIT_SECONDS": "7200"}, "config jobs.max_wait_seconds must be 0..3600"),
])
def test_server_refuses_bad_config(tmp_path, env, message):
    p = run_statim(tmp_path, env, "serve")
    assert p.returncode != 0, f"statim serve started with {env}:\n{p.stdout}{p.stderr}"
    out = p.stdout + p.stderr
    assert message in out, out
    assert "listening" not in out


def test_an_unreachable_postgresql_store_is_named_without_its_password(tmp_path):
    p = run_statim(tmp_path, {"STATIM_STORE_URL": "postgresql://statim:hunter2@127.0.0.1:1/jobs"}, "serve")
    out = p.stdout + p.stderr
    assert p.returncode != 0 and "listening" not in out, out
    assert "cannot connect to PostgreSQL (postgresql://statim:***@127.0.0.1:1/jobs)" in out, out
    assert "hunter2" not in out


def test_bad_auth_mode_from_the_config_file(tmp_path):
    cfg = tmp_path / "statim.toml"
    cfg.write_text('[auth]\nmode = "sometimes"\n')
    p = run_statim(tmp_path, {"STATIM_AUTH_MODE": None}, "serve", "--config", str(cfg))
    assert p.returncode != 0 and "config auth.mode must be 'required' or 'off'" in p.stderr, p
    cfg.write_text('[auth]\nmodes = "off"\n')
    p = run_statim(tmp_path, {"STATIM_AUTH_MODE": None}, "serve", "--config", str(cfg))
    assert p.returncode != 0 and "unknown key 'auth.modes'" in p.stderr, p


def test_keys_command_checks_the_config_too(tmp_path):
    p = run_statim(tmp_path, {"STATIM_AUTH_MODE": "maybe"}, "keys", "list")
    assert p.returncode != 0 and "auth.mode" in p.stderr, p


def test_auth_required_without_keys_warns_and_refuses(make_server):
    s = make_server("no-keys")
    s.enable_auth()
    s.add_model("echo")
    s.wait_models = lambda *a, **kw: {}  # GET /models needs a key, and there is none
    s.start()
    warn = [e for e in s.log_events() if "no API key exists" in e.get("msg", "")]
    assert warn and warn[0]["level"] == "warn" and "statim keys create" in warn[0]["msg"], s.log_text()
    assert s.get("/models").status_code == 401
    assert s.get("/readyz").status_code == 200
