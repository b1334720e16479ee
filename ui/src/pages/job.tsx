// One job: its request, status timeline, live progress and streamed text, its result in a viewer
// for its kind, webhook deliveries; cancel, delete and re-run (a new job with the same input).
import { useEffect, useState } from "preact/hooks";

import { del, fetchBlob, followSse, get, isEnded, post, type Job, type Me } from "../api";
import { JsonBlock, Link, Notice, StatusBadge, useAction, useLoad, useNow } from "../components";
import { duration, localTime, parseTime } from "../format";
import { navigate } from "../router";
import { ResultView } from "../viewers";

// The body of a new job with this job's input: JSON, or multipart with its files fetched back.
async function rerunBody(job: Job): Promise<FormData | Record<string, unknown>> {
  const params = { ...job.params };
  const body: Record<string, unknown> = { model: job.model, priority: job.priority };
  if (job.type === "chat" && params.messages) {
    body.messages = params.messages;
    delete params.messages;
  } else if (job.type === "embedding" && params.input !== undefined) {
    body.input = params.input;
    delete params.input;
  } else if (job.prompt) {
    body.prompt = job.prompt;  // (a job of files alone has none, and an empty one is refused)
  }
  if (Object.keys(params).length) body.params = params;
  if (!job.inputs.length) return body;
  const form = new FormData();
  for (const [k, v] of Object.entries(body)) form.append(k, typeof v === "string" ? v : JSON.stringify(v));
  for (const f of job.inputs) {
    form.append(f.name, await fetchBlob(f.url!), f.name);
  }
  return form;
}

function Timeline({ job, now }: { job: Job; now: number }) {
  const created = parseTime(job.created_at);
  const started = parseTime(job.started_at);
  const finished = parseTime(job.finished_at);
  const rows: [string, string, string][] = [["Created", localTime(job.created_at), ""]];
  if (job.status === "QUEUED") {
    rows.push(["Waiting", job.queue_position ? `position ${job.queue_position} in ${job.model}'s queue` : "in the queue", duration(now - (created ?? now))]);
  }
  // Each attempt whose worker vanished (a crash, a killed node): when it started, on which worker,
  // and when it was given back to the queue.
  for (const a of job.earlier_attempts ?? []) {
    const from = parseTime(a.started_at);
    const to = parseTime(a.requeued_at);
    rows.push([`Attempt ${a.attempt} started`, localTime(a.started_at), a.worker ? `on ${a.worker}` : ""]);
    rows.push([
      `Attempt ${a.attempt} lost`,
      localTime(a.requeued_at),
      from !== null && to !== null ? `its worker stopped; requeued after ${duration(to - from)}` : "its worker stopped; requeued",
    ]);
  }
  if (started !== null) {
    // The wait before this attempt: since the job was created, or since its last attempt was lost.
    const earlier = job.earlier_attempts ?? [];
    const queuedSince = earlier.length ? parseTime(earlier[earlier.length - 1].requeued_at) : created;
    rows.push([
      job.attempts > 1 ? `Started (attempt ${job.attempts})` : "Started",
      localTime(job.started_at),
      queuedSince !== null ? `after ${duration(started - queuedSince)} ${earlier.length ? "back " : ""}in the queue` : "",
    ]);
  }
  if (job.status === "PROCESSING" && started !== null) rows.push(["Running", "", duration(now - started)]);
  if (finished !== null) {
    rows.push([
      job.status.charAt(0) + job.status.slice(1).toLowerCase(),
      localTime(job.finished_at),
      started !== null ? `ran ${duration(finished - started)}` : "",
    ]);
  }
  return (
    <ol class="timeline" aria-label="Status timeline">
      {rows.map(([what, when, note]) => (
        <li>
          <strong>{what}</strong> <span>{when}</span> <span class="muted">{note}</span>
        </li>
      ))}
      {created !== null && finished !== null && <li class="muted">Total {duration(finished - created)}</li>}
    </ol>
  );
}

