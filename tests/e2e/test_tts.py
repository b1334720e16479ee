"""The tts backend (espeak-ng): speech jobs make real audio in each format, its length follows
the text and the speed, voices differ, a voice-activity model hears it as speech, bad input is
refused before a job is stored, a long synthesis can be cancelled, and POST /v1/audio/speech
works with the official openai SDK."""
from __future__ import annotations

import hashlib
import io
import wave

import numpy as np
import pytest

from conftest import SLOW, assert_error, served, shared_models_dir

ONE = "The quick brown fox jumps over the lazy dog."
THREE = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step. "
         "Every good boy deserves fudge, and every cat likes fish.")
VAD_MODEL = shared_models_dir() / "onnx" / "silero_vad.onnx"
JFK = shared_models_dir() / "audio" / "jfk.wav"
MAX_CHARS = 12000


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import Server
    s = Server(tmp_path_factory.mktemp("tts") / "srv", name="tts")
    s.add_model("tts", backend="tts", type="speech", params={"voice": "en-us", "max_chars": MAX_CHARS})
    s.add_model("tts-short", backend="tts", params={"max_chars": 20})
    s.add_model("echo")
    s.start(timeout=60)
    yield from served(s)


def speak(srv, text: str, **params) -> tuple[dict, bytes, str]:
    """Runs a speech job to COMPLETED; returns (job, audio bytes, content type)."""
    job = srv.wait_job(srv.submit("tts", text, params or None)["id"], timeout=60)
    assert job["status"] == "COMPLETED", job
    r = srv.get(f"/job/{job['id']}/result")
    assert r.status_code == 200, r.text
    return job, r.content, r.headers["Content-Type"]


def wav_samples(data: bytes) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(io.BytesIO(data)) as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    return params, np.frombuffer(frames, dtype="<i2")


# ----------------------------------------------------------------------------------------------
# Audio


def test_a_speech_job_makes_a_valid_wav_as_its_primary_result(srv):
    job, data, ctype = speak(srv, ONE)
    res = job["result"]
    assert ctype == "audio/wav"
    assert res["format"] == "wav" and res["voice"] == "en-us" and res["characters"] == len(ONE)
    assert res["sample_rate"] == 22050
    assert res["artifacts"] == [{"name": "speech.wav", "content_type": "audio/wav", "bytes": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest(),
                                 "url": f"/job/{job['id']}/artifacts/speech.wav"}]
    params, samples = wav_samples(data)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, res["sample_rate"])
    assert params.nframes / params.framerate == pytest.approx(res["duration"], abs=0.002)
    assert 1.5 < res["duration"] < 6, "a nine-word sentence takes a few seconds"
    assert np.abs(samples).max() > 3000, "not silence"
    named = srv.get(f"/job/{job['id']}/artifacts/speech.wav")
    assert named.status_code == 200 and named.content == data


def test_length_grows_with_the_text_and_shrinks_with_the_speed(srv):
    one = speak(srv, ONE)[0]["result"]["duration"]
    three = speak(srv, THREE)[0]["result"]["duration"]
    assert three > 2.5 * one, (one, three)
    slow = speak(srv, THREE, speed=100)[0]["result"]["duration"]
    fast = speak(srv, THREE, speed=350)[0]["result"]["duration"]
    assert slow > three > fast, (slow, three, fast)
    assert slow > 2 * fast, (slow, fast)


