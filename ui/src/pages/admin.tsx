// Operations (admin keys): live charts from /metrics, API keys (create - shown once -, list,
// revoke) and the audit trail.
import { useState } from "preact/hooks";

import { del, get, post, type ApiKeyInfo, type Me } from "../api";
import { Chart } from "../chart";
import { CopyButton, Notice, useAction, useLoad } from "../components";
import { localTime } from "../format";
import { useMetrics } from "../metrics";
import { navigate, useLocation } from "../router";

function Charts() {
  const { points, error } = useMetrics(true);
  const times = points.map((p) => p.t);
  const models = [...new Set(points.flatMap((p) => Object.keys(p.perModel)))].sort();
  const tokenModels = models.filter((m) => points.some((p) => (p.perModel[m]?.tokensPerSecond ?? 0) > 0));
  return (
    <section aria-labelledby="charts-h">
      <h2 id="charts-h">Live</h2>
      {error && <Notice kind="error">{error}</Notice>}
      {points.length < 2 && <p class="muted">Reading /metrics every 2 s; the charts fill in as it goes.</p>}
      <div class="charts">
        <Chart title="Jobs finished per second" unit="" times={times} series={[{ label: "all models", values: points.map((p) => p.jobsPerSecond) }]} />
        <Chart title="Queue depth" unit="" times={times} series={[{ label: "queued jobs", values: points.map((p) => p.queued) }]} />
        <Chart
          title="Job latency"
          unit="s"
          times={times}
          series={[
            { label: "p50", values: points.map((p) => p.p50) },
            { label: "p99", values: points.map((p) => p.p99) },
          ]}
        />
        <Chart
          title="Tokens per second"
          unit=""
          times={times}
          series={(tokenModels.length ? tokenModels : ["(none yet)"]).map((m) => ({ label: m, values: points.map((p) => p.perModel[m]?.tokensPerSecond ?? null) }))}
        />
      </div>
    </section>
  );
}

