// Try it: a form for each job type a model takes (from GET /models: its job types and the files
// each reads), submitted through the normal API (POST /job), the answer streamed or shown as it
// comes. Chat keeps a conversation going; files come from a picker, a drop, or the microphone.
import { useEffect, useRef, useState } from "preact/hooks";

import { followSse, get, isEnded, post, type Job, type Model } from "../api";
import { errorText, Link, Notice, StatusBadge, useLoad } from "../components";
import { useLocation, navigate } from "../router";
import { ResultView } from "../viewers";

// A param as GET /models describes it (JSON Schema): the form is built from these.
type ParamSchema = {
  type?: "integer" | "number" | "string" | "boolean" | "object" | "array";
  minimum?: number;
  maximum?: number;
  multipleOf?: number;
  maxLength?: number;
  enum?: string[];
  default?: unknown;
  description?: string;
  oneOf?: ParamSchema[];
};
type Field = { name: string; schema: ParamSchema };

// The params most people change come first; the rest fold away under "More params".
const FIRST = ["max_tokens", "temperature", "top_p", "seed", "width", "height", "steps", "voice", "speed", "format", "score_threshold", "top_k", "language"];

function fieldsOf(params: Record<string, ParamSchema> | undefined): Field[] {
  return Object.entries(params ?? {})
    .filter(([, schema]) => schema.type !== "object")
    .map(([name, schema]) => ({ name, schema }))
    .sort((a, b) => (FIRST.indexOf(a.name) + 1 || 99) - (FIRST.indexOf(b.name) + 1 || 99) || a.name.localeCompare(b.name));
}

function FieldInput({ f, value, set }: { f: Field; value: string; set: (v: string) => void }) {
  const s = f.schema;
  const def = s.default === undefined ? "default" : String(s.default);
  if (s.enum || s.type === "boolean") {
    const options = s.enum ?? ["true", "false"];
    return (
      <select name={f.name} value={value} onChange={(e) => set(e.currentTarget.value)}>
        <option value="">{`default (${def})`}</option>
        {options.map((o) => (
          <option value={o}>{o}</option>
        ))}
      </select>
    );
  }
  if (s.type === "integer" || s.type === "number") {
    return (
      <input
        name={f.name}
        type="number"
        min={s.minimum}
        max={s.maximum}
        step={s.multipleOf ?? (s.type === "integer" ? 1 : "any")}
        placeholder={def}
        value={value}
        onInput={(e) => set(e.currentTarget.value)}
      />
    );
  }
  if ((s.maxLength ?? 0) > 4096) {
    return <textarea name={f.name} rows={3} placeholder={def} value={value} onInput={(e) => set(e.currentTarget.value)} />;
  }
  return <input name={f.name} type="text" placeholder={def} value={value} onInput={(e) => set(e.currentTarget.value)} />;
}

function ParamFields({ fields, values, set }: { fields: Field[]; values: Record<string, string>; set: (k: string, v: string) => void }) {
  const first = fields.filter((f) => FIRST.includes(f.name));
  const more = fields.filter((f) => !FIRST.includes(f.name));
  const grid = (list: Field[]) => (
    <div class="param-grid">
      {list.map((f) => (
        <label title={f.schema.description}>
          {f.name}
          <FieldInput f={f} value={values[f.name] ?? ""} set={(v) => set(f.name, v)} />
          <small class="muted">
            {[f.schema.description, f.schema.minimum !== undefined && f.schema.maximum !== undefined ? `${f.schema.minimum}–${f.schema.maximum}` : ""]
              .filter(Boolean)
              .join(" · ")}
          </small>
        </label>
      ))}
    </div>
  );
  return (
    <>
      {first.length > 0 && grid(first)}
      {more.length > 0 && (
        <details>
          <summary>More params</summary>
          {grid(more)}
        </details>
      )}
    </>
  );
}

