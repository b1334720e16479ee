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


def read_only_start(tmp_path, small_fs, name: str, unclean: bool):
    """A server that stored jobs (one done, one running, one queued behind it), then stopped
    (cleanly, or killed), and starts again on the same data dir remounted read-only."""
    s = Server(tmp_path / f"srv-{name}", name=name,
               env={"STATIM_JOBS_LEASE_SECONDS": "1", "STATIM_JOBS_SHUTDOWN_GRACE_SECONDS": "0.2"})
    s.data_dir = small_fs / "data"
    s.add_model("echo", parallel=1, max_queue=100)
    s.start()
    done = s.post("/job", json={"model": "echo", "prompt": "kept"}).json()["id"]
    assert s.wait_job(done)["status"] == "COMPLETED"
    running = s.post("/job", json={"model": "echo", "prompt": "was running", "params": {"delay_ms": 3000}}).json()["id"]
    wait_until(lambda: s.job(running)["status"] == "PROCESSING", 10 * SLOW, "the long job to start")
    queued = s.post("/job", json={"model": "echo", "prompt": "was queued"}).json()["id"]
    if unclean:
        s.kill9()
    else:
        assert s.stop() == 0
    remount(small_fs, "ro")
    s.start()
    return s, done, running, queued


@pytest.mark.parametrize("unclean", [False, True], ids=["after-a-clean-stop", "after-kill-9"])
def test_read_only_data_dir_serves_reads_refuses_writes_then_recovers(tmp_path, small_fs, unclean):
    """A data dir that is read-only when the server starts (a read-only mount, a volume mounted
    :ro by mistake): it starts, serves what is stored, says why it is not ready, answers writes
    with 503 storage_unavailable (nothing stored, nothing lost), and takes writes - and runs the
    interrupted and queued jobs - once the data dir is writable again, without a restart. (A data
    dir cannot turn read-only under the running server here: the kernel refuses to remount a
    filesystem read-only while files on it are open for writing.)"""
    s, done, running, queued = read_only_start(tmp_path, small_fs, "readonly", unclean)
    try:
        check_read_only_then_writable(s, small_fs, done, running, queued)
    finally:
        s.cleanup()


def check_read_only_then_writable(s: Server, small_fs, done: int, running: int, queued: int) -> None:
    try:
        log = s.log_text()
        assert "the data dir cannot be written: serving what is stored" in log, log[-2000:]
        # Reads: every stored job, as it was stored.
        assert s.job(done)["result"] == {"text": "kept"}
        assert s.job(queued)["status"] == "QUEUED"
        assert s.jobs()["total"] == 3
        code, body = readyz(s)
        assert code == 503 and body["store"] == "not_writable", body
        assert any("is the data dir read-only or failing?" in x for x in body["reasons"]), body
        assert s.get("/healthz").status_code == 200
        # Writes: refused with the reason; nothing is stored.
        r = s.post("/job", json={"model": "echo", "prompt": "while read-only"})
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "storage_unavailable" and "read-only" in err["message"], err
        assert r.headers["Retry-After"] == "10"
        assert s.post(f"/job/{queued}/cancel").status_code == 503
        assert s.jobs()["total"] == 3
    finally:
        remount(small_fs, "rw")
    wait_until(lambda: readyz(s)[0] == 200, 15 * SLOW, "/readyz once the data dir is writable")
    after = s.post("/job", json={"model": "echo", "prompt": "after"})
    assert after.status_code == 202, after.text
    assert s.wait_job(after.json()["id"], timeout=30 * SLOW)["result"] == {"text": "after"}
    assert s.wait_job(queued, timeout=30 * SLOW)["result"] == {"text": "was queued"}
    # The job the last run was running runs again (requeued once its lease has expired).
    again = s.wait_job(running, timeout=30 * SLOW)
    assert again["result"] == {"text": "was running"} and again["attempts"] == 2, again
    assert s.jobs()["total"] == 4
    assert "the data dir takes writes again" in s.log_text()


def test_read_only_data_dir_without_a_database_is_refused_clearly(tmp_path, small_fs):
    """Nothing to serve and nowhere to write: the server refuses to start, saying why."""
    remount(small_fs, "ro")
    try:
        s = Server(tmp_path / "srv-empty-ro", name="empty-ro")
        s.data_dir = small_fs
        s.add_model("echo")
        with pytest.raises(AssertionError, match="exited"):
            s.start(timeout=10 * SLOW)
        log = s.log_text()
        assert "cannot open the job store" in log and "is the data dir read-only or failing?" in log, log[-2000:]
    finally:
        remount(small_fs, "rw")
