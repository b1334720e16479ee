"""The model lifecycle: unloaded -> loading -> ready -> unloading -> unloaded (or failed), seen
through GET /models and the jobs' statuses. Loads on demand, on an admin's request, unloads on an
admin's request (waiting for running jobs, or cancelling them with force), after keep_alive, and
to make room under models.max_memory."""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import ISO_Z_RE, Server, assert_error, served, wait_until


def state(srv: Server, model: str) -> str:
    return srv.models()[model]["state"]


def wait_state(srv: Server, model: str, want: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (m := srv.models()[model])["state"] == want and m, timeout,
                      f"model {model} to be {want}")


def processing(srv: Server, job_id: int) -> dict:
    return srv.wait_job(job_id, statuses=("PROCESSING",))


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tiny_gguf):
    s = Server(tmp_path_factory.mktemp("lifecycle"), name="lifecycle")
    s.enable_auth()
    s.add_model("lazy", backend="llama", file=str(tiny_gguf), preload=False, params={"n_ctx": 256})
    s.add_model("slow", parallel=1, max_queue=100)  # echo: delay_ms makes a long job
    s.add_model("brief", keep_alive=1)
    s.add_model("pinned", keep_alive=1, required=True)
    s.add_model("notgguf", backend="llama", file=str(s.root / "notgguf.gguf"), preload=False)
    (s.root / "notgguf.gguf").write_text("this is not a model")
    s.admin_key = s.create_key("lc-admin", "--scope", "admin")
    s.user_key = s.create_key("lc-user")
    s.key = s.admin_key
    s.start()
    yield from served(s)


def test_a_model_with_preload_false_is_unloaded_then_loaded_by_its_first_job(srv, tiny_gguf):
    m = srv.models()["lazy"]
    assert m["state"] == "unloaded" and m["preload"] is False and "details" not in m
    assert m["memory"] == {"estimated_bytes": tiny_gguf.stat().st_size, "measured_bytes": None}
    assert m["loaded_at"] is None and m["last_used_at"] is None
    job = srv.submit("lazy", "Hello", {"max_tokens": 4, "temperature": 0})
    assert (job["status"], job["status_message"]) == ("QUEUED", "loading model")
    done = srv.wait_job(job["id"])
    assert done["status"] == "COMPLETED" and done["result"]["tokens_out"] == 4, done
    m = srv.get("/models/lazy").json()
    assert m["state"] == "ready" and m["details"]["n_ctx"] == 256
    assert ISO_Z_RE.match(m["loaded_at"]) and ISO_Z_RE.match(m["last_used_at"])
    assert m["memory"]["measured_bytes"] > 0 and m["load_seconds"] >= 0
    assert m["last_used_at"] >= m["loaded_at"]


