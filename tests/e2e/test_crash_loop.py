"""The short form of bench/crash_loop.py: a few kill -9 cycles at random moments under submission
load, then every job the server answered 2xx for exists and ends (bench/README.md has the
50-cycle figure)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import REPO, SLOW, statim_bin


def test_no_accepted_job_is_lost_across_kill9_cycles(tmp_path):
    out = tmp_path / "summary.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "crash_loop.py"), "--cycles", "5", "--seed", "7",
                        "--json", str(out)], capture_output=True, text=True, timeout=600 * SLOW,
                       env={**os.environ, "STATIM_BIN": str(statim_bin())})
    assert out.exists(), r.stdout + r.stderr
    summary = json.loads(out.read_text())
    assert summary["accepted"] > 20, summary  # the load really ran between the kills
    assert summary["lost"] == [] and summary["never_ended"] == [], summary
    assert sum(summary["ends"].values()) == summary["accepted"], summary
    assert r.returncode == 0, r.stdout + r.stderr
