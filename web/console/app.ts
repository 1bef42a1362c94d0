// What every page of the console shares: the session, the API, and one way to report a
// failure (an ended session takes the person back to sign-in, wherever it happens).
import { createContext } from "preact";
import { useContext } from "preact/hooks";

import type { Api, Problem } from "./api.js";
import type { Session } from "./session.js";

export interface AppContext {
  session: Session;
  api: Api;
  /** Describes `err` (`saving`: the failed call was a change); an ended session also signs
   * the person out with that message. */
  fail(err: unknown, saving?: boolean): Problem;
}

export const App = createContext<AppContext | null>(null);

export function useApp(): AppContext {
  const app = useContext(App);
  if (app === null) {
    throw new Error("useApp outside the signed-in console");
  }
  return app;
}
