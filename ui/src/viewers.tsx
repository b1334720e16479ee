// A job's result, shown for what it is: text, a chat transcript, embeddings, images, audio with
// its waveform, detections drawn on the input image, OCR words outlined on the page, transcripts
// with segment times, classification labels, raw tensors. Anything else: the JSON.
import { useEffect, useRef, useState } from "preact/hooks";

import { fetchBlob, type Job, type JobFile } from "./api";
import { CopyButton, errorText, JsonBlock, Notice } from "./components";
import { bytes } from "./format";

type Box = { x: number; y: number; width: number; height: number };

// An API file (artifact or input): its bytes and an object URL of them, fetched with the key.
function useBlob(path: string | undefined): { blob: Blob | null; url: string | null; error: string | null } {
  const [state, setState] = useState<{ blob: Blob | null; url: string | null; error: string | null }>({ blob: null, url: null, error: null });
  useEffect(() => {
    setState({ blob: null, url: null, error: null });
    if (!path) return;
    let made: string | null = null;
    let gone = false;
    fetchBlob(path)
      .then((blob) => {
        if (gone) return;
        made = URL.createObjectURL(blob);
        setState({ blob, url: made, error: null });
      })
      .catch((e) => !gone && setState({ blob: null, url: null, error: errorText(e) }));
    return () => {
      gone = true;
      if (made) URL.revokeObjectURL(made);
    };
  }, [path]);
  return state;
}

export function TextResult({ text, streaming }: { text: string; streaming?: boolean }) {
  return (
    <div class="text-result">
      <div class="code-head">
        <span>{streaming ? "Generating…" : "Text"}</span>
        <CopyButton text={text} />
      </div>
      <div class={`generated${streaming ? " streaming" : ""}`} data-testid="result-text">
        {text}
      </div>
    </div>
  );
}

function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p: any) => (typeof p === "string" ? p : p?.text ?? `[${p?.type}]`)).join("");
  return content === null || content === undefined ? "" : JSON.stringify(content);
}

function ChatTranscript({ job, answer }: { job: Job; answer: string | null }) {
  const messages: any[] = Array.isArray(job.params?.messages) ? job.params.messages : [];
  const calls: any[] = job.result?.tool_calls ?? [];
  return (
    <ol class="chat" data-testid="chat-transcript">
      {messages.map((m) => (
        <li class={`msg ${m.role}`}>
          <span class="role">{m.role}</span>
          <div class="content">{contentText(m.content)}</div>
          {Array.isArray(m.tool_calls) && m.tool_calls.map((c: any) => <code class="call">{c.function?.name}({c.function?.arguments})</code>)}
        </li>
      ))}
      {(answer !== null || calls.length > 0) && (
        <li class="msg assistant answer">
          <span class="role">assistant</span>
          <div class="content">{answer}</div>
          {calls.map((c: any) => (
            <code class="call">
              {c.function?.name ?? c.name}({typeof c.function?.arguments === "string" ? c.function.arguments : JSON.stringify(c.arguments ?? c.function?.arguments)})
            </code>
          ))}
        </li>
      )}
    </ol>
  );
}

