"""The OpenAI-compatible routes through the official `openai` Python SDK: models, completions,
chat (plain and streamed), embeddings (base64 and float), errors as SDK exceptions, and a
streaming client that goes away (its job ends CANCELLED)."""
from __future__ import annotations

import json
import urllib.request
import math
import time

import pytest

from conftest import SLOW, Server, fail_on_sanitizer_reports, wait_until

openai = pytest.importorskip("openai")

GREEDY = {"temperature": 0}
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello, the cat"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    root = tmp_path_factory.mktemp("openai")
    s = Server(root, name="openai")
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=4, max_queue=100,
                params={"n_ctx": 512, "threads": 1})
    # Long contexts so a 30000-token job runs for many seconds: it is surely running when cancelled.
    s.add_model("slow", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 32768, "threads": 1})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 512, "threads": 1})
    s.add_model("gone", backend="llama", file=str(root / "no-such.gguf"))
    s.add_model("org/echo", backend="echo")
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60 * SLOW)


def job_text(server: Server, model: str, **body) -> dict:
    """Runs the same request through POST /job and returns the finished job's result."""
    r = server.post("/job", json={"model": model, **body})
    assert r.status_code == 202, r.text
    done = server.wait_job(r.json()["id"], timeout=60)
    assert done["status"] == "COMPLETED", done
    return done["result"]


def test_models_list(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"tiny", "slow", "emb", "org/echo"}, "a model that failed to load is not offered"
    assert all(m.object == "model" and m.owned_by == "statim" for m in models.values())
    assert models["emb"].type == "embedding" and models["tiny"].type == "completion"


def test_models_retrieve(server, client):
    m = client.models.retrieve("tiny")
    assert (m.id, m.object, m.owned_by, m.type) == ("tiny", "model", "statim", "completion")
    assert client.models.retrieve("org/echo").id == "org/echo"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gone")  # failed to load: not offered, as in the list
    assert "The model 'gone' does not exist; GET /v1/models lists them" in str(e.value)
    # Other clients: an id with a slash, as written and percent-encoded.
    for path in ("/v1/models/org/echo", "/v1/models/org%2Fecho"):
        with urllib.request.urlopen(server.url + path, timeout=10) as r:
            assert json.loads(r.read())["id"] == "org/echo", path
    r = server.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", r.text
    assert r.json()["error"]["message"] == "The model 'nope' does not exist; GET /v1/models lists them"


def test_completion_matches_job_api(server, client):
    raw = client.completions.with_raw_response.create(model="tiny", prompt="Hello, the cat", max_tokens=24,
                                                      temperature=0)
    resp = raw.parse()
    want = job_text(server, "tiny", prompt="Hello, the cat", params={"max_tokens": 24, **GREEDY})
    choice = resp.choices[0]
    assert choice.text == want["text"] and choice.text.strip()
    assert choice.finish_reason == "length" and choice.index == 0
    assert resp.object == "text_completion" and resp.model == "tiny"
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (want["tokens_in"], 24)
    assert resp.usage.total_tokens == want["tokens_in"] + 24
    # Every OpenAI request is a normal job, named by a response header.
    job = server.job(int(raw.headers["X-Statim-Job-Id"]))
    assert resp.id == f"cmpl-{job['id']}"
    assert job["status"] == "COMPLETED" and job["type"] == "completion" and job["prompt"] == "Hello, the cat"
    assert job["params"] == {"max_tokens": 24, "temperature": 0}
    assert job["result"]["text"] == choice.text