def test_each_format_is_what_it_says_and_decodes(srv):
    import soundfile as sf
    reference = speak(srv, ONE)[0]["result"]["duration"]
    expect = {  # format: (content type, magic check, libsndfile format, subtype, sample rate)
        "flac": ("audio/flac", lambda b: b[:4] == b"fLaC", "FLAC", "PCM_16", 22050),
        "ogg": ("audio/ogg", lambda b: b[:4] == b"OggS" and b"vorbis" in b[:100], "OGG", "VORBIS", 22050),
        "opus": ("audio/opus", lambda b: b[:4] == b"OggS" and b"OpusHead" in b[:100], "OGG", "OPUS", 24000),
        "mp3": ("audio/mpeg", lambda b: b[:3] == b"ID3" or (b[0] == 0xFF and b[1] & 0xE0 == 0xE0), "MP3", "MPEG_LAYER_III",
                22050),
    }
    for fmt, (ctype, magic, major, sub, rate) in expect.items():
        job, data, got_type = speak(srv, ONE, format=fmt)
        res = job["result"]
        assert got_type == ctype, fmt
        assert res["format"] == fmt and res["sample_rate"] == rate, res
        assert res["artifacts"][0]["name"] == f"speech.{fmt}"
        assert magic(data), (fmt, data[:16])
        info = sf.info(io.BytesIO(data))
        assert (info.format, info.subtype, info.channels, info.samplerate) == (major, sub, 1, rate), (fmt, info)
        decoded, sr = sf.read(io.BytesIO(data), dtype="int16")
        assert len(decoded) / sr == pytest.approx(reference, abs=0.08), fmt
        assert np.abs(decoded).max() > 2000, f"{fmt} decodes to sound"
    job, data, ctype = speak(srv, ONE, format="pcm")
    assert ctype == "audio/pcm" and job["result"]["sample_rate"] == 24000
    assert len(data) % 2 == 0 and len(data) / 2 / 24000 == pytest.approx(reference, abs=0.01)


def fundamental_hz(samples: np.ndarray, rate: int = 22050) -> float:
    """Median pitch of the loud frames, from each frame's autocorrelation peak (60..500 Hz)."""
    x = samples.astype(np.float64)
    frame, f0s = 1024, []
    loud = np.abs(x).max() * 0.3
    for i in range(0, len(x) - frame, frame // 2):
        w = x[i:i + frame]
        if np.abs(w).max() < loud:
            continue
        ac = np.correlate(w, w, "full")[frame - 1:]
        lo, hi = rate // 500, rate // 60
        f0s.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0s))


def test_voices_and_pitch_change_the_audio(srv):
    voices = {}
    for voice in ("en-us", "de", "en-us+f3"):
        job, data, _ = speak(srv, ONE, voice=voice)
        assert job["result"]["voice"] == voice
        voices[voice] = wav_samples(data)[1]
    assert not np.array_equal(voices["en-us"][:20000], voices["de"][:20000])
    assert not np.array_equal(voices["en-us"][:20000], voices["en-us+f3"][:20000])
    # The female variant and a high pitch both sound higher.
    assert fundamental_hz(voices["en-us+f3"]) > 1.3 * fundamental_hz(voices["en-us"])
    low = wav_samples(speak(srv, ONE, pitch=10)[1])[1]
    high = wav_samples(speak(srv, ONE, pitch=90)[1])[1]
    assert fundamental_hz(high) > 1.3 * fundamental_hz(low), (fundamental_hz(high), fundamental_hz(low))
    # The model's default voice is the manifest's, and GET /models says which voices exist.
    details = srv.models()["tts"]["details"]
    assert details["voice"] == "en-us" and details["sample_rate"] == 22050 and details["max_chars"] == MAX_CHARS
    assert {"en", "en-us", "en-gb", "de", "fr"} <= set(details["voices"])
    assert {"f3", "m3"} <= set(details["variants"])
    assert details["formats"] == ["wav", "flac", "ogg", "opus", "mp3", "pcm"]


# ----------------------------------------------------------------------------------------------
# The spoken audio is speech, as heard by the Silero voice-activity model


class Vad:
    """Silero VAD v5: 512-sample windows at 16 kHz, each preceded by the previous window's last
    64 samples (the context the model was exported with), carrying its recurrent state."""

    def __init__(self):
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(VAD_MODEL), providers=["CPUExecutionProvider"])

    def probabilities(self, audio16k: np.ndarray) -> np.ndarray:
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros(64, np.float32)
        out = []
        for i in range(0, len(audio16k) - 511, 512):
            chunk = audio16k[i:i + 512].astype(np.float32)
            x = np.concatenate([context, chunk])[None, :]
            prob, state = self.session.run(None, {"input": x, "state": state, "sr": np.array(16000, np.int64)})
            context = chunk[-64:]
            out.append(float(prob.reshape(-1)[0]))
        return np.array(out)


