"""The onnx backend (ONNX Runtime) on the real models under ../shared/models/onnx, through the
manifests the project ships in models/: MNIST classification, YOLOX-Nano and UltraFace detection,
tensor jobs checked against python3-onnxruntime, and bad inputs and manifests."""
import base64
import json
import wave
from pathlib import Path

import pytest

from conftest import REPO, Server, assert_error, served, shared_models_dir

ONNX = shared_models_dir() / "onnx"
DIGITS = ONNX / "mnist-digits"
DOG = ONNX / "yolox-test-dog.jpg"
FACES = ONNX / "ultraface-test-2.jpg"
NEEDED = [ONNX / f for f in ("mnist-8.onnx", "yolox_nano.onnx", "ultraface-version-RFB-320.onnx", "silero_vad.onnx")]
NEEDED += [DOG, FACES, shared_models_dir() / "audio" / "jfk.wav"] + [DIGITS / f"{d}.jpg" for d in (0, 3, 5, 7)]

pytestmark = pytest.mark.skipif(not all(p.exists() for p in NEEDED),
                                reason=f"the real ONNX models or samples are missing under {ONNX}")


def install(s: Server, manifest: str, **replace: str) -> None:
    """Copies models/<manifest>.toml into the server's models dir, pointing at the shared models."""
    text = (REPO / "models" / f"{manifest}.toml").read_text().replace("../../shared/models", str(shared_models_dir()))
    for old, new in replace.items():
        assert old in text, old
        text = text.replace(old, new)
    (s.models_dir / f"{manifest}.toml").write_text(text)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("onnx"), name="onnx")
    for m in ("mnist", "yolox-nano", "ultraface", "silero-vad"):
        install(s, m)
    (s.models_dir / "coco-labels.txt").write_text((REPO / "models" / "coco-labels.txt").read_text())
    mnist = str(ONNX / "mnist-8.onnx")
    s.add_model("mnist-tensor", backend="onnx", file=mnist, type="tensor", params={"task": "tensor"})
    s.add_model("mnist-small", backend="onnx", file=mnist, type="classification", max_input_bytes=1000,
                params={"color": "gray", "max_pixels": 700, "labels": [str(i) for i in range(10)]})
    # Broken manifests: each is a failed model with the reason, while the others serve.
    s.add_model("bad-labels", backend="onnx", file=str(ONNX / "yolox_nano.onnx"), type="detection",
                params={"decoder": "yolox", "color": "bgr", "labels": ["dog", "cat", "car"]})
    s.add_model("bad-input", backend="onnx", file=mnist, type="classification", params={"input": "image"})
    s.add_model("bad-color", backend="onnx", file=mnist, type="classification", params={"color": "cmyk"})
    s.add_model("bad-size", backend="onnx", file=mnist, type="classification", params={"size": [32, 32], "color": "gray"})
    s.add_model("bad-channels", backend="onnx", file=mnist, type="classification", params={"color": "rgb"})
    s.add_model("bad-file", backend="onnx", file=str(DOG), type="tensor")
    s.start(timeout=120)
    yield from served(s)