def test_chat_completion(server, client):
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=MESSAGES, max_tokens=16,
                                                           temperature=0, user="user-42")
    resp = raw.parse()
    msg = resp.choices[0].message
    assert msg.role == "assistant" and msg.content.strip(), resp
    assert msg.refusal is None and json.loads(raw.http_response.text)["choices"][0]["message"]["refusal"] is None
    assert resp.choices[0].finish_reason == "length", "the tiny model never stops: max_tokens is hit"
    assert resp.usage.completion_tokens == 16
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 16
    want = job_text(server, "tiny", messages=MESSAGES, params={"max_tokens": 16, **GREEDY})
    assert msg.content == want["text"] and resp.usage.prompt_tokens == want["tokens_in"]
    job = server.job(int(raw.headers["X-Statim-Job-Id"]))
    assert job["type"] == "chat" and job["params"]["messages"] == MESSAGES and job["prompt"] == "Hello, the cat"
    assert job["result"]["tokens_out"] == resp.usage.completion_tokens
    # The end user's id is kept with the job.
    assert job["params"]["user"] == "user-42"
    assert resp.usage.prompt_tokens_details.cached_tokens == job["result"]["tokens_cached"] < 34
    assert resp.usage.completion_tokens_details.reasoning_tokens == 0


def test_the_prompt_cache_serves_a_repeated_prompt_and_the_next_turn(server, client):
    """A sequence keeps its KV when its job ends: the same prompt again decodes only its last token,
    and the next turn of the conversation only what follows the earlier turns - with the same
    greedy text as when every token is decoded."""
    system = {"role": "system", "content": "You are a careful assistant who answers in full sentences. " * 6}
    first = [system, {"role": "user", "content": "Tell me about the cat."}]
    a = client.chat.completions.create(model="tiny", messages=first, max_tokens=12, temperature=0)
    b = client.chat.completions.create(model="tiny", messages=first, max_tokens=12, temperature=0)
    assert b.usage.prompt_tokens == a.usage.prompt_tokens > 60
    assert b.usage.prompt_tokens_details.cached_tokens == b.usage.prompt_tokens - 1
    assert b.choices[0].message.content == a.choices[0].message.content
    # The next turn: the earlier prompt and most of the answer come from the cache.
    turn = first + [{"role": "assistant", "content": a.choices[0].message.content},
                    {"role": "user", "content": "And the dog?"}]
    c = client.chat.completions.create(model="tiny", messages=turn, max_tokens=12, temperature=0)
    assert c.usage.prompt_tokens_details.cached_tokens >= a.usage.prompt_tokens, c.usage
    # The same text as a model instance that holds nothing of it (a fresh server's first job).
    cold = job_text(server, "slow", messages=turn, params={"max_tokens": 12, "temperature": 0})
    assert cold["tokens_cached"] <= 1 and c.choices[0].message.content == cold["text"]


def test_chat_finish_reason_stop_with_stop_string(client):
    full = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0)
    text = full.choices[0].message.content
    stop = text[len(text) // 2:len(text) // 2 + 3]
    cut = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[:text.find(stop)]


def test_streamed_chat_equals_non_streamed(client):
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant", "the first chunk carries the role"
    assert all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage is not None, "include_usage: a last chunk with usage"
    assert usage_chunk.usage.completion_tokens == 24
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_streamed_chat_without_usage(client):
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0,
                                                 stream=True))
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_streamed_completion(client):
    plain = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24, temperature=0)
    chunks = list(client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=24, temperature=0,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_n_choices_are_sampled_with_seed_plus_their_index(client):
    # Choice i of a seeded request is what a one-choice request with seed + i answers.
    several = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=1.2, seed=40,
                                             n=3)
    assert [c.index for c in several.choices] == [0, 1, 2]
    for i, choice in enumerate(several.choices):
        alone = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=1.2,
                                               seed=40 + i)
        assert choice.message.content == alone.choices[0].message.content, i
        assert choice.finish_reason == "length"
    assert len({c.message.content for c in several.choices}) == 3
    assert several.usage.completion_tokens == 24
    assert several.usage.prompt_tokens == alone.usage.prompt_tokens  # the prompt counts once
    # Streamed: each choice's chunks carry its index and add up to the same texts.
    chunks = list(client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=1.2,
                                                 seed=40, n=3, stream=True))
    texts, finishes = ["", "", ""], [None, None, None]
    for c in chunks:
        for choice in c.choices:
            texts[choice.index] += choice.delta.content or ""
            finishes[choice.index] = choice.finish_reason or finishes[choice.index]
    assert texts == [c.message.content for c in several.choices]
    assert finishes == ["length"] * 3
    # Completions too; greedy choices are all the same text.
    done = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6, temperature=0, n=2)
    assert len(done.choices) == 2 and done.choices[0].text == done.choices[1].text


