// What the dashboard's browser tests run against: a real statim (STATIM_BIN, default
// build/statim) on a fresh data dir with real models from ../shared/models, and Debian's
// Chromium driven by playwright-core (never a downloaded browser).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");
export const shared = resolve(repo, "../shared/models");
export const statimBin = resolve(repo, process.env.STATIM_BIN ?? "build/statim");
export const artifacts = resolve(repo, process.env.UI_ARTIFACTS ?? "build/ui-test-artifacts");
mkdirSync(artifacts, { recursive: true });

async function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

// The random-weight whisper model (tests/fixtures/make_tiny_whisper.py), made once per run.
// A random-weight chat LLM (tests/fixtures/make_tiny_gguf.py) big enough that its answer
// takes a moment, so a chat is seen streaming token by token.
function chatGguf(dir) {
  const out = join(dir, "chat.gguf");
  const shape = ["--n-embd", "512", "--n-layer", "8", "--n-ff", "1536", "--vocab-size", "4096", "--n-ctx", "1024"];
  const r = spawnSync("python3", [join(repo, "tests/fixtures/make_tiny_gguf.py"), out, ...shape], { stdio: "inherit" });
  if (r.status !== 0) throw new Error("tests/fixtures/make_tiny_gguf.py failed");
  return out;
}

