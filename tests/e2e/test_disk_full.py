"""A data dir whose filesystem fills up, or turns read-only, under a running server: clear errors
(507 insufficient_storage / 503 storage_unavailable, with a message and Retry-After), /readyz
down with the reason, reads still served, no job that was answered 202 lost, and everything well
again once space (or the write permission) comes back - without a restart.

The data dir is a small tmpfs mounted for the test: that needs root in a private mount namespace,
which make test's build environment is; elsewhere the tests are skipped, saying so."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import SLOW, Server, wait_until

BIG = "x" * 20_000  # a prompt that fills pages quickly


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}): needs root in a mount namespace "
                    "(make test's build environment)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def remount(mnt: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True)


@pytest.fixture
def server(tmp_path, small_fs):
    s = Server(tmp_path / "srv", name="diskfull", env={"STATIM_JOBS_LEASE_SECONDS": "1"})
    s.data_dir = small_fs / "data"  # the database and files on the small filesystem; logs elsewhere
    s.add_model("echo", parallel=2, max_queue=100000)
    s.start()
    yield s
    s.cleanup()


def readyz(s: Server) -> tuple[int, dict]:
    r = s.get("/readyz")
    return r.status_code, r.json()


def fill_until_refused(s: Server, accepted: list[int]):
    for _ in range(2000):
        r = s.post("/job", json={"model": "echo", "prompt": BIG})
        if r.status_code != 202:
            return r
        accepted.append(r.json()["id"])
    pytest.fail("3 MB never filled up")


def test_full_disk_then_space_again(server, small_fs):
    accepted: list[int] = []
    r = fill_until_refused(server, accepted)
    assert accepted, "the first jobs fit"
    assert r.status_code == 507, r.text
    err = r.json()["error"]
    assert err["code"] == "insufficient_storage", err
    assert "disk is full" in err["message"] and "free some space and retry" in err["message"], err
    assert r.headers["Retry-After"] == "10"

    code, body = readyz(server)
    assert code == 503 and any("the store cannot write: the data dir's disk is full" in x for x in body["reasons"]), body
    # Reads are served meanwhile.
    first = server.get(f"/job/{accepted[0]}")
    assert first.status_code == 200 and first.json()["prompt"] == BIG
    assert server.get("/healthz").status_code == 200

    remount(small_fs, "size=64m")
    wait_until(lambda: readyz(server)[0] == 200, 15 * SLOW, "/readyz once space is back")
    after = server.post("/job", json={"model": "echo", "prompt": "after the disk was full"})
    assert after.status_code == 202, after.text
    # No job that was answered 202 is lost: each ends, and as it should.
    for job_id in accepted + [after.json()["id"]]:
        done = server.wait_job(job_id, timeout=60 * SLOW)
        assert done["status"] == "COMPLETED", done
    assert server.wait_job(accepted[-1])["result"] == {"text": BIG}
    assert server.jobs(limit=1)["total"] == len(accepted) + 1


def test_read_only_data_dir_at_start_is_refused_clearly_and_loses_nothing(tmp_path, small_fs):
    """A data dir that is read-only when the server starts: it refuses to start, saying so (it does
    not yet serve reads in that state); once writable, it starts and every job is there. (A data
    dir cannot turn read-only under the running server here: the kernel refuses to remount a
    filesystem read-only while files on it are open for writing.)"""
    s = Server(tmp_path / "srv-ro", name="readonly")
    s.data_dir = small_fs / "data"
    s.add_model("echo")
    s.start()
    job = s.post("/job", json={"model": "echo", "prompt": "kept"}).json()["id"]
    assert s.wait_job(job)["status"] == "COMPLETED"
    s.stop()
    remount(small_fs, "ro")
    try:
        with pytest.raises(AssertionError, match="exited"):
            s.start(timeout=10 * SLOW)
        log = s.log_text()
        assert "cannot open the job store" in log and "is the data dir read-only or failing?" in log, log[-2000:]
    finally:
        remount(small_fs, "rw")
    s.start()
    assert s.job(job)["result"] == {"text": "kept"}
    s.cleanup()