function collectParams(fields: Field[], values: Record<string, string>, extra: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) {
    const v = values[f.name];
    if (v === undefined || v === "") continue;
    const t = f.schema.type;
    if (t === "integer" || t === "number") out[f.name] = Number(v);
    else if (t === "boolean") out[f.name] = v === "true";
    else out[f.name] = v;
  }
  if (extra.trim()) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(extra);
    } catch (e) {
      throw new Error(`Other params: not JSON (${(e as Error).message})`);
    }
    if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("Other params: give a JSON object");
    Object.assign(out, parsed);
  }
  return out;
}

// A file from a picker or a drop.
function FileDrop({ accept, file, setFile, label }: { accept: string[]; file: File | null; setFile: (f: File | null) => void; label: string }) {
  const [over, setOver] = useState(false);
  return (
    <div
      class={`drop${over ? " over" : ""}`}
      onDragOver={(e) => {
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        e.preventDefault();
        setOver(false);
        const f = e.dataTransfer?.files?.[0];
        if (f) setFile(f);
      }}
    >
      <label>
        {label}
        <input type="file" name="file" accept={accept.join(",")} onChange={(e) => setFile(e.currentTarget.files?.[0] ?? null)} />
      </label>
      <p class="muted">{file ? `${file.name} · ${file.size} bytes` : `or drop a file here (${accept.join(", ") || "any type"})`}</p>
    </div>
  );
}

// 16-bit mono WAV from a recording (what every audio model reads; the browser records WebM).
async function toWav(blob: Blob): Promise<File> {
  const ctx = new OfflineAudioContext(1, 1, 16000);
  const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
  const rate = 16000;
  const offline = new OfflineAudioContext(1, Math.ceil(audio.duration * rate), rate);
  const src = offline.createBufferSource();
  src.buffer = audio;
  src.connect(offline.destination);
  src.start();
  const pcm = (await offline.startRendering()).getChannelData(0);
  const buf = new DataView(new ArrayBuffer(44 + pcm.length * 2));
  const text = (o: number, s: string) => [...s].forEach((c, i) => buf.setUint8(o + i, c.charCodeAt(0)));
  text(0, "RIFF");
  buf.setUint32(4, 36 + pcm.length * 2, true);
  text(8, "WAVEfmt ");
  buf.setUint32(16, 16, true);
  buf.setUint16(20, 1, true);
  buf.setUint16(22, 1, true);
  buf.setUint32(24, rate, true);
  buf.setUint32(28, rate * 2, true);
  buf.setUint16(32, 2, true);
  buf.setUint16(34, 16, true);
  text(36, "data");
  buf.setUint32(40, pcm.length * 2, true);
  pcm.forEach((s, i) => buf.setInt16(44 + i * 2, Math.max(-1, Math.min(1, s)) * 0x7fff, true));
  return new File([buf.buffer], "recording.wav", { type: "audio/wav" });
}

function Recorder({ setFile }: { setFile: (f: File) => void }) {
  const [rec, setRec] = useState<MediaRecorder | null>(null);
  const [error, setError] = useState<string | null>(null);
  if (!navigator.mediaDevices?.getUserMedia) return null;
  return (
    <div class="recorder">
      {rec ? (
        <button type="button" class="danger" onClick={() => rec.stop()}>
          ■ Stop recording
        </button>
      ) : (
        <button
          type="button"
          onClick={async () => {
            try {
              const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
              const r = new MediaRecorder(stream);
              const parts: Blob[] = [];
              r.ondataavailable = (e) => parts.push(e.data);
              r.onstop = async () => {
                stream.getTracks().forEach((t) => t.stop());
                setRec(null);
                try {
                  setFile(await toWav(new Blob(parts, { type: r.mimeType })));
                } catch (e) {
                  setError(errorText(e));
                }
              };
              r.start();
              setRec(r);
              setError(null);
            } catch (e) {
              setError(`No microphone: ${errorText(e)}`);
            }
          }}
        >
          ● Record
        </button>
      )}
      {error && <span class="muted">{error}</span>}
    </div>
  );
}

