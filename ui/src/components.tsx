// Small shared pieces: links, status badges, notices, copy buttons, JSON blocks, the hook that
// loads what a page shows.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import { ApiError } from "./api";
import { BASE, onLink } from "./router";

type LinkProps = { href: string; children: ComponentChildren; class?: string; "aria-current"?: "page"; "aria-label"?: string };
export function Link({ href, children, ...rest }: LinkProps) {
  return (
    <a href={href.startsWith("/ui") ? href : BASE + href} onClick={onLink} {...rest}>
      {children}
    </a>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge status-${status.toLowerCase()}`}>{status}</span>;
}

export function Notice({ kind, children }: { kind: "error" | "info" | "ok"; children: ComponentChildren }) {
  return (
    <div class={`notice ${kind}`} role={kind === "error" ? "alert" : "status"}>
      {children}
    </div>
  );
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.message}${e.field ? ` (${e.field})` : ""}`;
  return e instanceof Error ? e.message : String(e);
}

export function CopyButton({ text, label = "Copy" }: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="small"
      onClick={async () => {
        await navigator.clipboard?.writeText(text).catch(() => undefined);
        setDone(true);
        setTimeout(() => setDone(false), 1500);
      }}
    >
      {done ? "Copied" : label}
    </button>
  );
}

export function JsonBlock({ value, label }: { value: unknown; label?: string }) {
  const text = JSON.stringify(value, null, 2);
  return (
    <div class="code-block">
      <div class="code-head">
        {label && <span>{label}</span>}
        <CopyButton text={text} />
      </div>
      <pre>{text}</pre>
    </div>
  );
}

// Loads `fn` (again when `deps` change, or on reload()); keeps the last value while reloading.
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      const v = await fn();
      if (mine === seq.current) {
        setValue(v);
        setError(null);
      }
    } catch (e) {
      if (mine === seq.current) setError(errorText(e));
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  return { value, setValue, error, loading, reload };
}

// The current time, updated every `ms` (elapsed times on live rows).
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

// A button's action: runs `fn`, remembers what is running (`key`, to disable that button) and the
// error it ended with, shown beside the buttons; a success clears it.
export function useAction() {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const run = async (fn: () => Promise<unknown>, key = "") => {
    setBusy(key);
    try {
      await fn();
      setError(null);
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(null);
    }
  };
  return { run, busy, error, setError };
}
