"""Images in chats (issue #10, multimodal input): a model whose manifest names an mmproj file takes
images as OpenAI image_url parts (data: URLs), Responses API input_image parts, Anthropic image
blocks, and POST /job chat messages naming an uploaded input. The models are the random-weight
fixtures (make_tiny_gguf.py + make_tiny_mmproj.py: 16 embeddings per image), so the text is noise;
the tests check that the image reaches the model (another image, another greedy answer; the same
image by any route, the same answer), that it is stored as the job's input, and every error path.
A real vision model runs when STATIM_VLM_GGUF and STATIM_VLM_MMPROJ name one (skipped otherwise)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from conftest import SLOW, Server, assert_error, fail_on_sanitizer_reports, make_fixture

openai = pytest.importorskip("openai")

QUESTION = "What is in this picture?"
IMAGE_TOKENS = 16  # make_tiny_mmproj.py's defaults: a 32x32 image in 8x8 patches


def encode_png(width: int, height: int, pixel) -> bytes:
    """An RGB PNG of pixel(x, y) -> (r, g, b), written with zlib (no imaging library)."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def png(width: int, height: int, seed: int) -> bytes:
    """A gradient whose colours depend on `seed`."""
    return encode_png(width, height, lambda x, y: ((x * 7 + seed * 50) % 256, (y * 9 + seed * 80) % 256,
                                                   (x * y + seed) % 256))


RED, BLUE = png(40, 30, 1), png(40, 30, 2)


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(data: bytes, text: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": data_url(data)}}]}]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gguf):
    root = tmp_path_factory.mktemp("multimodal")
    make_fixture("make_tiny_mmproj.py", root / "mmproj.gguf")
    s = Server(root, name="multimodal")
    s.add_model("vl", backend="llama", file=str(tiny_gguf), parallel=2,
                params={"n_ctx": 512, "threads": 1, "mmproj": str(root / "mmproj.gguf")})
    s.add_model("text-only", backend="llama", file=str(tiny_gguf), params={"n_ctx": 512, "threads": 1})
    make_fixture("make_tiny_mmproj.py", root / "audio.gguf", "--audio")
    s.add_model("hear", backend="llama", file=str(tiny_gguf), params={"n_ctx": 512, "threads": 1,
                                                                       "mmproj": str(root / "audio.gguf")})
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.key or "unused", max_retries=0,
                         timeout=60 * SLOW)


def ask(client, data: bytes, model: str = "vl", **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=image_message(data), max_tokens=12, temperature=0, **kw)


def test_an_image_reaches_the_model_and_is_stored_as_the_jobs_input(server, client):
    raw = ask(client, RED)
    red = raw.parse()
    text = red.choices[0].message.content
    assert text and red.choices[0].finish_reason == "length"
    # The image is 16 embeddings of the prompt: the same question without it is 16 tokens shorter.
    plain = client.chat.completions.create(model="vl", max_tokens=1, temperature=0,
                                           messages=[{"role": "user", "content": QUESTION}])
    assert red.usage.prompt_tokens == plain.usage.prompt_tokens + IMAGE_TOKENS
    # Greedy decoding: the same image gives the same answer, another image another one.
    assert ask(client, RED).parse().choices[0].message.content == text
    assert ask(client, BLUE).parse().choices[0].message.content != text
    job = server.get(f"/job/{raw.headers['X-Statim-Job-Id']}").json()
    assert job["inputs"] == [{"name": "image-1", "content_type": "image/png", "bytes": len(RED),
                              "sha256": hashlib.sha256(RED).hexdigest(), "url": f"/job/{job['id']}/inputs/image-1"}]
    assert server.get(job["inputs"][0]["url"]).content == RED
    # The stored messages name the input (no base64 in the job's params).
    assert job["params"]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": QUESTION}, {"type": "image", "input": "image-1"}]}]
    assert job["prompt"] == QUESTION
    model = server.get("/models/vl").json()
    assert model["details"]["input_media"] == {"image": True, "audio": False}


def test_the_next_turn_of_a_chat_about_a_picture_comes_from_the_prompt_cache(server, client):
    first = ask(client, RED).parse()
    messages = image_message(RED) + [{"role": "assistant", "content": first.choices[0].message.content},
                                     {"role": "user", "content": "And the colours?"}]
    second = client.chat.completions.create(model="vl", messages=messages, max_tokens=4, temperature=0)
    # The picture (16 embeddings), the question and the answer were all in the sequence's cache.
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    # Another picture in the same place: the cache stops before it.
    other = client.chat.completions.create(model="vl", messages=image_message(BLUE), max_tokens=1, temperature=0)
    assert other.usage.prompt_tokens_details.cached_tokens < other.usage.prompt_tokens - IMAGE_TOKENS


