"""Several statim nodes on one PostgreSQL database (store.url): one queue, one job history.

A real server (pg_helpers.Postgres) and real statim processes; each test has its own database."""
from __future__ import annotations

import collections
import re
import threading
import time

import pytest
import requests

from conftest import TERMINAL, Server, wait_until
from pg_helpers import Postgres


@pytest.fixture(scope="module")
def pg():
    server = Postgres()
    yield server
    server.stop()


@pytest.fixture
def cluster(pg, make_server, tmp_path):
    """cluster(name, **env) -> an unstarted node on this test's database, sharing its files dir."""
    url = pg.new_database()
    files = tmp_path / "shared-files"

    def node(name: str, role: str | None = None, **env: str) -> Server:
        s = make_server(name, env={"STATIM_STORE_URL": url, "STATIM_STORE_FILES_DIR": str(files),
                                   "STATIM_WEBHOOKS_SECRET": "shared-secret", **env})
        if role:
            s.env["STATIM_NODE_ROLE"] = role
        return s

    node.url = url
    return node


def running_on(node: Server) -> int:
    """statim_jobs_running of one node, summed over models."""
    return sum(int(float(m.group(1))) for line in node.get("/metrics").text.splitlines()
               if (m := re.match(r'statim_jobs_running\{.*\} (\S+)', line)))


def finished_by_status(node: Server) -> dict[str, int]:
    """statim_jobs_finished_total of one node, summed over models, by status."""
    out: dict[str, int] = collections.Counter()
    for line in node.get("/metrics").text.splitlines():
        m = re.match(r'statim_jobs_finished_total\{.*status="(\w+)".*\} (\d+)', line)
        if m:
            out[m.group(1)] += int(m.group(2))
    return out


def test_a_node_on_postgresql_serves_the_original_api_and_keeps_jobs_across_restarts(pg, cluster):
    a = cluster("a")
    a.add_model("echo", parallel=2)
    a.start()
    r = a.post("/job", json={"prompt": "A cat in space", "model": "echo"})
    assert r.status_code in (200, 201, 202), r.text
    job = r.json()
    assert job["status"] in ("QUEUED", "PROCESSING") and job["prompt"] == "A cat in space"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", job["timestamp"])
    done = a.wait_job(job["id"])
    assert done["status"] == "COMPLETED" and done["result"] == {"text": "A cat in space"}
    # The row is in PostgreSQL, not in a file of the data dir.
    rows = pg.sql(f"SELECT status, prompt FROM jobs WHERE id = {job['id']}", cluster.url)
    assert rows == [["COMPLETED", "A cat in space"]]
    assert not (a.data_dir / "statim.db").exists()
    a.restart()
    assert a.job(job["id"])["result"] == {"text": "A cat in space"}
    versions = pg.sql("SELECT version, name FROM statim_migrations ORDER BY version", cluster.url)
    assert versions[0] == ["1", "schema"] and len(versions) == int(versions[-1][0]), versions


def test_keys_created_with_the_cli_on_the_database_are_valid_on_every_node(cluster):
    a, b = cluster("a"), cluster("b")
    admin = a.create_key("admin", "--scope", "admin")  # before any node runs: the CLI opens the database
    for n in (a, b):
        n.add_model("echo")
        n.enable_auth()
        n.key = admin
        n.start()
    key = b.create_key("alice", "--scope", "user")
    r = b.post("/job", json={"prompt": "hi", "model": "echo"}, key=key)
    assert r.status_code in (200, 201, 202), r.text
    job = r.json()["id"]
    # Seen (and owned) through the other node too; another user's key does not see it.
    assert a.wait_job(job)["result"] == {"text": "hi"}
    assert a.get(f"/job/{job}", key=key).json()["prompt"] == "hi"
    bob = a.create_key("bob", "--scope", "user")
    assert a.get(f"/job/{job}", key=bob).status_code == 404
    # Revoked once, refused by both nodes.
    a.keys_cli("revoke", "alice")
    for n in (a, b):
        r = n.get(f"/job/{job}", key=key)
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"], r.text


