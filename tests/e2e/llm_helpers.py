"""Helpers shared by the LLM e2e tests: submitting and waiting for jobs, long-running jobs, and
following a job's Server-Sent Events."""
from __future__ import annotations

import json
import threading

import requests

from conftest import SLOW, Server, sse_events, wait_until

GREEDY = {"temperature": 0}


def submit(server: Server, **body) -> dict:
    r = server.post("/job", json=body)
    assert r.status_code == 202, f"POST /job {body} -> {r.status_code} {r.text}"
    return r.json()


def run(server: Server, timeout: float = 60, **body) -> dict:
    """POST /job, wait for the end; returns the finished job (asserting COMPLETED)."""
    done = server.wait_job(submit(server, **body)["id"], timeout=timeout)
    assert done["status"] == "COMPLETED", done
    return done


def complete(server: Server, prompt: str, model: str = "tiny", **params) -> dict:
    return run(server, model=model, prompt=prompt, params=params)["result"]


def long_job(server: Server, model: str = "one", prompt: str = "Hello, the cat") -> dict:
    """A greedy 30000-token job: on a model with a 32768-token context it runs for many seconds
    (until cancelled), so it surely holds a slot while a test looks."""
    return submit(server, model=model, prompt=prompt, params={"max_tokens": 30000, **GREEDY})


def follow_events(server: Server, job_id: int, out: list, opened: threading.Event | None = None,
                  stop_after: int = 0) -> None:
    """Reads /job/{id}/events into `out` as (name, parsed data) until the stream closes, or until
    stop_after events (then hangs up). Sets `opened` once 20 events have arrived. Run it in a thread
    to watch a job while the test acts on it."""
    with requests.Session() as s:
        s.trust_env = False
        with s.get(f"{server.url}/job/{job_id}/events", stream=True, timeout=60 * SLOW) as r:
            assert r.status_code == 200
            for name, data in sse_events(r):
                out.append((name, json.loads(data)))
                if opened is not None and not opened.is_set() and len(out) >= 20:
                    opened.set()
                if stop_after and len(out) >= stop_after:
                    return


def check_stream(events: list, job_id: int, final_status: str) -> str:
    """Checks an event stream's shape; returns the text it reconstructs."""
    names = [n for n, _ in events]
    assert names[0] == "state", names[:5]
    terminal = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled"}[final_status]
    assert names[-1] == terminal and names.count(terminal) == 1, names[-5:]
    assert set(names[1:-1]) <= {"queued", "started", "token"}, set(names)
    tokens = [d for n, d in events if n == "token"]
    assert all(d["type"] == "token" and d["job_id"] == job_id and isinstance(d["text"], str) for d in tokens)
    if "started" in names and "token" in names:
        assert names.index("started") < names.index("token")
    final = events[-1][1]["job"]
    assert final["id"] == job_id and final["status"] == final_status
    return events[0][1]["text"] + "".join(d["text"] for d in tokens)


def token_pieces(server: Server, prompt: str, params: dict) -> tuple[dict, list[str]]:
    """Runs a completion on "one" and follows its events from before it starts (it waits behind a
    blocker until the stream is open): (final job, the text of each token event)."""
    blocker = long_job(server)
    server.wait_running(blocker["id"])
    job = submit(server, model="one", prompt=prompt, params=params)
    events: list = []
    t = threading.Thread(target=follow_events, args=(server, job["id"], events))
    t.start()
    wait_until(lambda: events, 10, "the state event")
    assert events[0][1]["job"]["status"] == "QUEUED" and events[0][1]["text"] == ""
    server.request("DELETE", f"/job/{blocker['id']}")
    t.join(30 * SLOW)
    assert events[-1][0] == "completed", events[-1]
    return events[-1][1]["job"], [d["text"] for n, d in events if n == "token"]

