"""LLM serving through the job API: chat (messages + chat templates), embeddings (input), stop
strings across tokens, GBNF grammars and JSON response formats, cancellation (queued and running),
continuous batching (greedy and seeded results unchanged), the context limit, crashes, raw bytes.
The events stream itself is tested in test_events.py."""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import Server, assert_error, fail_on_sanitizer_reports, iso_micros, sse_events, stories_path
from llm_helpers import GREEDY, complete, long_job, run, submit, token_pieces

CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    root = tmp_path_factory.mktemp("serving")
    s = Server(root, name="serving")
    common = {"threads": 1}
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=4, max_queue=100,
                params={"n_ctx": 512, **common})
    # parallel 1 with a long context: a 30000-token job holds the only slot for many seconds.
    s.add_model("one", backend="llama", file=str(tiny_gguf), parallel=1, params={"n_ctx": 32768, **common})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 512, **common})
    s.add_model("limited", backend="llama", file=str(tiny_gguf), parallel=1, max_queue=1,
                params={"n_ctx": 32768, **common})
    stories = stories_path()
    if stories:
        s.add_model("stories", backend="llama", file=str(stories), params={"n_ctx": 512, **common})
        s.add_model("stories-chatml", backend="llama", file=str(stories),
                    params={"n_ctx": 512, "chat_template": "chatml", **common})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


# ----------------------------------------------------------------------------------------------
# Chat


def test_chat_job_renders_the_chat_template(server):
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "The cat"}]
    job = submit(server, model="tiny", messages=messages, params={"max_tokens": 16, **GREEDY})
    assert job["type"] == "chat" and job["prompt"] == "The cat", "the last user message stands for the job"
    assert job["params"] == {"messages": messages, "max_tokens": 16, "temperature": 0}
    done = server.wait_job(job["id"])
    assert done["status"] == "COMPLETED", done
    res = done["result"]
    assert res["text"].strip() and res["tokens_out"] == 16 and res["finish_reason"] == "length", res
    # Chat = completion of the ChatML rendering (the fixture's template), generation prompt included.
    rendered = "".join(CHATML.format(**m) for m in messages) + "<|im_start|>assistant\n"
    plain = complete(server, rendered, max_tokens=16, **GREEDY)
    assert (res["text"], res["tokens_in"]) == (plain["text"], plain["tokens_in"])