// Follows a submitted job until it ends: the text so far and each token, then the ended job.
function useFollow(job: Job | null, setJob: (j: Job) => void) {
  const [live, setLive] = useState<string | null>(null);
  useEffect(() => {
    setLive(null);
    if (!job || isEnded(job.status)) return;
    const abort = new AbortController();
    followSse(
      `/job/${job.id}/events`,
      (e) => {
        const data = JSON.parse(e.data);
        if (e.event === "state") {
          setJob(data.job);
          setLive(data.text ?? "");
        } else if (e.event === "token") setLive((t) => (t ?? "") + (data.text ?? ""));
        else if (data.job) setJob(data.job);
      },
      abort.signal,
    ).catch(() => undefined);
    return () => abort.abort();
  }, [job?.id]);
  return live;
}

function Chat({ model, fields }: { model: string; fields: Field[] }) {
  const [messages, setMessages] = useState<{ role: string; content: string }[]>([]);
  const [system, setSystem] = useState("");
  const [text, setText] = useState("");
  const [values, setValues] = useState<Record<string, string>>({});
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const live = useFollow(job, setJob);
  const done = useRef<number | null>(null);

  useEffect(() => {
    if (job && isEnded(job.status) && done.current !== job.id) {
      done.current = job.id;
      if (job.status === "COMPLETED" || job.result?.text) setMessages((m) => [...m, { role: "assistant", content: job.result?.text ?? "" }]);
    }
  }, [job]);

  const send = async (e: Event) => {
    e.preventDefault();
    if (!text.trim()) return;
    const next = [...messages, { role: "user", content: text }];
    try {
      const params = collectParams(fields, values, "");
      const all = system.trim() ? [{ role: "system", content: system }, ...next] : next;
      const created = await post<Job>("/job", { model, messages: all, ...(Object.keys(params).length ? { params } : {}) });
      setMessages(next);
      setText("");
      setError(null);
      setJob(created);
    } catch (err) {
      setError(errorText(err));
    }
  };
  const running = job && !isEnded(job.status);
  return (
    <div class="chat-box">
      <label>
        System prompt
        <input name="system" value={system} onInput={(e) => setSystem(e.currentTarget.value)} placeholder="optional" />
      </label>
      <ol class="chat" data-testid="chat-live" aria-live="polite">
        {messages.map((m) => (
          <li class={`msg ${m.role}`}>
            <span class="role">{m.role}</span>
            <div class="content">{m.content}</div>
          </li>
        ))}
        {running && (
          <li class="msg assistant streaming">
            <span class="role">assistant</span>
            <div class="content">{live ?? "…"}</div>
          </li>
        )}
      </ol>
      {job && (
        <p class="muted">
          Last answer: <Link href={`/jobs/${job.id}`}>job #{job.id}</Link> <StatusBadge status={job.status} />
          {job.error ? ` ${job.error}` : ""}
        </p>
      )}
      {error && <Notice kind="error">{error}</Notice>}
      <form class="stack" onSubmit={send}>
        <label>
          Message
          <textarea name="message" rows={3} value={text} onInput={(e) => setText(e.currentTarget.value)} required />
        </label>
        <details>
          <summary>Sampling</summary>
          <ParamFields fields={fields} values={values} set={(k, v) => setValues({ ...values, [k]: v })} />
        </details>
        <div class="row">
          <button type="submit" class="primary" disabled={!!running}>
            Send
          </button>
          <button type="button" class="ghost" onClick={() => (setMessages([]), setJob(null))}>
            New conversation
          </button>
        </div>
      </form>
    </div>
  );
}

