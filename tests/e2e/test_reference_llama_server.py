"""Reference equality: statim and Debian's llama-server run the same libllama on the same GGUF, so
greedy text must be identical, for one request at a time and for 8 at once (statim parallel=8
against llama-server -np 8, both with 512 context tokens per sequence). Also: chunked prompts,
chat through the ChatML template, seeded sampling and embeddings.

A mismatch names the first differing token (llama-server's token ids, detokenized one by one).
Skipped where llama-server is not installed; the stories260K cases skip where that file is absent."""
from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import (SLOW, Server, fail_on_sanitizer_reports, free_port, iso_micros, stories_path,
                      wait_until)

N_CTX = 512  # per sequence, both servers
PARALLEL = 8
N_PREDICT = 24
PROMPTS = ["Once upon a time", "The little dog", "Hello, the cat", "Tom and Sue went to the park",
           "One day", "She said", "The sun was hot and the", "Lily"]
LONG_PROMPT = ("The little dog and the big cat went to the park to play with a red ball, and then they "
               "went home to eat some food and sleep. ") * 3
ANCHOR_PROMPT = "A long story:"
GREEDY_LS = {"temperature": 0, "top_k": 1, "samplers": ["top_k"]}  # llama-server: argmax, nothing else


class LlamaServer:
    """One llama-server process on a free port; its log is kept beside the test's files."""

    def __init__(self, gguf: Path, root: Path, *args: str):
        if shutil.which("llama-server") is None:
            pytest.skip("llama-server is not installed (Debian llama.cpp-tools)")
        self.port = free_port()
        self.log = root / f"llama-server-{self.port}.log"
        root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                ["llama-server", "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port), "-t", "1",
                 "--no-webui", *args], stdout=f, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, "llama-server /health", 0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"llama-server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return requests.get(self.url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def post(self, path: str, body: dict) -> dict:
        r = requests.post(self.url + path, json=body, timeout=60 * SLOW)
        assert r.status_code == 200, f"llama-server {path} -> {r.status_code} {r.text}"
        return r.json()

    def complete(self, prompt: str, n_predict: int = N_PREDICT, **sampling) -> dict:
        return self.post("/completion", {"prompt": prompt, "n_predict": n_predict, "cache_prompt": False,
                                         "return_tokens": True, **(sampling or GREEDY_LS)})

    def pieces(self, token_ids: list[int]) -> list[str]:
        return [self.post("/detokenize", {"tokens": [t]})["content"] for t in token_ids]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def explain(ours: str, ref: dict, ls: LlamaServer) -> str:
    """Where statim's text leaves llama-server's: the first differing character and the
    llama-server token that holds it."""
    theirs = ref["content"]
    at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    k, pos = 0, 0
    pieces = ls.pieces(ref.get("tokens") or [])
    for k, piece in enumerate(pieces):
        if pos + len(piece) > at:
            break
        pos += len(piece)
    return (f"statim and llama-server differ from character {at} (llama-server token #{k} of "
            f"{len(pieces)}: {pieces[k] if pieces else None!r}):\n  statim:       {ours!r}\n"
            f"  llama-server: {theirs!r}")


def finish_of(ref: dict) -> str:
    return {"limit": "length", "eos": "stop", "word": "stop"}[ref["stop_type"]]


class Pair:
    def __init__(self, name: str, statim: Server, ls: LlamaServer):
        self.name, self.statim, self.ls = name, statim, ls

    def run(self, model: str, prompt: str, **params) -> dict:
        job = self.statim.submit(model, prompt, {"temperature": 0, "max_tokens": N_PREDICT, **params})
        done = self.statim.wait_job(job["id"], timeout=60)
        assert done["status"] == "COMPLETED", done
        return done


@pytest.fixture(scope="module", params=["tiny", "stories260k"])
def pair(request, tmp_path_factory, tiny_gguf):
    gguf = tiny_gguf if request.param == "tiny" else stories_path()
    if gguf is None:
        pytest.skip("stories260K.gguf is absent (set STATIM_SHARED_MODELS)")
    root = tmp_path_factory.mktemp(f"ref-{request.param}")
    s = Server(root / "statim", name=f"statim-{request.param}")
    common = {"n_ctx": N_CTX, "threads": 1}
    s.add_model("p1", backend="llama", file=str(gguf), parallel=1, params=common)
    s.add_model("p8", backend="llama", file=str(gguf), parallel=PARALLEL, max_queue=100, params=common)
    s.add_model("chunked", backend="llama", file=str(gguf), parallel=1, params={**common, "n_batch": 8})
    ls = None
    try:
        s.start(timeout=60)
        # -c is the whole context: N_CTX per slot, as statim gives each sequence its own N_CTX.
        ls = LlamaServer(gguf, root, "-np", str(PARALLEL), "-c", str(N_CTX * PARALLEL))
        yield Pair(request.param, s, ls)
    finally:
        if ls:
            ls.stop()
        s.cleanup()
    fail_on_sanitizer_reports([s])


def test_single_requests_equal_llama_server(pair):
    for prompt in PROMPTS:
        ref = pair.ls.complete(prompt)
        for model in ("p1", "p8"):
            res = pair.run(model, prompt)["result"]
            assert res["text"] == ref["content"], f"[{pair.name}/{model}] {prompt!r}: " + explain(
                res["text"], ref, pair.ls)
            assert res["tokens_out"] == ref["tokens_predicted"], (res, ref["tokens_predicted"])
            assert res["tokens_in"] == ref["tokens_evaluated"], (res, ref["tokens_evaluated"])
            assert res["finish_reason"] == finish_of(ref), (res, ref["stop_type"])