def test_chat_developer_role_is_system(server):
    as_dev = run(server, model="tiny", messages=[{"role": "developer", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi"}], params={"max_tokens": 8, **GREEDY})
    as_sys = run(server, model="tiny", messages=[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "Hi"}], params={"max_tokens": 8, **GREEDY})
    assert as_dev["result"]["text"] == as_sys["result"]["text"]


def test_chat_is_sampled_with_the_job_params(server):
    msgs = [{"role": "user", "content": "Tell me"}]
    a = run(server, model="tiny", messages=msgs, params={"max_tokens": 24, "temperature": 0.9, "seed": 7})
    b = run(server, model="tiny", messages=msgs, params={"max_tokens": 24, "temperature": 0.9, "seed": 7})
    c = run(server, model="tiny", messages=msgs, params={"max_tokens": 24, **GREEDY})
    assert a["result"]["text"] == b["result"]["text"] != c["result"]["text"]


def test_chat_without_a_template_is_refused(server):
    if "stories" not in server.models():
        pytest.skip("stories260K.gguf is absent")
    assert server.models()["stories"]["details"]["chat_template"] is False
    r = server.post("/job", json={"model": "stories", "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert "no chat template" in err["message"] and "chat_template" in err["message"], err
    assert err["param"] == "messages"
    # A plain prompt on the same model still works.
    assert complete(server, "Once upon a time", model="stories", max_tokens=12, **GREEDY)["text"].startswith(
        ", there was a little girl named Lily.")


def test_manifest_chat_template_override(server):
    if "stories-chatml" not in server.models():
        pytest.skip("stories260K.gguf is absent")
    assert server.models()["stories-chatml"]["details"]["chat_template"] is True
    msgs = [{"role": "user", "content": "Once upon a time"}]
    res = run(server, model="stories-chatml", messages=msgs, params={"max_tokens": 16, **GREEDY})["result"]
    plain = complete(server, CHATML.format(role="user", content="Once upon a time") + "<|im_start|>assistant\n",
                     model="stories", max_tokens=16, **GREEDY)
    assert (res["text"], res["tokens_in"]) == (plain["text"], plain["tokens_in"]) and res["text"]


# ----------------------------------------------------------------------------------------------
# Embeddings


def test_embedding_jobs(server):
    a = run(server, model="emb", input="Hello, the cat")
    assert a["type"] == "embedding" and a["prompt"] == "Hello, the cat" and a["params"] == {"input": "Hello, the cat"}
    b = run(server, model="emb", input="Hello, the cat")
    res = a["result"]
    assert res["dimensions"] == 64 and len(res["embeddings"]) == 1 and len(res["embeddings"][0]) == 64
    assert res["embeddings"] == b["result"]["embeddings"], "same text, same vector"
    assert abs(math.sqrt(sum(x * x for x in res["embeddings"][0])) - 1) < 1e-5, "L2-normalised"
    assert res["tokens_in"] > 0

    many = run(server, model="emb", input=["Hello, the cat", "The little dog", "Hello, the cat"])
    assert many["prompt"] == "Hello, the cat"
    vecs = many["result"]["embeddings"]
    assert len(vecs) == 3 and all(len(v) == 64 for v in vecs)
    assert max(abs(x - y) for x, y in zip(vecs[0], res["embeddings"][0])) < 1e-6, "a list item = the string alone"
    assert vecs[0] == vecs[2] and vecs[0] != vecs[1]
    dog = run(server, model="emb", input="The little dog")["result"]
    assert many["result"]["tokens_in"] == 2 * res["tokens_in"] + dog["tokens_in"]


# ----------------------------------------------------------------------------------------------
# Stop strings


def test_stop_string_across_tokens(server):
    final, pieces = token_pieces(server, "Hello, the cat", {"max_tokens": 40, **GREEDY})
    full = final["result"]["text"]
    assert "".join(pieces) == full
    # A stop string made of the end of one token and the start of the next.
    stop, at, pos = None, -1, 0
    for k in range(1, len(pieces) - 1):
        pos += len(pieces[k - 1])
        left, right = pieces[k - 1], pieces[k]
        cand = left[-2:] + right[:2]
        if len(left) >= 2 and len(right) >= 2 and full.find(cand) == pos - 2 and pos > 4:
            stop, at = cand, pos - 2
            break
    assert stop, f"no token pair to build a stop string from: {pieces}"
    cut_final, cut_pieces = token_pieces(server, "Hello, the cat", {"max_tokens": 40, "stop": stop, **GREEDY})
    res = cut_final["result"]
    assert res["finish_reason"] == "stop" and res["text"] == full[:at], (stop, full, res)
    assert "".join(cut_pieces) == res["text"], "the streamed tokens never show part of the stop string"


def test_stop_list_first_match_wins(server):
    full = complete(server, "Once upon a time", max_tokens=40, **GREEDY)["text"]
    late, early = full[30:33], full[10:13]
    assert full.find(early) < full.find(late)
    res = complete(server, "Once upon a time", max_tokens=40, stop=[late, early], **GREEDY)
    assert res["text"] == full[:full.find(early)] and res["finish_reason"] == "stop"


# ----------------------------------------------------------------------------------------------
# Grammars and JSON


def test_grammar_constrains_to_yes_or_no(server):
    grammar = 'root ::= "yes" | "no"'
    greedy = complete(server, "Is the sky blue?", max_tokens=20, grammar=grammar, **GREEDY)
    assert greedy["text"] in ("yes", "no") and greedy["finish_reason"] == "stop", greedy
    sampled = {complete(server, "Is the sky blue?", max_tokens=20, grammar=grammar, temperature=1.5, seed=s)["text"]
               for s in range(6)}
    assert sampled <= {"yes", "no"}, sampled


def test_grammar_with_repetition(server):
    res = complete(server, "A number:", max_tokens=20, grammar="root ::= [0-9]{3} \"-\" [a-z]{2}", **GREEDY)
    text = res["text"]
    assert len(text) == 6 and text[:3].isdigit() and text[3] == "-" and text[4:].isalpha() and text[4:].islower(), text


def test_json_object_response_format(server):
    finished = 0
    cases = (("Hello, the cat", GREEDY), ("JSON please:", GREEDY), ("JSON please:", {"temperature": 0.7, "seed": 3}),
             ("An object:", {"temperature": 0.7, "seed": 4}))
    for prompt, params in cases:
        res = complete(server, prompt, max_tokens=64, response_format={"type": "json_object"}, **params)
        assert res["text"].lstrip().startswith("{"), res["text"]
        if res["finish_reason"] == "length":
            continue  # a random model can write an endless string; only a finished document must parse
        finished += 1
        assert isinstance(json.loads(res["text"]), dict), res["text"]
    assert finished, "at least one document was finished"


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
        "when": {"type": "string", "format": "date"},
    },
    "required": ["name", "age", "ok", "color", "tags", "when"],
    "additionalProperties": False,
}


def check_schema_doc(doc):
    assert isinstance(doc, dict) and set(doc) == set(SCHEMA["required"]), doc
    assert isinstance(doc["name"], str) and len(doc["name"]) <= 12
    assert isinstance(doc["age"], int) and not isinstance(doc["age"], bool)
    assert isinstance(doc["ok"], bool)
    assert doc["color"] in ("red", "green", "blue")
    assert isinstance(doc["tags"], list) and len(doc["tags"]) <= 3
    assert all(isinstance(t, str) and len(t) <= 5 for t in doc["tags"])
    y, m, d = doc["when"].split("-")
    assert len(y) == 4 and 1 <= int(m) <= 12 and 1 <= int(d) <= 31, doc["when"]


def test_json_schema_response_format(server):
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    for params in ({**GREEDY}, {"temperature": 0.8, "seed": 11}, {"temperature": 0.8, "seed": 12}):
        res = complete(server, "A person as JSON:", max_tokens=400, response_format=fmt, **params)
        assert res["finish_reason"] == "stop", f"the schema bounds every field, so the document ends: {res}"
        check_schema_doc(json.loads(res["text"]))


def test_grammar_jobs_share_a_batch_with_free_jobs(server):
    free_alone = complete(server, "Hello, the cat", max_tokens=64, **GREEDY)["text"]
    bodies = [{"model": "tiny", "prompt": "Hello, the cat", "params": {"max_tokens": 64, **GREEDY}},
              {"model": "tiny", "prompt": "Yes or no?", "params": {"max_tokens": 8, "grammar": 'root ::= "yes" | "no"',
                                                                   **GREEDY}},
              {"model": "tiny", "prompt": "JSON:", "params": {"max_tokens": 300, **GREEDY, "response_format": {
                  "type": "json_schema", "json_schema": {"schema": SCHEMA}}}},
              {"model": "tiny", "prompt": "Hello, the cat", "params": {"max_tokens": 64, **GREEDY}}]
    with ThreadPoolExecutor(4) as ex:
        jobs = list(ex.map(lambda b: submit(server, **b), bodies))
    done = [server.wait_job(j["id"]) for j in jobs]
    assert all(d["status"] == "COMPLETED" for d in done), done
    assert done[0]["result"]["text"] == done[3]["result"]["text"] == free_alone
    assert done[1]["result"]["text"] in ("yes", "no")
    check_schema_doc(json.loads(done[2]["result"]["text"]))


# ----------------------------------------------------------------------------------------------
# Cancellation


def test_cancel_queued_then_running_job(server):
    running = long_job(server)
    server.wait_running(running["id"])
    queued = submit(server, model="one", prompt="waits", params={"max_tokens": 4})

    r = server.post(f"/job/{queued['id']}/cancel")
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["status"] == "CANCELLED" and q["status_message"] == "cancelled before it started", q
    assert q["started_at"] is None and q["finished_at"] and q["result"] is None and q["attempts"] == 0
    assert server.job(queued["id"]) == q

    r = server.request("DELETE", f"/job/{running['id']}")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["status_message"]) == ("PROCESSING", "cancelling"), r.json()
    done = server.wait_job(running["id"], timeout=5)
    assert done["status"] == "CANCELLED" and done["status_message"] == "cancelled while running", done
    res = done["result"]
    assert res["finish_reason"] == "cancelled" and 0 < res["tokens_out"] < 30000 and res["text"], res
    assert done["error"] is None

    # The freed slot serves the next job, and the partial text is the greedy text for that length.
    again = complete(server, "Hello, the cat", model="one", max_tokens=res["tokens_out"], **GREEDY)
    assert again["text"] == res["text"]
    assert server.job(queued["id"])["status"] == "CANCELLED", "a cancelled job never runs later"


def test_cancelling_queued_jobs_frees_queue_room(server):
    blocker = long_job(server, model="limited")
    server.wait_running(blocker["id"])
    queued = submit(server, model="limited", prompt="one", params={"max_tokens": 2})
    assert_error(server.post("/job", json={"model": "limited", "prompt": "two"}), 429, "queue_full", "max_queue 1")
    server.request("DELETE", f"/job/{queued['id']}")
    server.wait_queue("limited", queued=0, running=1)
    again = submit(server, model="limited", prompt="three", params={"max_tokens": 2, **GREEDY})
    server.request("DELETE", f"/job/{blocker['id']}")
    assert server.wait_job(again["id"])["status"] == "COMPLETED"
    server.wait_queue("limited", queued=0, running=0)


def test_priority_order_in_a_batched_model(server):
    blocker = long_job(server)
    server.wait_running(blocker["id"])
    plan = [("low", -5), ("mid-1", 0), ("high", 10), ("mid-2", 0)]
    ids = {name: submit(server, model="one", prompt=name, params={"max_tokens": 2}, priority=p)["id"]
           for name, p in plan}
    server.request("DELETE", f"/job/{blocker['id']}")
    done = {name: server.wait_job(id) for name, id in ids.items()}
    order = sorted(done, key=lambda n: iso_micros(done[n]["started_at"]))
    assert order == ["high", "mid-1", "mid-2", "low"], order


def test_cancel_is_idempotent_and_final(server):
    job = long_job(server)
    server.wait_running(job["id"])
    first = server.post(f"/job/{job['id']}/cancel").json()
    second = server.post(f"/job/{job['id']}/cancel").json()
    assert second["status"] in ("PROCESSING", "CANCELLED") and second["status_message"] in ("cancelling",
                                                                                            "cancelled while running")
    done = server.wait_job(job["id"], timeout=5)
    assert first["status_message"] == "cancelling" and done["status"] == "CANCELLED"
    r = server.request("DELETE", f"/job/{job['id']}")
    assert r.status_code == 200 and r.json() == done, "cancelling a finished job changes nothing"

    finished = run(server, model="tiny", prompt="Hi", params={"max_tokens": 3})
    r = server.post(f"/job/{finished['id']}/cancel")
    assert r.status_code == 200 and r.json() == finished


def test_cancel_unknown_or_bad_id(server):
    for method, path in (("POST", "/job/999999/cancel"), ("DELETE", "/job/999999")):
        r = server.request(method, path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = server.request("DELETE", "/job/abc")
    assert r.status_code == 400 and r.json()["error"]["param"] == "id", r.text


def test_cancel_embedding_jobs(server):
    # 2048 inputs of ~70 tokens: about two seconds of work on the only embedding worker.
    text = "The little dog and the big cat went to the park to play with a red ball " * 3
    running = submit(server, model="emb", input=[text] * 2048)
    queued = submit(server, model="emb", input="waits")
    server.wait_running(running["id"])
    r = server.request("DELETE", f"/job/{queued['id']}")
    assert r.status_code == 200 and r.json()["status_message"] == "cancelled before it started", r.text
    r = server.post(f"/job/{running['id']}/cancel")
    assert r.status_code == 200 and r.json()["status_message"] == "cancelling", r.text
    done = server.wait_job(running["id"], timeout=5)
    assert done["status"] == "CANCELLED" and done["error"] is None, done
    assert run(server, model="emb", input="after")["result"]["dimensions"] == 64, "the worker is free again"


# ----------------------------------------------------------------------------------------------
# Continuous batching


PROMPTS = ["Once upon a time", "The little dog", "Hello, the cat", "Tom and Sue went to the park", "One day",
           "She said", "The sun was hot and the", "Lily"]


def test_batching_does_not_change_greedy_results(server):
    lengths = [200, 150, 250, 100, 220, 180, 120, 240]
    alone = [complete(server, p, max_tokens=n, **GREEDY)["text"] for p, n in zip(PROMPTS, lengths)]
    with ThreadPoolExecutor(8) as ex:
        jobs = list(ex.map(lambda pn: submit(server, model="tiny", prompt=pn[0],
                                             params={"max_tokens": pn[1], **GREEDY}), zip(PROMPTS, lengths)))
    done = [server.wait_job(j["id"], timeout=60) for j in jobs]
    for prompt, want, job in zip(PROMPTS, alone, done):
        assert job["status"] == "COMPLETED", job
        assert job["result"]["text"] == want, f"{prompt!r} changed in a batch"
    spans = [(iso_micros(j["started_at"]), iso_micros(j["finished_at"])) for j in done]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most >= 2, f"the jobs never overlapped, so nothing was batched: {spans}"


def test_batching_does_not_change_seeded_sampling(server):
    params = [{"max_tokens": 60, "temperature": 0.9, "top_p": 0.9, "seed": 100 + i} for i in range(6)]
    alone = [complete(server, "Once upon a time", **p)["text"] for p in params]
    assert len(set(alone)) > 1
    with ThreadPoolExecutor(6) as ex:
        jobs = list(ex.map(lambda p: submit(server, model="tiny", prompt="Once upon a time", params=p), params))
    assert [server.wait_job(j["id"])["result"]["text"] for j in jobs] == alone


def test_max_tokens_is_capped_by_the_context(server):
    res = complete(server, "Hello", max_tokens=32768, **GREEDY)
    assert res["finish_reason"] == "length"
    assert res["tokens_in"] + res["tokens_out"] == 512, res


# ----------------------------------------------------------------------------------------------
# Durability


def test_chat_and_embedding_jobs_survive_a_crash(make_server, tiny_gguf):
    s = make_server("llm-crash")
    s.add_model("one", backend="llama", file=str(tiny_gguf), parallel=1, params={"n_ctx": 32768, "threads": 1})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 512, "threads": 1})
    s.start(timeout=60)
    msgs = [{"role": "user", "content": "Hello, the cat"}]
    want = run(s, model="one", messages=msgs, params={"max_tokens": 24, **GREEDY})["result"]["text"]
    blocker = long_job(s)
    s.wait_running(blocker["id"])
    chat = submit(s, model="one", messages=msgs, params={"max_tokens": 24, **GREEDY})
    s.kill9()

    s.start(timeout=60)
    assert s.job(chat["id"])["params"]["messages"] == msgs, "the messages are stored with the job"
    s.wait_running(blocker["id"])  # requeued by the restart, running again
    assert s.job(blocker["id"])["attempts"] == 2
    assert s.request("DELETE", f"/job/{blocker['id']}").json()["status_message"] == "cancelling"
    done = s.wait_job(chat["id"], timeout=30)
    assert done["status"] == "COMPLETED" and done["result"]["text"] == want, done
    assert s.wait_job(blocker["id"], timeout=10)["status"] == "CANCELLED"
    emb = run(s, model="emb", input=["a", "b"])
    assert len(emb["result"]["embeddings"]) == 2