function Webhooks({ id }: { id: number }) {
  const hooks = useLoad(() => get(`/job/${id}/webhooks`), [id]);
  if (hooks.error) return <Notice kind="error">{hooks.error}</Notice>;
  const list: any[] = hooks.value?.deliveries ?? [];
  if (!list.length) return <p class="muted">No deliveries yet.</p>;
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">Event</th>
          <th scope="col">Status</th>
          <th scope="col">Attempts</th>
          <th scope="col">Last answer</th>
          <th scope="col">Delivered</th>
        </tr>
      </thead>
      <tbody>
        {list.map((d) => (
          <tr>
            <td>{d.event}</td>
            <td>{d.status}</td>
            <td>{d.attempts}</td>
            <td>{d.last_status_code ?? d.last_error ?? "–"}</td>
            <td>{localTime(d.delivered_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function JobPage({ id }: { id: string; me: Me }) {
  const loaded = useLoad(() => get<Job>(`/job/${id}`), [id]);
  const job = loaded.value;
  const now = useNow();
  const [live, setLive] = useState<string | null>(null);
  const [progress, setProgress] = useState<Record<string, unknown> | null>(null);
  const ended = job ? isEnded(job.status) : true;

  // While it runs: its events (the text so far, then each token, progress, the end).
  useEffect(() => {
    if (!job || ended) return;
    const abort = new AbortController();
    followSse(
      `/job/${id}/events`,
      (e) => {
        const data = JSON.parse(e.data);
        if (e.event === "state") {
          loaded.setValue(data.job);
          setLive(data.text ?? "");
        } else if (e.event === "token") {
          setLive((t) => (t ?? "") + (data.text ?? ""));
        } else if (e.event === "started") {
          loaded.reload();
        } else if (data.job) {
          loaded.setValue(data.job);
        } else if (e.event !== "queued") {
          setProgress(data);
        }
      },
      abort.signal,
    ).catch(() => undefined);
    return () => abort.abort();
  }, [id, ended]);

  const action = useAction();
  const act = (fn: () => Promise<void>) => action.run(fn);
  const busy = action.busy !== null;

  if (loaded.error && !job) {
    return (
      <main class="page">
        <p>
          <Link href="/jobs">← Jobs</Link>
        </p>
        <Notice kind="error">{loaded.error}</Notice>
      </main>
    );
  }
  if (!job) return <main class="page" aria-busy="true" />;
  return (
    <main class="page">
      <p>
        <Link href="/jobs">← Jobs</Link>
      </p>
      <div class="page-head">
        <h1>
          Job #{job.id} <StatusBadge status={job.status} />
        </h1>
        <div class="actions">
          {!ended && (
            <button type="button" disabled={busy} onClick={() => act(async () => loaded.setValue(await post<Job>(`/job/${job.id}/cancel`)))}>
              Cancel
            </button>
          )}
          <button
            type="button"
            disabled={busy}
            onClick={() =>
              act(async () => {
                const created = await post<Job>("/job", await rerunBody(job));
                navigate(`/jobs/${created.id}`);
              })
            }
          >
            Re-run
          </button>
          {ended && (
            <button
              type="button"
              class="danger"
              disabled={busy}
              onClick={() =>
                act(async () => {
                  if (!confirm(`Delete job ${job.id} and its files for good?`)) return;
                  await del(`/job/${job.id}?purge=true`);
                  navigate("/jobs");
                })
              }
            >
              Delete
            </button>
          )}
        </div>
      </div>
      {action.error && <Notice kind="error">{action.error}</Notice>}
      <dl class="facts">
        <dt>Model</dt>
        <dd class="mono">
          <Link href={`/jobs?model=${encodeURIComponent(job.model)}`}>{job.model}</Link>
        </dd>
        <dt>Type</dt>
        <dd>{job.type}</dd>
        <dt>Priority</dt>
        <dd>{job.priority}</dd>
        <dt>Status</dt>
        <dd>{job.status_message || job.status}</dd>
      </dl>
      <Timeline job={job} now={now} />
      {job.error && (
        <Notice kind="error">
          <strong>Failed:</strong> {job.error}
        </Notice>
      )}
      {progress && !ended && (
        <div class="progress" role="status">
          {typeof progress.step === "number" && typeof progress.steps === "number" ? (
            <progress max={progress.steps as number} value={progress.step as number} />
          ) : null}
          <code>{JSON.stringify(progress)}</code>
        </div>
      )}
      <section aria-labelledby="result-h">
        <h2 id="result-h">Result</h2>
        <ResultView job={job} live={live} />
        {!job.result && ended && !job.error && <p class="muted">No result.</p>}
      </section>
      <section aria-labelledby="request-h">
        <h2 id="request-h">Request</h2>
        {job.prompt && job.type !== "chat" && (
          <blockquote class="prompt-full" data-testid="prompt">
            {job.prompt}
          </blockquote>
        )}
        {job.inputs.length > 0 && (
          <ul>
            {job.inputs.map((f) => (
              <li>
                input <code>{f.name}</code>: {f.content_type}, {f.bytes} bytes
              </li>
            ))}
          </ul>
        )}
        <JsonBlock value={job.params} label="params" />
      </section>
      {job.webhook && (
        <section aria-labelledby="hooks-h">
          <h2 id="hooks-h">Webhook deliveries</h2>
          <p class="mono">{job.webhook.url}</p>
          <Webhooks id={job.id} />
        </section>
      )}
      <details>
        <summary>Job JSON</summary>
        <JsonBlock value={job} />
      </details>
    </main>
  );
}

