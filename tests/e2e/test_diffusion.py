"""The diffusion backend (image jobs on ONNX Runtime) on tiny random-weight exports written by
tests/fixtures/make_tiny_diffusion.py with the real SD-Turbo / SDXL-Turbo I/O names: PNG artifacts,
determinism by seed, sizes and counts, progress events, cancellation between steps, the original
server's showcase request, /v1/images/generations through the openai SDK, bad params and broken
export folders. A real export runs when STATIM_TEST_DIFFUSION_MODEL names its folder."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
import requests

from conftest import REPO, SLOW, Server, assert_error, served, shared_models_dir, sse_events, wait_until

TOKENIZER = shared_models_dir() / "clip-tokenizer"
SHOWCASE = {"prompt": "A cat in space", "model": "stabilityai/sdxl-turbo"}

pytestmark = pytest.mark.skipif(not (TOKENIZER / "vocab.json").exists(),
                                reason=f"the CLIP tokenizer files are missing under {TOKENIZER}")


def make_export(root: Path, variant: str, *extra: str, name: str | None = None) -> Path:
    out = root / (name or variant)
    gen = REPO / "tests" / "fixtures" / "make_tiny_diffusion.py"
    r = subprocess.run([sys.executable, str(gen), str(out), "--variant", variant, "--tokenizer", str(TOKENIZER), *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"make_tiny_diffusion.py failed:\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusion-exports")
    exports = {v: make_export(root, v) for v in ("sd-turbo", "sdxl-turbo")}
    # A wider UNet: tens of milliseconds a step at 1024x1024, so a cancel lands mid-job.
    exports["slow"] = make_export(root, "sd-turbo", "--unet-channels", "64", name="slow")
    return exports


@pytest.fixture(scope="module")
def srv(tmp_path_factory, exports):
    s = Server(tmp_path_factory.mktemp("diffusion"), name="diffusion")
    # As models/stabilityai_sdxl-turbo.toml, on the tiny export.
    s.add_model("stabilityai/sdxl-turbo", backend="diffusion", type="image", file=str(exports["sdxl-turbo"]),
                params={"default_width": 1024, "default_height": 1024, "max_width": 1024, "max_height": 1024,
                        "default_steps": 1, "max_steps": 50, "threads": 2})
    s.add_model("sd-turbo", backend="diffusion", file=str(exports["sd-turbo"]), parallel=1,
                params={"max_steps": 1000, "threads": 1})
    s.add_model("slow", backend="diffusion", file=str(exports["slow"]), parallel=1,
                params={"max_steps": 1000, "threads": 1})
    s.add_model("missing", backend="diffusion", file=str(s.root / "no-such-export"))
    broken = s.root / "broken-export"
    broken.mkdir()
    for f in ("model_index.json", "scheduler", "tokenizer", "text_encoder", "vae_decoder"):
        src = exports["sd-turbo"] / f
        subprocess.run(["cp", "-r", str(src), str(broken / f)], check=True)
    s.add_model("no-unet", backend="diffusion", file=str(broken))
    s.add_model("echo")
    s.start(timeout=120)
    yield from served(s)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    assert data[12:16] == b"IHDR"
    w, h, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 8 and colour == 2, "8-bit RGB"
    return w, h


def png_rows(data: bytes) -> bytes:
    """The decompressed IDAT stream (filter bytes and filtered rows)."""
    pos, idat = 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    return zlib.decompress(idat)


def run_image(s: Server, model: str, prompt: str, timeout: float = 60, **params) -> tuple[dict, list[bytes]]:
    job = s.submit(model, prompt, params)
    done = s.wait_job(job["id"], timeout=timeout)
    assert done["status"] == "COMPLETED", done
    images = []
    for a in done["result"]["artifacts"]:
        r = s.get(a["url"])
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/png", r.text
        assert hashlib.sha256(r.content).hexdigest() == a["sha256"] and len(r.content) == a["bytes"]
        images.append(r.content)
    return done, images


@pytest.mark.parametrize("model", ["sd-turbo", "stabilityai/sdxl-turbo"])
def test_both_variants_make_a_png_of_the_asked_size(srv, model):
    done, images = run_image(srv, model, "a red fox in the snow", width=64, height=48, steps=2, seed=7)
    res = done["result"]
    assert done["type"] == "image"
    assert (res["width"], res["height"], res["steps"], res["seed"], res["num_images"]) == (64, 48, 2, 7, 1)
    assert res["guidance_scale"] == 0 and res["finish_reason"] == "stop" and res["seeds"] == [7]
    assert [a["name"] for a in res["artifacts"]] == ["image-0.png"]
    assert res["images"] == [{"name": "image-0.png", "seed": 7, "bytes": len(images[0])}]
    assert png_size(images[0]) == (64, 48)
    assert len(set(png_rows(images[0]))) > 50, "the image is not uniform"


@pytest.mark.parametrize("model", ["sd-turbo", "stabilityai/sdxl-turbo"])
def test_same_seed_same_bytes_other_seed_or_prompt_other_image(srv, model):
    p = dict(width=32, height=32, steps=3)
    _, a = run_image(srv, model, "a lighthouse", seed=42, **p)
    _, b = run_image(srv, model, "a lighthouse", seed=42, **p)
    _, c = run_image(srv, model, "a lighthouse", seed=43, **p)
    _, d = run_image(srv, model, "a submarine", seed=42, **p)
    assert a == b, "same seed and prompt: byte-identical PNGs"
    assert a != c and a != d
    # Classifier-free guidance (a batch of two through the UNet) is deterministic too, and the
    # negative prompt matters.
    g = dict(p, seed=42, guidance_scale=5.0)
    _, e = run_image(srv, model, "a lighthouse", negative_prompt="fog", **g)
    _, f = run_image(srv, model, "a lighthouse", negative_prompt="fog", **g)
    _, h = run_image(srv, model, "a lighthouse", negative_prompt="boats", **g)
    assert e == f and e != a and e != h


def test_num_images_and_per_image_seeds(srv):
    done, images = run_image(srv, "sd-turbo", "three birds", width=40, height=24, seed=100, num_images=3)
    res = done["result"]
    assert [a["name"] for a in res["artifacts"]] == ["image-0.png", "image-1.png", "image-2.png"]
    assert res["seeds"] == [100, 101, 102] and res["num_images"] == 3
    assert all(png_size(i) == (40, 24) for i in images)
    assert len(set(images)) == 3
    # Image i of a job is the single image of seed + i.
    _, single = run_image(srv, "sd-turbo", "three birds", width=40, height=24, seed=101)
    assert single[0] == images[1]


def test_a_job_without_seed_reports_the_one_it_drew(srv):
    done, images = run_image(srv, "sd-turbo", "a random thing", width=16, height=16)
    seed = done["result"]["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 4294967295
    _, again = run_image(srv, "sd-turbo", "a random thing", width=16, height=16, seed=seed)
    assert again == images


def test_the_showcase_request(srv):
    r = srv.post("/job", json=SHOWCASE)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("QUEUED", "PROCESSING") and job["model"] == SHOWCASE["model"]
    assert job["prompt"] == SHOWCASE["prompt"] and job["type"] == "image"
    done = srv.wait_job(job["id"], timeout=120)
    assert done["status"] == "COMPLETED", done
    res = done["result"]
    assert (res["width"], res["height"], res["steps"], res["guidance_scale"]) == (1024, 1024, 1, 0), res
    raw = srv.get(f"/job/{job['id']}/result")
    assert raw.status_code == 200 and raw.headers["Content-Type"] == "image/png"
    assert png_size(raw.content) == (1024, 1024)
    b64 = srv.get(f"/job/{job['id']}/result", params={"format": "base64"})
    assert b64.status_code == 200, b64.text
    body = b64.json()
    assert body["name"] == "image-0.png" and body["content_type"] == "image/png"
    assert base64.b64decode(body["data"]) == raw.content


def follow(s: Server, job_id: int, out: list, first_progress: threading.Event | None = None) -> None:
    with requests.get(f"{s.url}/job/{job_id}/events", stream=True, timeout=60 * SLOW) as r:
        for name, data in sse_events(r):
            out.append((name, json.loads(data)))
            if name == "progress" and first_progress is not None:
                first_progress.set()
            if name in ("completed", "failed", "cancelled"):
                return


def test_cancel_between_steps_and_progress_per_step(srv):
    # A 1000-step job (minutes) holds the only worker; the 5-step job behind it is followed from
    # the queue, so every one of its progress events is seen.
    long = srv.submit("slow", "a very long job", {"steps": 1000, "width": 1024, "height": 1024, "seed": 1})
    long_events: list = []
    started = threading.Event()
    t_long = threading.Thread(target=follow, args=(srv, long["id"], long_events, started))
    t_long.start()
    short = srv.submit("slow", "a short job", {"steps": 5, "width": 16, "height": 16, "num_images": 2})
    short_events: list = []
    t_short = threading.Thread(target=follow, args=(srv, short["id"], short_events))
    t_short.start()
    assert started.wait(30 * SLOW), "the long job reported its first step"
    t0 = time.monotonic()
    r = srv.post(f"/job/{long['id']}/cancel")
    assert r.status_code in (200, 202), r.text
    done = srv.wait_job(long["id"], timeout=10)
    took = time.monotonic() - t0
    assert done["status"] == "CANCELLED", done
    assert took < 5 * SLOW, f"cancelled after {took:.1f}s"
    assert done["result"]["finish_reason"] == "cancelled" and done["result"]["images"] == []
    progress = [e for n, e in long_events if n == "progress"]
    assert 1 <= len(progress) < 1000 and progress[0]["step"] == 1 and progress[0]["steps"] == 1000
    t_long.join(30 * SLOW)

    t_short.join(60 * SLOW)
    assert srv.job(short["id"])["status"] == "COMPLETED"
    steps = [(e["image"], e["step"], e["steps"]) for n, e in short_events if n == "progress"]
    assert steps == [(i, s, 5) for i in range(2) for s in range(1, 6)], steps


def test_openai_sdk_images_generate(srv):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", http_client=None)
    b64 = client.images.generate(model="stabilityai/sdxl-turbo", prompt="A cat in space", size="64x32", n=2,
                                 response_format="b64_json", extra_body={"seed": 9})
    pngs = [base64.b64decode(d.b64_json) for d in b64.data]
    assert len(pngs) == 2 and all(png_size(p) == (64, 32) for p in pngs) and pngs[0] != pngs[1]
    url = client.images.generate(model="stabilityai/sdxl-turbo", prompt="A cat in space", size="64x32",
                                 response_format="url", extra_body={"seed": 9})
    assert len(url.data) == 1 and url.data[0].url.startswith(srv.url + "/job/")
    fetched = srv.get(url.data[0].url[len(srv.url):])
    assert fetched.status_code == 200 and fetched.content == pngs[0], "same seed, same first image"
    # Each request is a normal job.
    r = srv.post("/v1/images/generations", json={"model": "sd-turbo", "prompt": "x", "size": "16x16", "seed": 3,
                                                  "steps": 2})
    assert r.status_code == 200, r.text
    job = srv.job(int(r.headers["X-Statim-Job-Id"]))
    assert job["type"] == "image" and job["params"] == {"width": 16, "height": 16, "seed": 3, "steps": 2}
    assert base64.b64decode(r.json()["data"][0]["b64_json"]) == srv.get(f"/job/{job['id']}/result").content


def test_bad_params_name_the_field(srv):
    before = srv.jobs()["total"]
    m = "sd-turbo"
    assert_error(srv.submit_raw(m, "x", {"width": 513}), 400, "invalid_request",
                 "'params.width' must be a multiple of 8", param="params.width")
    assert_error(srv.submit_raw(m, "x", {"steps": 0}), 400, "invalid_request",
                 "'params.steps' must be between 1 and", param="params.steps")
    assert_error(srv.submit_raw(m, "x", {"num_images": 9}), 400, "invalid_request",
                 "'params.num_images' must be between 1 and 4", param="params.num_images")
    assert_error(srv.submit_raw(m, "x", {"sampler": "ddim"}), 400, "invalid_request",
                 "unknown field 'params.sampler'", param="params.sampler")
    assert_error(srv.submit_raw(m, "x", {"guidance_scale": 21}), 400, "invalid_request",
                 "'params.guidance_scale' must be between 0 and 20", param="params.guidance_scale")
    assert_error(srv.submit_raw(m, "x", {"seed": -1}), 400, "invalid_request", "'params.seed'", param="params.seed")
    assert_error(srv.submit_raw(m, "x", {"height": "64"}), 400, "invalid_request",
                 "'params.height' must be an integer", param="params.height")
    # The model's own limits (its manifest): 1024 at most here, 50 steps for sdxl-turbo.
    assert_error(srv.submit_raw(m, "x", {"width": 2048}), 400, "invalid_request",
                 "'params.width' must be between 8 and 1024", param="params.width")
    assert_error(srv.submit_raw("stabilityai/sdxl-turbo", "x", {"steps": 51}), 400, "invalid_request",
                 "'params.steps' must be between 1 and 50", param="params.steps")
    # The OpenAI route names the fields as the client wrote them.
    url = "/v1/images/generations"
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "n": 9}), 400, "invalid_request",
                 "'n' must be between 1 and 4", param="n")
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "size": "513x512"}), 400, "invalid_request",
                 "'size' must be a multiple of 8", param="size")
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "size": "big"}), 400, "invalid_request",
                 "'size' must be WIDTHxHEIGHT", param="size")
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "quality": "hd"}), 400, "invalid_request",
                 "unknown field 'quality'", param="quality")
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "response_format": "png"}), 400, "invalid_request",
                 "'response_format' must be b64_json or url", param="response_format")
    assert_error(srv.post(url, json={"model": m}), 400, "invalid_request", "'prompt' is required", param="prompt")
    assert_error(srv.post(url, json={"model": m, "prompt": "x", "steps": 0}), 400, "invalid_request",
                 "'steps' must be between 1 and", param="steps")
    assert srv.jobs()["total"] == before, "no bad request became a job"
    # And the server still serves.
    run_image(srv, m, "still fine", width=8, height=8)


def test_missing_or_broken_exports_are_failed_models_with_the_reason(srv):
    models = srv.models()
    assert models["missing"]["state"] == "failed"
    assert "diffusion export folder not found" in models["missing"]["reason"], models["missing"]
    assert models["no-unet"]["state"] == "failed"
    assert "unet/model.onnx not found" in models["no-unet"]["reason"], models["no-unet"]
    assert models["sd-turbo"]["state"] != "failed" and models["stabilityai/sdxl-turbo"]["state"] != "failed"
    assert_error(srv.submit_raw("missing", "x"), 503, None, "failed to load")
    r = srv.submit_raw("echo", "hello")
    assert r.status_code == 202


def test_models_describe_the_pipeline(srv):
    m = srv.models()["stabilityai/sdxl-turbo"]
    info = json.dumps(m)
    assert "StableDiffusionXLPipeline" in info and "EulerAncestralDiscreteScheduler" in info and "0.13025" in info


REAL = os.environ.get("STATIM_TEST_DIFFUSION_MODEL", "")


@pytest.mark.skipif(not REAL, reason="STATIM_TEST_DIFFUSION_MODEL (a real diffusers ONNX export folder) is not set")
def test_real_export_makes_a_512_image(make_server):
    s = make_server("real")
    s.add_model("real", backend="diffusion", file=REAL, params={"default_width": 512, "default_height": 512})
    s.start(timeout=600)
    assert s.models()["real"]["state"] != "failed", s.models()["real"]
    done, images = run_image(s, "real", "A cat in space", timeout=1800, width=512, height=512, steps=1, seed=1)
    assert png_size(images[0]) == (512, 512)
    assert len(set(png_rows(images[0]))) > 100, "not a uniform image"
