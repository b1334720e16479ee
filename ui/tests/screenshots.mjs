// The screenshots in docs/img (`make ui-screenshots`): a real statim with a mix of jobs of every
// kind, in Debian's Chromium. Not a test; run it after changing how the dashboard looks.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { launchBrowser, openPage, repo, shared, startStatim } from "./harness.mjs";

const out = join(repo, "docs/img");
mkdirSync(out, { recursive: true });
const s = await startStatim();
const browser = await launchBrowser();
try {
  const form = (model, field, file, type) => {
    const f = new FormData();
    f.append("model", model);
    f.append(field, new Blob([readFileSync(file)], { type }), file.split("/").pop());
    return f;
  };
  await s.api("POST", "/job", { model: "chatty", messages: [{ role: "user", content: "Write a haiku about queues." }], params: { max_tokens: 24 } });
  await s.api("POST", "/job", { model: "stories260k", prompt: "Once upon a time", params: { max_tokens: 64 } });
  await s.api("POST", "/job", form("ocr", "page", `${shared}/ocr/ocr-test-hello-world.png`, "image/png"));
  await s.api("POST", "/job", { model: "tts", prompt: "Your order is ready." });
  await s.api("POST", "/job", { model: "echo", prompt: "this one fails", params: { fail: "the backend said no" } });
  await s.api("POST", "/job", form("mnist", "image", `${shared}/onnx/mnist-digits/3.jpg`, "image/jpeg"));
  await s.api("POST", "/job", { model: "echo", prompt: "A cat in space", params: { delay_ms: 60000 } });
  await s.api("POST", "/job", { model: "echo", prompt: "waiting its turn", params: { delay_ms: 60000 } });
  const dog = await s.api("POST", "/job?wait=30", form("yolox-nano", "image", `${shared}/onnx/yolox-test-dog.jpg`, "image/jpeg"));
  await s.api("POST", "/job", { model: "echo", prompt: "queued behind the others", params: { delay_ms: 1000 } });
  await new Promise((r) => setTimeout(r, 1500));

  const { page } = await openPage(browser, s, { width: 1280 });
  await page.goto(`${s.url}/ui/jobs`);
  await page.locator("table.jobs tbody tr").first().waitFor();
  await page.screenshot({ path: join(out, "dashboard-jobs.png") });
  await page.goto(`${s.url}/ui/jobs/${dog.id}`);
  await page.locator('[data-testid="detections"] img').waitFor();
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(out, "dashboard-detection.jpg"), fullPage: true, type: "jpeg", quality: 80 });
  await page.goto(`${s.url}/ui/models`);
  await page.locator('tr[data-model="echo"]').waitFor();
  await page.screenshot({ path: join(out, "dashboard-models.png") });
  const dark = await openPage(browser, s, { width: 390, colorScheme: "dark" });
  await dark.page.goto(`${s.url}/ui/try?model=chatty&type=chat`);
  await dark.page.getByLabel("Message").fill("Tell me about a cat.");
  await dark.page.getByRole("button", { name: "Send" }).click();
  await dark.page.locator('[data-testid="chat-live"] li.msg.assistant:not(.streaming)').waitFor({ timeout: 30_000 });
  await dark.page.screenshot({ path: join(out, "dashboard-chat-390-dark.png"), fullPage: true });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await s.stop();
}