def test_json_schema_response_format(client):
    schema = {"type": "object", "additionalProperties": False, "required": ["ok", "color"],
              "properties": {"ok": {"type": "boolean"}, "color": {"enum": ["red", "green", "blue"]}}}
    resp = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=200, temperature=0,
                                          response_format={"type": "json_schema",
                                                           "json_schema": {"name": "answer", "schema": schema}})
    assert resp.choices[0].finish_reason == "stop", resp
    doc = json.loads(resp.choices[0].message.content)
    assert set(doc) == {"ok", "color"} and isinstance(doc["ok"], bool) and doc["color"] in ("red", "green", "blue")


def _norm(v):
    return math.sqrt(sum(x * x for x in v))


def test_embeddings_base64_and_float(server, client):
    texts = ["Hello, the cat", "The little dog"]
    default = client.embeddings.create(model="emb", input=texts)  # the SDK asks for base64 and decodes it
    floats = client.embeddings.create(model="emb", input=texts, encoding_format="float")
    assert [d.index for d in default.data] == [0, 1] and default.model == "emb"
    for a, b in zip(default.data, floats.data):
        assert len(a.embedding) == len(b.embedding) == 64
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) < 1e-6, "base64 and float differ"
        assert abs(_norm(b.embedding) - 1) < 1e-5
        cos = sum(x * y for x, y in zip(b.embedding, b.embedding)) / _norm(b.embedding) ** 2
        assert abs(cos - 1) < 1e-9
    v0, v1 = floats.data[0].embedding, floats.data[1].embedding
    assert sum(x * y for x, y in zip(v0, v1)) < 0.9999, "different texts, different vectors"
    assert default.usage.prompt_tokens == floats.usage.prompt_tokens > 0
    # One string in, one vector out, equal to the job API's.
    single = client.embeddings.create(model="emb", input="Hello, the cat", encoding_format="float")
    assert len(single.data) == 1
    r = server.post("/job", json={"model": "emb", "input": "Hello, the cat"})
    ours = server.wait_job(r.json()["id"])["result"]["embeddings"][0]
    assert max(abs(x - y) for x, y in zip(single.data[0].embedding, ours)) < 1e-6


def test_raw_base64_embedding_is_little_endian_float32(server):
    import base64
    import struct
    r = server.post("/v1/embeddings", json={"model": "emb", "input": "a", "encoding_format": "base64"})
    assert r.status_code == 200, r.text
    blob = base64.b64decode(r.json()["data"][0]["embedding"])
    assert len(blob) == 64 * 4
    floats = server.post("/v1/embeddings", json={"model": "emb", "input": "a"}).json()["data"][0]["embedding"]
    assert list(struct.unpack("<64f", blob)) == pytest.approx(floats, abs=1e-7)


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert "unknown model 'nope'" in e.value.message
    assert "emb" in e.value.message and "tiny" in e.value.message, "the message lists the models"
    assert e.value.body["param"] == "model"


def test_bad_temperature_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", temperature=11)
    assert "temperature" in e.value.message and "between 0 and 10" in e.value.message
    assert e.value.body["param"] == "temperature"


