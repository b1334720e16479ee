"""GET /job/{id}/events: the first `state` event (the job, and its text so far), then started /
token events and one terminal event, after which the stream closes. Late joiners reconstruct the
same text; leaving never cancels the job; a shutdown closes the streams and requeues the job."""
from __future__ import annotations

import json
import threading

import pytest
import requests

from conftest import SLOW, Server, fail_on_sanitizer_reports, sse_events, wait_until
from llm_helpers import GREEDY, check_stream, follow_events, long_job, run, submit


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    root = tmp_path_factory.mktemp("events")
    s = Server(root, name="events")
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 512, "threads": 1})
    # parallel 1 with a long context: a 30000-token job holds the only slot for many seconds.
    s.add_model("one", backend="llama", file=str(tiny_gguf), parallel=1, params={"n_ctx": 32768, "threads": 1})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


def test_events_from_the_queue_to_the_end(server):
    blocker = long_job(server)
    server.wait_running(blocker["id"])
    job = submit(server, model="one", prompt="Once upon a time", params={"max_tokens": 50, **GREEDY})
    events: list = []
    t = threading.Thread(target=follow_events, args=(server, job["id"], events))
    t.start()
    server.wait_queue("one", queued=1, running=1)
    server.post(f"/job/{blocker['id']}/cancel")
    t.join(30 * SLOW)
    assert not t.is_alive(), "the stream closes after the terminal event"
    state = events[0][1]
    assert state["job"]["status"] == "QUEUED" and state["text"] == "", state
    assert "started" in [n for n, _ in events]
    text = check_stream(events, job["id"], "COMPLETED")
    assert text == events[-1][1]["job"]["result"]["text"] == server.job(job["id"])["result"]["text"]
    assert len([n for n, _ in events if n == "token"]) >= 50 // 2


def test_events_joined_late_reconstruct_the_text(server):
    job = submit(server, model="one", prompt="The little dog", params={"max_tokens": 3000, **GREEDY})
    early: list = []
    late: list = []
    opened = threading.Event()
    a = threading.Thread(target=follow_events, args=(server, job["id"], early, opened))
    a.start()
    assert opened.wait(30 * SLOW), "20 events arrived"
    b = threading.Thread(target=follow_events, args=(server, job["id"], late))
    b.start()
    a.join(60 * SLOW)
    b.join(60 * SLOW)
    final = server.job(job["id"])
    assert final["status"] == "COMPLETED", final
    assert late[0][1]["job"]["status"] == "PROCESSING"
    assert late[0][1]["text"], "joined after 20 tokens: the state carries the text so far"
    assert check_stream(early, job["id"], "COMPLETED") == final["result"]["text"]
    assert check_stream(late, job["id"], "COMPLETED") == final["result"]["text"]
    assert late[-1][1]["job"] == final


def test_leaving_the_events_stream_does_not_cancel(server):
    job = submit(server, model="one", prompt="She said", params={"max_tokens": 1500, **GREEDY})
    events: list = []
    follow_events(server, job["id"], events, stop_after=5)  # and hang up
    assert len(events) == 5
    done = server.wait_job(job["id"], timeout=60)
    assert done["status"] == "COMPLETED" and done["result"]["tokens_out"] == 1500, done


def test_events_of_a_cancelled_job(server):
    job = long_job(server)
    events: list = []
    opened = threading.Event()
    t = threading.Thread(target=follow_events, args=(server, job["id"], events, opened))
    t.start()
    assert opened.wait(30 * SLOW)
    server.request("DELETE", f"/job/{job['id']}")
    t.join(10 * SLOW)
    assert not t.is_alive()
    text = check_stream(events, job["id"], "CANCELLED")
    assert text == events[-1][1]["job"]["result"]["text"] == server.job(job["id"])["result"]["text"]


def test_events_of_a_finished_job(server):
    done = run(server, model="tiny", prompt="Hi", params={"max_tokens": 4, **GREEDY})
    r = server.get(f"/job/{done['id']}/events", timeout=5)
    events = [(n, json.loads(d)) for n, d in sse_events(r)]
    assert [n for n, _ in events] == ["state", "completed"]
    assert events[0][1]["job"] == events[1][1]["job"] == done


def test_events_of_a_finished_job_carry_its_text(server):
    done = run(server, model="tiny", prompt="Hi", params={"max_tokens": 4, **GREEDY})
    events = [(n, json.loads(d)) for n, d in sse_events(server.get(f"/job/{done['id']}/events", timeout=5))]
    assert events[0][1]["text"] == done["result"]["text"]


def test_events_of_an_unknown_job(server):
    r = server.get("/job/999999/events")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text


# ----------------------------------------------------------------------------------------------
# Shutdown


def test_sigterm_with_open_streams_requeues_running_jobs(make_server, tiny_gguf):
    s = make_server("llm-term", env={"STATIM_JOBS_SHUTDOWN_GRACE_SECONDS": "1"})
    s.add_model("one", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 32768, "threads": 1})
    s.start(timeout=60)
    job = long_job(s)
    watched: list = []
    watcher = threading.Thread(target=lambda: _follow_quietly(s, job["id"], watched))
    watcher.start()
    stream = requests.post(f"{s.url}/v1/chat/completions", stream=True, timeout=30 * SLOW, json={
        "model": "one", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 30000, "stream": True})
    streamed = int(stream.headers["X-Statim-Job-Id"])
    wait_until(lambda: len(watched) > 20, 10, "tokens on the events stream")
    rc = s.stop(timeout=10)
    stream.close()
    watcher.join(10 * SLOW)
    assert rc == 0 and not watcher.is_alive()
    assert "completed" not in [n for n, _ in watched]

    s.start(timeout=60)
    again = s.job(job["id"])
    # The events client that lost its connection did not cancel the job: it is requeued and runs again.
    assert again["status"] in ("QUEUED", "PROCESSING") and again["attempts"] in (1, 2), again
    assert s.wait_running(job["id"])["attempts"] == 2
    assert s.job(streamed)["status"] != "COMPLETED"
    for id in (job["id"], streamed):
        s.request("DELETE", f"/job/{id}")
    assert s.wait_job(job["id"], timeout=10)["status"] == "CANCELLED"
    assert s.wait_job(streamed, timeout=10)["status"] == "CANCELLED"


def _follow_quietly(server: Server, job_id: int, out: list) -> None:
    try:
        follow_events(server, job_id, out)
    except requests.RequestException:
        pass  # the server went away mid-stream