def run_image(srv: Server, model: str, path: Path, **params) -> dict:
    data = {"model": model}
    if params:
        data["params"] = json.dumps(params)
    r = srv.post("/job", data=data, files={"image": (path.name, path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 202, r.text
    return srv.wait_job(r.json()["id"], timeout=60)


@pytest.mark.parametrize("digit", [0, 3, 5, 7])
def test_mnist_reads_the_digit(srv, digit):
    job = run_image(srv, "mnist", DIGITS / f"{digit}.jpg")
    assert job["status"] == "COMPLETED", job
    assert job["type"] == "classification"
    res = job["result"]
    assert (res["width"], res["height"]) == (28, 28)
    assert len(res["labels"]) == 3, "top_k = 3 from the manifest"
    best = res["labels"][0]
    assert best["label"] == str(digit) and best["index"] == digit, res
    assert best["score"] > 0.9, "softmax-ed probabilities"
    assert abs(sum(l["score"] for l in res["labels"]) - 1.0) < 0.05
    assert res["labels"][0]["score"] >= res["labels"][1]["score"] >= res["labels"][2]["score"]


def test_top_k_per_job_and_base64_input(srv):
    body = {"model": "mnist", "inputs": {"digit": base64.b64encode((DIGITS / "7.jpg").read_bytes()).decode()},
            "params": {"top_k": 10}}
    r = srv.post("/job", json=body)
    assert r.status_code == 202, r.text
    res = srv.wait_job(r.json()["id"])["result"]
    assert sorted(l["index"] for l in res["labels"]) == list(range(10))
    assert res["labels"][0]["label"] == "7"


def test_yolox_finds_dog_bicycle_and_car_where_they_are(srv):
    job = run_image(srv, "yolox-nano", DOG)
    assert job["status"] == "COMPLETED", job
    res = job["result"]
    w, h = res["width"], res["height"]
    assert (w, h) == (768, 576)
    found = {}
    for d in res["detections"]:
        b = d["box"]
        assert 0 <= b["x"] and b["x"] + b["width"] <= w + 0.01 and 0 <= b["y"] and b["y"] + b["height"] <= h + 0.01, d
        found.setdefault(d["label"], d)  # highest score first
    for label in ("dog", "bicycle", "car"):
        assert label in found, res["detections"]
        assert found[label]["score"] > 0.8, found[label]
    top3 = {d["label"] for d in res["detections"][:3]}
    assert top3 == {"dog", "bicycle", "car"}, res["detections"]
    assert found["dog"]["index"] == 16 and found["car"]["index"] == 2
    # The dog sits in the lower left of the picture, the car in the upper right, the bicycle across the middle.
    cx = lambda d: d["box"]["x"] + d["box"]["width"] / 2
    cy = lambda d: d["box"]["y"] + d["box"]["height"] / 2
    assert cx(found["dog"]) < w / 2 and cy(found["dog"]) > h / 2, found["dog"]
    assert 100 < found["dog"]["box"]["width"] < 300 and 250 < found["dog"]["box"]["height"] < 400, found["dog"]
    assert cx(found["car"]) > w / 2 and cy(found["car"]) < h / 3, found["car"]
    assert found["bicycle"]["box"]["width"] > w / 2, found["bicycle"]


def test_detection_params_change_the_answer(srv):
    strict = run_image(srv, "yolox-nano", DOG, score_threshold=0.82, max_detections=5)["result"]
    assert {d["label"] for d in strict["detections"]} == {"dog"}, strict["detections"]


def test_ultraface_finds_several_faces(srv):
    job = run_image(srv, "ultraface", FACES)
    assert job["status"] == "COMPLETED", job
    res = job["result"]
    faces = res["detections"]
    assert len(faces) >= 4, faces
    for f in faces:
        b = f["box"]
        assert f["label"] == "face" and f["index"] == 0 and f["score"] >= 0.7, f
        assert 0 <= b["x"] and b["x"] + b["width"] <= res["width"] + 0.01, f
        assert 0 <= b["y"] and b["y"] + b["height"] <= res["height"] + 0.01, f
        assert 20 < b["width"] < res["width"] / 2 and 20 < b["height"] < res["height"], f
    # NMS: no two faces are the same face.
    xs = sorted(f["box"]["x"] for f in faces)
    assert all(b - a > 30 for a, b in zip(xs, xs[1:])), xs


def reference(model: Path, feeds: dict) -> dict:
    import numpy as np
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    return {o.name: np.asarray(v) for o, v in zip(sess.get_outputs(), outs)}


def assert_matches(result: dict, ref: dict) -> None:
    import numpy as np
    assert set(result["outputs"]) == set(ref), result["outputs"].keys()
    for name, want in ref.items():
        got = result["outputs"][name]
        assert got["shape"] == list(want.shape), (name, got["shape"], want.shape)
        assert got["dtype"] == "float32"
        np.testing.assert_allclose(np.array(got["data"], dtype=np.float32).reshape(want.shape), want,
                                   rtol=1e-4, atol=1e-5, err_msg=name)


def test_tensor_job_on_silero_vad_matches_onnxruntime(srv):
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    with wave.open(str(shared_models_dir() / "audio" / "jfk.wav")) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    chunk = (pcm[16000:16512].astype(np.float32) / 32768.0).reshape(1, 512)
    state = np.zeros((2, 1, 128), dtype=np.float32)
    prompt = {"input": {"shape": [1, 512], "data": chunk.ravel().tolist()},
              "state": {"shape": [2, 1, 128], "data": state.ravel().tolist()},
              "sr": {"shape": [], "data": [16000], "dtype": "int64"}}
    job = srv.submit("silero-vad", json.dumps(prompt))
    done = srv.wait_job(job["id"])
    assert done["status"] == "COMPLETED", done
    assert done["type"] == "tensor"
    ref = reference(ONNX / "silero_vad.onnx", {"input": chunk, "state": state, "sr": np.array(16000, dtype=np.int64)})
    assert_matches(done["result"], ref)
    assert done["result"]["outputs"]["output"]["shape"] == [1, 1]
    assert done["result"]["outputs"]["stateN"]["shape"] == [2, 1, 128]


def test_tensor_job_on_mnist_via_params_inputs(srv):
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, size=(1, 1, 28, 28)).astype(np.float32)
    params = {"inputs": {"Input3": {"shape": [1, 1, 28, 28], "data": x.ravel().tolist()}}}
    done = srv.wait_job(srv.submit("mnist-tensor", "random pixels", params=params)["id"])
    assert done["status"] == "COMPLETED", done
    assert_matches(done["result"], reference(ONNX / "mnist-8.onnx", {"Input3": x}))


def test_wrong_tensors_are_refused_naming_the_input(srv):
    before = srv.jobs()["total"]
    good = {"shape": [1, 1, 28, 28], "data": [0.0] * 784}
    assert_error(srv.submit_raw("mnist-tensor", json.dumps({"Input3": {"shape": [1, 28, 28], "data": [0.0] * 784}})),
                 400, "invalid_request", "input 'Input3' has shape [1, 28, 28]; the model takes [1, 1, 28, 28]",
                 param="prompt.Input3.shape")
    assert_error(srv.submit_raw("mnist-tensor", json.dumps({"image": good})), 400, "invalid_request",
                 "unknown input 'image' (model inputs: Input3)", param="prompt.image")
    assert_error(srv.submit_raw("mnist-tensor", json.dumps({"Input3": {"shape": [1, 1, 28, 28], "data": [1.0]}})),
                 400, "invalid_request", "'prompt.Input3.data' has 1 values; shape [1, 1, 28, 28] needs 784")
    assert_error(srv.submit_raw("mnist-tensor", "not json"), 400, "invalid_request", "'prompt' must be JSON",
                 param="prompt")
    assert_error(srv.submit_raw("silero-vad", json.dumps({"input": {"shape": [1, 4], "data": [0, 0, 0, 0]}})),
                 400, "invalid_request", "input 'state' is missing (model inputs: input, state, sr)")
    assert_error(srv.submit_raw("mnist-tensor", "x", params={"inputs": {"Input3": good}, "top_k": 3}), 400,
                 "invalid_request", "unknown field 'params.top_k' (allowed: inputs)")
    assert srv.jobs()["total"] == before, "no refused request stored a job"


def test_bad_image_inputs(srv):
    before = srv.jobs()["total"]
    digit = (DIGITS / "3.jpg").read_bytes()
    r = srv.post("/job", data={"model": "mnist"}, files={"image": ("digit.png", b"a text file, not a digit\n")})
    assert_error(r, 415, "unsupported_media_type", ["input 'image' is", "reads image/png, image/jpeg"], param="inputs.image")
    assert_error(srv.post("/job", data={"model": "mnist"}, files={"image": ("empty.jpg", b"")}), 400,
                 "invalid_request", "input 'image' is empty")
    assert_error(srv.post("/job", data={"model": "mnist-small"}, files={"image": ("big.jpg", digit + b"\0" * 1000)}),
                 413, "payload_too_large", "at most 1000 (max_input_bytes)")
    assert_error(srv.post("/job", data={"model": "mnist-small"}, files={"image": ("d.jpg", digit)}), 413,
                 "payload_too_large", "input 'image' is 28x28 pixels; model 'mnist-small' takes at most 700 pixels (max_pixels)")
    assert_error(srv.post("/job", data={"model": "mnist"}, files=[("a", ("a.jpg", digit)), ("b", ("b.jpg", digit))]),
                 400, "invalid_request", "a classification job takes one image; got 2 files")
    assert_error(srv.submit_raw("mnist", "a digit"), 400, "invalid_request", "needs an input file (image/png, image/jpeg)")
    assert_error(srv.post("/job", data={"model": "mnist", "params": json.dumps({"top_k": 0})},
                          files={"image": ("d.jpg", digit)}), 400, "invalid_request", "'params.top_k' must be between 1 and 1000")
    assert_error(srv.post("/job", data={"model": "yolox-nano", "params": json.dumps({"nms_iou": 2})},
                          files={"image": ("d.jpg", digit)}), 400, "invalid_request", "'params.nms_iou' must be between 0 and 1")
    assert srv.jobs()["total"] == before, "no refused request stored a job"


def test_a_corrupt_image_fails_the_job_with_a_reason(srv):
    cut = DOG.read_bytes()[:300]  # a JPEG header, then nothing
    r = srv.post("/job", data={"model": "yolox-nano"}, files={"image": ("cut.jpg", cut)})
    assert r.status_code == 202, r.text
    job = srv.wait_job(r.json()["id"])
    assert job["status"] == "FAILED", job
    assert "input 'image' (image/jpeg): the image could not be decoded" in job["error"], job["error"]
    assert run_image(srv, "yolox-nano", DOG)["status"] == "COMPLETED", "the model keeps working"


def test_bad_manifests_are_failed_models_with_the_reason(srv):
    models = srv.models()
    for ok in ("mnist", "yolox-nano", "ultraface", "silero-vad", "mnist-tensor", "mnist-small"):
        assert models[ok]["state"] == "ready", models[ok]
    reasons = {
        "bad-labels": "params.labels has 3 labels but the model has 80 classes",
        "bad-input": "params.input 'image' is not an input of the model (inputs: Input3)",
        "bad-color": "'params.color' must be one of gray, rgb, bgr (got 'cmyk')",
        "bad-size": "params.size is [32, 32] but input 'Input3' is [1, 1, 28, 28]",
        "bad-channels": "has 1 channels (NCHW) but params.color gives 3",
        "bad-file": "the onnx backend needs file = an .onnx model",
    }
    for id, reason in reasons.items():
        assert models[id]["state"] == "failed", models[id]
        assert reason in models[id]["reason"], models[id]
    assert_error(srv.submit_raw("bad-color", "x"), 503, None, "model 'bad-color' failed to load")


def test_models_lists_the_tensors(srv):
    m = srv.models()["yolox-nano"]
    assert m["type"] == "detection"
    info = json.dumps(m)
    assert '"images"' in info and "3549" in info, m
