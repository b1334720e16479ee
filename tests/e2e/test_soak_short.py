"""The short form of bench/soak.py (make soak runs 30 minutes and plots RSS and open files): half a
minute of the same mixed load - LLM streams with hang-ups, OCR, detection, TTS with webhooks to a
flaky receiver, cancels, bursts into 429 - then every accepted job ends, exactly once, with
exactly one terminal webhook event per job that asked for webhooks."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, SLOW, statim_bin


def test_mixed_load_ends_every_job_once(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.5", "--seed", "11",
                        "--png", "", "--json", str(out)], capture_output=True, text=True, timeout=900 * SLOW,
                       env={**os.environ, "STATIM_BIN": str(statim_bin())})
    assert out.exists(), r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(out.read_text())
    assert s["accepted"] > 50 and s["stuck"] == [] and s["bad_webhooks"] == {}, {k: s[k] for k in s if k != "samples"}
    assert s["stored"] == s["accepted"] == sum(s["ends"].values())
    assert s["by_kind"].get("stream-hangup COMPLETED", 0) <= 1, s["by_kind"]  # a hang-up cancels its job
    assert s["counts"].get("429", 0) > 0, s["counts"]  # the bursts did meet a full queue
    assert s["webhook_requests"] > 0