function JobForm({ model, type, accept, fields }: { model: string; type: string; accept: string[]; fields: Field[] }) {
  const [prompt, setPrompt] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [values, setValues] = useState<Record<string, string>>({});
  const [extra, setExtra] = useState("");
  const [job, setJob] = useState<Job | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const live = useFollow(job, setJob);
  const needsFile = accept.length > 0;

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const params = collectParams(fields, values, extra);
      let body: FormData | Record<string, unknown>;
      if (needsFile) {
        if (!file) throw new Error("Choose a file first");
        const form = new FormData();
        form.append("model", model);
        if (prompt) form.append("prompt", prompt);
        if (Object.keys(params).length) form.append("params", JSON.stringify(params));
        form.append(type === "transcription" ? "audio" : type === "ocr" ? "page" : "image", file, file.name);
        body = form;
      } else if (type === "embedding") {
        body = { model, input: prompt, ...(Object.keys(params).length ? { params } : {}) };
      } else {
        body = { model, prompt, ...(Object.keys(params).length ? { params } : {}) };
      }
      setJob(await post<Job>("/job", body));
      setError(null);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div>
      <form class="stack" onSubmit={submit} aria-label={`${type} job`}>
        {needsFile && <FileDrop accept={accept} file={file} setFile={setFile} label={type === "transcription" ? "Audio file" : "Image file"} />}
        {needsFile && type === "transcription" && <Recorder setFile={setFile} />}
        {!needsFile && (
          <label>
            {type === "embedding" ? "Text to embed" : type === "tensor" ? "Input tensors (JSON)" : "Prompt"}
            <textarea name="prompt" rows={4} value={prompt} onInput={(e) => setPrompt(e.currentTarget.value)} required={!needsFile} />
          </label>
        )}
        {fields.length > 0 && <ParamFields fields={fields} values={values} set={(k, v) => setValues({ ...values, [k]: v })} />}
        <details>
          <summary>Other params (JSON)</summary>
          <textarea name="params" aria-label="Other params (JSON)" rows={3} value={extra} onInput={(e) => setExtra(e.currentTarget.value)} placeholder='{"key": "value"}' />
        </details>
        <button type="submit" class="primary" disabled={busy}>
          Submit
        </button>
      </form>
      {error && <Notice kind="error">{error}</Notice>}
      {job && (
        <section class="try-result" aria-live="polite">
          <h3>
            <Link href={`/jobs/${job.id}`}>Job #{job.id}</Link> <StatusBadge status={job.status} />
          </h3>
          {job.error && <Notice kind="error">{job.error}</Notice>}
          <ResultView job={job} live={live} />
        </section>
      )}
    </div>
  );
}

export function TryPage() {
  const { query } = useLocation();
  const models = useLoad(() => get<{ models: Model[] }>("/models"), []);
  const list = (models.value?.models ?? []).filter((m) => m.state !== "failed");
  const model = list.find((m) => m.id === query.get("model")) ?? list[0];
  const types = model ? Object.keys(model.job_types ?? {}) : [];
  const type = types.includes(query.get("type") ?? "") ? query.get("type")! : types[0];
  const go = (m: string, t?: string) => navigate(`/try?model=${encodeURIComponent(m)}${t ? `&type=${encodeURIComponent(t)}` : ""}`, true);

  return (
    <main class="page">
      <h1>Try a model</h1>
      {models.error && <Notice kind="error">{models.error}</Notice>}
      {models.value && !list.length && <Notice kind="info">No models are available to this key.</Notice>}
      {model && (
        <>
          <div class="filters">
            <label>
              Model
              <select name="model" value={model.id} onChange={(e) => go(e.currentTarget.value)}>
                {list.map((m) => (
                  <option value={m.id}>
                    {m.id} ({m.state})
                  </option>
                ))}
              </select>
            </label>
            {types.length > 1 && (
              <div role="tablist" aria-label="Job type" class="tabs">
                {types.map((t) => (
                  <button type="button" role="tab" aria-selected={t === type} onClick={() => go(model.id, t)}>
                    {t}
                  </button>
                ))}
              </div>
            )}
          </div>
          <p class="muted">
            {model.description || model.backend} · {type} · {model.state}
            {model.state === "unloaded" ? " (loads on the first job)" : ""}
          </p>
          {type === "chat" ? (
            <Chat key={model.id} model={model.id} fields={fieldsOf(model.job_types.chat?.params)} />
          ) : (
            <JobForm
              key={`${model.id}/${type}`}
              model={model.id}
              type={type}
              accept={model.job_types[type]?.input_types ?? []}
              fields={fieldsOf(model.job_types[type]?.params)}
            />
          )}
        </>
      )}
    </main>
  );
}