def test_streaming_a_chat_with_an_image_streams_the_same_text(server, client):
    expected = ask(client, RED).parse().choices[0].message.content
    stream = client.chat.completions.create(model="vl", messages=image_message(RED), max_tokens=12, temperature=0,
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == expected


def test_two_images_in_one_message(server, client):
    messages = [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_url(RED)}},
        {"type": "text", "text": "and this one"},
        {"type": "image_url", "image_url": {"url": data_url(BLUE), "detail": "low"}}]}]
    raw = client.chat.completions.with_raw_response.create(model="vl", messages=messages, max_tokens=4,
                                                           temperature=0)
    job = server.get(f"/job/{raw.headers['X-Statim-Job-Id']}").json()
    assert [f["name"] for f in job["inputs"]] == ["image-1", "image-2"]
    swapped = [{"role": "user", "content": [messages[0]["content"][2], messages[0]["content"][1],
                                            messages[0]["content"][0]]}]
    other = client.chat.completions.create(model="vl", messages=swapped, max_tokens=4, temperature=0)
    assert other.usage.prompt_tokens == raw.parse().usage.prompt_tokens


def test_post_job_with_an_uploaded_image_answers_as_the_openai_route(server, client):
    expected = ask(client, RED).parse().choices[0].message.content
    messages = [{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                             {"type": "image", "input": "photo"}]}]
    r = server.post("/job", data={"model": "vl", "messages": json.dumps(messages),
                                  "params": json.dumps({"max_tokens": 12, "temperature": 0})},
                    files={"photo": ("cat.png", RED, "application/octet-stream")})
    assert r.status_code == 202, r.text
    job = server.wait_job(r.json()["id"])
    assert job["status"] == "COMPLETED", job
    assert job["result"]["text"] == expected
    # Base64 inputs in a JSON body, too.
    r = server.post("/job", json={"model": "vl", "messages": messages, "inputs": {"photo": base64.b64encode(RED).decode()},
                                  "params": {"max_tokens": 12, "temperature": 0}})
    assert r.status_code == 202, r.text
    assert server.wait_job(r.json()["id"])["result"]["text"] == expected
    # A message naming an input the job does not have.
    r = server.post("/job", json={"model": "vl", "messages": messages, "params": {"max_tokens": 4}})
    assert_error(r, 400, None, "the messages name the input 'photo', which the job does not have")


def test_the_responses_api_takes_input_image_and_a_chain_keeps_the_images(server, client):
    expected = ask(client, RED).parse().choices[0].message.content
    content = [{"type": "input_text", "text": QUESTION}, {"type": "input_image", "image_url": data_url(RED)}]
    first = client.responses.create(model="vl", input=[{"role": "user", "content": content}], max_output_tokens=12,
                                    temperature=0)
    # (incomplete: the random model never stops before max_output_tokens)
    assert first.status == "incomplete" and first.output_text == expected
    second = client.responses.create(model="vl", previous_response_id=first.id, max_output_tokens=4, temperature=0,
                                     input=[{"role": "user", "content": [
                                         {"type": "input_text", "text": "and now?"},
                                         {"type": "input_image", "image_url": data_url(BLUE)}]}])
    assert second.status == "incomplete"
    job = server.get(f"/job/{second.id.removeprefix('resp_')}").json()
    assert [(f["name"], f["sha256"]) for f in job["inputs"]] == [
        ("image-1", hashlib.sha256(RED).hexdigest()), ("image-2", hashlib.sha256(BLUE).hexdigest())]
    assert second.usage.input_tokens > first.usage.input_tokens + 2 * IMAGE_TOKENS
    # The input items are listed as given.
    items = client.responses.input_items.list(first.id)
    assert items.data[0].content[1].type == "input_image"
    bad = server.post("/v1/responses", json={
        "model": "vl", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]})
    assert bad.status_code == 400 and "file_id is not supported" in bad.json()["error"]["message"], bad.text


def test_anthropic_image_blocks_and_count_tokens(server, client):
    expected = ask(client, RED).parse().choices[0].message.content
    block = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": base64.b64encode(RED).decode()}}
    body = {"model": "vl", "max_tokens": 12, "temperature": 0,
            "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}, block]}]}
    headers = {"anthropic-version": "2023-06-01"}
    r = server.post("/v1/messages", headers=headers, json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == expected
    body.pop("max_tokens")
    body.pop("temperature")
    counted = server.post("/v1/messages/count_tokens", headers=headers, json=body, timeout=60)
    assert counted.status_code == 200, counted.text
    usage = r.json()["usage"]  # (input_tokens leaves out what the prompt cache held)
    assert counted.json()["input_tokens"] == usage["input_tokens"] + usage.get("cache_read_input_tokens", 0)
    block["source"] = {"type": "url", "url": "https://example.com/cat.png"}
    r = server.post("/v1/messages", headers=headers, json={**body, "max_tokens": 4}, timeout=60)
    assert r.status_code == 400 and "image URLs are not fetched" in r.json()["error"]["message"], r.text
    assert r.json()["type"] == "error"


def wav(samples: int, rate: int = 16000) -> bytes:
    """A 440 Hz tone, mono 16-bit PCM."""
    import math
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(samples))
    return (b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(pcm)) + pcm)