def test_concurrent_requests_equal_llama_server(pair):
    singles = {p: pair.ls.complete(p)["content"] for p in PROMPTS}
    with ThreadPoolExecutor(PARALLEL) as ex:
        refs = list(ex.map(pair.ls.complete, PROMPTS))
    for prompt, ref in zip(PROMPTS, refs):
        assert ref["content"] == singles[prompt], f"llama-server itself changed under batching for {prompt!r}"

    # A long job runs first, so the 8 join a batch that is already decoding (continuous batching).
    anchor = pair.statim.submit("p8", ANCHOR_PROMPT, {"temperature": 0, "max_tokens": 400})
    with ThreadPoolExecutor(PARALLEL) as ex:
        jobs = list(ex.map(lambda p: pair.statim.submit("p8", p, {"temperature": 0, "max_tokens": N_PREDICT}), PROMPTS))
    done = [pair.statim.wait_job(j["id"], timeout=60) for j in jobs]
    anchor_done = pair.statim.wait_job(anchor["id"], timeout=60)
    for prompt, job, ref in zip(PROMPTS, done, refs):
        assert job["status"] == "COMPLETED", job
        assert job["result"]["text"] == ref["content"], f"[{pair.name}] {prompt!r} in a batch of 8: " + explain(
            job["result"]["text"], ref, pair.ls)
    anchor_ref = pair.ls.complete(ANCHOR_PROMPT, n_predict=400)
    assert anchor_done["result"]["text"] == anchor_ref["content"], "the long job: " + explain(
        anchor_done["result"]["text"], anchor_ref, pair.ls)

    # The batch really was shared: at some moment several of these jobs were running at once.
    spans = [(iso_micros(j["started_at"]), iso_micros(j["finished_at"])) for j in done + [anchor_done]]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most >= 2, f"the jobs never overlapped, so nothing was batched: {spans}"


def test_chunked_prompt_equals_llama_server(pair):
    # n_batch 8: the prompt (~80 tokens) is decoded in chunks of 8.
    ref = pair.ls.complete(LONG_PROMPT)
    res = pair.run("chunked", LONG_PROMPT)["result"]
    assert res["tokens_in"] == ref["tokens_evaluated"] > 8 * 4
    assert res["text"] == ref["content"], explain(res["text"], ref, pair.ls)
    assert pair.run("p1", LONG_PROMPT)["result"]["text"] == ref["content"]


def test_seeded_sampling_equals_llama_server(pair):
    # Same chain (top_k, top_p, min_p, temperature, then a seeded draw): same tokens.
    for seed in (1, 42, 1234):
        sampling = {"temperature": 0.8, "top_k": 40, "top_p": 0.95, "min_p": 0.05, "seed": seed}
        ref = pair.ls.complete("Once upon a time", **sampling,
                               samplers=["top_k", "top_p", "min_p", "temperature"])
        res = pair.run("p1", "Once upon a time", **sampling)["result"]
        assert res["text"] == ref["content"], f"seed {seed}: " + explain(res["text"], ref, pair.ls)


def test_chat_equals_llama_server(pair):
    if pair.name != "tiny":
        pytest.skip("stories260K has no chat template")
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hello, the cat"}]
    ref = pair.ls.post("/v1/chat/completions", {"messages": messages, "max_tokens": N_PREDICT, "cache_prompt": False,
                                                **GREEDY_LS})
    want = ref["choices"][0]["message"]["content"]
    r = pair.statim.post("/job", json={"model": "p1", "messages": messages,
                                       "params": {"temperature": 0, "max_tokens": N_PREDICT}})
    assert r.status_code == 202, r.text
    res = pair.statim.wait_job(r.json()["id"])["result"]
    assert res["text"] == want, (res["text"], want)
    assert res["tokens_in"] == ref["usage"]["prompt_tokens"], (res, ref["usage"])
    # The same through statim's own OpenAI route.
    r = pair.statim.post("/v1/chat/completions", json={"model": "p8", "messages": messages, "max_tokens": N_PREDICT,
                                                       "temperature": 0})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == want


def test_repeat_penalty_equals_llama_server(pair):
    for penalty in ({"repeat_penalty": 1.5, "repeat_last_n": 64}, {"presence_penalty": 1.0},
                    {"frequency_penalty": 1.0}):
        ref = pair.ls.complete("Hello, the cat", **penalty, temperature=0, top_k=1, samplers=["penalties", "top_k"])
        res = pair.run("p1", "Hello, the cat", **penalty)["result"]
        assert res["text"] == ref["content"], f"{penalty}: " + explain(res["text"], ref, pair.ls)


def test_embeddings_equal_llama_server(tiny_gguf, make_server, tmp_path):
    np = pytest.importorskip("numpy")
    texts = ["Hello, the cat", "The little dog", "a"]
    s = make_server("emb")
    s.add_model("emb", backend="llama", file=str(tiny_gguf), type="embedding", params={"n_ctx": N_CTX, "threads": 1})
    s.start(timeout=60)
    ls = LlamaServer(tiny_gguf, tmp_path, "-np", "1", "-c", str(N_CTX), "--embeddings", "--pooling", "mean")
    try:
        ref = ls.post("/v1/embeddings", {"input": texts, "model": "x"})
    finally:
        ls.stop()
    r = s.post("/job", json={"model": "emb", "input": texts})
    assert r.status_code == 202, r.text
    res = s.wait_job(r.json()["id"])["result"]
    assert res["tokens_in"] == ref["usage"]["prompt_tokens"]
    for text, ours, theirs in zip(texts, res["embeddings"], ref["data"]):
        a, b = np.array(ours), np.array(theirs["embedding"])
        assert np.abs(a - b).max() < 1e-5, (text, np.abs(a - b).max())