# ----------------------------------------------------------------------------------------------
# Raw bytes


def test_byte_tokens_stream_as_whole_characters(make_server, tmp_path):
    # --raw-bytes lets the random model pick byte tokens, so it writes broken UTF-8 sequences.
    import subprocess
    import sys
    from conftest import REPO
    gguf = tmp_path / "raw.gguf"
    subprocess.run([sys.executable, str(REPO / "tests" / "fixtures" / "make_tiny_gguf.py"), str(gguf), "--raw-bytes"],
                   check=True, capture_output=True, timeout=120)
    s = make_server("raw-bytes")
    s.add_model("raw", backend="llama", file=str(gguf), parallel=2, params={"n_ctx": 512, "threads": 1})
    s.add_model("one", backend="llama", file=str(gguf), parallel=1, params={"n_ctx": 32768, "threads": 1})
    s.start(timeout=60)
    for prompt, params in (("héllo wörld 你好", {"max_tokens": 100, **GREEDY}),
                           ("x", {"max_tokens": 200, "temperature": 1.5, "seed": 3})):
        final, pieces = token_pieces(s, prompt, params)
        text = final["result"]["text"]
        assert "".join(pieces) == text and final["result"]["tokens_out"] == params["max_tokens"]
        assert text.encode("utf-8").decode("utf-8") == text
        assert any(ord(c) > 127 or ord(c) < 32 and c != "\n" for c in text), "the fixture wrote some raw bytes"
        r = s.post("/v1/completions", json={"model": "raw", "prompt": prompt, "stream": True, **params})
        chunks = [json.loads(d) for _, d in sse_events(r) if d != "[DONE]"]
        assert "".join(c["choices"][0]["text"] for c in chunks) == text
