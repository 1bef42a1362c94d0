// The goalflow web console: sign-in, then goals, reports, exports (admins and supervisors)
// or the agent view (agent tokens). Served by the edge it calls (same origin).
import { render } from "preact";
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";

import { SESSION_ENDED, describe, makeApi } from "./api.js";
import type { Problem } from "./api.js";
import { App } from "./app.js";
import type { AppContext } from "./app.js";
import { AgentPage } from "./pages/agent.js";
import { ExportsPage } from "./pages/exports.js";
import { GoalsPage } from "./pages/goals.js";
import { ReportsPage } from "./pages/reports.js";
import { go, useRoute } from "./router.js";
import type { Route } from "./router.js";
import {
  clearSession, isApiKey, loadSession, saveSession, signIn, takeEndedSession,
} from "./session.js";
import type { Role, Session } from "./session.js";
import { forgetAllDrafts } from "./pages/goals/draft.js";
import { ProblemBanner } from "./ui/problem.js";

interface PageSpec {
  path: string;
  title: string;
  roles: readonly Role[];
  component: (props: { route: Route }) => preact.JSX.Element;
}

const PAGES: readonly PageSpec[] = [
  { path: "goals", title: "Goals", roles: ["admin", "supervisor"], component: GoalsPage },
  { path: "reports", title: "Reports", roles: ["admin", "supervisor"], component: ReportsPage },
  { path: "exports", title: "Exports", roles: ["admin"], component: ExportsPage },
  { path: "agent", title: "My conversions", roles: ["agent"], component: AgentPage },
];

function SignIn({ onSession, notice }: {
  onSession(session: Session): void;
  notice: string | null;
}) {
  const [credential, setCredential] = useState("");
  const [agentId, setAgentId] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setProblem(null);
    setError(null);
    try {
      onSession(await signIn(credential, agentId));
    } catch (err: unknown) {
      if (err instanceof Error && err.name !== "ConnectError" && err.message) {
        setError(err.message);
      } else {
        const found = describe(err instanceof Error && err.cause ? err.cause : err);
        setProblem(found.kind === "expired"
          ? { kind: "refused", message: "This key is not valid (unknown, revoked or mistyped)." }
          : found);
      }
    } finally {
      setBusy(false);
    }
  };
  const keyGiven = isApiKey(credential.trim());
  return (
    <main class="signin">
      <h1>goalflow</h1>
      {notice && <p class="notice" role="status">{notice}</p>}
      <form onSubmit={submit} aria-label="Sign in">
        <label for="credential">API key or token</label>
        <input id="credential" name="credential" type="password" autocomplete="off" required
          value={credential} onInput={(e) => setCredential(e.currentTarget.value)} />
        <p class="hint">
          A key is exchanged for a session token (one hour unless the deployment says
          otherwise) and not kept. Agents sign in with the token their workspace gives them.
        </p>
        {keyGiven && (
          <>
            <label for="agent-id">Agent id, to open that agent's view</label>
            <input id="agent-id" name="agent-id" value={agentId} aria-describedby="agent-id-hint"
              onInput={(e) => setAgentId(e.currentTarget.value)} />
            <p class="hint" id="agent-id-hint">
              With an admin key or the account's agent key (a workspace backend's
              credential: it opens any agent's view). Empty with an admin key: the console.
            </p>
          </>
        )}
        {error && <p class="field-error" role="alert">{error}</p>}
        <ProblemBanner problem={problem} />
        <button type="submit" disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
      </form>
    </main>
  );
}

function Shell({ session, onSignOut, fail }: {
  session: Session;
  onSignOut(): void;
  fail: AppContext["fail"];
}) {
  const route = useRoute();
  const api = useMemo(() => makeApi(session), [session]);
  const allowed = PAGES.filter((page) => page.roles.includes(session.role));
  const current = allowed.find((page) => page.path === route.page) ?? allowed[0];
  if (current.path !== route.page) {
    queueMicrotask(() => go(current.path));
  }
  const Page = current.component;
  const context: AppContext = { session, api, fail };
  return (
    <App.Provider value={context}>
      <header class="top">
        <a class="brand" href="#/">goalflow</a>
        <nav aria-label="Pages">
          {allowed.map((page) => (
            <a href={`#/${page.path}`} aria-current={page === current ? "page" : undefined}>
              {page.title}
            </a>
          ))}
        </nav>
        <div class="who">
          <span title={`expires ${new Date(session.expiresAtMs).toLocaleTimeString()}`}>
            {session.accountId} · {session.role}{session.agentId ? ` ${session.agentId}` : ""}
          </span>
          <button type="button" class="link" onClick={onSignOut}>Sign out</button>
        </div>
      </header>
      <main id="page">
        <Page route={route} />
      </main>
    </App.Provider>
  );
}

/** setTimeout's longest delay (about 24.8 days); a longer one fires at once. */
const MAX_DELAY_MS = 2 ** 31 - 1;

/** Signs out with SESSION_ENDED once the session's token has expired: when it does, and
 * on the next navigation or return to the tab should a sleeping tab's timer run late. A
 * page then never calls with a token every service refuses, and the person reads why. */
function useSessionExpiry(session: Session | null, signOut: (message: string) => void) {
  useEffect(() => {
    if (session === null) {
      return undefined;
    }
    let timer = 0;
    const check = () => {
      const left = session.expiresAtMs - Date.now();
      window.clearTimeout(timer);
      if (left <= 0) {
        signOut(SESSION_ENDED);
      } else {
        timer = window.setTimeout(check, Math.min(left + 50, MAX_DELAY_MS));
      }
    };
    check();
    window.addEventListener("hashchange", check);
    document.addEventListener("visibilitychange", check);
    return () => {
      window.clearTimeout(timer);
      window.removeEventListener("hashchange", check);
      document.removeEventListener("visibilitychange", check);
    };
  }, [session, signOut]);
}

function Console() {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [notice, setNotice] = useState<string | null>(
    () => (session === null && takeEndedSession() ? SESSION_ENDED : null));
  const signOut = useCallback((message: string | null) => {
    clearSession();
    setNotice(message);
    setSession(null);
  }, []);
  useSessionExpiry(session, signOut);
  const fail = useCallback((err: unknown, saving = false) => {
    const problem = describe(err, saving);
    if (problem.kind === "expired") {
      signOut(problem.message);
    }
    return problem;
  }, [signOut]);
  if (session === null) {
    return <SignIn notice={notice} onSession={(s) => { saveSession(s); setNotice(null); setSession(s); }} />;
  }
  const signOutByHand = () => { forgetAllDrafts(); signOut("Signed out."); };
  return <Shell session={session} fail={fail} onSignOut={signOutByHand} />;
}

render(<Console />, document.getElementById("console")!);
