"""The whisper backend (libwhisper, speech to text): a random-weight model in the real ggml format
(tests/fixtures/make_tiny_whisper.py) transcribes audio sent as WAV, FLAC, OGG and MP3 into a
well-formed, deterministic result; segments stream as events; a running job can be cancelled;
bad audio and bad params are refused naming the field; a vocabulary-only file fails to load with
a reason while the rest keeps serving; POST /v1/audio/transcriptions through the `openai` SDK in
every response format. With real weights (STATIM_TEST_WHISPER_MODEL) the known JFK transcript."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SLOW, Server, assert_error, fail_on_sanitizer_reports, shared_models_dir, sse_events

sf = pytest.importorskip("soundfile")

JFK = shared_models_dir() / "audio" / "jfk.wav"
VOCAB_ONLY = shared_models_dir() / "whisper" / "vocab-only-for-tests-ggml-tiny.en.bin"
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
SR = 16000


def speech() -> tuple[np.ndarray, int]:
    """jfk.wav where present, else a 3 s tone sweep (the fixture model cares only that it is audio)."""
    if JFK.exists():
        data, rate = sf.read(str(JFK), dtype="float32")
        return data, rate
    t = np.arange(3 * SR) / SR
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), SR


def encode(data: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, rate: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


@pytest.fixture(scope="module")
def srv(tmp_path_factory, tiny_whisper):
    s = Server(tmp_path_factory.mktemp("whisper-srv"), name="whisper",
               env={"STATIM_HTTP_MAX_BODY_BYTES": str(8 << 20)})
    s.add_model("w", backend="whisper", file=str(tiny_whisper), parallel=2, max_queue=100,
                params={"threads": 1, "max_seconds": 900})
    s.add_model("w-small", backend="whisper", file=str(tiny_whisper), max_input_bytes=100_000,
                params={"threads": 1, "max_seconds": 5})
    if VOCAB_ONLY.exists():
        s.add_model("vocab-only", backend="whisper", file=str(VOCAB_ONLY))
    s.add_model("echo")
    s.start(timeout=60)
    yield s
    s.cleanup()
    fail_on_sanitizer_reports([s])


def transcribe(srv: Server, audio: bytes, model: str = "w", params: dict | None = None, name: str = "audio",
               filename: str = "speech.bin") -> dict:
    data = {"model": model}
    if params is not None:
        data["params"] = json.dumps(params)
    r = srv.post("/job", data=data, files={name: (filename, audio, "application/octet-stream")})
    assert r.status_code == 202, r.text
    return srv.wait_job(r.json()["id"], timeout=120)


def check_result(res: dict, duration: float) -> None:
    """The result's shape: text, language, duration, ordered segments within the audio."""
    assert set(res) >= {"text", "language", "duration", "segments", "tokens_out", "duration_ms"}, res
    assert res["language"] == "en"  # an English-only model
    assert res["duration"] == pytest.approx(duration, abs=0.06)
    assert res["duration_ms"] > 0 and res["tokens_out"] >= 0
    segs = res["segments"]
    assert segs, res
    for a, b in zip(segs, segs[1:]):
        assert a["start"] <= b["start"], segs
    for s in segs:
        assert 0 <= s["start"] <= s["end"] <= res["duration"] + 1e-6, s
        assert isinstance(s["text"], str)
    assert res["text"] == "".join(s["text"] for s in segs).lstrip(" ")


def test_transcribes_speech_into_a_well_formed_deterministic_result(srv):
    data, rate = speech()
    wav = JFK.read_bytes() if JFK.exists() else encode(data, rate, "WAV", "PCM_16")
    first = transcribe(srv, wav)
    assert first["status"] == "COMPLETED", first
    assert first["type"] == "transcription"
    assert first["inputs"][0]["content_type"] == "audio/wav"
    check_result(first["result"], len(data) / rate)
    assert first["result"]["text"], "the fixture model writes some text"
    second = transcribe(srv, wav)
    assert second["result"]["text"] == first["result"]["text"]
    assert second["result"]["segments"] == first["result"]["segments"]


