// Jobs: newest first, filtered by status, model, type, time and prompt text, a page at a time,
// kept live by GET /events (every job the key may see). Filters live in the URL.
import { useEffect, useRef, useState } from "preact/hooks";

import { followSse, get, isEnded, post, type Job, type JobPage, type Me, type Model } from "../api";
import { Link, Notice, StatusBadge, useAction, useLoad, useNow } from "../components";
import { elapsed, localTime, truncate } from "../format";
import { navigate, useLocation } from "../router";

const STATUSES = ["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED"];
const FILTERS = ["status", "model", "type", "q", "since", "until"] as const;

// <input type="datetime-local"> speaks local time without a zone; the API takes ISO-8601 UTC.
const toUtc = (local: string) => (local ? new Date(local).toISOString() : "");
const toLocalInput = (iso: string | null) => {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};

export function JobsPage({ me: _me }: { me: Me }) {
  const { query } = useLocation();
  const limit = Number(query.get("limit") ?? 50) || 50;
  const offset = Math.max(0, Number(query.get("offset") ?? 0) || 0);
  const qs = new URLSearchParams();
  for (const f of FILTERS) if (query.get(f)) qs.set(f, query.get(f)!);
  qs.set("limit", String(limit));
  qs.set("offset", String(offset));
  const key = qs.toString();

  // The list, then where its queued jobs stand (GET /job/{id} counts that; the first 20 of them).
  const page = useLoad(async () => {
    const p = await get<JobPage>(`/job?${key}`);
    const queued = p.jobs.filter((j) => j.status === "QUEUED").slice(0, 20);
    const positions = await Promise.all(queued.map((j) => get<Job>(`/job/${j.id}`).catch(() => null)));
    for (const q of positions) {
      const row = q && p.jobs.find((j) => j.id === q.id);
      if (row && q.queue_position) row.queue_position = q.queue_position;
    }
    return p;
  }, [key]);
  const models = useLoad(() => get<{ models: Model[] }>("/models"), []);
  const now = useNow();
  const [live, setLive] = useState<"connecting" | "live" | "off">("connecting");
  const action = useAction();
  // The search box as typed; it follows the URL when that changes (back, "Clear filters"). Not
  // on the first render: that effect runs after paint and would erase what was typed before it.
  const [search, setSearch] = useState(query.get("q") ?? "");
  const mounted = useRef(false);
  useEffect(() => {
    if (mounted.current) setSearch(query.get("q") ?? "");
    mounted.current = true;
  }, [query.get("q")]);

  // Live: each lifecycle event updates its row at once; the page is read again at most once a
  // second (new jobs, and what an event cannot tell).
  const reloadRef = useRef(page.reload);
  reloadRef.current = page.reload;
  const setPageRef = useRef(page.setValue);
  setPageRef.current = page.setValue;
  useEffect(() => {
    const abort = new AbortController();
    let pending: ReturnType<typeof setTimeout> | null = null;
    const schedule = () => {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        reloadRef.current();
      }, 1000);
    };
    followSse(
      "/events",
      (e) => {
        if (e.event === "ready") return setLive("live");
        const data = JSON.parse(e.data);
        setPageRef.current((p) => {
          if (!p) return p;
          const i = p.jobs.findIndex((j) => j.id === data.job_id);
          if (i < 0) return p;
          const jobs = p.jobs.slice();
          jobs[i] = data.job ?? { ...jobs[i], status: data.status, started_at: data.status === "PROCESSING" ? new Date().toISOString() : jobs[i].started_at };
          return { ...p, jobs };
        });
        schedule();
      },
      abort.signal,
      true,
      () => {
        // (Re)connected: what happened while the stream was down is read from the list.
        setLive("live");
        reloadRef.current();
      },
    ).catch(() => setLive("off"));
    return () => {
      abort.abort();
      if (pending) clearTimeout(pending);
    };
  }, []);

  const setQuery = (changes: Record<string, string>) => {
    const next = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    if (!("offset" in changes)) next.delete("offset");
    const s = next.toString();
    navigate(`/jobs${s ? "?" + s : ""}`, true);
  };

  const types = [...new Set((models.value?.models ?? []).flatMap((m) => Object.keys(m.job_types ?? {})))].sort();
  const p = page.value;
  const last = p ? Math.min(p.offset + p.jobs.length, p.total) : 0;

  return (
    <main class="page">
      <div class="page-head">
        <h1>Jobs</h1>
        <span class={`live ${live}`} role="status" aria-live="polite">
          {live === "live" ? "● live" : live === "connecting" ? "connecting…" : "not live (reload to retry)"}
        </span>
        <Link href="/try" class="button primary">
          New job
        </Link>
      </div>
      <form class="filters" role="search" aria-label="Filter jobs" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status
          <select name="status" value={query.get("status") ?? ""} onChange={(e) => setQuery({ status: e.currentTarget.value })}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option value={s}>{s.toLowerCase()}</option>
            ))}
          </select>
        </label>
        <label>
          Model
          <select name="model" value={query.get("model") ?? ""} onChange={(e) => setQuery({ model: e.currentTarget.value })}>
            <option value="">any</option>
            {(models.value?.models ?? []).map((m) => (
              <option value={m.id}>{m.id}</option>
            ))}
          </select>
        </label>
        <label>
          Type
          <select name="type" value={query.get("type") ?? ""} onChange={(e) => setQuery({ type: e.currentTarget.value })}>
            <option value="">any</option>
            {types.map((t) => (
              <option value={t}>{t}</option>
            ))}
          </select>
        </label>
        <label>
          From
          <input type="datetime-local" name="since" value={toLocalInput(query.get("since"))} onChange={(e) => setQuery({ since: toUtc(e.currentTarget.value) })} />
        </label>
        <label>
          Until
          <input type="datetime-local" name="until" value={toLocalInput(query.get("until"))} onChange={(e) => setQuery({ until: toUtc(e.currentTarget.value) })} />
        </label>
        <label class="grow">
          Prompt contains
          <input
            type="search"
            name="q"
            placeholder="text in the prompt"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
            onChange={(e) => setQuery({ q: e.currentTarget.value })}
          />
        </label>
        {FILTERS.some((f) => query.get(f)) && (
          <button type="button" class="ghost" onClick={() => navigate("/jobs", true)}>
            Clear filters
          </button>
        )}
      </form>
      {page.error && <Notice kind="error">{page.error}</Notice>}
      {action.error && <Notice kind="error">{action.error}</Notice>}
      <div class="table-wrap">
        <table class="jobs" aria-busy={page.loading}>
          <thead>
            <tr>
              <th scope="col">ID</th>
              <th scope="col">Status</th>
              <th scope="col">Model</th>
              <th scope="col" class="hide-narrow">Type</th>
              <th scope="col">Prompt</th>
              <th scope="col" class="hide-narrow">Created</th>
              <th scope="col">Time</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {p?.jobs.map((j: Job) => (
              <tr key={j.id} data-job={j.id}>
                <td>
                  <Link href={`/jobs/${j.id}`}>#{j.id}</Link>
                </td>
                <td>
                  <StatusBadge status={j.status} />
                </td>
                <td class="mono">{j.model}</td>
                <td class="hide-narrow">{j.type}</td>
                <td class="prompt" title={j.prompt}>
                  {truncate(j.prompt || (j.inputs?.length ? `[${j.inputs.map((f) => f.name).join(", ")}]` : ""), 80)}
                </td>
                <td class="hide-narrow nowrap">{localTime(j.created_at)}</td>
                <td class="nowrap">
                  {elapsed(j, now)}
                  {j.status === "QUEUED" && j.queue_position ? <span class="muted small" data-testid="queue-position"> · #{j.queue_position} in queue</span> : null}
                </td>
                <td>
                  {!isEnded(j.status) && (
                    <button
                      type="button"
                      class="small"
                      aria-label={`Cancel job ${j.id}`}
                      onClick={() =>
                        action.run(async () => {
                          await post(`/job/${j.id}/cancel`);
                          page.reload();
                        })
                      }
                    >
                      Cancel
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {p && p.jobs.length === 0 && <p class="empty">No jobs{FILTERS.some((f) => query.get(f)) ? " match these filters" : " yet"}.</p>}
      </div>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={offset === 0} onClick={() => setQuery({ offset: String(Math.max(0, offset - limit)) })}>
          ← Newer
        </button>
        <span class="count">{p ? (p.total ? `${p.offset + 1}–${last} of ${p.total}` : "0 jobs") : "…"}</span>
        <button type="button" disabled={!p || last >= p.total} onClick={() => setQuery({ offset: String(offset + limit) })}>
          Older →
        </button>
        <label class="inline">
          Per page
          <select value={String(limit)} onChange={(e) => setQuery({ limit: e.currentTarget.value })}>
            {[25, 50, 100, 200].map((n) => (
              <option value={String(n)}>{n}</option>
            ))}
          </select>
        </label>
      </nav>
    </main>
  );
}
