"""Mixed load on one server: the stories260k LLM, Tesseract OCR and YOLOX-Nano (onnx), ~30 jobs of
the three kinds submitted at once from threads. Every job must end COMPLETED with its known answer:
the backends share the process (and its CPU) but not their state."""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, Server, served, shared_models_dir

LLM = shared_models_dir() / "llm" / "stories260K.gguf"
TESSDATA = shared_models_dir() / "ocr" / "tesseract" / "eng.traineddata"
OCR_IMAGE = shared_models_dir() / "ocr" / "ocr-test-hello-world.png"
YOLOX = shared_models_dir() / "onnx" / "yolox_nano.onnx"
DOG = shared_models_dir() / "onnx" / "yolox-test-dog.jpg"

pytestmark = pytest.mark.skipif(not all(p.exists() for p in (LLM, TESSDATA, OCR_IMAGE, YOLOX, DOG)),
                                reason=f"the real LLM, OCR or YOLOX model or samples are missing under {shared_models_dir()}")

GREEDY = ", there was a little girl named Lily. She loved to play outside in the park."


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("mixed"), name="mixed")
    for m in ("stories260k", "ocr-tesseract", "yolox-nano"):
        text = (REPO / "models" / f"{m}.toml").read_text().replace("../../shared/models", str(shared_models_dir()))
        (s.models_dir / f"{m}.toml").write_text(text)
    (s.models_dir / "coco-labels.txt").write_text((REPO / "models" / "coco-labels.txt").read_text())
    s.start(timeout=120)
    models = s.models()
    for m in ("stories260k", "ocr-tesseract", "yolox-nano"):
        assert models[m]["state"] == "ready", models[m]
    yield from served(s)


def test_thirty_mixed_jobs_at_once_all_complete_with_the_right_answers(srv):
    ocr_png, dog_jpg = OCR_IMAGE.read_bytes(), DOG.read_bytes()
    start = threading.Barrier(30)

    def submit(i: int) -> tuple[str, int]:
        kind = ("llm", "ocr", "detect")[i % 3]
        start.wait(timeout=30)  # all 30 requests go out together
        if kind == "llm":
            r = srv.post("/job", json={"model": "stories260k", "prompt": "Once upon a time",
                                       "params": {"temperature": 0, "max_tokens": 24}}, timeout=30)
        elif kind == "ocr":
            r = srv.post("/job", data={"model": "ocr-tesseract"}, files={"page": ("p.png", ocr_png)}, timeout=30)
        else:
            r = srv.post("/job", data={"model": "yolox-nano"}, files={"image": ("d.jpg", dog_jpg)}, timeout=30)
        assert r.status_code == 202, r.text
        return kind, r.json()["id"]

    with ThreadPoolExecutor(30) as pool:
        submitted = list(pool.map(submit, range(30)))
    assert len({id for _, id in submitted}) == 30
    for kind, id in submitted:
        job = srv.wait_job(id, timeout=180)
        assert job["status"] == "COMPLETED", json.dumps(job)[:2000]
        res = job["result"]
        if kind == "llm":
            assert GREEDY.startswith(res["text"]) or res["text"].startswith(GREEDY), res["text"]
            assert res["text"].startswith(", there was a little girl named Lily."), res["text"]
        elif kind == "ocr":
            assert res["text"].strip().startswith("Hello World 2024"), res["text"]
        else:
            labels = [d["label"] for d in res["detections"][:3]]
            assert set(labels) == {"dog", "bicycle", "car"}, res["detections"]