@pytest.mark.parametrize("kwargs,param,message", [
    ({"n": 20}, "n", "'n' must be between 1 and 16"),
    ({"tools": [{"type": "function", "function": {"name": "bad name", "parameters": {"type": "object"}}}]},
     "tools[0].function.name", "'tools[0].function.name' must be 1 to 64 letters, digits, '_' or '-'"),
    ({"top_logprobs": 2}, "top_logprobs", "'top_logprobs' needs 'logprobs': true"),
    ({"top_p": 2}, "top_p", "'top_p' must be between 0 and 1"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string",
                                                                                         "pattern": "a+"}}}},
     "response_format.json_schema.schema", "'pattern'"),
])
def test_chat_bad_requests(client, kwargs, param, message):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=MESSAGES, **kwargs)
    assert message in e.value.message and e.value.body["param"] == param, e.value.body


def test_chat_logprobs_are_the_models_distribution(server, client):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    resp = raw.parse()
    choice = resp.choices[0]
    content = choice.logprobs.content
    assert len(content) == resp.usage.completion_tokens == 12
    assert "".join(t.token for t in content) == choice.message.content
    for t in content:
        assert t.logprob <= 0 and bytes(t.bytes) == t.token.encode()
        assert len(t.top_logprobs) == 3
        lps = [a.logprob for a in t.top_logprobs]
        assert lps == sorted(lps, reverse=True) and all(lp <= 0 for lp in lps)
        # Greedy: the chosen token is the likeliest, with the same log probability.
        assert t.top_logprobs[0].token == t.token and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6
    assert sum(math.exp(a.logprob) for a in content[0].top_logprobs) <= 1 + 1e-6
    # Stored with the job; the same numbers come streamed, chunk by chunk.
    job = server.job(int(raw.headers["X-Statim-Job-Id"]))
    assert [e["logprob"] for e in job["result"]["logprobs"]] == [t.logprob for t in content]
    stream = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12, temperature=0,
                                            logprobs=True, top_logprobs=3, stream=True)
    streamed = [t for c in stream if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [round(t.logprob, 5) for t in streamed] == [round(t.logprob, 5) for t in content]
    # Without logprobs there are none.
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4)
    assert plain.choices[0].logprobs is None


def test_completion_logprobs_in_the_legacy_shape(client):
    resp = client.completions.create(model="tiny", prompt="Once upon", max_tokens=8, temperature=0, logprobs=2)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 8
    assert "".join(lp.tokens) == resp.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(8)]
    for token, top in zip(lp.tokens, lp.top_logprobs):
        assert len(top) <= 2 and token in top, (token, top)


def test_wrong_job_type_for_model(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="tiny", input="x")
    assert "does not serve embedding jobs" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="emb", messages=MESSAGES)
    assert "does not serve chat jobs" in e.value.message


def test_failed_model_is_unavailable(client):
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model="gone", prompt="x")
    assert e.value.status_code == 503 and "failed to load" in e.value.message


def test_closing_a_stream_cancels_its_job(server, client):
    raw = client.chat.completions.with_raw_response.create(model="slow", messages=MESSAGES, max_tokens=30000,
                                                           temperature=0, stream=True)
    job_id = int(raw.headers["X-Statim-Job-Id"])
    stream = raw.parse()
    seen = []
    for chunk in stream:
        seen.append(chunk.choices[0].delta.content or "")
        if len(seen) == 3:  # the role chunk, then two with text
            break
    stream.close()
    listed = server.jobs(model="slow")["jobs"]
    assert any(j["id"] == job_id for j in listed), "the stream's job is listed under its model"
    done = server.wait_job(job_id, timeout=5)
    assert done["status"] == "CANCELLED", done
    res = done["result"]
    assert res["finish_reason"] == "cancelled" and 0 < res["tokens_out"] < 30000, res
    assert res["text"].startswith("".join(seen)) and len(res["text"]) >= len("".join(seen)) > 0
    # The partial text is what greedy decoding gives for that many tokens.
    again = job_text(server, "slow", messages=MESSAGES, params={"max_tokens": res["tokens_out"], **GREEDY})
    assert again["text"] == res["text"]