function Keys() {
  const keys = useLoad(() => get<{ keys: ApiKeyInfo[] }>("/admin/keys"), []);
  const [name, setName] = useState("");
  const [scope, setScope] = useState("user");
  const [models, setModels] = useState("");
  const [rate, setRate] = useState("");
  const [maxQueued, setMaxQueued] = useState("");
  const [created, setCreated] = useState<ApiKeyInfo | null>(null);
  const [showRevoked, setShowRevoked] = useState(false);

  const action = useAction();
  const create = (e: Event) => {
    e.preventDefault();
    action.run(async () => {
      const body: Record<string, unknown> = { name, scope };
      const list = models.split(",").map((m) => m.trim()).filter(Boolean);
      if (list.length) body.models = list;
      if (rate) body.rate = rate;
      if (maxQueued) body.max_queued = Number(maxQueued);
      setCreated(await post<ApiKeyInfo>("/admin/keys", body));
      setName("");
      keys.reload();
    });
  };
  const list = (keys.value?.keys ?? []).filter((k) => showRevoked || !k.revoked_at);
  return (
    <section aria-labelledby="keys-h">
      <h2 id="keys-h">API keys</h2>
      {keys.error && <Notice kind="error">{keys.error}</Notice>}
      {created?.key && (
        <Notice kind="ok">
          Key <strong>{created.name}</strong> ({created.scope}) created. Copy it now: it is not shown again.
          <div class="secret">
            <code data-testid="new-key">{created.key}</code> <CopyButton text={created.key} />
          </div>
        </Notice>
      )}
      <form class="filters" onSubmit={create} aria-label="Create a key">
        <label>
          Name
          <input name="key-name" value={name} onInput={(e) => setName(e.currentTarget.value)} required pattern="[A-Za-z0-9._\-]{1,64}" />
        </label>
        <label>
          Scope
          <select name="scope" value={scope} onChange={(e) => setScope(e.currentTarget.value)}>
            <option value="user">user</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <label class="grow">
          Models (comma-separated; empty: all)
          <input name="models" value={models} onInput={(e) => setModels(e.currentTarget.value)} />
        </label>
        <label>
          Rate
          <input name="rate" value={rate} onInput={(e) => setRate(e.currentTarget.value)} placeholder="10/s" size={8} />
        </label>
        <label>
          Max queued
          <input name="max_queued" type="number" min={1} value={maxQueued} onInput={(e) => setMaxQueued(e.currentTarget.value)} size={6} />
        </label>
        <button type="submit" class="primary">
          Create key
        </button>
      </form>
      {action.error && <Notice kind="error">{action.error}</Notice>}
      <label class="inline">
        <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(e.currentTarget.checked)} /> Show revoked keys
      </label>
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scope</th>
              <th scope="col">Prefix</th>
              <th scope="col" class="hide-narrow">Models</th>
              <th scope="col" class="hide-narrow">Limits</th>
              <th scope="col" class="hide-narrow">Created</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((k) => (
              <tr data-key={k.name} class={k.revoked_at ? "revoked" : ""}>
                <td>{k.name}</td>
                <td>{k.scope}</td>
                <td class="mono">{k.prefix}</td>
                <td class="hide-narrow">{k.models?.join(", ") ?? "all"}</td>
                <td class="hide-narrow">{[k.rate, k.max_queued ? `≤${k.max_queued} queued` : ""].filter(Boolean).join(", ") || "–"}</td>
                <td class="hide-narrow nowrap">{localTime(k.created_at)}</td>
                <td>
                  {k.revoked_at ? (
                    <span class="muted">revoked {localTime(k.revoked_at)}</span>
                  ) : (
                    <button
                      type="button"
                      class="small danger"
                      aria-label={`Revoke key ${k.name}`}
                      onClick={() => {
                        if (!confirm(`Revoke key ${k.name}? Requests with it are refused from now on.`)) return;
                        action.run(async () => {
                          await del(`/admin/keys/${k.id}`);
                          keys.reload();
                        });
                      }}
                    >
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function Audit() {
  const [key, setKey] = useState("");
  const [offset, setOffset] = useState(0);
  const limit = 50;
  const qs = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  if (key) qs.set("key", key);
  const page = useLoad(() => get(`/admin/audit?${qs}`), [qs.toString()]);
  const entries: any[] = page.value?.entries ?? [];
  return (
    <section aria-labelledby="audit-h">
      <h2 id="audit-h">Audit trail</h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter the audit trail">
        <label>
          Key name
          <input name="audit-key" value={key} onChange={(e) => (setKey(e.currentTarget.value), setOffset(0))} />
        </label>
        <button type="button" onClick={() => page.reload()}>
          Refresh
        </button>
      </form>
      {page.error && <Notice kind="error">{page.error}</Notice>}
      <div class="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Key</th>
              <th scope="col">Request</th>
              <th scope="col">Status</th>
              <th scope="col" class="hide-narrow">Job</th>
              <th scope="col" class="hide-narrow">From</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((e) => (
              <tr>
                <td class="nowrap">{localTime(e.time)}</td>
                <td>{e.key_name || "–"}</td>
                <td class="mono">
                  {e.method} {e.path}
                </td>
                <td>{e.status}</td>
                <td class="hide-narrow">{e.job_id ?? ""}</td>
                <td class="hide-narrow mono">{e.remote}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <nav class="pager" aria-label="Audit pages">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - limit))}>
          ← Newer
        </button>
        <span class="count">{page.value ? `${page.value.total ? offset + 1 : 0}–${offset + entries.length} of ${page.value.total}` : "…"}</span>
        <button type="button" disabled={!page.value || offset + entries.length >= page.value.total} onClick={() => setOffset(offset + limit)}>
          Older →
        </button>
      </nav>
    </section>
  );
}

const TABS = [
  ["charts", "Live"],
  ["keys", "API keys"],
  ["audit", "Audit trail"],
] as const;

export function AdminPage({ me }: { me: Me }) {
  const { query } = useLocation();
  if (!me.admin) {
    return (
      <main class="page">
        <h1>Operations</h1>
        <Notice kind="error">Operations need an admin key; this key ({me.key?.name}) is a user key.</Notice>
      </main>
    );
  }
  const tab = TABS.find(([id]) => id === query.get("tab"))?.[0] ?? "charts";
  return (
    <main class="page">
      <h1>Operations</h1>
      <div role="tablist" class="tabs" aria-label="Operations">
        {TABS.map(([id, label]) => (
          <button type="button" role="tab" aria-selected={tab === id} onClick={() => navigate(`/admin?tab=${id}`, true)}>
            {label}
          </button>
        ))}
      </div>
      {tab === "charts" && <Charts />}
      {tab === "keys" && <Keys />}
      {tab === "audit" && <Audit />}
    </main>
  );
}
