"""The routes of the original statim-ai-server, as its published request collection calls them
(docs/Insomnia_2024-04-07.json there): POST /job, GET /job/{id}, GET /job, GET /model; and its
own spellings with a trailing slash (its Flask routes were "/job/" and "/model/")."""
from __future__ import annotations

import pytest

from conftest import Server, served

PROMPT = "My name is Maurice and"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("original"), name="original")
    s.add_model("echo", parallel=2)
    s.add_model("tts", backend="tts", type="speech")
    # Not loaded at start, so it is listed without weights: an image model's result type.
    s.add_model("stabilityai/sdxl-turbo", backend="diffusion", type="image", file=str(s.root / "sdxl-turbo-onnx"),
                preload=False)
    s.add_model("broken", backend="llama", file=str(s.root / "no-such.gguf"))
    s.start(timeout=60)
    yield from served(s)


def test_model_lists_the_models_that_can_serve_in_the_original_shape(srv):
    states = {i: m["state"] for i, m in srv.models().items()}
    assert states["broken"] == "failed" and states["stabilityai/sdxl-turbo"] == "unloaded", states
    for path in ("/model", "/model/"):
        r = srv.get(path)
        assert r.status_code == 200, (path, r.text)
        assert r.json() == [{"id": "echo", "result_type": "TEXT"},
                            {"id": "stabilityai/sdxl-turbo", "result_type": "IMAGE"},
                            {"id": "tts", "result_type": "AUDIO"}], (path, r.json())


def test_the_collection_in_order(srv):
    r = srv.post("/job", json={"prompt": PROMPT, "model": "echo"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["prompt"] == PROMPT and job["model"] == "echo" and job["status"] in ("QUEUED", "PROCESSING"), job
    done = srv.wait_job(job["id"])
    assert done["status"] == "COMPLETED" and done["result"] == {"text": PROMPT}, done
    listed = {}
    for path in ("/job", "/job/", "/job/?limit=5"):
        r = srv.get(path)
        assert r.status_code == 200, (path, r.text)
        listed[path] = r.json()
        assert [j["id"] for j in r.json()["jobs"]][:1] == [job["id"]], (path, r.json())
        assert r.json()["jobs"][0]["prompt"] == PROMPT
    assert listed["/job"] == listed["/job/"]
    assert srv.get(f"/job/{job['id']}").json()["result"] == {"text": PROMPT}


def test_trailing_slash_keeps_the_list_queries_and_their_errors(srv):
    r = srv.get("/job/?status=sleeping")
    assert r.status_code == 400 and "query parameter 'status' must be one of" in r.json()["error"]["message"], r.text
    r = srv.get("/models/")
    assert r.status_code == 200 and {m["id"] for m in r.json()["models"]} >= {"echo", "tts", "broken"}, r.text
    r = srv.get("/model/?verbose=1")
    assert r.status_code == 400 and "verbose" in r.json()["error"]["message"], r.text
