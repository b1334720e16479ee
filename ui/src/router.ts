// A tiny history router: every page has its own URL under /ui, so a link can be shared and a
// reload shows the same page.
import { useEffect, useState } from "preact/hooks";

export const BASE = "/ui";

export function navigate(to: string, replace = false) {
  const url = to.startsWith(BASE) ? to : BASE + to;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function useLocation(): { path: string; query: URLSearchParams } {
  const read = () => ({ path: location.pathname.replace(/\/+$/, "") || BASE, query: new URLSearchParams(location.search) });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const on = () =>
      setLoc((prev) => {
        const next = read();
        return prev.path === next.path && prev.query.toString() === next.query.toString() ? prev : next;
      });
    window.addEventListener("popstate", on);
    // A navigation between the first render and this subscription (a quick click, a test's) would
    // otherwise be missed: the page would go on showing the old URL's content.
    on();
    return () => window.removeEventListener("popstate", on);
  }, []);
  return loc;
}

// A link that navigates without a reload (and opens in a new tab with a modifier key).
export function onLink(e: MouseEvent) {
  const a = (e.currentTarget as HTMLAnchorElement) ?? null;
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(a.getAttribute("href") ?? BASE);
}
