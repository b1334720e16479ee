"""The ocr backend (Tesseract) and input files: multipart and base64 uploads, content-type
sniffing, per-model size limits, and the known answer on the real English model."""
import base64
import hashlib

import pytest

from conftest import assert_error, shared_models_dir

TESSDATA = shared_models_dir() / "ocr" / "tesseract" / "eng.traineddata"
IMAGE = shared_models_dir() / "ocr" / "ocr-test-hello-world.png"

pytestmark = pytest.mark.skipif(not TESSDATA.exists() or not IMAGE.exists(),
                                reason=f"the real Tesseract model or sample is missing under {shared_models_dir()}")


@pytest.fixture
def server(make_server):
    s = make_server("ocr")
    s.add_model("ocr", backend="ocr", file=str(TESSDATA), max_input_bytes=200_000)
    s.add_model("echo")
    s.start(timeout=60)
    return s


def test_reads_the_sample_exactly_from_a_multipart_upload(server):
    data = IMAGE.read_bytes()
    r = server.post("/job", data={"model": "ocr"}, files={"page": ("scan.png", data, "application/octet-stream")})
    assert r.status_code == 202, r.text
    job = server.wait_job(r.json()["id"])
    assert job["status"] == "COMPLETED", job
    assert job["type"] == "ocr"
    assert job["inputs"] == [{"name": "page", "content_type": "image/png", "bytes": len(data),
                              "sha256": hashlib.sha256(data).hexdigest(), "url": f"/job/{job['id']}/inputs/page"}]
    # The uploaded page itself, as stored, served as data (never as a page of this origin).
    page = server.get(job["inputs"][0]["url"])
    assert page.status_code == 200 and page.content == data
    assert page.headers["Content-Type"] == "image/png"
    assert page.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    missing = server.get(f"/job/{job['id']}/inputs/nope")
    assert missing.status_code == 404
    assert f"job {job['id']} has no input 'nope'" in missing.json()["error"]["message"]
    res = job["result"]
    assert res["text"].strip() == "Hello World 2024\nInference server"
    assert [line["text"] for line in res["lines"]] == ["Hello World 2024", "Inference server"]
    words = {w["text"]: w for w in res["words"]}
    assert set(words) == {"Hello", "World", "2024", "Inference", "server"}
    for w in res["words"]:
        b = w["box"]
        assert w["confidence"] > 80, w
        assert 0 <= b["x"] and b["x"] + b["width"] <= res["width"] and 0 <= b["y"] and b["y"] + b["height"] <= res["height"]
    assert words["Hello"]["box"]["x"] < words["World"]["box"]["x"], "boxes are in image coordinates"
    # The server's log (JSON lines) carries no line of Tesseract's own ("Estimating resolution as
    # 445" went to stderr for every page without a DPI).
    stray = [line for line in server.log_text().splitlines() if line and not line.startswith("{")]
    assert stray == [], stray[:5]


def test_base64_inputs_give_the_same_answer(server):
    body = {"model": "ocr", "inputs": {"page": base64.b64encode(IMAGE.read_bytes()).decode()}, "priority": 3}
    r = server.post("/job", json=body)
    assert r.status_code == 202, r.text
    job = server.wait_job(r.json()["id"])
    assert job["result"]["text"].strip() == "Hello World 2024\nInference server"
    assert job["priority"] == 3
    # A completed OCR job's result is its JSON: there is no binary artifact to fetch.
    assert_error(server.get(f"/job/{job['id']}/result"), 404, "not_found", "has no artifacts")
    assert_error(server.get(f"/job/{job['id']}/artifacts/x"), 404, "not_found", "has no artifacts")


def test_type_is_told_by_content_not_by_name(server):
    r = server.post("/job", data={"model": "ocr"}, files={"page": ("photo.png", b"just some text, not a picture")})
    err = assert_error(r, 415, "unsupported_media_type",
                       ["input 'page' is application/octet-stream", "reads image/png, image/jpeg"])
    assert err["param"] == "inputs.page"


