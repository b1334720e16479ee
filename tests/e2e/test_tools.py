"""Tool calling on /v1/chat/completions (tools, tool_choice, parallel_tool_calls), through the
official SDK and raw HTTP. The model is the random-weight fixture: what it writes is noise, but a
call it makes is held to the function's JSON schema by a grammar, so the tests assert the shape
and validity of the calls (the schemas use enums and integers so that a call always closes)."""
from __future__ import annotations

import json

import pytest

from conftest import SLOW, Server, fail_on_sanitizer_reports, make_fixture

openai = pytest.importorskip("openai")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]},
                                                    "days": {"type": "integer"}},
                   "required": ["city", "days"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}},
                                       "required": ["zone"], "additionalProperties": False}}}
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    root = tmp_path_factory.mktemp("tools")
    s = Server(root, name="tools")
    s.add_model("tiny", backend="llama", file=str(tiny_gguf), parallel=2, params={"n_ctx": 2048, "threads": 1})
    # The same random weights with the chat templates of Llama 3.1 and Mistral (excerpts): their
    # native tool formats are taken from the template, or from the manifest.
    for name in ("llama3-tools", "mistral-tools"):
        gguf = make_fixture("make_tiny_gguf.py", root / f"{name}.gguf", "--chat-template", name)
        s.add_model(name.split("-")[0], backend="llama", file=str(gguf), params={"n_ctx": 2048, "threads": 1})
    s.add_model("chatml-as-mistral", backend="llama", file=str(tiny_gguf),
                params={"n_ctx": 2048, "threads": 1, "tool_format": "mistral"})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120 * SLOW)


def check_weather_call(call) -> dict:
    assert call.type == "function" and call.function.name == "get_weather", call
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "days"} and args["city"] in ("Paris", "Oslo"), args
    assert isinstance(args["days"], int), args
    return args


def test_required_tool_choice_answers_a_valid_call(server, client):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
        max_tokens=400, seed=7)
    resp = raw.parse()
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None and len(choice.message.tool_calls) == 1, choice.message
    call = choice.message.tool_calls[0]
    check_weather_call(call)
    job_id = int(raw.headers["X-Statim-Job-Id"])
    assert call.id == f"call_{job_id}_0"
    # The job keeps the request's tools and the calls.
    job = server.job(job_id)
    assert job["params"]["tools"] == [WEATHER] and job["params"]["tool_choice"] == "required"
    assert job["result"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert job["result"]["finish_reason"] == "tool_calls" and job["result"]["text"] == ""


def test_a_named_function_is_the_one_called(client):
    resp = client.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False,
        max_tokens=400, seed=3)
    calls = resp.choices[0].message.tool_calls
    assert resp.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    assert calls[0].function.name == "get_time"
    assert json.loads(calls[0].function.arguments)["zone"] in ("UTC", "CET")


def test_parallel_calls_are_each_valid(client):
    resp = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER, TIME],
                                          tool_choice="required", max_tokens=600, seed=11)
    calls = resp.choices[0].message.tool_calls
    assert calls and len(calls) <= 8, resp
    for i, c in enumerate(calls):
        assert c.function.name in ("get_weather", "get_time")
        json.loads(c.function.arguments)
        assert c.id.endswith(f"_{i}")


def test_a_streamed_call_comes_as_tool_calls_not_content(client):
    stream = client.chat.completions.create(
        model="tiny", messages=MESSAGES, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False,
        max_tokens=400, seed=7, stream=True)
    content, calls, finish = "", [], None
    for chunk in stream:
        delta = chunk.choices[0].delta
        content += delta.content or ""
        calls += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert "<tool_call>" not in content and content == "", content
    assert finish == "tool_calls" and len(calls) == 1 and calls[0].index == 0
    args = json.loads(calls[0].function.arguments)
    assert args["city"] in ("Paris", "Oslo")


def test_auto_gives_text_or_well_formed_calls(client):
    for seed in range(4):
        resp = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER], max_tokens=60,
                                              seed=seed)
        choice = resp.choices[0]
        if choice.message.tool_calls:
            assert choice.finish_reason in ("tool_calls", "length")
            for c in choice.message.tool_calls:
                check_weather_call(c)
        else:
            assert choice.finish_reason in ("stop", "length")
        assert "<tool_call>" not in (choice.message.content or "") or not choice.message.tool_calls


def test_none_leaves_the_tools_out(server, client):
    resp = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER], tool_choice="none",
                                          max_tokens=8, temperature=0)
    plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8, temperature=0)
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content == plain.choices[0].message.content, "the same prompt as without tools"


