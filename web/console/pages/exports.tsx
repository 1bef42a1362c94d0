// The exports page (placeholder: filled in by its own change).
import type { Route } from "../router.js";

export function ExportsPage({ route }: { route: Route }) {
  return <section><h1>Exports</h1><p>{route.rest.join("/")}</p></section>;
}
