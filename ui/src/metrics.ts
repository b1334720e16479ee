// Live numbers from GET /metrics (Prometheus text, admin keys): read every few seconds, turned
// into rates (jobs/s, tokens/s) and latency quantiles over each interval, per model and overall.
import { useEffect, useState } from "preact/hooks";

import { get } from "./api";

type Sample = { name: string; labels: Record<string, string>; value: number };

export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function sumBy(samples: Sample[], name: string, key = "model"): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) if (s.name === name) out.set(s.labels[key] ?? "", (out.get(s.labels[key] ?? "") ?? 0) + s.value);
  return out;
}

// Histogram buckets by model: le -> cumulative count.
function buckets(samples: Sample[], name: string): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const model = s.labels.model ?? "";
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    const m = out.get(model) ?? new Map<number, number>();
    m.set(le, (m.get(le) ?? 0) + s.value);
    out.set(model, m);
  }
  return out;
}

// The q-quantile of the observations between two readings of a histogram (linear within a bucket).
function quantile(now: Map<number, number>, before: Map<number, number> | undefined, q: number): number | null {
  const les = [...now.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (now.get(le) ?? 0) - (before?.get(le) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    if (counts[i] >= rank) {
      const lo = i === 0 ? 0 : les[i - 1];
      const hi = les[i] === Infinity ? lo : les[i];
      const below = i === 0 ? 0 : counts[i - 1];
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lo + ((rank - below) / inBucket) * (hi - lo) : hi;
    }
  }
  return null;
}

export type Point = {
  t: number;  // seconds since the epoch
  jobsPerSecond: number;
  queued: number;
  p50: number | null;
  p99: number | null;
  perModel: Record<string, { jobsPerSecond: number; tokensPerSecond: number; queued: number; p50: number | null; p99: number | null }>;
};

type Reading = { t: number; finished: Map<string, number>; tokens: Map<string, number>; durations: Map<string, Map<number, number>> };

function merged(by: Map<string, Map<number, number>>): Map<number, number> {
  const out = new Map<number, number>();
  for (const m of by.values()) for (const [le, c] of m) out.set(le, (out.get(le) ?? 0) + c);
  return out;
}

// Reads /metrics every `ms` while mounted; keeps the last `keep` points.
export function useMetrics(enabled: boolean, ms = 2000, keep = 150): { points: Point[]; error: string | null } {
  const [points, setPoints] = useState<Point[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!enabled) return;
    let last: Reading | null = null;
    let stopped = false;
    const read = async () => {
      try {
        const samples = parsePrometheus(await get<string>("/metrics"));
        const r: Reading = {
          t: Date.now() / 1000,
          finished: sumBy(samples, "statim_jobs_finished_total"),
          tokens: sumBy(samples, "statim_generated_tokens_total"),
          durations: buckets(samples, "statim_job_duration_seconds"),
        };
        const queued = sumBy(samples, "statim_queue_depth");
        if (last && !stopped) {
          const dt = Math.max(0.001, r.t - last.t);
          const rate = (now: Map<string, number>, before: Map<string, number>, k: string) => Math.max(0, ((now.get(k) ?? 0) - (before.get(k) ?? 0)) / dt);
          const models = new Set([...r.finished.keys(), ...queued.keys(), ...r.tokens.keys()]);
          const perModel: Point["perModel"] = {};
          for (const m of models) {
            if (!m) continue;
            const d = r.durations.get(m);
            perModel[m] = {
              jobsPerSecond: rate(r.finished, last.finished, m),
              tokensPerSecond: rate(r.tokens, last.tokens, m),
              queued: queued.get(m) ?? 0,
              p50: d ? quantile(d, last.durations.get(m), 0.5) : null,
              p99: d ? quantile(d, last.durations.get(m), 0.99) : null,
            };
          }
          const all = merged(r.durations);
          const allBefore = merged(last.durations);
          const p: Point = {
            t: r.t,
            jobsPerSecond: Object.values(perModel).reduce((s, m) => s + m.jobsPerSecond, 0),
            queued: [...queued.values()].reduce((s, v) => s + v, 0),
            p50: quantile(all, allBefore, 0.5),
            p99: quantile(all, allBefore, 0.99),
            perModel,
          };
          setPoints((ps) => [...ps.slice(-(keep - 1)), p]);
        }
        last = r;
        setError(null);
      } catch (e) {
        setError(e instanceof Error ? e.message : String(e));
      }
    };
    read();
    const t = setInterval(read, ms);
    return () => {
      stopped = true;
      clearInterval(t);
    };
  }, [enabled, ms, keep]);
  return { points, error };
}