def test_flac_ogg_and_mp3_of_the_same_audio(srv):
    data, rate = speech()
    wav = transcribe(srv, encode(data, rate, "WAV", "PCM_16"), params={"temperature": 0.2})["result"]
    flac = transcribe(srv, encode(data, rate, "FLAC"), params={"temperature": 0.2})
    assert flac["inputs"][0]["content_type"] == "audio/flac"
    # FLAC is lossless: the decoder sees the very same samples, so the very same transcript.
    assert flac["result"]["text"] == wav["text"] and flac["result"]["segments"] == wav["segments"]
    for fmt, subtype, ctype in [("OGG", "VORBIS", "audio/ogg"), ("OGG", "OPUS", "audio/ogg"), ("MP3", None, "audio/mpeg")]:
        job = transcribe(srv, encode(data, rate, fmt, subtype), params={"temperature": 0.2})
        assert job["status"] == "COMPLETED", (fmt, subtype, job)
        assert job["inputs"][0]["content_type"] == ctype
        # Lossy codecs pad by a few milliseconds (MP3: up to a frame) and change the samples.
        check_result(job["result"], job["result"]["duration"])
        assert job["result"]["duration"] == pytest.approx(len(data) / rate, abs=0.1), (fmt, job["result"])


def test_stereo_44k_is_downmixed_and_resampled(srv):
    audio = encode(tone(2.5, 44100, 2), 44100, "WAV", "PCM_16")
    job = transcribe(srv, audio, params={"temperature": 0.2})
    assert job["status"] == "COMPLETED", job
    assert job["result"]["duration"] == pytest.approx(2.5, abs=0.01)


def test_params_timestamps_prompt_and_beam_search(srv):
    data, rate = tone(2.0), SR
    wav = encode(data, rate, "WAV", "PCM_16")
    plain = transcribe(srv, wav, params={"timestamps": False, "temperature": 0.3})["result"]
    assert "segments" not in plain and isinstance(plain["text"], str)
    res = transcribe(srv, wav, params={"prompt": "Ask not.", "beam_size": 2, "language": "en", "temperature": 0.3})
    assert res["status"] == "COMPLETED", res
    check_result(res["result"], 2.0)


def test_segments_stream_as_token_events(srv):
    data, rate = speech()
    r = srv.post("/job", data={"model": "w", "params": json.dumps({"temperature": 0.2})},
                 files={"audio": ("a.flac", encode(data, rate, "FLAC"))})
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    tokens, progress, final = [], [], None
    with srv.get(f"/job/{jid}/events", stream=True, timeout=120) as resp:
        assert resp.status_code == 200
        for name, raw in sse_events(resp):
            body = json.loads(raw)
            if name == "token":
                tokens.append(body["text"])
            elif name == "progress":
                progress.append(body["percent"])
            elif name in ("completed", "failed", "cancelled"):
                final = body["job"]
                break
    assert final and final["status"] == "COMPLETED", final
    res = final["result"]
    assert tokens == [s["text"] for s in res["segments"]], "one token event per segment, in order"
    assert progress == sorted(progress) and all(0 <= p <= 100 for p in progress)