def test_bad_inputs_are_refused_with_the_field_named(server):
    before = server.jobs()["total"]
    assert_error(server.post("/job", json={"model": "ocr"}), 400, "invalid_request", "'prompt' is required")
    assert_error(server.post("/job", json={"model": "ocr", "prompt": "read this"}), 400, "invalid_request",
                 "needs an input file (image/png, image/jpeg)")
    assert_error(server.post("/job", json={"model": "ocr", "inputs": {"page": "%%%"}}), 400, "invalid_request",
                 "'inputs.page' must be a base64 string")
    assert_error(server.post("/job", json={"model": "ocr", "inputs": {"../etc/passwd": "aGk="}}), 400,
                 "invalid_request", "input name '../etc/passwd' must be 1..64 letters")
    assert_error(server.post("/job", json={"model": "ocr", "inputs": []}), 400, "invalid_request", "'inputs' must be an object")
    assert_error(server.post("/job", data={"model": "ocr"}, files={"page": ("empty.png", b"")}), 400,
                 "invalid_request", "input 'page' is empty")
    png = IMAGE.read_bytes()
    assert_error(server.post("/job", json={"model": "echo", "prompt": "x", "inputs": {"f": base64.b64encode(png).decode()}}),
                 400, "invalid_request", "model 'echo' (completion jobs) takes no input files")
    big = png + b"\0" * 200_000
    assert_error(server.post("/job", data={"model": "ocr"}, files={"page": ("big.png", big)}), 413, "payload_too_large",
                 ["input 'page' has", "at most 200000 (max_input_bytes)"])
    assert server.jobs()["total"] == before, "no refused request stored a job"


def test_a_corrupt_image_fails_the_job_with_a_reason_and_the_model_keeps_working(server):
    corrupt = IMAGE.read_bytes()[:200]  # a PNG signature and header, then nothing
    r = server.post("/job", data={"model": "ocr"}, files={"page": ("cut.png", corrupt)})
    assert r.status_code == 202, r.text
    job = server.wait_job(r.json()["id"])
    assert job["status"] == "FAILED", job
    assert "could not be decoded as an image" in job["error"], job["error"]
    ok = server.post("/job", data={"model": "ocr"}, files={"page": ("scan.png", IMAGE.read_bytes())})
    assert server.wait_job(ok.json()["id"])["result"]["text"].startswith("Hello World 2024")


def test_purging_an_ended_job_removes_it_and_its_files(server):
    data = IMAGE.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    blob = server.data_dir / "files" / sha[:2] / sha
    first = server.post("/job", data={"model": "ocr"}, files={"page": ("scan.png", data)}).json()
    second = server.post("/job", data={"model": "ocr"}, files={"page": ("again.png", data)}).json()
    for j in (first, second):
        assert server.wait_job(j["id"])["status"] == "COMPLETED"
    assert blob.read_bytes() == data

    # Without purge, DELETE cancels (and an ended job stays as it was).
    r = server.request("DELETE", f"/job/{first['id']}")
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    assert_error(server.request("DELETE", f"/job/{first['id']}?purge=yes"), 400, "invalid_request",
                 "query parameter 'purge' must be true or false (got 'yes')")
    assert_error(server.request("DELETE", f"/job/{first['id']}?purge=true&force=1"), 400, "invalid_request",
                 "unknown query parameter 'force'")

    r = server.request("DELETE", f"/job/{first['id']}?purge=true")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": first["id"], "deleted": True, "files_removed": 0}, "the other job still reads the image"
    assert blob.exists()
    assert_error(server.get(f"/job/{first['id']}"), 404, "not_found", f"job {first['id']} not found")
    assert_error(server.request("DELETE", f"/job/{first['id']}?purge=true"), 404, "not_found", "not found")

    r = server.request("DELETE", f"/job/{second['id']}?purge=true")
    assert r.json() == {"id": second["id"], "deleted": True, "files_removed": 1}, r.text
    assert not blob.exists(), "the last job that read the image took it with it"


def test_a_job_still_queued_or_running_is_not_purged(server):
    running = server.submit("echo", "slow", {"delay_ms": 60000})
    queued = server.submit("echo", "waits", {"delay_ms": 1})
    server.wait_running(running["id"])
    for job, status in ((running, "PROCESSING"), (queued, "QUEUED")):
        assert_error(server.request("DELETE", f"/job/{job['id']}?purge=true"), 409, "conflict",
                     f"job {job['id']} is {status}: only an ended job can be deleted; cancel it first "
                     f"(POST /job/{job['id']}/cancel)")
    assert server.request("DELETE", f"/job/{running['id']}").json()["status"] in ("PROCESSING", "CANCELLED")
    assert server.wait_job(running["id"])["status"] == "CANCELLED"
    assert server.wait_job(queued["id"])["status"] == "COMPLETED"
    for job in (running, queued):
        assert server.request("DELETE", f"/job/{job['id']}?purge=true").json()["deleted"] is True
