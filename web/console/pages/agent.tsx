// The agent page (placeholder: filled in by its own change).
import type { Route } from "../router.js";

export function AgentPage({ route }: { route: Route }) {
  return <section><h1>Agent</h1><p>{route.rest.join("/")}</p></section>;
}
