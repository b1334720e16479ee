// Display helpers: times, durations, sizes.

export function parseTime(t: string | null | undefined): number | null {
  if (!t) return null;
  const ms = Date.parse(t.endsWith("Z") || /[+-]\d\d:?\d\d$/.test(t) ? t : t + "Z");
  return Number.isNaN(ms) ? null : ms;
}

export function duration(ms: number | null): string {
  if (ms === null || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function localTime(t: string | null | undefined): string {
  const ms = parseTime(t);
  if (ms === null) return "–";
  const d = new Date(ms);
  const today = new Date();
  const time = d.toLocaleTimeString(undefined, { hour12: false });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
}

export function truncate(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

// How long a job has taken so far (queued: waiting; running: since it started; ended: its run).
export function elapsed(job: { status: string; created_at: string; started_at: string | null; finished_at: string | null }, now: number): string {
  const created = parseTime(job.created_at);
  const started = parseTime(job.started_at);
  const finished = parseTime(job.finished_at);
  if (job.status === "QUEUED") return created === null ? "–" : `waiting ${duration(now - created)}`;
  if (job.status === "PROCESSING") return started === null ? "–" : `running ${duration(now - started)}`;
  if (finished !== null && started !== null) return duration(finished - started);
  if (finished !== null && created !== null) return duration(finished - created);
  return "–";
}
