// The dashboard's only way to the server: statim's public API, same origin, with the key the user
// pasted (kept in sessionStorage, sent as Authorization: Bearer). Nothing else is contacted.

const KEY = "statim.key";

export function apiKey(): string {
  return sessionStorage.getItem(KEY) ?? "";
}
export function setApiKey(key: string) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public type: string,
    message: string,
    public field?: string,
  ) {
    super(message);
  }
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { ...extra };
  const key = apiKey();
  if (key) h["Authorization"] = `Bearer ${key}`;
  return h;
}

async function errorOf(r: Response): Promise<ApiError> {
  let type = "http_error";
  let message = `${r.status} ${r.statusText}`;
  let field: string | undefined;
  try {
    const body = await r.json();
    const e = body?.error;
    if (e) {
      type = e.type ?? e.code ?? type;
      message = e.message ?? message;
      field = e.param ?? e.field ?? undefined;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(r.status, type, message, field);
}

export async function request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: headers() };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const r = await fetch(path, init);
  if (!r.ok) throw await errorOf(r);
  const type = r.headers.get("Content-Type") ?? "";
  return (type.includes("json") ? r.json() : r.text()) as Promise<T>;
}

export const get = <T = any>(path: string) => request<T>("GET", path);
export const post = <T = any>(path: string, body?: unknown) => request<T>("POST", path, body);
export const del = <T = any>(path: string) => request<T>("DELETE", path);

// A file of the API (an artifact, an input), fetched with the key (<img>/<audio> cannot send it:
// they get an object URL of this blob).
export async function fetchBlob(path: string): Promise<Blob> {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw await errorOf(r);
  return r.blob();
}

export type SseEvent = { event: string; data: string };

// Server-Sent Events over fetch (EventSource cannot send an Authorization header). Calls onEvent
// for each event until the stream ends or `signal` aborts; reconnects after a dropped connection
// when `reconnect` is set. Resolves when it stops.
export async function followSse(
  path: string,
  onEvent: (e: SseEvent) => void,
  signal: AbortSignal,
  reconnect = false,
  onOpen?: () => void,
): Promise<void> {
  for (;;) {
    try {
      const r = await fetch(path, { headers: headers({ Accept: "text/event-stream" }), signal });
      if (!r.ok || !r.body) throw await errorOf(r);
      onOpen?.();
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end: number;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
          let event = "message";
          const data: string[] = [];
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith(":")) continue;
            const colon = line.indexOf(":");
            const name = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (name === "event") event = val;
            else if (name === "data") data.push(val);
          }
          if (data.length) onEvent({ event, data: data.join("\n") });
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (!reconnect || (e instanceof ApiError && e.status < 500)) throw e;
    }
    if (!reconnect || signal.aborted) return;
    await new Promise((res) => setTimeout(res, 2000));
  }
}

// ---- The shapes the API answers with (the parts the dashboard reads) ----

export type JobFile = { name: string; content_type: string; bytes: number; sha256: string; url?: string };

export type Job = {
  id: number;
  model: string;
  type: string;
  prompt: string;
  params: Record<string, any>;
  priority: number;
  status: "QUEUED" | "PROCESSING" | "COMPLETED" | "FAILED" | "CANCELLED";
  status_message: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  result: any;
  error: string | null;
  attempts: number;
  // The attempts before the last, each lost with its worker and requeued.
  earlier_attempts: { attempt: number; started_at: string | null; requeued_at: string | null; worker: string }[];
  inputs: JobFile[];
  webhook: { url: string; events: string[] } | null;
  queue_position?: number;
};

export type JobPage = { jobs: Job[]; total: number; limit: number; offset: number };

export type Model = {
  id: string;
  backend: string;
  type: string;
  description: string;
  state: "unloaded" | "loading" | "ready" | "unloading" | "failed";
  reason: string | null;
  required: boolean;
  queued: number;
  running: number;
  parallel: number;
  memory: { estimated_bytes: number; measured_bytes: number | null };
  loaded_at: string | null;
  last_used_at: string | null;
  job_types: Record<string, { input_types: string[]; params: Record<string, any> }>;
  details?: Record<string, any>;
};

export type Me = { auth: string; admin: boolean; key: { id: number; name: string; scope: string; models: string[] | null } | null };

export type ApiKeyInfo = {
  id: number;
  name: string;
  prefix: string;
  scope: string;
  models: string[] | null;
  rate: string | null;
  max_queued: number | null;
  created_at: string;
  revoked_at: string | null;
  key?: string;
};

export const isEnded = (s: Job["status"]) => s === "COMPLETED" || s === "FAILED" || s === "CANCELLED";