def test_cancelling_a_running_job_keeps_the_segments_so_far(srv):
    # Three minutes of audio (six 30 s windows): still running when cancelled.
    # (FLAC: libsndfile's Vorbis encoder crashes on one write this long.)
    data, rate = speech()
    long = encode(np.tile(data, 180 * rate // len(data) + 1)[: 180 * rate], rate, "FLAC")
    r = srv.post("/job", data={"model": "w", "params": json.dumps({"temperature": 0.2})},
                 files={"audio": ("long.flac", long)})
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    srv.wait_running(jid)
    # Let it decode a window or two so there is something to keep, then cancel.
    with srv.get(f"/job/{jid}/events", stream=True, timeout=120) as resp:
        for name, _ in sse_events(resp):
            if name in ("token", "completed", "failed"):
                break
    c = srv.post(f"/job/{jid}/cancel")
    assert c.status_code == 200, c.text
    job = srv.wait_job(jid, timeout=60)
    assert job["status"] == "CANCELLED", job
    res = job["result"]
    assert res["finish_reason"] == "cancelled"
    assert res["duration"] == pytest.approx(180, abs=0.1)
    assert res["segments"], "the segments decoded before the cancel are kept"
    assert res["segments"][-1]["end"] < 180
    # The worker is free again: a short job still runs.
    assert transcribe(srv, encode(tone(1), SR, "WAV"), params={"temperature": 0.2})["status"] == "COMPLETED"


def test_parallel_workers_run_two_jobs_at_once_on_one_model(srv):
    # Two long jobs sent as base64 JSON: with parallel = 2 both run at the same time, each on its
    # own whisper_state over the one copy of the weights.
    data, rate = speech()
    long = base64.b64encode(encode(np.tile(data, 120 * rate // len(data) + 1)[: 120 * rate], rate, "FLAC")).decode()
    ids = []
    for _ in range(2):
        r = srv.post("/job", json={"model": "w", "inputs": {"audio": long}, "params": {"temperature": 0.2}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    srv.wait_queue("w", queued=0, running=2)
    for jid in ids:
        assert srv.post(f"/job/{jid}/cancel").status_code == 200
    for jid in ids:
        job = srv.wait_job(jid, timeout=60)
        assert job["status"] == "CANCELLED" and job["result"]["finish_reason"] == "cancelled", job
        assert job["result"]["duration"] == pytest.approx(120, abs=0.1)


def test_bad_audio_fails_the_job_naming_the_input(srv):
    # Sniffed as WAV by its header, but the rest is garbage.
    corrupt = b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64)
    job = transcribe(srv, corrupt, name="speech")
    assert job["status"] == "FAILED" and "input 'speech' could not be decoded as audio" in job["error"], job
    # A valid WAV header with no samples.
    job = transcribe(srv, encode(np.zeros(0, dtype=np.float32), SR, "WAV", "PCM_16"), name="speech")
    assert job["status"] == "FAILED" and "input 'speech' contains no audio samples" in job["error"], job
    # Longer than the model's max_seconds (5 s for w-small).
    job = transcribe(srv, encode(tone(6), SR, "FLAC"), model="w-small")
    assert job["status"] == "FAILED" and "input 'audio' is longer than 5 s" in job["error"], job
    assert "max_seconds" in job["error"]
    # The model still works after all that.
    assert transcribe(srv, encode(tone(1), SR, "WAV"), model="w-small", params={"temperature": 0.2})["status"] == "COMPLETED"


def test_bad_submissions_are_refused_naming_the_field(srv):
    before = srv.jobs()["total"]
    wav = encode(tone(1), SR, "WAV")
    r = srv.post("/job", data={"model": "w"}, files={"audio": ("notes.wav", b"just some text, not audio")})
    assert_error(r, 415, "unsupported_media_type",
                 ["input 'audio' is application/octet-stream", "audio/wav, audio/flac, audio/ogg, audio/mpeg"],
                 param="inputs.audio")
    r = srv.post("/job", data={"model": "w-small"}, files={"audio": ("big.wav", encode(tone(4), SR, "WAV", "PCM_16"))})
    assert_error(r, 413, "payload_too_large", ["input 'audio' has", "takes at most 100000 (max_input_bytes)"],
                 param="inputs.audio")
    r = srv.post("/job", data={"model": "w"}, files={"audio": ("empty.wav", b"")})
    assert_error(r, 400, "invalid_request", "input 'audio' is empty")
    assert_error(srv.post("/job", json={"model": "w", "prompt": "hello"}), 400, "invalid_request",
                 "needs an input file (audio/wav, audio/flac, audio/ogg, audio/mpeg)")
    cases = [
        ({"language": "xx"}, "params.language", "must be \"auto\" or a language code"),
        ({"language": "de"}, "params.language", "English-only"),
        ({"language": 7}, "params.language", "must be a string"),
        ({"translate": "yes"}, "params.translate", "must be true or false"),
        ({"translate": True}, "params.translate", "cannot translate"),
        ({"timestamps": 1}, "params.timestamps", "must be true or false"),
        ({"temperature": 1.5}, "params.temperature", "must be between 0 and 1"),
        ({"beam_size": 0}, "params.beam_size", "must be between 1 and 8"),
        ({"prompt": 3}, "params.prompt", "must be a string"),
        ({"max_tokens": 3}, "params.max_tokens", "unknown field 'params.max_tokens'"),
    ]
    for params, field, message in cases:
        r = srv.post("/job", data={"model": "w", "params": json.dumps(params)}, files={"audio": ("a.wav", wav)})
        assert_error(r, 400, "invalid_request", message, param=field)
    assert srv.jobs()["total"] == before, "refused submissions store no job"


def test_a_vocabulary_only_file_fails_to_load_and_the_rest_keeps_serving(srv):
    if not VOCAB_ONLY.exists():
        pytest.skip(f"{VOCAB_ONLY} is absent")
    m = srv.models()["vocab-only"]
    assert m["state"] == "failed"
    assert "no weights (0 of 167 tensors)" in m["reason"] and "not a usable model" in m["reason"], m
    r = srv.post("/job", data={"model": "vocab-only"}, files={"audio": ("a.wav", encode(tone(1), SR, "WAV"))})
    assert_error(r, 503, None, "vocab-only")
    assert srv.models()["w"]["state"] == "ready"
    job = srv.submit("echo", "still here")
    assert srv.wait_job(job["id"])["result"] == {"text": "still here"}


def test_a_file_that_is_not_a_model_fails_with_a_reason(make_server, tmp_path, tiny_whisper):
    s = make_server("whisper-bad")
    junk = tmp_path / "ggml-junk.bin"
    junk.write_bytes(b"not a model at all" * 10)
    truncated = tmp_path / "ggml-truncated.bin"
    truncated.write_bytes(tiny_whisper.read_bytes()[:2_000_000])
    s.add_model("junk", backend="whisper", file=str(junk))
    s.add_model("truncated", backend="whisper", file=str(truncated))
    s.add_model("missing", backend="whisper", file=str(tmp_path / "nope.bin"))
    s.add_model("echo")
    s.start(timeout=60)
    models = s.models()
    assert "bad magic" in models["junk"]["reason"], models["junk"]
    assert "truncated" in models["truncated"]["reason"], models["truncated"]
    assert "not found" in models["missing"]["reason"], models["missing"]
    assert all(models[m]["state"] == "failed" for m in ("junk", "truncated", "missing"))
    job = s.submit("echo", "fine")
    assert s.wait_job(job["id"])["result"] == {"text": "fine"}


def test_openapi_documents_the_route(srv):
    doc = srv.get("/openapi.json").json()
    op = doc["paths"]["/v1/audio/transcriptions"]["post"]
    assert "multipart/form-data" in op["requestBody"]["content"]
    assert "TranscriptionResult" in doc["components"]["schemas"]


# --- OpenAI-compatible route ------------------------------------------------------------------

try:
    import openai
except ImportError:  # the SDK tests are skipped, the rest still runs
    openai = None


@pytest.fixture(scope="module")
def client(srv):
    if openai is None:
        pytest.skip("the openai SDK (python3-openai) is not installed")
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0, timeout=120 * SLOW)


SRT_CUE = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)\n(.*)\n\n")
VTT_CUE = re.compile(r"(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)\n(.*)\n\n")


def ms(h, m, s, f) -> int:
    return ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(f)


def test_sdk_transcriptions_in_every_format(srv, client):
    data, rate = speech()
    audio = encode(data, rate, "WAV", "PCM_16")
    before = srv.jobs(model="w")["total"]
    kw = dict(model="w", file=("speech.wav", audio), temperature=0.2)
    plain = client.audio.transcriptions.create(**kw)
    assert isinstance(plain.text, str) and plain.text
    # Each request is a durable job with the same answer.
    jobs = srv.jobs(model="w")
    assert jobs["total"] == before + 1
    assert jobs["jobs"][0]["result"]["text"] == plain.text

    text = client.audio.transcriptions.create(response_format="text", **kw)
    assert text == plain.text + "\n"

    verbose = client.audio.transcriptions.create(response_format="verbose_json",
                                                 timestamp_granularities=["segment"], **kw)
    assert verbose.text == plain.text
    assert verbose.language == "en" and verbose.duration == pytest.approx(len(data) / rate, abs=0.01)
    segments = jobs["jobs"][0]["result"]["segments"]
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(s["start"], s["end"], s["text"]) for s in segments]
    assert [s.id for s in verbose.segments] == list(range(len(segments)))

    srt = client.audio.transcriptions.create(response_format="srt", **kw)
    cues = SRT_CUE.findall(srt)
    assert "".join(m.group(0) for m in SRT_CUE.finditer(srt)) == srt, f"every byte is a cue: {srt!r}"
    assert [int(c[0]) for c in cues] == list(range(1, len(segments) + 1))
    for c, s in zip(cues, segments):
        assert ms(*c[1:5]) == round(s["start"] * 1000) and ms(*c[5:9]) == round(s["end"] * 1000)
        assert c[9] == s["text"].strip()

    vtt = client.audio.transcriptions.create(response_format="vtt", **kw)
    assert vtt.startswith("WEBVTT\n\n")
    body = vtt[len("WEBVTT\n\n"):]
    cues = VTT_CUE.findall(body)
    assert "".join(m.group(0) for m in VTT_CUE.finditer(body)) == body
    assert [(ms(*c[0:4]), ms(*c[4:8]), c[8]) for c in cues] == [
        (round(s["start"] * 1000), round(s["end"] * 1000), s["text"].strip()) for s in segments]


def test_sdk_errors_name_the_field(srv, client):
    wav = encode(tone(1), SR, "WAV")
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="w", file=("a.wav", wav), language="xx")
    assert e.value.body["param"] == "language" and "'language' must be" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="w", file=("a.wav", wav), response_format="docx")
    assert e.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="w", file=("a.wav", wav), temperature=3)
    assert e.value.body["param"] == "temperature" and "between 0 and 1" in e.value.body["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="w", file=("a.wav", wav), timestamp_granularities=["word"])
    assert e.value.body["param"] == "timestamp_granularities[]"
    with pytest.raises(openai.APIStatusError) as e:
        client.audio.transcriptions.create(model="w", file=("a.txt", b"hello there, not audio"))
    assert e.value.status_code == 415 and e.value.body["param"] == "file"
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.transcriptions.create(model="nope", file=("a.wav", wav))
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.transcriptions.create(model="w", file=("bad.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x01" * 40))
    assert e.value.body["param"] == "file" and "could not be decoded as audio" in e.value.body["message"]
    # Plain HTTP: JSON instead of a form, and a form without the file.
    assert_error(srv.post("/v1/audio/transcriptions", json={"model": "w"}), 400, "invalid_request",
                 "multipart/form-data", param="file")
    assert_error(srv.post("/v1/audio/transcriptions", files={"model": (None, "w")}), 400, "invalid_request",
                 "'file' is required", param="file")


# --- Real weights -----------------------------------------------------------------------------

REAL_MODEL = os.environ.get("STATIM_TEST_WHISPER_MODEL", "")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", "", text.lower()).split()


@pytest.mark.skipif(not REAL_MODEL or not Path(REAL_MODEL).exists(),
                    reason="no real whisper weights: set STATIM_TEST_WHISPER_MODEL to a ggml-*.bin "
                           "(e.g. ggml-tiny.en.bin); ../shared/models has only a vocabulary-only file")
@pytest.mark.skipif(not JFK.exists(), reason=f"{JFK} is absent")
def test_real_model_transcribes_jfk(make_server):
    s = make_server("whisper-real")
    s.add_model("real", backend="whisper", file=REAL_MODEL, params={"threads": 2})
    s.start(timeout=120)
    job = transcribe(s, JFK.read_bytes(), model="real")
    assert job["status"] == "COMPLETED", job
    assert words(job["result"]["text"]) == words(JFK_TEXT), job["result"]["text"]
