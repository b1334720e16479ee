"""The job API's happy paths: the original submit-and-poll flow, curl, system routes, listing."""
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

from conftest import ISO_Z_RE, REPO, SLOW, TIMESTAMP_RE

PROMPT = "A cat in space"


def parse_iso(text: str) -> datetime:
    return datetime.strptime(text.rstrip("Z"), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)


def test_original_flow_submit_poll_complete(echo_server):
    before = datetime.now(timezone.utc)
    r = echo_server.post("/job", json={"prompt": PROMPT, "model": "echo"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert isinstance(job["id"], int) and job["id"] >= 1
    assert r.headers["Location"] == f"/job/{job['id']}"
    assert job["model"] == "echo"
    assert job["prompt"] == PROMPT
    assert job["type"] == "completion"
    assert job["params"] == {}
    assert job["priority"] == 0
    assert job["result"] is None and job["error"] is None and job["finished_at"] is None
    # A free worker gets the job in the same write that stores it; a busy one leaves it queued.
    if job["status"] == "PROCESSING":
        assert job["attempts"] == 1 and job["started_at"] == job["created_at"], job
    else:
        assert job["status"] == "QUEUED" and job["attempts"] == 0 and job["started_at"] is None, job
    # "timestamp" keeps the original API's shape: UTC, microseconds, no zone suffix.
    assert TIMESTAMP_RE.match(job["timestamp"]), job["timestamp"]
    assert ISO_Z_RE.match(job["created_at"]), job["created_at"]
    assert job["created_at"] == job["timestamp"] + "Z"
    created = parse_iso(job["timestamp"])
    assert before - timedelta(seconds=5) <= created <= datetime.now(timezone.utc) + timedelta(seconds=5), \
        f"timestamp {job['timestamp']} is not UTC now ({before.isoformat()})"

    done = echo_server.wait_job(job["id"])
    assert done["status"] == "COMPLETED", done
    assert done["result"] == {"text": PROMPT}
    assert done["error"] is None
    assert done["status_message"] == "completed"
    assert done["attempts"] == 1
    assert done["timestamp"] == job["timestamp"]
    started, finished = parse_iso(done["started_at"]), parse_iso(done["finished_at"])
    assert created <= started <= finished


def _curl(*args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    r = subprocess.run(["curl", *args], capture_output=True, text=True, timeout=30 * SLOW, env=env)
    assert r.returncode == 0, f"curl {args} -> rc {r.returncode}: {r.stderr}"
    return json.loads(r.stdout)


def test_curl_session_as_in_the_readme(echo_server):
    port = echo_server.port
    job = _curl("-s", "-X", "POST", f"localhost:{port}/job",
                "-d", '{"prompt": "A cat in space", "model": "echo"}')
    assert job["prompt"] == PROMPT and job["model"] == "echo", job
    assert job["status"] in ("QUEUED", "PROCESSING")
    echo_server.wait_job(job["id"])
    done = _curl("-s", f"localhost:{port}/job/{job['id']}")
    assert done["status"] == "COMPLETED"
    assert done["result"]["text"] == PROMPT
    listed = _curl("-s", f"localhost:{port}/job")
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]


def test_params_priority_and_unicode_round_trip(echo_server):
    prompt = "Ünïcödé ✓ 猫が宇宙に \"quoted\"\nnew line\ttab"
    job = echo_server.submit("echo", prompt, params={"delay_ms": 1}, priority=-7)
    assert job["params"] == {"delay_ms": 1}
    assert job["priority"] == -7
    done = echo_server.wait_job(job["id"])
    assert done["status"] == "COMPLETED"
    assert done["result"]["text"] == prompt
    assert done["prompt"] == prompt
    assert done["params"] == {"delay_ms": 1}


def test_null_params_and_priority_mean_defaults(echo_server):
    r = echo_server.post("/job", json={"model": "echo", "prompt": "x", "params": None, "priority": None})
    assert r.status_code == 202, r.text
    assert r.json()["params"] == {} and r.json()["priority"] == 0


def test_body_is_json_whatever_the_content_type(echo_server):
    body = json.dumps({"model": "echo", "prompt": "form-typed"})
    for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"Content-Type": ctype} if ctype else {}
        r = echo_server.post("/job", data=body, headers=headers)
        assert r.status_code == 202, f"{ctype}: {r.status_code} {r.text}"
        assert echo_server.wait_job(r.json()["id"])["result"]["text"] == "form-typed"


def test_healthz_version_models(echo_server):
    r = echo_server.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    v = echo_server.get("/version").json()
    assert v["name"] == "statim" and isinstance(v["version"], str) and v["version"]
    models = echo_server.get("/models").json()["models"]
    assert [m["id"] for m in models] == ["echo"]
    m = models[0]
    assert m["backend"] == "echo" and m["type"] == "completion"
    assert m["state"] == "ready" and m["reason"] is None
    assert m["parallel"] == 2 and m["max_queue"] == 10000
    assert m["queued"] == 0 and m["running"] == 0
    assert m["required"] is False
    for key in ("description", "details"):
        assert key in m, m


def test_request_id_echoed_or_generated(echo_server):
    r = echo_server.get("/healthz", headers={"X-Request-Id": "trace-abc-123"})
    assert r.headers["X-Request-Id"] == "trace-abc-123"
    generated = {echo_server.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(generated) == 3 and all(generated), generated
    r = echo_server.post("/job", data="{", headers={"X-Request-Id": "bad-json-req"})
    assert r.status_code == 400 and r.headers["X-Request-Id"] == "bad-json-req"
    # The JSON log names the request.
    events = [e for e in echo_server.log_events() if e.get("msg") == "http" and e.get("request_id") == "trace-abc-123"]
    assert events and events[0]["path"] == "/healthz" and events[0]["status"] == 200, events


def test_json_log_lines_parse(echo_server):
    echo_server.wait_job(echo_server.submit("echo", "log me")["id"])
    lines = [l for l in echo_server.log_text().splitlines() if l.startswith("{")]
    assert lines
    events = [json.loads(l) for l in lines]
    assert all({"time", "level", "msg"} <= set(e) for e in events)
    msgs = {e["msg"] for e in events}
    assert {"statim: listening", "models: ready", "job: completed"} <= msgs, msgs


def test_the_server_writes_only_in_its_data_dir(echo_server):
    """Drogon's upload folder (its default: ./uploads) lives in the data dir, not in the directory
    the server was started from (the harness starts it in its root)."""
    files = {"image": ("x.bin", b"\x00" * 300_000, "application/octet-stream")}
    echo_server.post("/job", data={"model": "echo", "prompt": "hi"}, files=files)
    done = echo_server.wait_job(echo_server.submit("echo", "hi")["id"])
    assert done["status"] == "COMPLETED"
    extra = sorted(p.name for p in echo_server.root.iterdir()
                   if p.name not in ("data", "models") and not p.name.endswith(".log"))
    assert extra == [], f"the server wrote {extra} into its working directory"
    assert (echo_server.data_dir / "http-uploads").is_dir()


def test_a_multipart_body_that_crashed_drogons_parser_is_refused(echo_server):
    """Found by tests/fuzz/fuzz_multipart: 45 bytes on which Drogon 1.9.13's multipart parser read
    out of bounds and took the server down."""
    body = (REPO / "tests" / "fuzz" / "corpus" / "fuzz_multipart" / "crash-drogon-parser-segv").read_bytes()
    r = echo_server.post("/job", data=body, headers={"Content-Type": "multipart/form-data; boundary=statimfuzz"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "malformed multipart/form-data body", r.text
    assert echo_server.running and echo_server.get("/healthz").status_code == 200
    ok = echo_server.post("/job", files={"model": (None, "echo"), "prompt": (None, "still here")})
    assert ok.status_code == 202, ok.text
