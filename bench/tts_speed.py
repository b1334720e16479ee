#!/usr/bin/env python3
"""Text-to-speech throughput of the tts backend (espeak-ng + libsndfile): seconds of audio per
second of wall time, by speaking rate and by output format. Starts its own server (fresh data dir).

    scripts/in-env python3 bench/tts_speed.py [path/to/statim]    (default build/statim)
"""
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))
if len(sys.argv) > 1:
    os.environ["STATIM_BIN"] = sys.argv[1]
from conftest import Server  # noqa: E402

SENTENCES = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single "
             "step. Every good boy deserves fudge, and every cat likes fish. ")


def main() -> None:
    s = Server(pathlib.Path(tempfile.mkdtemp()) / "bench", name="tts-bench")
    s.add_model("tts", backend="tts", params={"voice": "en-us", "max_chars": 12000})
    s.start(timeout=60)
    try:
        def run(text, params):
            t = time.monotonic()
            job = s.wait_job(s.submit("tts", text, params)["id"], timeout=600)
            assert job["status"] == "COMPLETED", job
            return job["result"], time.monotonic() - t

        long_text = SENTENCES * (12000 // len(SENTENCES))
        print(f"| text | speed (wpm) | format | audio (s) | synthesis (ms) | wall (s) | x real time |")
        print("|---|---|---|---|---|---|---|")
        for speed in (80, 175, 450):
            r, wall = run(long_text, {"speed": speed})
            print(f"| {len(long_text)} chars | {speed} | wav | {r['duration']:.1f} | {r['synthesis_ms']:.0f} | "
                  f"{wall:.2f} | {r['duration'] / wall:.0f} |")
        for fmt in ("wav", "flac", "ogg", "opus", "mp3", "pcm"):
            r, wall = run(SENTENCES, {"format": fmt})
            print(f"| {len(SENTENCES)} chars | 175 | {fmt} ({r['artifacts'][0]['bytes']} bytes) | {r['duration']:.2f} | "
                  f"{r['synthesis_ms']:.0f} | {wall:.2f} | {r['duration'] / wall:.0f} |")
    finally:
        s.cleanup()


if __name__ == "__main__":
    main()