def test_a_conversation_with_calls_and_their_results_continues(server, client):
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 1})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"},
    ]
    raw = client.chat.completions.with_raw_response.create(model="tiny", messages=history, tools=[WEATHER],
                                                           max_tokens=8, temperature=0)
    resp = raw.parse()
    assert resp.choices[0].finish_reason in ("stop", "length", "tool_calls")
    job = server.job(int(raw.headers["X-Statim-Job-Id"]))
    msgs = job["params"]["messages"]
    assert msgs[1]["tool_calls"][0]["function"]["name"] == "get_weather" and msgs[2]["tool_call_id"] == "call_1"
    # The history's call and result reach the prompt: more tokens than the question alone.
    alone = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[WEATHER], max_tokens=1,
                                           temperature=0)
    assert resp.usage.prompt_tokens > alone.usage.prompt_tokens + 10


def test_a_schema_with_refs_as_pydantic_writes_it_is_followed(client):
    locate = {"type": "function", "function": {"name": "locate", "parameters": {
        "type": "object", "properties": {"where": {"$ref": "#/$defs/Loc"}}, "required": ["where"],
        "additionalProperties": False,
        "$defs": {"Loc": {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"],
                          "additionalProperties": False}}}}}
    resp = client.chat.completions.create(model="tiny", messages=MESSAGES, tools=[locate, WEATHER],
                                          tool_choice={"type": "function", "function": {"name": "locate"}},
                                          parallel_tool_calls=False, max_tokens=400, seed=5)
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "locate"
    assert json.loads(call.function.arguments)["where"]["city"] in ("Paris", "Oslo")


def test_bad_tool_requests_name_the_field(server):
    cases = [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice",
         "'tool_choice' names the function 'nope', which is not in 'tools'"),
        ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name", "two tools are named 'get_weather'"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
         "tools[0].function.parameters", "must be a JSON schema object"),
        ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls", "must be true or false"),
        ({"tools": [{"type": "retrieval"}]}, "tools[0]", "must be {\"type\": \"function\""),
        ({"tools": [{"type": 1, "function": {"name": "f"}}]}, "tools[0]", "must be {\"type\": \"function\""),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "messages[0].tool_calls",
         "must be a list, on an assistant message"),
    ]
    for extra, param, message in cases:
        body = {"model": "tiny", "messages": MESSAGES, **extra}
        r = server.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, (extra, r.text)
        err = r.json()["error"]
        assert err["param"] == param and message in err["message"], (extra, err)
    assert server.get("/job").json()["total"] == server.get("/job?status=COMPLETED").json()["total"], \
        "refused requests store no job"


@pytest.mark.parametrize("model,format_", [("tiny", "hermes"), ("llama3", "llama3"), ("mistral", "mistral"),
                                           ("chatml-as-mistral", "mistral")])
def test_each_family_is_prompted_and_parsed_in_its_native_format(server, client, model, format_):
    """The format comes from the GGUF's chat template (or the manifest's tool_format); whichever it
    is, the calls come back in OpenAI's shape, valid against the schema, and none of their text
    leaks into the content, streamed or not."""
    r = server.post(f"/models/{model}/load", timeout=60)
    assert r.status_code in (200, 202), r.text
    details = server.wait_models([model])[model]["details"]
    assert details["tool_format"] == format_, details
    resp = client.chat.completions.create(model=model, messages=MESSAGES, tools=[WEATHER, TIME],
                                          tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                          max_tokens=600, seed=3)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None, choice
    for call in choice.message.tool_calls:
        check_weather_call(call)
    stream = client.chat.completions.create(model=model, messages=MESSAGES, tools=[WEATHER], tool_choice="required",
                                            parallel_tool_calls=False, max_tokens=600, seed=3, stream=True)
    content, calls = "", []
    for chunk in stream:
        content += chunk.choices[0].delta.content or ""
        calls += chunk.choices[0].delta.tool_calls or []
    assert content == "" and len(calls) == 1, (content, calls)
    check_weather_call(calls[0])
    # auto: text, or calls that are well-formed.
    for seed in range(3):
        choice = client.chat.completions.create(model=model, messages=MESSAGES, tools=[WEATHER], max_tokens=60,
                                                seed=seed).choices[0]
        for c in choice.message.tool_calls or []:
            check_weather_call(c)
    # A history with calls and their results is rendered in the format (and costs prompt tokens).
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris", "days": 1})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"}]
    with_history = client.chat.completions.create(model=model, messages=history, tools=[WEATHER], max_tokens=1)
    alone = client.chat.completions.create(model=model, messages=MESSAGES, tools=[WEATHER], max_tokens=1)
    assert with_history.usage.prompt_tokens > alone.usage.prompt_tokens + 10


def test_a_manifest_tool_format_must_be_known(server):
    (server.models_dir / "bad-format.toml").write_text(
        'id = "bad-format"\nbackend = "llama"\nfile = "x.gguf"\n[params]\ntool_format = "gorilla"\n')
    try:
        r = server.post("/models/reload")
        assert r.status_code == 200, r.text
        assert "bad-format" in r.json()["added"], r.json()
        reason = server.models()["bad-format"]["reason"]
        assert "'params.tool_format' must be auto, hermes, llama3 or mistral" in reason, reason
    finally:
        (server.models_dir / "bad-format.toml").unlink()
        server.post("/models/reload")
