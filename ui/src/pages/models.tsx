// Models: each with its state, memory, queued and running jobs, and (admin keys) its throughput
// and latency from /metrics; load and unload buttons for admin keys.
import { useEffect } from "preact/hooks";

import { get, post, type Me, type Model } from "../api";
import { Link, Notice, useAction, useLoad } from "../components";
import { bytes, duration, localTime } from "../format";
import { useMetrics } from "../metrics";

export function ModelsPage({ me }: { me: Me }) {
  const models = useLoad(() => get<{ models: Model[] }>("/models"), []);
  const { points } = useMetrics(me.admin);
  const last = points[points.length - 1];

  // States change on their own (keep_alive unloads, loads started by jobs): read them again.
  useEffect(() => {
    const t = setInterval(() => models.reload(), 3000);
    return () => clearInterval(t);
  }, [models.reload]);

  const action = useAction();
  const act = (id: string, what: "load" | "unload") =>
    action.run(() => post(`/models/${encodeURIComponent(id)}/${what}?wait=true`).finally(() => models.reload()), id);

  return (
    <main class="page">
      <h1>Models</h1>
      {models.error && <Notice kind="error">{models.error}</Notice>}
      {action.error && <Notice kind="error">{action.error}</Notice>}
      <div class="table-wrap">
        <table class="models">
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">State</th>
              <th scope="col" class="hide-narrow">Backend · type</th>
              <th scope="col">Memory</th>
              <th scope="col">Queued</th>
              <th scope="col">Running</th>
              {me.admin && <th scope="col">Jobs/s</th>}
              {me.admin && <th scope="col" class="hide-narrow">p50 / p99</th>}
              {me.admin && <th scope="col" class="hide-narrow">Tokens/s</th>}
              <th scope="col" class="hide-narrow">Last used</th>
              {me.admin && (
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              )}
            </tr>
          </thead>
          <tbody>
            {(models.value?.models ?? []).map((m) => {
              const stats = last?.perModel[m.id];
              return (
                <tr key={m.id} data-model={m.id}>
                  <td>
                    <Link href={`/try?model=${encodeURIComponent(m.id)}`} class="mono">
                      {m.id}
                    </Link>
                    {m.description && <div class="muted small">{m.description}</div>}
                  </td>
                  <td>
                    <span class={`badge state-${m.state}`} data-testid="model-state">
                      {m.state}
                    </span>
                    {m.reason && <div class="muted small">{m.reason}</div>}
                  </td>
                  <td class="hide-narrow">
                    {m.backend} · {Object.keys(m.job_types ?? {}).join(", ") || m.type}
                  </td>
                  <td title={m.memory.measured_bytes !== null ? "measured" : "estimated"}>
                    {bytes(m.memory.measured_bytes ?? m.memory.estimated_bytes)}
                    {m.memory.measured_bytes === null ? " (est.)" : ""}
                  </td>
                  <td>
                    <Link href={`/jobs?model=${encodeURIComponent(m.id)}&status=QUEUED`}>{m.queued}</Link>
                  </td>
                  <td>{m.running}</td>
                  {me.admin && <td>{stats ? stats.jobsPerSecond.toFixed(1) : "–"}</td>}
                  {me.admin && (
                    <td class="hide-narrow nowrap">
                      {stats?.p50 != null ? `${duration(stats.p50 * 1000)} / ${duration((stats.p99 ?? 0) * 1000)}` : "–"}
                    </td>
                  )}
                  {me.admin && <td class="hide-narrow">{stats && stats.tokensPerSecond > 0 ? stats.tokensPerSecond.toFixed(0) : "–"}</td>}
                  <td class="hide-narrow nowrap">{localTime(m.last_used_at)}</td>
                  {me.admin && (
                    <td class="nowrap">
                      {m.state === "ready" || m.state === "loading" ? (
                        <button type="button" class="small" disabled={action.busy === m.id} onClick={() => act(m.id, "unload")} aria-label={`Unload ${m.id}`}>
                          Unload
                        </button>
                      ) : (
                        <button type="button" class="small" disabled={action.busy === m.id} onClick={() => act(m.id, "load")} aria-label={`Load ${m.id}`}>
                          Load
                        </button>
                      )}
                    </td>
                  )}
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </main>
  );
}