def test_audio_reaches_a_model_whose_projector_hears(server, client):
    def hear(data: bytes, fmt: str = "wav"):
        return client.chat.completions.with_raw_response.create(model="hear", max_tokens=6, temperature=0, messages=[
            {"role": "user", "content": [{"type": "text", "text": "What is this sound?"},
                                         {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(),
                                                                                 "format": fmt}}]}])
    clip = wav(16000)
    raw = hear(clip)
    out = raw.parse()
    plain = client.chat.completions.create(model="hear", max_tokens=1, messages=[
        {"role": "user", "content": "What is this sound?"}])
    assert out.usage.prompt_tokens == plain.usage.prompt_tokens + 30  # one 30 s window: 30 embeddings
    job = server.get(f"/job/{raw.headers['X-Statim-Job-Id']}").json()
    assert [(f["name"], f["content_type"], f["bytes"]) for f in job["inputs"]] == [("audio-1", "audio/wav", len(clip))]
    assert server.get("/models/hear").json()["details"]["input_media"] == {"image": False, "audio": True}
    # A clip of one sample (libmtmd would abort the process on it) is padded with silence.
    assert hear(wav(1)).parse().usage.prompt_tokens == out.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="hear", max_tokens=2, messages=image_message(RED))
    assert "this model's projector takes no images (input 'image-1')" in e.value.message


def test_images_that_are_not_images_and_models_without_a_projector(server, client):
    def post(content, model="vl"):
        return server.post("/v1/chat/completions", json={"model": model, "max_tokens": 4,
                                                         "messages": [{"role": "user", "content": content}]})

    def image(url):
        return [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": url}}]

    assert_error(post(image("https://example.com/cat.png")), 400, None,
                 ["image URLs are not fetched", "data:image/png;base64"], "messages[0].content[1].image_url.url")
    assert_error(post(image("file:///etc/passwd")), 400, None, "must be a data: URL with base64 bytes")
    assert_error(post(image("data:image/png;base64,not base64!")), 400, None, "must hold base64 bytes")
    text_bytes = base64.b64encode(b"just some text, not a picture").decode()
    assert_error(post(image(f"data:image/png;base64,{text_bytes}")), 400, None,
                 "'messages[0].content[1].image_url.url' is not an image: PNG or JPEG expected")
    gif = base64.b64encode(b"GIF89a" + bytes(40)).decode()
    assert_error(post(image(f"data:image/gif;base64,{gif}")), 400, None, "is not an image: PNG or JPEG expected")
    # A PNG cut short: its header says PNG, the decoder says no.
    cut = base64.b64encode(RED[:60]).decode()
    assert_error(post(image(f"data:image/png;base64,{cut}")), 400, None,
                 "input 'image-1' is not an image this model reads (PNG or JPEG)")
    assert_error(post(image(data_url(RED)), model="text-only"), 400, None,
                 "this model takes no images: its manifest names no params.mmproj")
    # Audio to a projector without an audio encoder.
    wav = (b"RIFF" + struct.pack("<I", 36 + 3200) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
           + b"data" + struct.pack("<I", 3200) + bytes(3200))
    audio = [{"type": "input_audio", "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"}}]
    assert_error(post(audio), 400, None, "this model's projector takes no audio (input 'audio-1')")
    assert_error(post([{"type": "input_audio", "input_audio": {"data": base64.b64encode(RED).decode()}}]), 400, None,
                 "is not audio: WAV, MP3, FLAC or OGG expected")
    assert_error(post([{"type": "file", "file": {"file_id": "x"}}]), 400, None,
                 "must be a text, image_url or input_audio part (got 'file')")


def test_a_real_vision_model_describes_a_picture_when_configured(tmp_path):
    gguf, mmproj = os.environ.get("STATIM_VLM_GGUF"), os.environ.get("STATIM_VLM_MMPROJ")
    if not gguf or not mmproj:
        pytest.skip("no real vision model: set STATIM_VLM_GGUF and STATIM_VLM_MMPROJ (e.g. SmolVLM-256M-Instruct "
                    "Q8_0 and its mmproj) to run it")
    s = Server(tmp_path, name="vlm")
    s.add_model("vlm", backend="llama", file=gguf, params={"n_ctx": 4096, "mmproj": mmproj})
    s.start(timeout=300)
    try:
        c = openai.OpenAI(base_url=f"{s.url}/v1", api_key=s.key or "unused", max_retries=0, timeout=600)
        red = encode_png(64, 64, lambda x, y: (220, 20, 20))
        out = c.chat.completions.create(model="vlm", max_tokens=20, temperature=0, messages=image_message(
            red, "What colour is this image? Answer with one word."))
        assert "red" in out.choices[0].message.content.lower(), out
    finally:
        s.cleanup()
