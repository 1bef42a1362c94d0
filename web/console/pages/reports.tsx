// The reports page (placeholder: filled in by its own change).
import type { Route } from "../router.js";

export function ReportsPage({ route }: { route: Route }) {
  return <section><h1>Reports</h1><p>{route.rest.join("/")}</p></section>;
}
