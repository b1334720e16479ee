"""Many OpenAI streams at once, a share of them dropped by their clients mid-stream.

Regression test: a client leaving used to make the event listener cancel its job while holding
the event hub's lock, deadlocking against the store's writer thread; every stream then hung.
Bounded: 8 clients for a few seconds, loopback only."""
from __future__ import annotations

import random
import threading
import time

import requests

from conftest import SLOW, wait_until


def test_streams_survive_clients_that_leave(make_server, tiny_gguf):
    s = make_server("churn")
    s.add_model("m", backend="llama", file=str(tiny_gguf), parallel=8, params={"n_ctx": 256, "threads": 1})
    s.start()
    stop = time.monotonic() + 4 * SLOW
    counts = {"completed": 0, "dropped": 0, "errors": []}
    lock = threading.Lock()

    def client(i: int) -> None:
        rnd = random.Random(i)
        while time.monotonic() < stop:
            try:
                with requests.post(f"{s.url}/v1/completions", stream=True, timeout=20 * SLOW,
                                   json={"model": "m", "prompt": f"hello {i} {rnd.random()}", "max_tokens": 24,
                                         "temperature": 0, "stream": True}) as r:
                    lines = r.iter_lines()
                    for line in lines:
                        if rnd.random() < 0.03:
                            with lock:
                                counts["dropped"] += 1
                            break
                        if line == b"data: [DONE]":
                            with lock:
                                counts["completed"] += 1
            except requests.RequestException as e:  # a hang shows up here as a read timeout
                with lock:
                    counts["errors"].append(repr(e))
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counts["errors"] == [], counts["errors"][:3]
    assert counts["completed"] > 8 and counts["dropped"] > 0, counts
    assert s.running
    # Every job ends: the dropped ones CANCELLED (or COMPLETED if they finished first), none stuck.
    wait_until(lambda: s.jobs(status="PROCESSING")["total"] == 0 and s.jobs(status="QUEUED")["total"] == 0,
               10 * SLOW, "all jobs to end")
    assert s.jobs(status="FAILED")["total"] == 0
    assert s.jobs(status="CANCELLED")["total"] > 0
