"""Many models in one process: using one model must not slow the others down.

Debian's ggml (llama, whisper) and tesseract are built with OpenMP. libgomp keeps one pool of
threads per thread that opens a parallel region, and once the process holds more OpenMP threads
than cores it stops spinning at barriers for good: every graph node then waits on a futex. Before
the compute budget (docs/compute.md), an LLM of this test's shape ran at 0.44x its solo speed
after one OCR page (and 0.13x for a smaller one), until restart. The budget runs every ggml graph
on one compute thread, so there is one pool whatever the number of models, and every other thread
that calls into such a library (the OCR workers, the model loader) gets no team at all.

The speed is each job's own `tokens_per_s` (decode time only, measured by the server), median of
several jobs, compared with the same model's solo speed in the same process: a ratio, not a
timing. The benchmark with the real figures is bench/multi_model.py.
"""
from __future__ import annotations

import math
import statistics
import struct
import threading
import time
import wave
from pathlib import Path

import pytest

from conftest import SANITIZED, Server, make_fixture, served, shared_models_dir

ONNX = shared_models_dir() / "onnx"
DIGIT = ONNX / "mnist-digits" / "7.jpg"
TESSDATA = shared_models_dir() / "ocr" / "tesseract" / "eng.traineddata"
PAGE = shared_models_dir() / "ocr" / "ocr-test-hello-world.png"
JFK = shared_models_dir() / "audio" / "jfk.wav"


@pytest.fixture(scope="module")
def mid_gguf(tmp_path_factory) -> Path:
    """A random-weight llama of ~9 MB: a step takes about a third of a millisecond on 2 cores, long
    enough to measure and short enough that OpenMP barrier waits show (0.44x before the fix)."""
    return make_fixture("make_tiny_gguf.py", tmp_path_factory.mktemp("gguf") / "mid.gguf",
                        "--n-embd", "256", "--n-layer", "4", "--n-ff", "768", "--vocab-size", "2048")


@pytest.fixture(scope="module")
def srv(tmp_path_factory, mid_gguf, tiny_gguf, tiny_whisper):
    s = Server(tmp_path_factory.mktemp("multi"), name="multi")
    s.add_model("lm", backend="llama", file=str(mid_gguf), parallel=4, params={"n_ctx": 256, "threads": 2})
    s.add_model("lm2", backend="llama", file=str(tiny_gguf), params={"n_ctx": 256, "threads": 2})
    s.add_model("w", backend="whisper", file=str(tiny_whisper), params={"threads": 2})
    if DIGIT.exists():
        s.add_model("mnist", backend="onnx", file=str(ONNX / "mnist-8.onnx"), type="classification",
                    params={"color": "gray", "labels": [str(i) for i in range(10)]})
    if TESSDATA.exists() and PAGE.exists():
        s.add_model("ocr", backend="ocr", file=str(TESSDATA))
    s.add_model("echo")
    s.start(timeout=120)
    yield from served(s)


def llm_speed(srv: Server, n: int = 11) -> float:
    """Median tokens_per_s of n greedy 64-token jobs of "lm", one after another. (Short jobs show
    the defect best: longer ones spend more of each step in attention, less at barriers.)"""
    speeds = []
    for _ in range(n):
        job = srv.submit("lm", "Once upon a time", {"temperature": 0, "max_tokens": 64})
        done = srv.wait_job(job["id"], timeout=60)
        assert done["status"] == "COMPLETED", done
        assert done["result"]["tokens_out"] == 64, done["result"]  # random weights: no early end of text
        speeds.append(done["result"]["tokens_per_s"])
    return statistics.median(speeds)


def upload(srv: Server, model: str, field: str, path: Path) -> dict:
    r = srv.post("/job", data={"model": model}, files={field: (path.name, path.read_bytes(), "application/octet-stream")})
    assert r.status_code == 202, r.text
    return srv.wait_job(r.json()["id"], timeout=120)


def audio(tmp: Path) -> Path:
    """jfk.wav where present, else 3 s of a tone (the random-weight whisper only needs audio)."""
    if JFK.exists():
        return JFK
    path = tmp / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(i / 8))) for i in range(48000)))
    return path