function Embeddings({ result }: { result: any }) {
  const vectors: number[][] = result.embeddings ?? (result.embedding ? [result.embedding] : []);
  return (
    <div data-testid="embeddings">
      <p>
        {vectors.length} vector{vectors.length === 1 ? "" : "s"} of dimension {result.dimensions ?? vectors[0]?.length}
      </p>
      <table>
        <thead>
          <tr>
            <th scope="col">#</th>
            <th scope="col">Dimension</th>
            <th scope="col">L2 norm</th>
            <th scope="col">First values</th>
          </tr>
        </thead>
        <tbody>
          {vectors.map((v, i) => (
            <tr>
              <td>{i}</td>
              <td>{v.length}</td>
              <td>{Math.sqrt(v.reduce((s, x) => s + x * x, 0)).toFixed(4)}</td>
              <td class="mono">{v.slice(0, 8).map((x) => x.toFixed(4)).join(", ")}{v.length > 8 ? ", …" : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// The input image with boxes drawn over it (an SVG in the image's own pixel coordinates).
function BoxesOnImage({ file, width, height, boxes, testid }: { file?: JobFile; width: number; height: number; boxes: { box: Box; label: string; title: string }[]; testid: string }) {
  const { url, error } = useBlob(file?.url);
  if (!file) return <Notice kind="info">The input image is not stored with this job.</Notice>;
  if (error) return <Notice kind="error">{error}</Notice>;
  return (
    <figure class="boxes" data-testid={testid}>
      <div class="boxes-frame" style={{ aspectRatio: `${width} / ${height}` }}>
        {url && <img src={url} alt={`input ${file.name}`} />}
        <svg viewBox={`0 0 ${width} ${height}`} preserveAspectRatio="none" role="img" aria-label={`${boxes.length} boxes`}>
          {boxes.map((b, i) => (
            <g class={`box c${i % 6}`}>
              <title>{b.title}</title>
              <rect x={b.box.x} y={b.box.y} width={b.box.width} height={b.box.height} vector-effect="non-scaling-stroke" />
              {b.label && (
                <text x={b.box.x + 2} y={Math.max(b.box.y - 3, 10)} style={{ fontSize: `${Math.max(width, height) / 40}px` }}>
                  {b.label}
                </text>
              )}
            </g>
          ))}
        </svg>
      </div>
    </figure>
  );
}

function Detections({ job }: { job: Job }) {
  const r = job.result;
  const boxes = (r.detections as any[]).map((d) => ({ box: d.box as Box, label: `${d.label} ${(d.score * 100).toFixed(0)}%`, title: `${d.label}: ${d.score.toFixed(3)}` }));
  return (
    <div>
      <BoxesOnImage file={job.inputs[0]} width={r.width} height={r.height} boxes={boxes} testid="detections" />
      <table>
        <thead>
          <tr>
            <th scope="col">Label</th>
            <th scope="col">Score</th>
            <th scope="col">Box (x, y, w, h)</th>
          </tr>
        </thead>
        <tbody>
          {(r.detections as any[]).map((d) => (
            <tr>
              <td>{d.label}</td>
              <td>{d.score.toFixed(3)}</td>
              <td class="mono">{[d.box.x, d.box.y, d.box.width, d.box.height].map((v: number) => Math.round(v)).join(", ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Ocr({ job }: { job: Job }) {
  const r = job.result;
  const boxes = (r.words as any[]).map((w) => ({ box: w.box as Box, label: "", title: `${w.text} (${w.confidence})` }));
  return (
    <div class="two-col">
      <BoxesOnImage file={job.inputs[0]} width={r.width} height={r.height} boxes={boxes} testid="ocr-words" />
      <TextResult text={r.text} />
    </div>
  );
}

function Labels({ result }: { result: any }) {
  return (
    <table data-testid="labels">
      <thead>
        <tr>
          <th scope="col">Label</th>
          <th scope="col">Score</th>
        </tr>
      </thead>
      <tbody>
        {(result.labels as any[]).map((l) => (
          <tr>
            <td>{l.label ?? l.index}</td>
            <td>
              <span class="bar" style={{ width: `${Math.round(l.score * 100)}%` }} /> {l.score.toFixed(3)}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const clock = (s: number) => {
  const m = Math.floor(s / 60);
  return `${m}:${(s % 60).toFixed(2).padStart(5, "0")}`;
};

function Transcript({ result }: { result: any }) {
  return (
    <div data-testid="transcript">
      <TextResult text={result.text ?? ""} />
      <table>
        <thead>
          <tr>
            <th scope="col">Start</th>
            <th scope="col">End</th>
            <th scope="col">Text</th>
          </tr>
        </thead>
        <tbody>
          {(result.segments as any[]).map((s) => (
            <tr>
              <td class="mono">{clock(s.start)}</td>
              <td class="mono">{clock(s.end)}</td>
              <td>{s.text}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Waveform({ blob }: { blob: Blob }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    let closed = false;
    (async () => {
      const data = await blob.arrayBuffer();
      const ctx = new OfflineAudioContext(1, 1, 44100);
      const audio = await ctx.decodeAudioData(data);
      const c = canvas.current;
      if (!c || closed) return;
      const samples = audio.getChannelData(0);
      const w = (c.width = c.clientWidth * devicePixelRatio);
      const h = (c.height = c.clientHeight * devicePixelRatio);
      const g = c.getContext("2d")!;
      g.fillStyle = getComputedStyle(c).color;
      const per = Math.max(1, Math.floor(samples.length / w));
      for (let x = 0; x < w; x++) {
        let lo = 1;
        let hi = -1;
        for (let i = x * per; i < Math.min((x + 1) * per, samples.length); i++) {
          lo = Math.min(lo, samples[i]);
          hi = Math.max(hi, samples[i]);
        }
        if (hi < lo) continue;
        g.fillRect(x, ((1 - hi) / 2) * h, 1, Math.max(1, ((hi - lo) / 2) * h));
      }
      c.dataset.drawn = "true";
    })().catch(() => undefined);  // a format the browser cannot decode: the player still shows
    return () => {
      closed = true;
    };
  }, [blob]);
  return <canvas ref={canvas} class="waveform" aria-hidden="true" data-testid="waveform" />;
}

function Artifact({ file }: { file: JobFile & { url: string } }) {
  const { blob, url, error } = useBlob(file.url);
  if (error) return <Notice kind="error">{error}</Notice>;
  const kind = file.content_type.split("/")[0];
  return (
    <figure class="artifact">
      {url && kind === "image" && <img src={url} alt={file.name} data-testid="artifact-image" />}
      {url && kind === "audio" && (
        <>
          <audio controls src={url} data-testid="artifact-audio" />
          {blob && <Waveform blob={blob} />}
        </>
      )}
      <figcaption>
        {file.name} · {file.content_type} · {bytes(file.bytes)}{" "}
        {url && (
          <a href={url} download={file.name}>
            Download
          </a>
        )}
      </figcaption>
    </figure>
  );
}

function Tensors({ outputs }: { outputs: Record<string, any> }) {
  return (
    <div data-testid="tensors">
      {Object.entries(outputs).map(([name, t]) => {
        const values: number[] = (t.data ?? t.values ?? []).flat(Infinity);
        return (
          <section class="tensor">
            <h4>
              {name} <span class="mono">[{(t.shape ?? []).join(" × ")}]</span> {t.type ?? t.dtype ?? ""}
            </h4>
            <div class="values mono">
              {values.slice(0, 64).map((v) => (typeof v === "number" ? Number(v.toPrecision(5)) : String(v))).join(", ")}
              {values.length > 64 ? `, … (${values.length} values)` : ""}
            </div>
          </section>
        );
      })}
    </div>
  );
}

// The viewer for `job` as it is now; `live` is the text streamed so far (while it runs).
export function ResultView({ job, live }: { job: Job; live: string | null }) {
  const r = job.result;
  if (job.type === "chat") {
    return <ChatTranscript job={job} answer={r?.text ?? live ?? null} />;
  }
  if (!r) return live !== null ? <TextResult text={live} streaming /> : null;
  const artifacts: (JobFile & { url: string })[] = r.artifacts ?? [];
  return (
    <div class="result">
      {Array.isArray(r.detections) && typeof r.width === "number" && <Detections job={job} />}
      {Array.isArray(r.words) && typeof r.width === "number" && <Ocr job={job} />}
      {Array.isArray(r.labels) && <Labels result={r} />}
      {Array.isArray(r.segments) && <Transcript result={r} />}
      {(Array.isArray(r.embeddings) || Array.isArray(r.embedding)) && <Embeddings result={r} />}
      {r.outputs && typeof r.outputs === "object" && <Tensors outputs={r.outputs} />}
      {typeof r.text === "string" && !Array.isArray(r.segments) && !Array.isArray(r.words) && <TextResult text={r.text} />}
      {artifacts.map((a) => (
        <Artifact file={a} />
      ))}
      <details>
        <summary>Result JSON</summary>
        <JsonBlock value={r} />
      </details>
    </div>
  );
}