def test_two_nodes_share_one_queue_and_every_job_ends_exactly_once(pg, cluster):
    nodes = [cluster(n) for n in ("a", "b")]
    for n in nodes:
        n.add_model("echo", parallel=2, max_queue=10000)
        n.start()
    ids: list[int] = []
    lock = threading.Lock()

    def submit(node: Server, count: int, thread: int) -> None:
        for i in range(count):
            r = node.post("/job", json={"prompt": f"{node.name}-{thread}-{i}", "model": "echo", "params": {"delay_ms": 5}})
            assert r.status_code in (200, 201, 202), r.text
            with lock:
                ids.append(r.json()["id"])

    threads = [threading.Thread(target=submit, args=(n, 100, t)) for n in nodes for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 400
    wait_until(lambda: pg.sql("SELECT count(*) FROM jobs WHERE status NOT IN ('COMPLETED')", cluster.url) == [["0"]],
               60, "every job to complete")
    rows = pg.sql("SELECT count(*), min(attempts), max(attempts), count(DISTINCT prompt) FROM jobs", cluster.url)
    assert rows == [["400", "1", "1", "400"]]
    ran = [finished_by_status(n)["completed"] for n in nodes]
    assert sum(ran) == 400, ran
    assert all(r > 0 for r in ran), f"one node ran every job: {ran}"


def test_a_killed_nodes_running_jobs_run_again_on_another_node_after_the_lease_expires(pg, cluster):
    env = {"STATIM_JOBS_LEASE_SECONDS": "2"}
    a, b = cluster("a", STATIM_NODE_ID="node-a", **env), cluster("b", STATIM_NODE_ID="node-b", **env)
    a.add_model("slow", parallel=2)
    a.start()
    jobs = [a.submit("slow", f"job {i}", params={"delay_ms": 60000})["id"] for i in range(2)]
    for j in jobs:
        a.wait_running(j)
    queued = a.submit("slow", "waiting", params={"delay_ms": 10})["id"]
    a.kill9()
    # b serves the model with short jobs only: the rescued jobs get new params? No: the same
    # job runs again, so give b a model id "slow" whose manifest caps the delay.
    b.add_model("slow", parallel=4)
    b.start()
    t0 = time.monotonic()
    wait_until(lambda: all(b.job(j)["status"] == "PROCESSING" and b.job(j)["attempts"] == 2 for j in jobs),
               30, "the killed node's jobs to be claimed again")
    rescued_after = time.monotonic() - t0
    assert rescued_after < 15, rescued_after
    assert b.wait_job(queued)["status"] == "COMPLETED"
    for j in jobs:
        job = b.job(j)
        assert job["status"] == "PROCESSING" and job["attempts"] == 2, job
        # Attempt 1, on the killed node, is in the job's history.
        assert [a["attempt"] for a in job["earlier_attempts"]] == [1], job
        assert job["earlier_attempts"][0]["worker"] == "node-a/slow", job
    for j in jobs:
        b.post(f"/job/{j}/cancel")
    for j in jobs:
        assert b.wait_job(j)["status"] == "CANCELLED"


def test_nodes_carry_on_after_their_connections_are_terminated_and_after_a_crash_restart(pg, cluster):
    a = cluster("a")
    a.add_model("echo", parallel=2)
    a.start()
    assert a.wait_job(a.submit("echo", "before")["id"])["status"] == "COMPLETED"
    killed = pg.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()", cluster.url)
    assert int(killed[0][0]) >= 2, killed
    # The first writes after it go through (a batch that lost its connection before COMMIT is
    # rerun on a new one); reads too.
    for i in range(5):
        j = a.submit("echo", f"after terminate {i}")
        assert a.wait_job(j["id"])["result"] == {"text": f"after terminate {i}"}
    pg.restart("immediate")  # a crash: no shutdown checkpoint
    deadline = time.monotonic() + 30
    while True:
        r = a.post("/job", json={"prompt": "after restart", "model": "echo"})
        if r.status_code in (200, 201, 202):
            break
        assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable", r.text
        assert time.monotonic() < deadline, "no write went through 30 s after the restart"
        time.sleep(0.2)
    assert a.wait_job(r.json()["id"])["result"] == {"text": "after restart"}
    assert a.get("/readyz").status_code == 200


def api_and_workers(cluster, workers: dict[str, list[str]], lease: str = "60", **models_kw) -> tuple[Server, dict]:
    """One API node with every model's manifest, and worker nodes serving the models listed."""
    env = {"STATIM_JOBS_LEASE_SECONDS": lease}
    api = cluster("api", role="api", **env)
    all_models = sorted({m for ms in workers.values() for m in ms})
    for m in all_models:
        api.add_model(m, **models_kw)
    nodes = {}
    for name, ms in workers.items():
        w = cluster(name, role="worker", **env)
        for m in ms:
            w.add_model(m, **models_kw)
        nodes[name] = w.start()
    api.start(wait_models=[])
    return api, nodes


def test_one_api_node_and_three_workers_share_out_mixed_models(pg, cluster):
    api, workers = api_and_workers(cluster, {"w1": ["echo-a"], "w2": ["echo-b"], "w3": ["echo-a", "echo-b"]},
                                   parallel=2, max_queue=10000)
    # The API node runs nothing, yet is ready; the workers answer health routes only.
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert all(st == "unloaded" for st in ready.json()["models"].values()), ready.json()
    for w in workers.values():
        assert w.get("/healthz").json()["status"] == "ok"
        r = w.post("/job", json={"prompt": "x", "model": "echo-a"})
        assert r.status_code == 404 and "no route" in r.json()["error"]["message"], r.text
    ids = [api.submit(m, f"{m} {i}", params={"delay_ms": 2})["id"] for i in range(150) for m in ("echo-a", "echo-b")]
    for j in ids:
        job = api.wait_job(j)
        assert job["status"] == "COMPLETED" and job["attempts"] == 1, job
        assert job["result"]["text"] == job["prompt"]
    by_model = {name: collections.Counter() for name in workers}
    for name, w in workers.items():
        for line in w.get("/metrics").text.splitlines():
            m = re.match(r'statim_jobs_finished_total\{model="([\w-]+)",status="completed"\} (\d+)', line)
            if m:
                by_model[name][m.group(1)] += int(m.group(2))
    assert by_model["w1"]["echo-b"] == 0 and by_model["w2"]["echo-a"] == 0, by_model
    assert by_model["w1"]["echo-a"] + by_model["w3"]["echo-a"] == 150, by_model
    assert by_model["w2"]["echo-b"] + by_model["w3"]["echo-b"] == 150, by_model
    assert all(sum(c.values()) > 0 for c in by_model.values()), by_model
    # Nothing ran on the API node.
    assert "statim_jobs_finished_total" not in api.get("/metrics").text or \
        finished_by_status(api)["completed"] == 0


def test_a_stream_on_the_api_node_follows_tokens_of_a_job_run_by_a_worker(cluster, tiny_gguf):
    api, workers = api_and_workers(cluster, {"w1": ["tiny"]}, backend="llama", file=str(tiny_gguf), parallel=2,
                                   params={"n_ctx": 512, "threads": 1})
    from llm_helpers import GREEDY, check_stream, follow_events
    r = api.post("/job", json={"model": "tiny", "prompt": "Once upon a time", "params": {"max_tokens": 40, **GREEDY}})
    assert r.status_code == 202, r.text
    job = r.json()
    events: list = []
    t = threading.Thread(target=follow_events, args=(api, job["id"], events))
    t.start()
    t.join(60)
    assert not t.is_alive(), "the stream on the API node closes after the worker's job ends"
    text = check_stream(events, job["id"], "COMPLETED")
    final = api.job(job["id"])
    assert text == final["result"]["text"] and len([n for n, _ in events if n == "token"]) >= 10


def test_a_cancel_on_the_api_node_stops_a_job_running_on_a_worker(cluster):
    api, workers = api_and_workers(cluster, {"w1": ["echo"]})
    job = api.submit("echo", "long", params={"delay_ms": 120000})
    api.wait_running(job["id"])
    t0 = time.monotonic()
    r = api.post(f"/job/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    done = api.wait_job(job["id"], timeout=20)
    assert done["status"] == "CANCELLED", done
    # Told by a notification, not by the next lease renewal (20 s at the default 60 s lease).
    assert time.monotonic() - t0 < 10
    assert '"msg":"job: cancelled"' in workers["w1"].log_text()


def test_a_wait_on_the_api_node_answers_when_a_worker_finishes_the_job(cluster):
    api, workers = api_and_workers(cluster, {"w1": ["echo"]}, parallel=2)
    t0 = time.monotonic()
    r = api.post("/job?wait=20", json={"model": "echo", "prompt": "waited", "params": {"delay_ms": 300}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED" and r.json()["result"] == {"text": "waited"}, r.text
    # Told by a notification, not by the store re-read that follows a job every second or so.
    assert time.monotonic() - t0 < 5
    # A long poll on the API node, and one whose wait runs out while the worker runs the job.
    job = api.submit("echo", "slow", params={"delay_ms": 1500})
    r = api.get(f"/job/{job['id']}?wait=0.3")
    assert r.status_code == 200 and r.json()["status"] in ("QUEUED", "PROCESSING"), r.text
    r = api.get(f"/job/{job['id']}?wait=20")
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text


def test_a_zombie_workers_late_completion_is_refused(cluster):
    import signal
    api, workers = api_and_workers(cluster, {"w1": ["echo"], "w2": ["echo"]}, lease="2", parallel=1)
    # Keep w2 busy so that w1 takes the job.
    workers["w2"].stop()
    job = api.submit("echo", "the job", params={"delay_ms": 3000})
    api.wait_running(job["id"])
    workers["w1"].proc.send_signal(signal.SIGSTOP)  # a zombie: alive, silent, holding the job
    try:
        workers["w2"].start()
        wait_until(lambda: api.job(job["id"])["attempts"] == 2, 30, "the job to be claimed again")
        done = api.wait_job(job["id"], timeout=30)
        assert done["status"] == "COMPLETED" and done["attempts"] == 2, done
        finished_at = done["finished_at"]
    finally:
        workers["w1"].proc.send_signal(signal.SIGCONT)
    # The zombie wakes, finishes its run (the echo's delay is over) and is refused: the stored job
    # is the second run's.
    wait_until(lambda: "lease lost" in workers["w1"].log_text(), 20, "the zombie to try to record its end")
    after = api.job(job["id"])
    assert after["finished_at"] == finished_at and after["attempts"] == 2, after


def test_nodes_are_listed_and_models_say_which_nodes_serve_them(cluster):
    env = {"STATIM_JOBS_REJECT_UNSERVED": "true"}
    api = cluster("api", role="api", STATIM_NODE_ID="api", **env)
    for m in ("echo-a", "echo-b"):
        api.add_model(m)
    w1 = cluster("w1", role="worker", STATIM_NODE_ID="w1")
    w1.add_model("echo-a")
    w2 = cluster("w2", role="worker", STATIM_NODE_ID="w2")
    w2.add_model("echo-a")
    w2.add_model("echo-b")
    w1.start()
    w2.start()
    api.start(wait_models=[])

    def nodes() -> dict[str, dict]:
        r = api.get("/nodes")
        assert r.status_code == 200, r.text
        return {n["id"]: n for n in r.json()["nodes"]}

    wait_until(lambda: len(nodes()) == 3, 10, "three nodes recorded")
    listed = nodes()
    assert {i: (n["role"], n["alive"]) for i, n in listed.items()} == \
        {"api": ("api", True), "w1": ("worker", True), "w2": ("worker", True)}
    assert listed["api"]["this_node"] and not listed["w1"]["this_node"]
    assert listed["api"]["models"] == {}
    # A node records its models' states every 2 s: the first record may say "loading".
    wait_until(lambda: all(n["models"][m]["state"] == "ready" for n in nodes().values() for m in n["models"]),
               10, "every node to record its models ready")
    # GET /models reads the node records the API node keeps (refreshed on its own heartbeat), so it
    # may see them a moment after GET /nodes (which reads the table) does.
    def both_ready():
        m = api.models()
        return m if all(m[i]["state"] == "ready" for i in ("echo-a", "echo-b")) else None
    models = wait_until(both_ready, 10, "the API node's /models to show its models ready")
    assert models["echo-a"]["state"] == "ready"
    assert sorted(n["id"] for n in models["echo-a"]["nodes"]) == ["w1", "w2"]
    assert [n["id"] for n in models["echo-b"]["nodes"]] == ["w2"]
    assert api.wait_job(api.submit("echo-b", "served")["id"])["status"] == "COMPLETED"

    # w2 dies: after three silent heartbeats it is not alive, and nothing serves echo-b.
    w2.kill9()
    wait_until(lambda: not nodes()["w2"]["alive"], 20, "w2 to be seen dead")
    wait_until(lambda: api.models()["echo-b"]["nodes"] == [], 10, "echo-b to lose its node")
    assert api.models()["echo-b"]["state"] == "unloaded"
    r = api.post("/job", json={"prompt": "nobody", "model": "echo-b"})
    assert r.status_code == 503, r.text
    assert "no live node serves model 'echo-b'" in r.json()["error"]["message"]
    assert api.wait_job(api.submit("echo-a", "still served")["id"])["status"] == "COMPLETED"

    # A clean stop removes the node's record at once.
    w1.stop()
    wait_until(lambda: "w1" not in nodes(), 10, "w1's record to go")


def test_compose_cluster_nodes_start_with_the_environment_it_gives_them(pg, cluster):
    """compose.cluster.yaml's statim services, run as processes with the environment the file gives
    them (its database URL pointed at the test server): an API node and two workers that serve."""
    import yaml
    from pathlib import Path
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "compose.cluster.yaml").read_text())
    services = spec["services"]
    assert services["postgres"]["image"].startswith("postgres:18")
    statim = {name: s for name, s in services.items() if s.get("image", "").startswith("statim")}
    assert sorted(statim) == ["api", "worker-1", "worker-2"]
    nodes = {}
    for name, s in statim.items():
        env = {k: str(v) for k, v in s["environment"].items()}
        assert env["STATIM_STORE_URL"].startswith("postgresql://statim:")
        env["STATIM_STORE_URL"] = cluster.url
        env["STATIM_WEBHOOKS_SECRET"] = "x"
        node = cluster(name, **{k: v for k, v in env.items() if k != "STATIM_NODE_ROLE"},
                       role=env.get("STATIM_NODE_ROLE"))
        node.add_model("echo")
        nodes[name] = node
    nodes["worker-1"].start()
    nodes["worker-2"].start()
    api = nodes["api"].start(wait_models=[])
    assert api.wait_job(api.submit("echo", "from compose")["id"])["result"] == {"text": "from compose"}
    wait_until(lambda: {n["id"] for n in api.get("/nodes").json()["nodes"]} == {"api", "worker-1", "worker-2"},
               10, "the three nodes")


def test_webhooks_of_jobs_on_two_nodes_are_each_delivered_once_and_signed_alike(cluster):
    from test_webhooks import Receiver, check_signed
    rx = Receiver()
    try:
        nodes = [cluster(n) for n in ("a", "b")]  # both sign with the cluster's shared secret
        for n in nodes:
            n.add_model("echo", parallel=2)
            n.start()
        ids = []
        for i in range(40):
            r = nodes[i % 2].post("/job", json={"model": "echo", "prompt": f"hook {i}", "webhook": rx.url,
                                               "webhook_events": ["started", "completed"]})
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        requests_ = rx.wait(80, timeout=60)
        time.sleep(1.5)  # any duplicate would have arrived by now
        bodies = rx.bodies()
        assert len(bodies) == 80, len(bodies)
        assert sorted((b["job"]["id"], b["event"]) for b in bodies) == \
            sorted((j, e) for j in ids for e in ("started", "completed"))
        for req in requests_:
            check_signed("shared-secret", req)
    finally:
        rx.close()


def test_an_openai_stream_on_the_api_node_gets_the_text_a_worker_generates(cluster, tiny_gguf):
    api, workers = api_and_workers(cluster, {"w1": ["tiny"]}, backend="llama", file=str(tiny_gguf), parallel=2,
                                   params={"n_ctx": 512, "threads": 1})
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stream": True}
    with requests.post(f"{api.url}/v1/completions", json=body, stream=True, timeout=60) as r:
        assert r.status_code == 200, r.text
        text, finish = "", None
        from conftest import sse_events
        import json as _json
        for name, data in sse_events(r):
            if data == "[DONE]":
                break
            chunk = _json.loads(data)
            text += chunk["choices"][0]["text"]
            finish = chunk["choices"][0].get("finish_reason") or finish
    assert finish == "length" and text, (finish, text)
    r = api.post("/v1/completions", json={**body, "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == text  # greedy: the same text without streaming


def test_a_response_run_by_a_worker_streams_and_resumes_on_the_api_node(cluster, tiny_gguf):
    """A background Responses API response: the worker runs it, the API node streams its events
    (over the database's notifications), a stream resumed with starting_after continues the one
    left, and previous_response_id reads the chain from the database."""
    import json as _json
    from conftest import sse_events
    api, workers = api_and_workers(cluster, {"w1": ["tiny"]}, backend="llama", file=str(tiny_gguf), parallel=2,
                                   params={"n_ctx": 4096, "threads": 1})

    def events(path, limit=None):
        out = []
        with requests.get(f"{api.url}{path}", stream=True, timeout=120) as r:
            assert r.status_code == 200, r.text
            for _, data in sse_events(r):
                out.append(_json.loads(data))
                if limit and len(out) >= limit:
                    break
        return out

    r = api.post("/v1/responses", json={"model": "tiny", "input": "Tell a long story", "max_output_tokens": 2000,
                                        "background": True})
    assert r.status_code == 200, r.text
    rid = r.json()["id"]
    first = events(f"/v1/responses/{rid}?stream=true", limit=10)
    rest = events(f"/v1/responses/{rid}?stream=true&starting_after=9")
    assert [e["sequence_number"] for e in first + rest] == list(range(len(first) + len(rest)))
    assert rest[-1]["type"] == "response.incomplete", rest[-1]
    assert events(f"/v1/responses/{rid}?stream=true") == first + rest
    done = api.job(int(rid[5:]))
    assert "".join(e["delta"] for e in first + rest if e["type"] == "response.output_text.delta") == \
        done["result"]["text"]
    r = api.post("/v1/responses", json={"model": "tiny", "input": "And then?", "previous_response_id": rid,
                                        "max_output_tokens": 3})
    assert r.status_code == 200, r.text
    messages = api.job(int(r.json()["id"][5:]))["params"]["messages"]
    assert messages == [{"role": "user", "content": "Tell a long story"},
                        {"role": "assistant", "content": done["result"]["text"]},
                        {"role": "user", "content": "And then?"}]


def test_a_worker_killed_under_load_loses_no_job_and_none_ends_twice(pg, cluster):
    api, workers = api_and_workers(cluster, {"w1": ["echo"], "w2": ["echo"], "w3": ["echo"]}, lease="2",
                                   parallel=2, max_queue=10000)
    # 100 ms jobs: the six slots take 4 s for them, so the queue is still long when w1 is killed
    # (with 30 ms jobs, a slow submitter could see the workers drain it first).
    ids = [api.submit("echo", f"job {i}", params={"delay_ms": 100})["id"] for i in range(240)]
    wait_until(lambda: finished_by_status(workers["w1"])["completed"] >= 5 and running_on(workers["w1"]) >= 1, 30,
               "w1 to run some jobs, and hold some")
    workers["w1"].kill9()
    ids += [api.submit("echo", f"late {i}", params={"delay_ms": 5})["id"] for i in range(60)]
    wait_until(lambda: pg.sql("SELECT count(*) FROM jobs WHERE status IN ('QUEUED', 'PROCESSING')", cluster.url)
               == [["0"]], 60, "every job to end")
    rows = pg.sql("SELECT status, count(*), max(attempts) FROM jobs GROUP BY status", cluster.url)
    assert [r[:2] for r in rows] == [["COMPLETED", "300"]], rows
    assert int(rows[0][2]) <= 2, rows
    # Every accepted id is there once, completed with its own prompt.
    for j in ids[::15]:
        job = api.job(j)
        assert job["status"] == "COMPLETED" and job["result"]["text"] == job["prompt"], job
    # w1 died holding jobs (it was busy: the queue was long): those ran again elsewhere.
    assert int(pg.sql("SELECT count(*) FROM jobs WHERE attempts = 2", cluster.url)[0][0]) >= 1