// A random-weight SD-Turbo-shaped ONNX export (tests/fixtures/make_tiny_diffusion.py), or null
// where the CLIP tokenizer files are missing.
function tinyDiffusion(dir) {
  const tokenizer = join(shared, "clip-tokenizer");
  if (!existsSync(join(tokenizer, "vocab.json"))) return null;
  const out = join(dir, "sd-export");
  const r = spawnSync("python3", [join(repo, "tests/fixtures/make_tiny_diffusion.py"), out, "--variant", "sd-turbo", "--tokenizer", tokenizer], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return r.status === 0 ? out : null;
}

function tinyWhisper(dir) {
  const out = join(dir, "ggml-tiny-random.bin");
  const r = spawnSync("python3", [join(repo, "tests/fixtures/make_tiny_whisper.py"), out], { stdio: "inherit" });
  return r.status === 0 && existsSync(out) ? out : null;
}

// One model of each kind the machine has weights for.
function manifests(dir) {
  const m = join(dir, "models");
  mkdirSync(m, { recursive: true });
  const put = (id, body) => writeFileSync(join(m, `${id.replace("/", "_")}.toml`), `id = "${id}"\n${body}\n`);
  put("echo", 'backend = "echo"\nparallel = 2\nmax_queue = 10000\ndescription = "Echoes the prompt"');
  put("stories260k", `backend = "llama"\nfile = "${shared}/llm/stories260K.gguf"\nparallel = 2\ndescription = "Tiny story LLM"\n[params]\nn_ctx = 512\nthreads = 1\nchat_template = \"chatml\"`);
  put("chatty", `backend = "llama"\nfile = "${chatGguf(dir)}"\ndescription = "Random-weight chat LLM"\n[params]\nn_ctx = 1024\nthreads = 1`);
  put(
    "yolox-nano",
    `backend = "onnx"\ntype = "detection"\nfile = "${shared}/onnx/yolox_nano.onnx"\n[params]\ntask = "object-detection"\ninput = "images"\noutput = "output"\n` +
      `color = "bgr"\nresize = "letterbox"\nalign = "top-left"\npad_value = 114\nsize = [416, 416]\ndecoder = "yolox"\nstrides = [8, 16, 32]\n` +
      `labels = "${repo}/models/coco-labels.txt"\nscore_threshold = 0.3\nnms_iou = 0.45\nthreads = 1`,
  );
  put("ocr", `backend = "ocr"\nfile = "${shared}/ocr/tesseract/eng.traineddata"`);
  put("tts", 'backend = "tts"');
  put("embed", `backend = "llama"\ntype = "embedding"\nfile = "${shared}/llm/stories260K.gguf"\n[params]\nn_ctx = 512\nthreads = 1`);
  put(
    "mnist",
    `backend = "onnx"\ntype = "classification"\nfile = "${shared}/onnx/mnist-8.onnx"\n[params]\ntask = "image-classification"\ninput = "Input3"\n` +
      `output = "Plus214_Output_0"\ncolor = "gray"\nresize = "stretch"\nsize = [28, 28]\ninvert = false\n` +
      `labels = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]\nsoftmax = true\ntop_k = 3\nthreads = 1`,
  );
  put("vad", `backend = "onnx"\ntype = "tensor"\nfile = "${shared}/onnx/silero_vad.onnx"\n[params]\ntask = "tensor"\nthreads = 1`);
  const sd = tinyDiffusion(dir);
  if (sd) put("sd", `backend = "diffusion"\ntype = "image"\nfile = "${sd}"\n[params]\ndefault_width = 64\ndefault_height = 64\ndefault_steps = 2\nthreads = 1`);
  const whisper = tinyWhisper(dir);
  if (whisper) put("whisper", `backend = "whisper"\nfile = "${whisper}"`);
  return m;
}

export async function startStatim({ auth = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "statim-ui-"));
  const data = join(dir, "data");
  const models = manifests(dir);
  const port = await freePort();
  const env = { ...process.env, STATIM_AUTH_MODE: auth ? "required" : "off" };
  const keys = {};
  if (auth) {
    for (const [name, scope] of [
      ["root", "admin"],
      ["alice", "user"],
    ]) {
      const r = spawnSync(statimBin, ["keys", "create", "--name", name, "--scope", scope, "--data-dir", data], { env, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`statim keys create failed: ${r.stderr}`);
      keys[name] = r.stdout.trim();
    }
  }
  const log = [];
  const url = `http://127.0.0.1:${port}`;
  let proc;
  const launch = async () => {
    proc = spawn(statimBin, ["serve", "--host", "127.0.0.1", "--port", String(port), "--data-dir", data, "--models-dir", models], {
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout.on("data", (d) => log.push(d.toString()));
    proc.stderr.on("data", (d) => log.push(d.toString()));
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`statim exited (${proc.exitCode}):\n${log.join("")}`);
      try {
        const r = await fetch(`${url}/healthz`);
        if (r.ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`statim did not start:\n${log.join("")}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  await launch();
  // A crash (SIGKILL) and a start on the same data dir and port: running jobs run again.
  const crashAndRestart = async () => {
    const exited = new Promise((r) => proc.on("exit", r));
    proc.kill("SIGKILL");
    await exited;
    await launch();
  };
  const api = async (method, path, body, key = keys.root) => {
    const headers = {};
    if (key) headers.Authorization = `Bearer ${key}`;
    let payload = body;
    if (body && !(body instanceof FormData)) {
      payload = JSON.stringify(body);
      headers["Content-Type"] = "application/json";
    }
    const r = await fetch(url + path, { method, headers, body: payload });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON
    }
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return json ?? text;
  };
  const waitJob = async (id, key) => {
    const job = await api("GET", `/job/${id}?wait=30`, undefined, key);
    if (!["COMPLETED", "FAILED", "CANCELLED"].includes(job.status)) throw new Error(`job ${id} did not end: ${JSON.stringify(job)}`);
    return job;
  };
  const stop = async () => {
    proc.kill("SIGTERM");
    await new Promise((r) => (proc.exitCode !== null ? r() : proc.on("exit", r)));
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    url,
    keys,
    api,
    waitJob,
    stop,
    crashAndRestart,
    log,
    dir,
    hasWhisper: existsSync(join(models, "whisper.toml")),
    hasDiffusion: existsSync(join(models, "sd.toml")),
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });
}

// A page at `width` px that fails the test on any console error or refused request (a CSP
// violation shows as one), signed in with `key` when given.
export async function openPage(browser, server, { width = 1280, key, colorScheme = "light" } = {}) {
  const context = await browser.newContext({ viewport: { width, height: 900 }, colorScheme });
  const problems = [];
  const page = await context.newPage();
  page.on("console", (m) => {
    // A refused API call is the page's to show (and the tests check what it shows); anything
    // else logged as an error - a CSP violation, an exception - is a defect.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Any request off this origin is a defect: the image runs air-gapped.
  page.on("request", (r) => {
    if (!r.url().startsWith(server.url) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) problems.push(`outside request: ${r.url()}`);
  });
  if (key) {
    // Stored from a page of the same origin that runs no app (the app would clear a key it
    // found refused while this one is being stored).
    await page.goto(`${server.url}/healthz`);
    await page.evaluate((k) => sessionStorage.setItem("statim.key", k), key);
  }
  return { page, context, problems };
}

export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}
