"""The Anthropic Messages API (POST /v1/messages) over raw HTTP: answers, Anthropic's stream events,
tool use held to the tool's schema, tool results in the history, and errors in Anthropic's shape.
The official TypeScript SDK drives the same routes in tests/js (make test-js). The model is the
random-weight fixture: its text is noise, so the tests assert shapes and that what the answer says
is what the job stored."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import SLOW, Server, assert_error, fail_on_sanitizer_reports, sse_events

WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]},
                                                             "days": {"type": "integer"}},
                            "required": ["city", "days"], "additionalProperties": False}}
HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    s = Server(tmp_path_factory.mktemp("anthropic"), name="anthropic")
    s.enable_auth()
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 2048, "threads": 1})
    s.add_model("echo")
    s.key = s.create_key("sdk")
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


def post(server, body, key=..., **kw):
    key = server.key if key is ... else key
    headers = dict(HEADERS)
    if key:
        headers["x-api-key"] = key
    return server.request("POST", "/v1/messages", json=body, key=None, headers=headers, timeout=120 * SLOW, **kw)


def test_a_message_is_answered_from_its_job(server):
    r = post(server, {"model": "tiny", "max_tokens": 12, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "Hello there"}], "temperature": 0})
    assert r.status_code == 200, r.text
    msg = r.json()
    job = server.wait_job(int(r.headers["X-Statim-Job-Id"]))
    assert msg["id"] == f"msg_{job['id']}" and msg["type"] == "message" and msg["role"] == "assistant"
    assert msg["model"] == "tiny"
    assert msg["content"] == [{"type": "text", "text": job["result"]["text"]}]
    assert msg["stop_reason"] == "max_tokens" and msg["stop_sequence"] is None
    cached = job["result"]["tokens_cached"]
    assert msg["usage"] == {"input_tokens": job["result"]["tokens_in"] - cached, "output_tokens": 12,
                            "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0}
    # The job is a normal chat job: the system prompt and the message in its params.
    assert job["type"] == "chat" and job["prompt"] == "Hello there"
    assert job["params"]["messages"] == [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hello there"}]


def test_a_stream_sends_anthropics_events_in_order(server):
    r = post(server, {"model": "tiny", "max_tokens": 16, "stream": True,
                      "messages": [{"role": "user", "content": [{"type": "text", "text": "Go on"}]}]}, stream=True)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [(name, json.loads(data)) for name, data in sse_events(r)]
    names = [n for n, _ in events]
    assert names[:2] == ["message_start", "ping"], names
    assert names[-2:] == ["message_delta", "message_stop"], names
    for name, data in events:
        assert data["type"] == name, (name, data)
    assert names.count("content_block_start") == names.count("content_block_stop") == 1, names
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert all(d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    job = server.wait_job(int(r.headers["X-Statim-Job-Id"]))
    assert text == job["result"]["text"]
    assert events[0][1]["message"]["id"] == f"msg_{job['id']}"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 16


def test_tool_use_is_held_to_the_schema_and_streamed_as_input_json(server):
    body = {"model": "tiny", "max_tokens": 400, "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    r = post(server, body)
    assert r.status_code == 200, r.text
    msg = r.json()
    assert msg["stop_reason"] == "tool_use", msg
    uses = [b for b in msg["content"] if b["type"] == "tool_use"]
    assert len(uses) == 1 and uses[0]["name"] == "get_weather", msg
    assert set(uses[0]["input"]) == {"city", "days"} and uses[0]["input"]["city"] in ("Paris", "Oslo")
    assert isinstance(uses[0]["input"]["days"], int)
    # Streamed: a tool_use block whose input comes as input_json_delta.
    r = post(server, {**body, "stream": True}, stream=True)
    events = [(n, json.loads(d)) for n, d in sse_events(r)]
    starts = [d for n, d in events if n == "content_block_start" and d["content_block"]["type"] == "tool_use"]
    assert len(starts) == 1 and starts[0]["content_block"]["name"] == "get_weather"
    partial = "".join(d["delta"]["partial_json"] for n, d in events
                      if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert set(json.loads(partial)) == {"city", "days"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_results_in_the_history_reach_the_model(server):
    history = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Oslo", "days": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "Snow, -3 C"}]}]},
    ]
    r = post(server, {"model": "tiny", "max_tokens": 8, "tools": [WEATHER], "messages": history})
    assert r.status_code == 200, r.text
    job = server.wait_job(int(r.headers["X-Statim-Job-Id"]))
    assert job["params"]["messages"] == [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Let me look.",
         "tool_calls": [{"id": "toolu_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Oslo","days":1}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "Snow, -3 C"},
    ]


@pytest.mark.parametrize("body,status,type_,message", [
    ({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error",
     "'max_tokens' is required"),
    ({"model": "tiny", "max_tokens": 5, "messages": []}, 400, "invalid_request_error",
     "'messages' must be a non-empty list"),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, 400,
     "invalid_request_error", "'messages.0.role' must be \"user\" or \"assistant\""),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]}]}, 400,
     "invalid_request_error", "'messages.0.content.0.source.data' is not an image: PNG or JPEG expected"),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": 5}]}]}, 400,
     "invalid_request_error", "'messages.0.content.0.type' must be text, image or tool_result (got none)"),
    ({"model": "tiny", "max_tokens": 5, "system": [{"type": 5, "text": "x"}],
      "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error", "'system.0' must be a text block"),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": 11}, 400,
     "invalid_request_error", "'temperature' must be between 0 and 10"),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "tool_choice": {"type": "tool", "name": "get_time"}}, 400, "invalid_request_error", "get_time"),
    ({"model": "tiny", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {}}, 400,
     "invalid_request_error", "'thinking': extra inputs are not permitted"),
    ({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, 404, "not_found_error",
     "unknown model 'nope'"),
])
def test_errors_are_in_anthropics_shape_and_store_no_job(server, body, status, type_, message):
    before = server.jobs()["total"]
    r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()
    assert set(err) == {"type", "error"} and err["type"] == "error", err
    assert err["error"]["type"] == type_, err
    assert message in err["error"]["message"], err
    assert server.jobs()["total"] == before


def test_keys_come_as_x_api_key_or_bearer_and_refusals_are_anthropic_errors(server):
    body = {"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    r = post(server, body, key=None)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error", r.text
    r = post(server, body, key="sk-statim-" + "0" * 48)
    assert r.status_code == 401 and r.json()["type"] == "error"
    bearer = server.request("POST", "/v1/messages", json=body, headers=HEADERS, timeout=60)
    assert bearer.status_code == 400, bearer.text  # the key is good; echo takes no chat jobs
    assert bearer.json()["error"]["type"] == "invalid_request_error"
    assert "does not serve chat jobs" in bearer.json()["error"]["message"]
    # Other routes keep statim's own error shape.
    other = server.request("GET", "/job/999999")
    assert set(other.json()["error"]) == {"code", "type", "message", "param"}


JS = Path(__file__).resolve().parents[1] / "js"


def test_the_official_typescript_sdk_drives_the_route(server):
    """tests/js/anthropic_sdk.mjs: @anthropic-ai/sdk's create, stream helper, tool use and typed
    errors (`make test` installs tests/js/package-lock.json first)."""
    if not (JS / "node_modules" / "@anthropic-ai" / "sdk").exists():
        pytest.fail("tests/js has no node_modules: run `make js-deps` (npm ci in tests/js)")
    r = subprocess.run(["node", str(JS / "anthropic_sdk.mjs"), server.url, server.key, "tiny"],
                       capture_output=True, text=True, timeout=300 * SLOW)
    assert r.returncode == 0, f"the SDK script failed:\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # What the SDK got is what the jobs stored.
    created = server.wait_job(int(out["create"]["id"].removeprefix("msg_")))
    assert out["create"]["content"][0]["text"] == created["result"]["text"]
    streamed = server.wait_job(int(out["streamed"]["id"].removeprefix("msg_")))
    assert out["streamed"]["text"] == streamed["result"]["text"]
    tool = server.wait_job(int(out["tool"]["id"].removeprefix("msg_")))
    stored = json.loads(tool["result"]["tool_calls"][0]["function"]["arguments"])
    assert [b["input"] for b in out["tool"]["content"] if b["type"] == "tool_use"] == [stored]
    assert tool["params"]["tool_choice"] == "required" and tool["params"]["parallel_tool_calls"] is False


def test_count_tokens_is_what_a_message_would_use(server):
    body = {"model": "tiny", "system": "Be brief.", "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}
    before = server.jobs()["total"]
    r = server.request("POST", "/v1/messages/count_tokens", json=body, headers=HEADERS)
    assert r.status_code == 200, r.text
    counted = r.json()["input_tokens"]
    assert server.jobs()["total"] == before, "counting makes no job"
    msg = post(server, {**body, "max_tokens": 4})
    assert msg.status_code == 200, msg.text
    usage = msg.json()["usage"]
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == counted
    # The same message again: all but its last token come from the prompt cache.
    again = post(server, {**body, "max_tokens": 4}).json()["usage"]
    assert again["cache_read_input_tokens"] == counted - 1 and again["input_tokens"] == 1
    # Without the tools the prompt is shorter; errors are Anthropic's.
    plain = server.request("POST", "/v1/messages/count_tokens", json={**body, "tools": []}, headers=HEADERS)
    assert 0 < plain.json()["input_tokens"] < counted
    bad = server.request("POST", "/v1/messages/count_tokens", json={"model": "nope", "messages": body["messages"]},
                         headers=HEADERS)
    assert bad.status_code == 404 and bad.json()["error"]["type"] == "not_found_error", bad.text


def test_tokenize_and_detokenize_in_llama_servers_shapes(server):
    text = "Hello world, hello tokens"
    r = server.post("/tokenize", json={"model": "tiny", "content": text})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    special = server.post("/tokenize", json={"model": "tiny", "content": text, "add_special": True}).json()["tokens"]
    assert len(special) == len(tokens) + 1 and special[1:] == tokens, "add_special puts the BOS first"
    back = server.post("/detokenize", json={"model": "tiny", "tokens": tokens})
    assert back.status_code == 200, back.text
    assert back.json()["content"].strip() == text
    pieces = server.post("/tokenize", json={"model": "tiny", "content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == tokens
    assert "".join(p["piece"] for p in pieces) == back.json()["content"]
    assert_error(server.post("/detokenize", json={"model": "tiny", "tokens": [1, 10**9]}), 400, "invalid_request",
                 "tokens[1] is 1000000000: the model's vocabulary has ids 0..", param="tokens[1]")
    assert_error(server.post("/tokenize", json={"model": "echo", "content": "x"}), 400, "invalid_request",
                 "this model has no tokenizer", param="model")
    assert_error(server.post("/tokenize", json={"model": "nope", "content": "x"}), 404, "model_not_found",
                 "unknown model 'nope'")
    assert_error(server.post("/tokenize", json={"model": "tiny", "text": "x"}), 400, "invalid_request",
                 "unknown field 'text' (allowed: model, content, add_special, with_pieces)", param="text")
