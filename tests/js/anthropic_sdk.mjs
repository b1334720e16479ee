// The official Anthropic TypeScript SDK (@anthropic-ai/sdk) against statim's /v1/messages:
//   node tests/js/anthropic_sdk.mjs BASE_URL API_KEY MODEL
// Run by tests/e2e/test_anthropic.py, which then checks each answer against the job it came
// from. Prints one JSON line: {"create": msg, "streamed": {...}, "tool": msg}.
import assert from "node:assert/strict";

import Anthropic from "@anthropic-ai/sdk";

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

const weather = {
  name: "get_weather",
  description: "The weather in a city.",
  input_schema: {
    type: "object",
    properties: { city: { enum: ["Paris", "Oslo"] }, days: { type: "integer" } },
    required: ["city", "days"],
    additionalProperties: false,
  },
};

// A plain message.
const created = await client.messages.create({
  model,
  max_tokens: 12,
  system: "Be brief.",
  messages: [{ role: "user", content: "Hello there" }],
});
assert.equal(created.type, "message");
assert.equal(created.role, "assistant");
assert.equal(created.content[0].type, "text");
assert.equal(created.stop_reason, "max_tokens");
assert.equal(created.usage.output_tokens, 12);

// The SDK's stream helper: text events add up to the final message it assembles.
const stream = client.messages.stream({ model, max_tokens: 16, messages: [{ role: "user", content: "Go on" }] });
let text = "";
stream.on("text", (t) => (text += t));
const final = await stream.finalMessage();
assert.equal(final.content[0].type, "text");
assert.equal(final.content[0].text, text);
assert.equal(final.stop_reason, "max_tokens");

// A forced tool call, its input held to the schema; then its result sent back.
const tool = await client.messages.create({
  model,
  max_tokens: 400,
  tools: [weather],
  tool_choice: { type: "any", disable_parallel_tool_use: true },
  messages: [{ role: "user", content: "Weather in Paris?" }],
});
assert.equal(tool.stop_reason, "tool_use");
const use = tool.content.find((b) => b.type === "tool_use");
assert.ok(use, JSON.stringify(tool.content));
assert.equal(use.name, "get_weather");
assert.deepEqual(Object.keys(use.input).sort(), ["city", "days"]);
const followUp = await client.messages.create({
  model,
  max_tokens: 8,
  tools: [weather],
  messages: [
    { role: "user", content: "Weather in Paris?" },
    { role: "assistant", content: tool.content },
    { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "Sunny, 21 C" }] },
  ],
});
assert.equal(followUp.type, "message");

// A streamed tool call: the helper rebuilds the input from input_json_delta events.
const toolStream = client.messages.stream({
  model,
  max_tokens: 400,
  tools: [weather],
  tool_choice: { type: "tool", name: "get_weather" },
  messages: [{ role: "user", content: "Weather in Oslo?" }],
});
const streamedTool = await toolStream.finalMessage();
const streamedUse = streamedTool.content.find((b) => b.type === "tool_use");
assert.ok(streamedUse && typeof streamedUse.input.days === "number", JSON.stringify(streamedTool.content));

// Errors arrive as the SDK's typed errors, with statim's message.
await assert.rejects(
  client.messages.create({ model, max_tokens: 5, messages: [{ role: "system", content: "x" }] }),
  (e) => e instanceof Anthropic.BadRequestError && e.error?.error?.type === "invalid_request_error" && /messages\.0\.role/.test(e.message),
);
await assert.rejects(
  new Anthropic({ baseURL, apiKey: "sk-statim-" + "0".repeat(48), maxRetries: 0 }).messages.create({
    model,
    max_tokens: 5,
    messages: [{ role: "user", content: "x" }],
  }),
  (e) => e instanceof Anthropic.AuthenticationError,
);
await assert.rejects(
  client.messages.create({ model: "no-such-model", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
  (e) => e instanceof Anthropic.NotFoundError && /unknown model 'no-such-model'/.test(e.message),
);

console.log(JSON.stringify({ create: created, streamed: { text, id: final.id }, tool, streamedTool }));