def test_admin_unloads_and_loads_and_each_is_audited(srv):
    srv.post("/models/lazy/load", params={"wait": "true"})
    r = srv.post("/models/lazy/unload", params={"wait": "true"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "unloaded" and "details" not in r.json()
    assert r.json()["memory"]["measured_bytes"] is None
    assert state(srv, "lazy") == "unloaded"
    # Unloading what is unloaded is done already.
    r = srv.post("/models/lazy/unload")
    assert r.status_code == 200 and r.json()["state"] == "unloaded"
    r = srv.post("/models/lazy/load")
    assert r.status_code in (200, 202) and r.json()["state"] in ("loading", "ready"), r.text
    r = srv.post("/models/lazy/load", params={"wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "ready", r.text
    # (Audit rows are written after the response, in the store's next batch: poll for them.)
    want = {("/models/{id}/unload", "/models/lazy/unload", 200), ("/models/{id}/load", "/models/lazy/load", 200)}

    def audited():
        rows = srv.get("/admin/audit", params={"limit": 50}).json()["entries"]
        routes = {(row["route"], row["path"], row["status"]) for row in rows}
        return want <= routes

    wait_until(audited, 10, "the audit rows of the unload and the load", 0.05)


def test_only_admin_keys_load_and_unload_and_bad_requests_say_why(srv):
    assert_error(srv.post("/models/lazy/unload", key=srv.user_key), 403, None, "admin")
    assert_error(srv.post("/models/lazy/load", key=srv.user_key), 403, None, "admin")
    assert srv.get("/models/lazy", key=srv.user_key).json()["id"] == "lazy"  # reading is for everyone
    assert_error(srv.post("/models/nope/load"), 404, "model_not_found", "unknown model 'nope'")
    assert_error(srv.get("/models/nope"), 404, "model_not_found", "unknown model 'nope'")
    assert_error(srv.post("/models/lazy/unload", params={"force": "maybe"}), 400, "invalid_request",
                 "query parameter 'force' must be true or false (got 'maybe')", "force")
    assert_error(srv.post("/models/lazy/load", params={"force": "true"}), 400, "invalid_request",
                 "unknown query parameter 'force'", "force")


def test_unload_waits_for_the_running_job_and_new_jobs_load_it_again(srv):
    job = srv.submit("slow", "kept", {"delay_ms": 1500})
    processing(srv, job["id"])
    r = srv.post("/models/slow/unload")
    assert r.status_code == 202 and r.json()["state"] == "unloading", r.text
    assert r.json()["running"] == 1
    # A job sent meanwhile waits in the queue for the model...
    later = srv.submit("slow", "later")
    assert later["status"] == "QUEUED" and later["status_message"] == "loading model", later
    done = srv.wait_job(job["id"])
    assert done["status"] == "COMPLETED" and done["result"]["text"] == "kept", done
    # ...and loads it again once it is unloaded.
    assert srv.wait_job(later["id"])["result"]["text"] == "later"
    wait_state(srv, "slow", "ready")


def test_forced_unload_cancels_the_running_job_with_its_partial_result(srv):
    srv.post("/models/slow/load", params={"wait": "true"})
    job = srv.submit("slow", "partial", {"delay_ms": 60000})
    processing(srv, job["id"])
    t0 = time.monotonic()
    r = srv.post("/models/slow/unload", params={"force": "true", "wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "unloaded", r.text
    assert time.monotonic() - t0 < 30, "force does not wait for the job"
    done = srv.wait_job(job["id"])
    assert done["status"] == "CANCELLED" and done["result"]["text"] == "partial", done


def test_force_on_a_model_already_unloading_cancels_what_it_waits_for(srv):
    srv.post("/models/slow/load", params={"wait": "true"})
    job = srv.submit("slow", "stuck", {"delay_ms": 60000})
    processing(srv, job["id"])
    assert srv.post("/models/slow/unload").json()["state"] == "unloading"
    r = srv.post("/models/slow/unload", params={"force": "true", "wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "unloaded", r.text
    assert srv.wait_job(job["id"])["status"] == "CANCELLED"


def test_a_job_queued_for_a_model_being_unloaded_runs_once_it_is_loaded_again(srv):
    srv.post("/models/slow/load", params={"wait": "true"})
    first = srv.submit("slow", "first", {"delay_ms": 800})
    processing(srv, first["id"])
    queued = srv.submit("slow", "queued")  # parallel 1: waits behind the first
    assert queued["status"] == "QUEUED"
    srv.post("/models/slow/unload")
    assert srv.wait_job(first["id"])["status"] == "COMPLETED"
    again = srv.wait_job(queued["id"])
    assert again["status"] == "COMPLETED" and again["result"]["text"] == "queued", again
    assert state(srv, "slow") == "ready"


def test_keep_alive_unloads_an_idle_model_but_not_a_required_one(srv):
    srv.wait_job(srv.submit("brief", "x")["id"])
    srv.wait_job(srv.submit("pinned", "x")["id"])
    wait_state(srv, "brief", "unloaded", timeout=10)
    assert state(srv, "pinned") == "ready"
    assert srv.models()["brief"]["keep_alive"] == 1
    # The next job brings it back.
    assert srv.wait_job(srv.submit("brief", "back")["id"])["result"]["text"] == "back"
    assert state(srv, "brief") == "ready"
    assert srv.get("/readyz").status_code == 200  # required models are all ready


def test_a_load_that_fails_fails_the_waiting_jobs_with_the_reason(srv):
    job = srv.submit("notgguf", "Hello")
    assert job["status_message"] == "loading model"
    done = srv.wait_job(job["id"])
    assert done["status"] == "FAILED", done
    assert "model 'notgguf' failed to load" in done["error"] and "is not a GGUF file" in done["error"], done
    m = wait_state(srv, "notgguf", "failed")
    assert "is not a GGUF file" in m["reason"]
    assert_error(srv.submit_raw("notgguf", "again"), 503, "model_unavailable", "is not a GGUF file")
    # An admin may try again (here it fails the same way).
    r = srv.post("/models/notgguf/load", params={"wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "failed", r.text
    assert_error(srv.post("/models/notgguf/unload"), 409, "conflict", "model 'notgguf' is failed")


def test_a_memory_budget_unloads_the_least_recently_used_idle_model(make_server, tiny_gguf, tmp_path):
    s = make_server("budget", {"STATIM_MODELS_MAX_MEMORY": "700KB"})
    big = tmp_path / "big.gguf"
    shutil.copy(tiny_gguf, big)
    with open(big, "ab") as f:
        f.write(b"\0" * 800_000)  # past the budget: can never be loaded (checked before reading it)
    for name in ("a", "b"):
        s.add_model(name, backend="llama", file=str(tiny_gguf), preload=False, params={"n_ctx": 64})
    s.add_model("big", backend="llama", file=str(big), preload=False)
    s.add_model("echo")
    s.start()
    assert s.wait_job(s.submit("a", "Hi", {"max_tokens": 2})["id"])["status"] == "COMPLETED"
    assert s.models()["a"]["state"] == "ready"
    assert s.wait_job(s.submit("b", "Hi", {"max_tokens": 2})["id"])["status"] == "COMPLETED"
    models = s.models()
    assert (models["a"]["state"], models["b"]["state"]) == ("unloaded", "ready"), models
    assert "unloading the least recently used idle model to make room" in s.log_text()
    job = s.wait_job(s.submit("big", "Hi")["id"])
    assert job["status"] == "FAILED"
    assert "model 'big' needs about 1.2 MiB (its files) but models.max_memory is 0.7 MiB" in job["error"], job
    assert s.models()["b"]["state"] == "ready", "a model that can never fit evicts nothing"


def test_reload_adds_changes_and_removes_models_without_a_restart(make_server):
    s = make_server("reload")
    s.enable_auth()
    s.add_model("change", parallel=1, description="before")
    s.add_model("gone", parallel=1)
    s.add_model("keep")
    admin = s.create_key("rl-admin", "--scope", "admin")
    s.key = admin
    s.start()
    # A long job on each of the models that will change or go, and one queued behind the latter.
    changing = s.submit("change", "runs on", {"delay_ms": 1500})
    going = s.submit("gone", "finishes", {"delay_ms": 1500})
    processing(s, changing["id"])
    processing(s, going["id"])
    waiting = s.submit("gone", "never runs")
    assert waiting["status"] == "QUEUED"

    s.add_model("new", description="added")
    s.add_model("broken", backend="quantum")
    s.add_model("change", parallel=1, description="after")
    (s.models_dir / "gone.toml").unlink()
    r = s.post("/models/reload")
    assert r.status_code == 200, r.text
    assert {k: sorted(v) for k, v in r.json().items()} == {
        "added": ["broken", "new"], "changed": ["change"], "removed": ["gone"]}

    assert s.wait_job(s.submit("new", "hello")["id"])["result"]["text"] == "hello"
    assert "unknown backend 'quantum'" in s.models()["broken"]["reason"]
    # The removed model takes no new job; what was queued fails; what ran finishes.
    assert_error(s.submit_raw("gone", "x"), 404, "model_not_found", "unknown model 'gone'")
    failed = s.wait_job(waiting["id"])
    assert failed["status"] == "FAILED" and failed["error"] == "model 'gone' was removed from the models dir", failed
    assert s.wait_job(going["id"])["result"]["text"] == "finishes"
    wait_until(lambda: "gone" not in s.models(), 10, "the removed model to go")
    # The changed one finished its job on the old manifest, then loaded the new one.
    assert s.wait_job(changing["id"])["result"]["text"] == "runs on"
    wait_until(lambda: s.models()["change"]["description"] == "after" and s.models()["change"]["state"] == "ready",
               10, "the changed model to load again")
    assert "keep" in s.models() and s.models()["keep"]["state"] == "ready"

    # SIGHUP does the same.
    s.add_model("hup")
    s.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: s.models().get("hup", {}).get("state") == "ready", 10, "SIGHUP to add the model")
    assert_error(s.post("/models/reload", key=s.create_key("rl-user")), 403, None, "admin")
    rows = s.get("/admin/audit", params={"limit": 50}).json()["entries"]
    assert any(row["route"] == "/models/reload" and row["status"] == 200 for row in rows), rows


def test_a_jobs_keep_alive_overrides_the_manifests(srv, tiny_gguf):
    srv.post("/models/lazy/load", params={"wait": "true"})
    assert srv.models()["lazy"]["keep_alive"] == -1
    # Ollama's keep_alive: 0 unloads the model once the job is done...
    r = srv.post("/v1/completions", json={"model": "lazy", "prompt": "Hi", "max_tokens": 2, "keep_alive": 0})
    assert r.status_code == 200, r.text
    wait_state(srv, "lazy", "unloaded", timeout=10)
    assert srv.models()["lazy"]["keep_alive"] == -1, "the job's keep_alive lasts until the model is unloaded"
    # ...a duration keeps it that long (multipart form fields too), and is shown.
    job = srv.submit_raw("lazy", "Hi", {"max_tokens": 2})  # loads it
    assert srv.wait_job(job.json()["id"])["status"] == "COMPLETED"
    r = srv.post("/job", json={"model": "lazy", "prompt": "Hi", "params": {"max_tokens": 2}, "keep_alive": "5m"})
    assert r.status_code == 202, r.text
    srv.wait_job(r.json()["id"])
    assert srv.models()["lazy"]["keep_alive"] == 300
    r = srv.post("/job", files={"model": (None, "slow"), "prompt": (None, "x"), "keep_alive": (None, "1h")})
    assert r.status_code == 202, r.text
    assert srv.models()["slow"]["keep_alive"] == 3600
    for bad in ("soon", "5 minutes", [1], True):
        assert_error(srv.post("/job", json={"model": "lazy", "prompt": "Hi", "keep_alive": bad}), 400,
                     "invalid_request", "'keep_alive' must be seconds (a number) or a duration", "keep_alive")
