// The goals page (placeholder: filled in by its own change).
import type { Route } from "../router.js";

export function GoalsPage({ route }: { route: Route }) {
  return <section><h1>Goals</h1><p>{route.rest.join("/")}</p></section>;
}
