// The dashboard in a real browser (Debian's Chromium via playwright-core) against a real statim:
// jobs (paging, filters, live updates), every result viewer through the Try forms, a streamed
// chat, cancel, models load/unload, and (with keys) the sign-in, operations and what a user key
// may not reach. Screenshots of each page go to build/ui-test-artifacts.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";

import { launchBrowser, openPage, shared, shot, startStatim } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const expectClean = (problems) => assert.deepEqual(problems, [], "no console errors, CSP violations or outside requests");

describe("without keys (auth off)", () => {
  let s;
  before(async () => {
    s = await startStatim();
  });
  after(async () => {
    await s?.stop();
  });

  test("the jobs list pages through 205 jobs, filters them, and a link or reload shows the same page", async () => {
    for (let i = 0; i < 200; i++) await s.api("POST", "/job", { model: "echo", prompt: `cat number ${i}` });
    for (let i = 0; i < 5; i++) await s.api("POST", "/job", { model: "echo", prompt: `broken ${i}`, params: { fail: "no luck" } });
    await s.waitJob(205);
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui`);
    await page.waitForURL(/\/ui\/jobs$/);
    await page.locator("table.jobs tbody tr").first().waitFor();
    assert.equal(await page.locator("table.jobs tbody tr").count(), 50);
    assert.equal(await page.locator(".pager .count").textContent(), "1–50 of 205");
    assert.equal(await page.locator("table.jobs tbody tr").first().getAttribute("data-job"), "205", "newest first");
    await shot(page, "jobs");

    await page.getByRole("button", { name: "Older →" }).click();
    await page.waitForURL(/offset=50/);
    await page.locator(".pager .count", { hasText: "51–100 of 205" }).waitFor();
    assert.equal(await page.locator("table.jobs tbody tr").first().getAttribute("data-job"), "155");
    await page.reload();
    await page.locator(".pager .count", { hasText: "51–100 of 205" }).waitFor();

    await page.goto(`${s.url}/ui/jobs`);
    await page.getByLabel("Status").selectOption("FAILED");
    await page.locator(".pager .count", { hasText: "1–5 of 5" }).waitFor();
    const statuses = await page.locator("table.jobs tbody .badge").allTextContents();
    assert.deepEqual(statuses, Array(5).fill("FAILED"));
    assert.match(page.url(), /status=FAILED/);

    await page.goto(`${s.url}/ui/jobs`);
    await page.getByLabel("Prompt contains").fill("number 42");
    await page.getByLabel("Prompt contains").press("Enter");
    await page.locator(".pager .count", { hasText: "1–1 of 1" }).waitFor();
    assert.equal(await page.locator("table.jobs tbody td.prompt").textContent(), "cat number 42");
    expectClean(problems);
  });

  test("what is typed in the search box as soon as the page shows is kept and searched", async () => {
    // Preact runs effects after the next frame, or 100 ms without one: with no frames, text typed
    // in that window used to be erased by the box's first effect (CI saw it once).
    const { page, problems } = await openPage(browser, s);
    await page.addInitScript(() => {
      window.requestAnimationFrame = () => 0;
    });
    await page.goto(`${s.url}/ui/jobs`);
    await page.getByLabel("Prompt contains").fill("number 137");
    await page.getByLabel("Prompt contains").press("Enter");
    await page.locator(".pager .count", { hasText: "1–1 of 1" }).waitFor({ timeout: 5_000 });
    assert.equal(await page.getByLabel("Prompt contains").inputValue(), "number 137");
    assert.equal(await page.locator("table.jobs tbody td.prompt").textContent(), "cat number 137");
    expectClean(problems);
  });

  test("queued jobs show where they stand in their model's queue", async () => {
    // echo runs two jobs at a time: two long ones keep it busy while three wait.
    const blocker = await s.api("POST", "/job", { model: "echo", prompt: "hold", params: { delay_ms: 20000 } });
    const second = await s.api("POST", "/job", { model: "echo", prompt: "hold too", params: { delay_ms: 20000 } });
    const waiting = [];
    for (let i = 0; i < 3; i++) waiting.push(await s.api("POST", "/job", { model: "echo", prompt: `waiting ${i}` }));
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs?status=QUEUED`);
    for (const [i, job] of waiting.entries()) {
      await page.locator(`tr[data-job="${job.id}"] [data-testid="queue-position"]`, { hasText: `#${i + 1} in queue` }).waitFor();
    }
    for (const j of [blocker, second, ...waiting]) await s.api("POST", `/job/${j.id}/cancel`);
    expectClean(problems);
  });

  test("a job submitted elsewhere appears in the open list by itself (GET /events)", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs`);
    await page.locator(".live.live").waitFor();
    const job = await s.api("POST", "/job", { model: "echo", prompt: "appears live" });
    await page.locator(`tr[data-job="${job.id}"] .badge`, { hasText: "COMPLETED" }).waitFor({ timeout: 10_000 });
    expectClean(problems);
  });

  test("a completion through the Try form shows the model's text, as stored", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=stories260k&type=completion`);
    await page.getByLabel("Prompt", { exact: true }).fill("Once upon a time");
    await page.getByLabel("max_tokens").fill("24");
    await page.getByRole("button", { name: "Submit" }).click();
    const link = page.locator(".try-result h3 a");
    await link.waitFor();
    const id = (await link.textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    assert.equal(job.status, "COMPLETED");
    assert.ok(job.result.text.length > 0);
    await page.locator('[data-testid="result-text"]', { hasText: job.result.text.trim() }).waitFor();
    await shot(page, "try-completion");
    expectClean(problems);
  });

  test("a chat streams the answer and keeps the conversation", async () => {
    const { page, problems } = await openPage(browser, s);
    // Count the token events the page receives while it shows the answer.
    await page.goto(`${s.url}/ui/try?model=chatty&type=chat`);
    await page.getByLabel("Message").fill("Tell me about a cat.");
    await page.locator("summary", { hasText: "Sampling" }).click();
    await page.getByLabel("max_tokens").fill("48");
    const stream = page.waitForResponse((r) => /\/job\/\d+\/events$/.test(r.url()));
    await page.getByRole("button", { name: "Send" }).click();
    const events = await (await stream).text();
    assert.match(events, /event: token/, "the answer came as token events");
    const answer = page.locator('[data-testid="chat-live"] li.msg.assistant:not(.streaming)');
    await answer.waitFor();
    const id = (await page.locator(".chat-box p.muted a").textContent()).replace("job #", "");
    const job = await s.waitJob(id);
    assert.equal((await answer.locator(".content").textContent()).trim(), job.result.text.trim());
    assert.equal(job.params.messages.length, 1);
    await page.getByLabel("Message").fill("And then?");
    await page.getByRole("button", { name: "Send" }).click();
    await page.locator('[data-testid="chat-live"] li.msg.assistant:not(.streaming)').nth(1).waitFor({ timeout: 30_000 });
    const second = await s.api("GET", `/job/${Number(id) + 1}`);
    assert.deepEqual(
      second.params.messages.map((m) => m.role),
      ["user", "assistant", "user"],
      "the second turn carries the first",
    );
    await shot(page, "try-chat");
    expectClean(problems);
  });

  test("detections are drawn as labelled boxes on the uploaded image", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=yolox-nano`);
    await page.locator('input[type="file"]').setInputFiles(`${shared}/onnx/yolox-test-dog.jpg`);
    await page.getByRole("button", { name: "Submit" }).click();
    await page.locator('[data-testid="detections"] svg g.box').first().waitFor({ timeout: 30_000 });
    const id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    const boxes = page.locator('[data-testid="detections"] svg g.box');
    assert.equal(await boxes.count(), job.result.detections.length);
    const labels = await page.locator('[data-testid="detections"] svg text').allTextContents();
    assert.ok(labels.some((l) => l.startsWith("dog ")), labels.join(", "));
    const rect = boxes.first().locator("rect");
    assert.equal(Number(await rect.getAttribute("width")), job.result.detections[0].box.width);
    const img = page.locator('[data-testid="detections"] img');
    await img.waitFor();
    assert.ok(await img.evaluate((i) => i.complete && i.naturalWidth === 768), "the input image is shown");
    await page.goto(`${s.url}/ui/jobs/${id}`);
    await page.locator('[data-testid="detections"] svg g.box').first().waitFor();
    await shot(page, "job-detection");
    // Re-run sends the stored image again: the new job finds the same boxes.
    await page.getByRole("button", { name: "Re-run" }).click();
    await page.waitForURL((u) => /\/ui\/jobs\/\d+$/.test(u.pathname) && !u.pathname.endsWith(`/${id}`));
    const again = await s.waitJob(page.url().split("/").pop());
    assert.equal(again.inputs[0].sha256, job.inputs[0].sha256);
    assert.deepEqual(again.result.detections, job.result.detections);
    expectClean(problems);
  });

  test("OCR words are outlined on the page and the text is shown", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=ocr`);
    await page.locator('input[type="file"]').setInputFiles(`${shared}/ocr/ocr-test-hello-world.png`);
    await page.getByRole("button", { name: "Submit" }).click();
    await page.locator('[data-testid="ocr-words"] svg g.box').first().waitFor({ timeout: 30_000 });
    const id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    assert.equal(await page.locator('[data-testid="ocr-words"] svg g.box').count(), job.result.words.length);
    await page.locator('[data-testid="result-text"]', { hasText: "Hello World 2024" }).waitFor();
    expectClean(problems);
  });

  test("speech plays: the audio loads in the player and its waveform is drawn", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=tts`);
    await page.getByLabel("Prompt", { exact: true }).fill("Hello from the dashboard.");
    await page.getByRole("button", { name: "Submit" }).click();
    const audio = page.locator('[data-testid="artifact-audio"]');
    await audio.waitFor({ timeout: 30_000 });
    const seconds = await audio.evaluate(
      (a) => new Promise((res) => (a.readyState >= 1 ? res(a.duration) : a.addEventListener("loadedmetadata", () => res(a.duration)))),
    );
    assert.ok(seconds > 0.5 && seconds < 10, `duration ${seconds}`);
    await page.locator('[data-testid="waveform"][data-drawn="true"]').waitFor();
    await shot(page, "try-speech");
    expectClean(problems);
  });

  test("a generated image is shown at its size, with a download link", async (t) => {
    if (!s.hasDiffusion) return t.skip("no diffusion fixture (the CLIP tokenizer files are missing from ../shared/models)");
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=sd`);
    await page.getByLabel("Prompt", { exact: true }).fill("A cat in space");
    await page.getByLabel("width").fill("64");
    await page.getByLabel("height").fill("48");
    await page.getByRole("button", { name: "Submit" }).click();
    const img = page.locator('[data-testid="artifact-image"]');
    await img.waitFor({ timeout: 60_000 });
    await page.waitForFunction(() => document.querySelector('[data-testid="artifact-image"]')?.complete);
    assert.deepEqual(await img.evaluate((i) => [i.naturalWidth, i.naturalHeight]), [64, 48]);
    const id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    const name = job.result.artifacts[0].name;
    assert.equal(await page.locator(`.artifact a[download="${name}"]`).count(), 1);
    await shot(page, "try-image");
    expectClean(problems);
  });

  test("embeddings, classification labels and raw tensors are shown with the numbers the API gives", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=embed`);
    await page.getByLabel("Text to embed").fill("a small cat");
    await page.getByRole("button", { name: "Submit" }).click();
    const table = page.locator('[data-testid="embeddings"]');
    await table.waitFor({ timeout: 30_000 });
    let id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    let job = await s.waitJob(id);
    const v = job.result.embeddings[0];
    assert.match(await table.locator("p").textContent(), new RegExp(`^1 vector of dimension ${v.length}$`));
    const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0)).toFixed(4);
    assert.equal(await table.locator("tbody td").nth(2).textContent(), norm);

    await page.goto(`${s.url}/ui/try?model=mnist`);
    await page.locator('input[type="file"]').setInputFiles(`${shared}/onnx/mnist-digits/3.jpg`);
    await page.getByRole("button", { name: "Submit" }).click();
    const labels = page.locator('[data-testid="labels"] tbody tr');
    await labels.first().waitFor({ timeout: 30_000 });
    id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    job = await s.waitJob(id);
    assert.equal(await labels.count(), job.result.labels.length);
    assert.equal(await labels.first().locator("td").first().textContent(), job.result.labels[0].label);
    assert.equal(job.result.labels[0].label, "3");

    await page.goto(`${s.url}/ui/try?model=vad`);
    const tensors = {
      input: { shape: [1, 512], data: Array(512).fill(0) },
      state: { shape: [2, 1, 128], data: Array(256).fill(0) },
      sr: { shape: [], data: [16000], dtype: "int64" },
    };
    await page.getByLabel("Input tensors (JSON)").fill(JSON.stringify(tensors));
    await page.getByRole("button", { name: "Submit" }).click();
    const out = page.locator('[data-testid="tensors"] section.tensor');
    await out.first().waitFor({ timeout: 30_000 });
    id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    job = await s.waitJob(id);
    const names = Object.keys(job.result.outputs);
    assert.equal(await out.count(), names.length);
    const output = out.filter({ hasText: "output" }).first();
    assert.match(await output.locator("h4").textContent(), /output \[1 × 1\]/);
    expectClean(problems);
  });

  test("audio recorded in the browser is sent as WAV and transcribed", async (t) => {
    if (!s.hasWhisper) return t.skip("no whisper fixture (tests/fixtures/make_tiny_whisper.py failed)");
    const { page, context, problems } = await openPage(browser, s);
    await context.grantPermissions(["microphone"], { origin: s.url });
    await page.goto(`${s.url}/ui/try?model=whisper`);
    await page.getByRole("button", { name: "● Record" }).click();
    await page.waitForTimeout(1500);  // Chromium's fake microphone: a tone
    await page.getByRole("button", { name: "■ Stop recording" }).click();
    await page.locator(".drop p", { hasText: "recording.wav" }).waitFor();
    await page.getByRole("button", { name: "Submit" }).click();
    await page.locator('[data-testid="transcript"]').waitFor({ timeout: 60_000 });
    const id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    assert.equal(job.status, "COMPLETED");
    assert.equal(job.inputs[0].content_type, "audio/wav");
    assert.ok(job.result.duration > 1 && job.result.duration < 3, `recorded ${job.result.duration} s`);
    expectClean(problems);
  });

  test("a transcription shows its segments with times", async (t) => {
    if (!s.hasWhisper) return t.skip("no whisper fixture (tests/fixtures/make_tiny_whisper.py failed)");
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/try?model=whisper`);
    await page.locator('input[type="file"]').setInputFiles(`${shared}/audio/jfk.wav`);
    await page.getByRole("button", { name: "Submit" }).click();
    await page.locator('[data-testid="transcript"]').waitFor({ timeout: 60_000 });
    const id = (await page.locator(".try-result h3 a").textContent()).replace("Job #", "");
    const job = await s.waitJob(id);
    assert.equal(await page.locator('[data-testid="transcript"] tbody tr').count(), job.result.segments.length);
    expectClean(problems);
  });

  test("a running job is cancelled from its page, and re-run makes a new job with the same input", async () => {
    const job = await s.api("POST", "/job", { model: "echo", prompt: "a long one", params: { delay_ms: 60000 } });
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs/${job.id}`);
    await page.locator("h1 .badge", { hasText: "PROCESSING" }).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.locator("h1 .badge", { hasText: "CANCELLED" }).waitFor({ timeout: 10_000 });
    assert.equal((await s.api("GET", `/job/${job.id}`)).status, "CANCELLED");
    await shot(page, "job-cancelled");

    const done = await s.api("POST", "/job?wait=10", { model: "echo", prompt: "run me again" });
    await page.goto(`${s.url}/ui/jobs/${done.id}`);
    await page.getByRole("button", { name: "Re-run" }).click();
    await page.waitForURL(new RegExp(`/ui/jobs/${done.id + 1}$`));
    const again = await s.waitJob(done.id + 1);
    assert.equal(again.prompt, "run me again");
    assert.equal(again.result.text, "run me again");
    expectClean(problems);
  });

  test("a job whose server crashed mid-run shows its lost attempt in the timeline", async () => {
    const job = await s.api("POST", "/job", { model: "echo", prompt: "survives", params: { delay_ms: 3000 } });
    for (let i = 0; i < 100 && (await s.api("GET", `/job/${job.id}`)).status !== "PROCESSING"; ++i) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await s.crashAndRestart();
    const done = await s.waitJob(job.id);
    assert.equal(done.status, "COMPLETED");
    assert.equal(done.earlier_attempts.length, 1);
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs/${job.id}`);
    const timeline = page.getByRole("list", { name: "Status timeline" });
    await timeline.getByText("Attempt 1 lost").waitFor();
    const text = await timeline.innerText();
    assert.match(text, /Attempt 1 started/);
    assert.match(text, new RegExp(`on ${done.earlier_attempts[0].worker.replace("/", "\\/")}`));
    assert.match(text, /its worker stopped; requeued after/);
    assert.match(text, /Started \(attempt 2\)/);
    await shot(page, "job-lost-attempt");
    expectClean(problems);
    await page.close();
  });

  test("a model is unloaded and loaded again from the models page", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/models`);
    const row = page.locator('tr[data-model="tts"]');
    await row.locator('[data-testid="model-state"]', { hasText: "ready" }).waitFor();
    await shot(page, "models");
    await row.getByRole("button", { name: "Unload tts" }).click();
    await row.locator('[data-testid="model-state"]', { hasText: "unloaded" }).waitFor({ timeout: 15_000 });
    assert.equal((await s.api("GET", "/models/tts")).state, "unloaded");
    await row.getByRole("button", { name: "Load tts" }).click();
    await row.locator('[data-testid="model-state"]', { hasText: "ready" }).waitFor({ timeout: 15_000 });
    assert.equal((await s.api("GET", "/models/tts")).state, "ready");
    expectClean(problems);
  });

  test("pages fit a 390 px phone and the dark theme", async () => {
    const { page, problems } = await openPage(browser, s, { width: 390, colorScheme: "dark" });
    await page.goto(`${s.url}/ui/jobs`);
    await page.locator("table.jobs tbody tr").first().waitFor();
    await shot(page, "jobs-390-dark");
    // The page does not scroll sideways (a wide table scrolls in its own box); else what sticks out.
    const wide = () =>
      page.evaluate(() =>
        document.documentElement.scrollWidth <= window.innerWidth
          ? []
          : [...document.querySelectorAll("body *")]
              .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap"))
              .map((e) => `${e.tagName.toLowerCase()}.${e.className}`)
              .slice(0, 5)
              .concat([`scrollWidth ${document.documentElement.scrollWidth}`]),
      );
    assert.deepEqual(await wide(), [], "nothing is wider than the screen");
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), "dark");
    await page.goto(`${s.url}/ui/try?model=stories260k&type=chat`);
    await page.getByLabel("Message").waitFor();
    assert.deepEqual(await wide(), []);
    expectClean(problems);
  });

  test("the keyboard alone reaches a job: skip link, tab to its link, Enter", async () => {
    await s.api("POST", "/job?wait=10", { model: "echo", prompt: "reach me by keyboard" });
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs`);
    const first = page.locator("table.jobs tbody tr").first();
    await first.waitFor();
    const id = await first.getAttribute("data-job");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    // Tab on until the first job's link has the focus (through the nav and the filters, each labelled).
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      if ((await page.evaluate(() => document.activeElement?.textContent)) === `#${id}`) break;
    }
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), `#${id}`);
    await page.keyboard.press("Enter");
    await page.waitForURL(new RegExp(`/ui/jobs/${id}$`));
    await page.getByRole("heading", { name: new RegExp(`Job #${id}`) }).waitFor();
    // Every form control on the jobs and try pages has a label (an accessible name).
    for (const [path, ready] of [
      ["/ui/jobs", "table.jobs tbody tr"],
      ["/ui/try?model=stories260k&type=completion", "textarea[name=prompt]"],
      ["/ui/models", "tr[data-model]"],
    ]) {
      await page.goto(s.url + path);
      await page.locator(ready).first().waitFor();
      const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll("main select, main input, main textarea, main button")]
          .filter((e) => !(e.labels?.length || e.getAttribute("aria-label") || e.textContent?.trim()))
          .map((e) => e.outerHTML.slice(0, 80)),
      );
      assert.deepEqual(unnamed, [], `${path}: controls without a name`);
    }
    expectClean(problems);
  });

  test("the page is served with a strict Content-Security-Policy and works under it", async () => {
    const r = await fetch(`${s.url}/ui/jobs`);
    const csp = r.headers.get("content-security-policy");
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/);
    const html = await r.text();
    const script = html.match(/src="(\/ui\/assets\/index-[\w-]+\.js)"/);
    assert.ok(script, html);
    const asset = await fetch(s.url + script[1]);
    assert.equal(asset.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.doesNotMatch(html, /<script>(?!<\/script>)/, "no inline script");
  });
});