def run_other(srv: Server, model: str) -> None:
    """One job of another kind of model, checked for its real answer where the model is real."""
    if model == "lm2":
        job = srv.wait_job(srv.submit("lm2", "Hello", {"max_tokens": 16})["id"], timeout=60)
        assert job["status"] == "COMPLETED" and job["result"]["tokens_out"] > 0, job
    elif model == "w":
        job = upload(srv, "w", "audio", audio(srv.root))
        assert job["status"] == "COMPLETED" and job["result"]["duration"] > 2.9, job
    elif model == "mnist":
        job = upload(srv, "mnist", "image", DIGIT)
        assert job["status"] == "COMPLETED" and job["result"]["labels"][0]["label"] == "7", job["result"]
    elif model == "ocr":
        job = upload(srv, "ocr", "page", PAGE)
        assert job["status"] == "COMPLETED" and "Hello World" in job["result"]["text"], job["result"]


def test_an_llm_is_as_fast_after_every_other_kind_of_model_ran(srv):
    solo = llm_speed(srv)
    others = [m for m in ("lm2", "w", "mnist", "ocr") if m in srv.models()]
    ratios = {}
    # The defect measured 0.34-0.5 here (every time); without it the ratio is 0.9-1.1, with dips
    # to ~0.78 on a busy VM. 0.7 tells them apart. The defect lasts until restart, so a low figure
    # is measured twice more before it counts: a passing burst of load elsewhere does not fail the
    # test, the defect fails it every time. bench/multi_model.py has the figures on the 135M model.
    floor = 0.55 if SANITIZED else 0.7
    for model in others:
        run_other(srv, model)
        ratios[model] = llm_speed(srv) / solo
        for _ in range(2):
            if ratios[model] >= floor:
                break
            time.sleep(1)  # a burst of load elsewhere passes; the defect does not
            ratios[model] = max(ratios[model], llm_speed(srv) / solo)
    slow = {m: round(r, 2) for m, r in ratios.items() if r < floor}
    assert not slow, f"'lm' ran at {solo:.0f} tokens/s alone; after other models, ratios {ratios}"
    missing = {"mnist", "ocr"} - set(others)
    if missing:
        pytest.skip(f"checked after {others}; the real models for {sorted(missing)} are absent under "
                    f"{shared_models_dir()}")


def test_every_kind_of_model_answers_right_while_an_llm_is_busy(srv):
    """All kinds at once in one process: each answer is still its model's answer, and the LLM's
    jobs all end with their 64 tokens."""
    results: dict[str, dict] = {}

    def llm_load():
        jobs = [srv.submit("lm", f"Story {i}", {"temperature": 0, "max_tokens": 64}) for i in range(8)]
        results["lm"] = [srv.wait_job(j["id"], timeout=120) for j in jobs]

    t = threading.Thread(target=llm_load)
    t.start()
    for model in ("lm2", "w", "mnist", "ocr"):
        if model in srv.models():
            run_other(srv, model)
    t.join()
    assert [j["status"] for j in results["lm"]] == ["COMPLETED"] * 8
    assert all(j["result"]["tokens_out"] == 64 for j in results["lm"])
    # The same prompt, greedy: the text does not depend on what ran beside it.
    again = srv.wait_job(srv.submit("lm", "Story 0", {"temperature": 0, "max_tokens": 64})["id"], timeout=60)
    assert again["result"]["text"] == results["lm"][0]["result"]["text"]


def thread_names(pid: int) -> list[str]:
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:
            pass  # the thread ended while we listed
    return names


def test_ocr_pages_open_no_openmp_team(srv):
    """tesseract's LSTM opens 4-thread OpenMP regions. A page runs single-threaded on its OCR worker
    (core/openmp.h): no team there, and none on the compute thread either, whose team stays the
    size of the largest ggml call (2 threads here). On the compute thread tesseract's teams grew
    its pool to 4 threads, more than this machine's 2 cores while pages ran, ran each page ~10x
    slower, and one page at a time."""
    if "ocr" not in srv.models():
        pytest.skip(f"no tesseract data or page under {shared_models_dir() / 'ocr'}")
    done = srv.wait_job(srv.submit("lm", "Hello", {"max_tokens": 8})["id"], timeout=60)
    assert done["status"] == "COMPLETED", done
    pages = []
    workers = [threading.Thread(target=lambda: pages.append(upload(srv, "ocr", "page", PAGE))) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert [p["status"] for p in pages] == ["COMPLETED"] * 3
    assert all("Hello World" in p["result"]["text"] for p in pages), [p["result"]["text"] for p in pages]
    names = thread_names(srv.proc.pid)
    # The compute thread and its OpenMP team carry the name "compute": the thread and one more
    # (one alone where the budget is one core). Before the fix: 4.
    assert names.count("compute") <= 2, sorted(names)
    assert names.count("run:ocr") == 1, sorted(names)  # its one worker (parallel 1), with no team
