// statim's web dashboard: jobs, a job's detail, forms to try every model, models, operations.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { ApiError, apiKey, get, setApiKey, type Me } from "./api";
import { Link, Notice } from "./components";
import { AdminPage } from "./pages/admin";
import { JobPage } from "./pages/job";
import { JobsPage } from "./pages/jobs";
import { ModelsPage } from "./pages/models";
import { TryPage } from "./pages/try";
import { BASE, navigate, useLocation } from "./router";
import "./style.css";

type Theme = "light" | "dark";

function useTheme(): [Theme, () => void] {
  const initial = (localStorage.getItem("statim.theme") as Theme | null) ??
    (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const [theme, setTheme] = useState<Theme>(initial);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
  }, [theme]);
  return [
    theme,
    () => {
      const next = theme === "dark" ? "light" : "dark";
      localStorage.setItem("statim.theme", next);
      setTheme(next);
    },
  ];
}

function KeyForm({ error, onKey }: { error: string | null; onKey: (k: string) => void }) {
  const [key, setKey] = useState("");
  return (
    <main class="page narrow">
      <h1>Sign in</h1>
      <p>
        This server asks for an API key. Paste one (<code>statim keys create --name me</code> prints one); it is kept
        in this browser tab only and sent with each request.
      </p>
      {error && <Notice kind="error">{error}</Notice>}
      <form
        class="stack"
        onSubmit={(e) => {
          e.preventDefault();
          onKey(key.trim());
        }}
      >
        <label>
          API key
          <input
            type="password"
            name="api-key"
            autocomplete="off"
            placeholder="sk-statim-…"
            value={key}
            onInput={(e) => setKey(e.currentTarget.value)}
            required
          />
        </label>
        <button type="submit" class="primary">
          Use this key
        </button>
      </form>
    </main>
  );
}

function App() {
  const { path } = useLocation();
  const [theme, toggleTheme] = useTheme();
  const [me, setMe] = useState<Me | null>(null);
  const [authError, setAuthError] = useState<string | null>(null);
  const [checking, setChecking] = useState(true);

  const check = async () => {
    setChecking(true);
    try {
      setMe(await get<Me>("/me"));
      setAuthError(null);
    } catch (e) {
      setMe(null);
      if (e instanceof ApiError && e.status === 401) {
        setAuthError(apiKey() ? `That key was refused: ${e.message}` : null);
        setApiKey("");
      } else {
        setAuthError(e instanceof Error ? e.message : String(e));
      }
    } finally {
      setChecking(false);
    }
  };
  useEffect(() => {
    check();
  }, []);
  useEffect(() => {
    if (path === BASE) navigate("/jobs", true);
  }, [path]);

  const sub = path.slice(BASE.length);
  const section = sub.split("/")[1] ?? "jobs";
  let page;
  if (checking && !me) page = <main class="page" aria-busy="true" />;
  else if (!me) page = <KeyForm error={authError} onKey={(k) => (setApiKey(k), check())} />;
  else if (section === "jobs" && /^\d+$/.test(sub.split("/")[2] ?? "")) page = <JobPage id={sub.split("/")[2]} me={me} />;
  else if (section === "jobs") page = <JobsPage me={me} />;
  else if (section === "try") page = <TryPage />;
  else if (section === "models") page = <ModelsPage me={me} />;
  else if (section === "admin") page = <AdminPage me={me} />;
  else page = <main class="page"><Notice kind="error">No such page: {path}</Notice></main>;

  useEffect(() => {
    const names: Record<string, string> = { jobs: "Jobs", try: "Try it", models: "Models", admin: "Operations" };
    document.title = `${names[section] ?? "statim"} · statim`;
  }, [section]);

  const nav = [
    ["jobs", "Jobs"],
    ["try", "Try it"],
    ["models", "Models"],
    ...(me?.admin ? [["admin", "Operations"]] : []),
  ];
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/jobs" class="brand">
          statim
        </Link>
        {me && (
          <nav aria-label="Main">
            {nav.map(([id, label]) => (
              <Link key={id} href={`/${id}`} aria-current={section === id ? "page" : undefined}>
                {label}
              </Link>
            ))}
          </nav>
        )}
        <div class="top-right">
          {me?.key && (
            <span class="who" title={`key ${me.key.name} (${me.key.scope})`}>
              {me.key.name} · {me.key.scope}
            </span>
          )}
          {me && me.auth !== "off" && (
            <button
              type="button"
              class="ghost"
              onClick={() => {
                setApiKey("");
                setMe(null);
              }}
            >
              Sign out
            </button>
          )}
          <button type="button" class="ghost" onClick={toggleTheme} aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}>
            {theme === "dark" ? "☀" : "☾"}
          </button>
        </div>
      </header>
      <div id="main">{page}</div>
    </>
  );
}

render(<App />, document.getElementById("app")!);