describe("with keys (auth required)", () => {
  let s;
  before(async () => {
    s = await startStatim({ auth: true });
  });
  after(async () => {
    await s?.stop();
  });

  test("the dashboard asks for a key, and an admin creates and revokes keys", async () => {
    const { page, problems } = await openPage(browser, s);
    await page.goto(`${s.url}/ui/jobs`);
    await page.getByLabel("API key").fill("sk-statim-000000000000000000000000000000000000000000000000");
    await page.getByRole("button", { name: "Use this key" }).click();
    await page.getByRole("alert").filter({ hasText: "That key was refused" }).waitFor();
    await page.getByLabel("API key").fill(s.keys.root);
    await page.getByRole("button", { name: "Use this key" }).click();
    await page.getByRole("heading", { name: "Jobs" }).waitFor();
    await page.getByRole("link", { name: "Operations" }).click();
    await page.waitForURL(/\/ui\/admin$/);
    // The charts fill from /metrics as jobs finish.
    const load = (async () => {
      for (let i = 0; i < 40; i++) await s.api("POST", "/job", { model: "echo", prompt: `load ${i}` });
    })();
    const jobsChart = page.locator(".chart", { hasText: "Jobs finished per second" });
    await jobsChart.waitFor();
    await load;
    await page.waitForFunction(
      () => {
        const now = [...document.querySelectorAll(".chart")].find((c) => c.textContent.startsWith("Jobs finished"))?.querySelector(".now");
        return now && parseFloat(now.textContent) > 0;
      },
      null,
      { timeout: 15_000 },
    );
    assert.equal(await page.locator(".chart canvas").count() >= 4, true, "four charts are drawn");
    await shot(page, "admin-live");

    await page.getByRole("tab", { name: "API keys" }).click();
    await page.getByLabel("Name").fill("bob");
    await page.getByRole("button", { name: "Create key" }).click();
    const shown = await page.locator('[data-testid="new-key"]').textContent();
    assert.match(shown, /^sk-statim-[0-9a-f]{48}$/);
    // The new key works, and the list shows it by its prefix only.
    const me = await s.api("GET", "/me", undefined, shown);
    assert.equal(me.key.name, "bob");
    assert.equal(me.admin, false);
    const row = page.locator('tr[data-key="bob"]');
    assert.equal(await row.locator(".mono").textContent(), `${shown.slice(0, 18)}...`);
    await shot(page, "admin-keys");
    page.once("dialog", (d) => d.accept());
    await row.getByRole("button", { name: "Revoke key bob" }).click();
    await row.waitFor({ state: "detached" });
    const refused = await fetch(`${s.url}/me`, { headers: { Authorization: `Bearer ${shown}` } });
    assert.equal(refused.status, 401);

    await page.getByRole("tab", { name: "Audit trail" }).click();
    await page.locator("table tbody tr", { hasText: "POST /admin/keys" }).first().waitFor();
    await shot(page, "admin-audit");
    expectClean(problems);
  });

  test("a user key sees only its own jobs and cannot reach the operations pages", async () => {
    const mine = await s.api("POST", "/job", { model: "echo", prompt: "alice's job" }, s.keys.alice);
    await s.api("POST", "/job", { model: "echo", prompt: "root's job" }, s.keys.root);
    const { page, problems } = await openPage(browser, s, { key: s.keys.alice });
    await page.goto(`${s.url}/ui/jobs`);
    await page.locator("table.jobs tbody tr").first().waitFor().catch(async (e) => {
      await shot(page, "failed-user-jobs");
      throw new Error(`${e.message}\n${await page.locator("body").innerText()}`);
    });
    const prompts = await page.locator("table.jobs td.prompt").allTextContents();
    assert.ok(prompts.includes("alice's job"), prompts.join(" | "));
    assert.ok(!prompts.includes("root's job"), prompts.join(" | "));
    assert.equal(await page.getByRole("link", { name: "Operations" }).count(), 0);
    await page.goto(`${s.url}/ui/admin`);
    await page.getByRole("alert").filter({ hasText: "Operations need an admin key" }).waitFor();
    assert.equal(await page.locator(".chart").count(), 0);
    // A link to another key's job answers as if it did not exist.
    await page.goto(`${s.url}/ui/jobs/${mine.id + 1}`);
    await page.getByRole("alert").filter({ hasText: `job ${mine.id + 1} not found` }).waitFor();
    // The models page has no load/unload for a user key.
    await page.goto(`${s.url}/ui/models`);
    await page.locator('tr[data-model="echo"]').waitFor();
    assert.equal(await page.getByRole("button", { name: /^(Load|Unload) / }).count(), 0);
    expectClean(problems);
  });
});

// Keep the sample files honest: the tests above need them.
test("the sample inputs are present", () => {
  for (const f of ["onnx/yolox-test-dog.jpg", "ocr/ocr-test-hello-world.png", "llm/stories260K.gguf"]) assert.ok(readFileSync(`${shared}/${f}`).length > 0, f);
});