def to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Linear-interpolation resampling to 16 kHz, as float in [-1, 1]."""
    x = samples.astype(np.float32) / 32768.0
    t = np.arange(0, len(x) / rate, 1 / 16000)
    return np.interp(t, np.arange(len(x)) / rate, x).astype(np.float32)


@pytest.fixture(scope="module")
def vad():
    if not VAD_MODEL.exists() or not JFK.exists():
        pytest.skip(f"Silero VAD or its sample is absent: {VAD_MODEL}, {JFK} (set STATIM_SHARED_MODELS)")
    pytest.importorskip("onnxruntime", reason="python3-onnxruntime is needed for the VAD check")
    v = Vad()
    # The harness must be able to fail: it hears the JFK recording as speech and silence as none.
    with wave.open(str(JFK)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        jfk = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    p = v.probabilities(jfk.astype(np.float32) / 32768.0)
    assert p.max() > 0.9 and (p > 0.5).mean() > 0.5, f"VAD misses the JFK speech: max {p.max()}, {(p > 0.5).mean()}"
    silence = v.probabilities(np.zeros(16000 * 3, np.float32))
    hiss = v.probabilities((np.random.default_rng(0).standard_normal(16000 * 3) * 0.01).astype(np.float32))
    assert silence.max() < 0.2 and hiss.max() < 0.2, (silence.max(), hiss.max())
    return v


@pytest.mark.parametrize("voice", ["en-us", "de"])
def test_the_spoken_audio_is_speech_to_a_voice_activity_model(srv, vad, voice):
    job, data, _ = speak(srv, THREE, voice=voice)
    params, samples = wav_samples(data)
    p = vad.probabilities(to_16k(samples, params.framerate))
    assert p.max() > 0.9, p.max()
    assert (p > 0.5).mean() > 0.5, f"only {(p > 0.5).mean():.0%} of the windows are speech"


# ----------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_refused_naming_the_field_and_stores_no_job(srv):
    before = srv.jobs()["total"]
    cases = [
        ({"prompt": ""}, "'prompt' must not be empty", "prompt"),
        ({"prompt": "   \n\t "}, "'prompt' has nothing to speak", "prompt"),
        ({"prompt": "a" * (MAX_CHARS + 1)}, f"'prompt' has {MAX_CHARS + 1} characters; model 'tts' speaks at most "
                                            f"{MAX_CHARS} (max_chars)", "prompt"),
        ({"prompt": "hi", "params": {"voice": "klingon"}}, ["unknown voice 'klingon'", "GET /models", "details.voices",
                                                           "espeak-ng --voices"], "params.voice"),
        ({"prompt": "hi", "params": {"voice": "en-us+nosuch"}}, "unknown voice variant 'nosuch'", "params.voice"),
        ({"prompt": "hi", "params": {"voice": ""}}, "'params.voice' must not be empty", "params.voice"),
        ({"prompt": "hi", "params": {"voice": 3}}, "'params.voice' must be a string", "params.voice"),
        ({"prompt": "hi", "params": {"speed": 20}}, "'params.speed' must be between 80 and 450 (words per minute)",
         "params.speed"),
        ({"prompt": "hi", "params": {"speed": 1.5}}, "'params.speed' must be an integer", "params.speed"),
        ({"prompt": "hi", "params": {"pitch": 101}}, "'params.pitch' must be between 0 and 100", "params.pitch"),
        ({"prompt": "hi", "params": {"format": "aac"}}, "'params.format' must be one of wav, flac, ogg, opus, mp3, pcm",
         "params.format"),
        ({"prompt": "hi", "params": {"volume": 3}}, "unknown field 'params.volume' (allowed: voice, speed, pitch, format)",
         "params.volume"),
    ]
    for body, message, param in cases:
        r = srv.post("/job", json={"model": "tts", **body})
        assert_error(r, 400, "invalid_request", message, param=param)
    assert srv.jobs()["total"] == before, "no refused request stored a job"
    # Multi-byte text is counted in characters, not bytes: 20 accented letters (40 bytes) fit.
    ok = srv.submit("tts-short", "é" * 20)
    assert srv.wait_job(ok["id"], timeout=60)["result"]["characters"] == 20
    assert_error(srv.post("/job", json={"model": "tts-short", "prompt": "é" * 21}), 400, "invalid_request",
                 "'prompt' has 21 characters; model 'tts-short' speaks at most 20 (max_chars)", param="prompt")


def test_parallel_above_one_is_refused_at_load(make_server):
    s = make_server("tts-par")
    s.add_model("tts2", backend="tts", parallel=2)
    s.add_model("tts-badvoice", backend="tts", params={"voice": "xx-nowhere"})
    s.start(timeout=60)
    models = s.models()
    assert models["tts2"]["state"] == "failed"
    assert "parallel must be 1" in models["tts2"]["reason"] and "espeak-ng keeps global state" in models["tts2"]["reason"]
    assert models["tts-badvoice"]["state"] == "failed"
    assert "unknown voice 'xx-nowhere'" in models["tts-badvoice"]["reason"]


# ----------------------------------------------------------------------------------------------
# Cancellation


def test_a_long_synthesis_can_be_cancelled_and_keeps_no_audio(srv):
    text = (THREE + " ") * (MAX_CHARS // (len(THREE) + 1))
    job = srv.submit("tts", text, {"speed": 80})
    after = srv.submit("tts", ONE)  # queued behind it: the engine must work after an abort
    srv.wait_running(job["id"])
    r = srv.post(f"/job/{job['id']}/cancel")
    assert r.status_code == 200, r.text
    done = srv.wait_job(job["id"], timeout=30)
    assert done["status"] == "CANCELLED", done
    assert done["result"]["finish_reason"] == "cancelled"
    assert "artifacts" not in done["result"] and "sample_rate" not in done["result"]
    assert done["result"]["duration"] < 600, "stopped long before the end (about 15 minutes of speech)"
    assert_error(srv.get(f"/job/{job['id']}/result"), 404, "not_found", "has no artifacts")
    nxt = srv.wait_job(after["id"], timeout=60)
    assert nxt["status"] == "COMPLETED", nxt
    assert nxt["result"]["duration"] > 1.5


def test_progress_events_are_reported_while_synthesising(srv):
    import json as _json
    from conftest import sse_events
    text = (THREE + " ") * 20  # about two seconds of synthesis: the stream joins long before the end
    job = srv.submit("tts", text)
    with srv.get(f"/job/{job['id']}/events", stream=True, timeout=60) as r:
        seen = []
        for name, data in sse_events(r):
            seen.append((name, _json.loads(data)))
            if name in ("completed", "failed", "cancelled"):
                break
    assert seen[-1][0] == "completed", [n for n, _ in seen]
    progress = [d["characters"] for n, d in seen if n == "progress"]
    assert len(progress) >= 3, [n for n, _ in seen]
    assert progress == sorted(progress) and 0 <= progress[0] and progress[-1] < len(text), progress
    assert all(d["total"] == len(text) for n, d in seen if n == "progress")


# ----------------------------------------------------------------------------------------------
# OpenAI: POST /v1/audio/speech


@pytest.fixture(scope="module")
def client(srv):
    openai = pytest.importorskip("openai", reason="python3-openai is needed for the SDK tests")
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60 * SLOW)


def test_openai_sdk_speech_in_each_format(srv, client):
    import soundfile as sf
    before = srv.jobs(model="tts")["total"]
    raw = client.audio.speech.with_raw_response.create(model="tts", voice="alloy", input=ONE, response_format="wav")
    assert raw.headers["content-type"] == "audio/wav"
    job_id = int(raw.headers["x-statim-job-id"])
    data = raw.parse().read()
    params, samples = wav_samples(data)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 22050)
    job = srv.job(job_id)
    assert job["status"] == "COMPLETED" and job["type"] == "speech" and job["prompt"] == ONE
    assert job["params"] == {"voice": "en-us", "format": "wav"}, "alloy is en-us"
    assert srv.jobs(model="tts")["total"] == before + 1, "the request is a durable job"

    mp3 = client.audio.speech.create(model="tts", voice="nova", input=ONE).read()  # OpenAI's default: mp3
    assert mp3[:3] == b"ID3" or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0), mp3[:8]
    assert sf.info(io.BytesIO(mp3)).format == "MP3"
    opus = client.audio.speech.create(model="tts", voice="echo", input=ONE, response_format="opus").read()
    assert opus[:4] == b"OggS" and b"OpusHead" in opus[:100]
    flac = client.audio.speech.create(model="tts", voice="fable", input=ONE, response_format="flac").read()
    assert flac[:4] == b"fLaC"
    pcm = client.audio.speech.create(model="tts", voice="onyx", input=ONE, response_format="pcm").read()
    assert len(pcm) / 2 / 24000 == pytest.approx(params.nframes / 22050, rel=0.15), "raw 16-bit at 24 kHz"
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 2000
    # An espeak-ng voice passes through; OpenAI's speed multiplier maps onto words per minute.
    de = client.audio.speech.with_raw_response.create(model="tts", voice="de", input=ONE, response_format="wav",
                                                      speed=2.0)
    assert srv.job(int(de.headers["x-statim-job-id"]))["params"] == {"voice": "de", "format": "wav", "speed": 350}
    slow = client.audio.speech.create(model="tts", voice="alloy", input=ONE, response_format="wav", speed=0.6).read()
    assert wav_samples(slow)[0].nframes > 1.3 * params.nframes


def test_openai_speech_errors_name_the_openai_field(srv, client):
    import openai
    before = srv.jobs()["total"]
    cases = [
        (dict(model="tts", voice="alloy", input=ONE, response_format="aac"), "aac is not supported", "response_format"),
        (dict(model="tts", voice="alloy", input=ONE, response_format="ogg"), "must be one of mp3, opus, flac, wav, pcm",
         "response_format"),
        (dict(model="tts", voice="klingon", input=ONE), "unknown voice 'klingon'", "voice"),
        (dict(model="tts", voice="alloy", input=""), "'input' must not be empty", "input"),
        (dict(model="tts", voice="alloy", input="a" * (MAX_CHARS + 1)), f"'input' has {MAX_CHARS + 1} characters",
         "input"),
        (dict(model="tts", voice="alloy", input=ONE, speed=5), "'speed' must be a number between 0.25 and 4.0", "speed"),
        (dict(model="tts", voice="alloy", input=ONE, instructions="whisper"), "'instructions' is not supported",
         "instructions"),
        (dict(model="echo", voice="alloy", input=ONE), "model 'echo' does not serve speech jobs", "model"),
        (dict(model="nope", voice="alloy", input=ONE), "unknown model 'nope'", "model"),
    ]
    for kwargs, message, param in cases:
        with pytest.raises(openai.APIStatusError) as e:
            client.audio.speech.create(**kwargs).read()
        err = e.value.body if isinstance(e.value.body, dict) and "message" in e.value.body else e.value.body["error"]
        assert message in err["message"], (kwargs, err)
        assert err["param"] == param, (kwargs, err)
        assert e.value.status_code in (400, 404), e.value.status_code
    r = srv.post("/v1/audio/speech", json={"model": "tts", "input": "hi", "colour": "blue"})
    assert_error(r, 400, "invalid_request", "unsupported field 'colour'", param="colour")
    assert srv.jobs()["total"] == before, "no refused request stored a job"


def test_openai_speech_of_a_cancelled_job_answers_409(srv):
    import threading
    text = (THREE + " ") * (MAX_CHARS // (len(THREE) + 1))
    out = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "r", srv.post("/v1/audio/speech", json={"model": "tts", "input": text, "speed": 0.5}, timeout=120)))
    t.start()
    from conftest import wait_until
    job = wait_until(lambda: next((j for j in srv.jobs(model="tts", status="PROCESSING")["jobs"]
                                   if j["prompt"] == text), None), 30, "the speech job to start")
    srv.post(f"/job/{job['id']}/cancel")
    t.join(60 * SLOW)
    assert_error(out["r"], 409, "cancelled", f"job {job['id']} was cancelled")
