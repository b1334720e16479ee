"""statim's OpenAI-compatible answers against OpenAI's own published API schemas (the openai-openapi
specification; the schemas used are in openai_spec/schemas.json, see openai_spec/extract.py):
chat completions (plain, tool calls, logprobs) and their stream chunks, completions and their
chunks, embeddings, models, responses (ended, incomplete, background, cancelled, with function
calls), every Responses stream event, input item lists, and errors. A field OpenAI requires that
statim leaves out, or one of the wrong type, fails here even when the SDKs would not mind."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from conftest import SLOW, Server, fail_on_sanitizer_reports, sse_events, wait_until



def openapi_nullable(node: Any) -> Any:
    """OpenAPI's `nullable: true` (which the specification still uses in a few places) as JSON Schema:
    the value may also be null."""
    if isinstance(node, list):
        return [openapi_nullable(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: openapi_nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [{"type": "null"}, node]}
    return node


SPEC = openapi_nullable(json.loads((Path(__file__).parent / "openai_spec" / "schemas.json").read_text()))
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"],
                   "additionalProperties": False}}}
RESPONSES_TOOL = {"type": "function", **TOOL["function"]}
HELLO = [{"role": "user", "content": "Hello"}]


@functools.cache
def validator(name: str) -> Draft202012Validator:
    assert name in SPEC["components"]["schemas"], name
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": SPEC["components"],
            "$ref": f"#/components/schemas/{name}"}
    return Draft202012Validator(root)


def closest(error):
    """A union's error says only that no branch matched: the errors of the branch meant (the one
    whose `type` matched, for the event unions), else the best match."""
    if not error.context:
        return error
    by_branch: dict[Any, list] = {}
    for e in error.context:
        by_branch.setdefault(e.relative_schema_path[0], []).append(e)
    meant = [errs for errs in by_branch.values() if not any(list(e.path) == ["type"] or
                                                            list(e.relative_path) == ["type"] for e in errs)]
    return closest(best_match(meant[0] if len(meant) == 1 else error.context))


def conforms(name: str, instance: Any) -> None:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    errors = [closest(e) for e in errors]
    lines = [f"at {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:300]}" for e in errors]
    assert not lines, f"not a valid OpenAI {name}:\n  " + "\n  ".join(lines[:15]) + \
        f"\ninstance: {json.dumps(instance)[:2000]}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    s = Server(tmp_path_factory.mktemp("openai-schemas"), name="openai-schemas")
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 4096, "threads": 1})
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": 512, "threads": 1})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


def post(server: Server, path: str, body: dict, status: int = 200):
    r = server.post(path, json=body, timeout=120 * SLOW)
    assert r.status_code == status, r.text
    return r.json()


def stream(server: Server, method: str, path: str, body: dict | None = None) -> list[tuple[str, Any]]:
    r = server.request(method, path, json=body, stream=True, timeout=120 * SLOW)
    assert r.status_code == 200, r.text
    return [(name, data if data == "[DONE]" else json.loads(data)) for name, data in sse_events(r)]


def test_chat_completions_and_their_chunks(server):
    conforms("CreateChatCompletionResponse", post(server, "/v1/chat/completions",
                                                  {"model": "tiny", "messages": HELLO, "max_tokens": 4}))
    conforms("CreateChatCompletionResponse", post(server, "/v1/chat/completions", {
        "model": "tiny", "messages": HELLO, "max_tokens": 4, "logprobs": True, "top_logprobs": 2}))
    called = post(server, "/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 2000,
                                                   "tools": [TOOL], "tool_choice": "required"})
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    conforms("CreateChatCompletionResponse", called)
    several = post(server, "/v1/chat/completions", {"model": "tiny", "messages": HELLO, "max_tokens": 4, "n": 3,
                                                    "logprobs": True})
    assert [c["index"] for c in several["choices"]] == [0, 1, 2]
    conforms("CreateChatCompletionResponse", several)
    for extra in ({}, {"logprobs": True, "top_logprobs": 1, "stream_options": {"include_usage": True}},
                  {"tools": [TOOL], "tool_choice": "required", "max_tokens": 2000}, {"n": 2}):
        events = stream(server, "POST", "/v1/chat/completions",
                        {"model": "tiny", "messages": HELLO, "max_tokens": 6, "stream": True, **extra})
        assert events[-1][1] == "[DONE]"
        for _, chunk in events[:-1]:
            conforms("CreateChatCompletionStreamResponse", chunk)


def test_completions_and_their_chunks(server):
    conforms("CreateCompletionResponse", post(server, "/v1/completions",
                                              {"model": "tiny", "prompt": "Once", "max_tokens": 4, "logprobs": 2}))
    events = stream(server, "POST", "/v1/completions", {"model": "tiny", "prompt": "Once", "max_tokens": 4,
                                                        "stream": True})
    assert events[-2][1]["choices"][0]["finish_reason"] == "length"
    for _, chunk in events[:-1]:
        # OpenAI streams completions in the non-streamed object's shape, except that finish_reason is
        # null until the last chunk (which that schema does not allow).
        if chunk["choices"][0]["finish_reason"] is None:
            chunk["choices"][0]["finish_reason"] = "length"
        conforms("CreateCompletionResponse", chunk)


def test_embeddings_and_models(server):
    conforms("CreateEmbeddingResponse", post(server, "/v1/embeddings", {"model": "emb", "input": ["a", "b"]}))
    # (encoding_format base64 answers the vectors as strings, which the published schema does not model.)
    conforms("ListModelsResponse", server.get("/v1/models").json())
    conforms("Model", server.get("/v1/models/tiny").json())


def test_responses_in_every_state_and_their_items(server):
    ended = post(server, "/v1/responses", {"model": "tiny", "input": "Hello", "instructions": "Be brief.",
                                           "max_output_tokens": 4, "metadata": {"k": "v"}})
    assert ended["status"] == "incomplete"
    conforms("Response", ended)
    called = post(server, "/v1/responses", {"model": "tiny", "input": "Weather?", "tools": [RESPONSES_TOOL],
                                            "tool_choice": "required", "max_output_tokens": 2000})
    assert called["status"] == "completed" and called["output"][-1]["type"] == "function_call"
    conforms("Response", called)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    conforms("Response", post(server, "/v1/responses", {
        "model": "tiny", "input": "ok?", "max_output_tokens": 2000,
        "text": {"format": {"type": "json_schema", "name": "ok", "schema": schema, "strict": True}}}))
    background = post(server, "/v1/responses", {"model": "tiny", "input": "A long story", "max_output_tokens": 3000,
                                                "background": True})
    conforms("Response", background)
    wait_until(lambda: server.get(f"/v1/responses/{background['id']}").json()["status"] == "in_progress",
               30 * SLOW, "running")
    conforms("Response", server.get(f"/v1/responses/{background['id']}").json())
    conforms("Response", server.post(f"/v1/responses/{background['id']}/cancel").json())
    wait_until(lambda: server.get(f"/v1/responses/{background['id']}").json()["status"] == "cancelled",
               30 * SLOW, "cancelled")
    conforms("Response", server.get(f"/v1/responses/{background['id']}").json())
    items = server.get(f"/v1/responses/{called['id']}/input_items").json()
    conforms("ResponseItemList", items)
    items = [{"role": "user", "content": "Weather?"},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
             {"type": "function_call_output", "call_id": "call_1", "output": "Snow"}]
    with_calls = post(server, "/v1/responses", {"model": "tiny", "input": items, "max_output_tokens": 2,
                                                "tools": [RESPONSES_TOOL]})
    conforms("ResponseItemList", server.get(f"/v1/responses/{with_calls['id']}/input_items").json())


@pytest.mark.parametrize("body", [
    {"input": "Tell me a story", "max_output_tokens": 12},
    {"input": "Weather?", "tools": [RESPONSES_TOOL], "tool_choice": "required", "max_output_tokens": 2000},
])
def test_every_responses_stream_event(server, body):
    events = stream(server, "POST", "/v1/responses", {"model": "tiny", "stream": True, **body})
    assert len(events) > 5
    for name, event in events:
        assert name == event["type"]
        conforms("ResponseStreamEvent", event)
    # Resumed, and after the response was cancelled.
    rid = events[0][1]["response"]["id"]
    for _, event in stream(server, "GET", f"/v1/responses/{rid}?stream=true&starting_after=2"):
        conforms("ResponseStreamEvent", event)


def test_errors(server):
    r = server.post("/v1/chat/completions", json={"model": "tiny", "messages": []})
    assert r.status_code == 400
    conforms("ErrorResponse", r.json())
    r = server.post("/v1/responses", json={"model": "nope", "input": "x"})
    assert r.status_code == 404
    conforms("ErrorResponse", r.json())
