// Hash routes (`#/goals`, `#/goals/new`, `#/reports`, ...): the edge serves one page, and a
// link or a reload lands where it points.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  /** First path segment: "goals", "reports", "exports", "agent". */
  page: string;
  /** The segments after it. */
  rest: string[];
  query: URLSearchParams;
}

export function parseHash(hash: string): Route {
  const [path, search = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const [page = "", ...rest] = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { page, rest, query: new URLSearchParams(search) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const changed = () => setRoute(parseHash(window.location.hash));
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return route;
}

export function go(path: string): void {
  window.location.hash = `#/${path}`;
}