def test_stream_of_a_job_cancelled_elsewhere_ends(server, client):
    raw = client.completions.with_raw_response.create(model="slow", prompt="Hello", max_tokens=30000, temperature=0,
                                                      stream=True)
    job_id = int(raw.headers["X-Statim-Job-Id"])
    stream = raw.parse()
    chunks = []
    started = time.monotonic()
    for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == 2:
            r = server.request("DELETE", f"/job/{job_id}")
            assert r.status_code == 200, r.text
    assert time.monotonic() - started < 10 * SLOW, "the stream ended soon after the cancel"
    assert chunks[-1].choices[0].finish_reason is not None, "a last chunk says the stream is over"
    text = "".join(c.choices[0].text for c in chunks)
    done = server.wait_job(job_id, timeout=5)
    assert done["status"] == "CANCELLED" and done["result"]["text"] == text


def test_non_streamed_request_for_a_cancelled_job_fails(server, client):
    import threading
    box = {}

    def call():
        try:
            box["resp"] = client.completions.create(model="slow", prompt="Hello there", max_tokens=30000, temperature=0)
        except openai.APIError as e:
            box["error"] = e
    t = threading.Thread(target=call)
    t.start()
    job = wait_until(lambda: next((j for j in server.jobs(model="slow", status="PROCESSING")["jobs"]
                                   if j["prompt"] == "Hello there"), None), 10, "the request's job to run")
    assert server.post(f"/job/{job['id']}/cancel").status_code == 200
    t.join(10 * SLOW)
    assert not t.is_alive(), "the request returned"
    assert "error" in box, box
    assert f"job {job['id']} was cancelled" in box["error"].message


def test_a_stream_closed_while_queued_cancels_its_job(server):
    blockers = [server.submit("slow", f"blocker {i}", {"max_tokens": 30000, **GREEDY})["id"] for i in range(2)]
    for b in blockers:
        server.wait_running(b)
    with server.post("/v1/chat/completions", stream=True, json={"model": "slow", "messages": MESSAGES,
                                                                "max_tokens": 30000, "stream": True}) as r:
        job_id = int(r.headers["X-Statim-Job-Id"])
        first = next(r.iter_lines())
        assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["role"] == "assistant"
        assert server.job(job_id)["status"] == "QUEUED"
    # The keep-alive comments notice the client is gone while the job still waits: it is
    # cancelled without ever starting.
    done = server.wait_job(job_id, timeout=10)
    assert done["status"] == "CANCELLED" and done["started_at"] is None, done
    assert done["status_message"] == "cancelled before it started", done
    for b in blockers:
        server.request("DELETE", f"/job/{b}")


def test_prompt_longer_than_the_context_is_a_bad_request(server, client):
    before = server.jobs(model="tiny")["total"]
    retrying = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", timeout=60 * SLOW)  # default retries
    try:
        retrying.completions.create(model="tiny", prompt="word " * 600, max_tokens=4)
    except openai.APIStatusError as e:
        err = e
    assert server.jobs(model="tiny")["total"] - before <= 1, "the SDK retried the request"
    assert err.status_code == 400 and "context" in err.message, (err.status_code, err.message)


def test_stories260k_known_answer_through_the_sdk(make_server, stories_gguf):
    s = make_server("sdk-stories")
    s.add_model("stories260k", backend="llama", file=str(stories_gguf), params={"n_ctx": 512, "threads": 1})
    s.start(timeout=60)
    client = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)
    resp = client.completions.create(model="stories260k", prompt="Once upon a time", max_tokens=32, temperature=0)
    want = ", there was a little girl named Lily. She loved to play outside in the park."
    assert resp.choices[0].text.startswith(want), resp.choices[0].text
    # No chat template: chat is refused up front, naming the way out.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="stories260k", messages=MESSAGES)
    assert "no chat template" in e.value.message and "chat_template" in e.value.message
