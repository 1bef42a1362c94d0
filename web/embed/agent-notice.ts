// goalflow's embeddable agent notice: a live toast in an agent's workspace when a new goal
// conversion credits the agent, and a count of the agent's conversions today.
//
// How to embed (see example.html and example.js, served by the edge at /embed/example.html):
//
//   <div id="goalflow-notice"></div>
//   <script src="https://EDGE/embed/goalflow-agent.js"></script>
//   <script src="your-workspace.js"></script>   <!-- no inline script needed -->
//
//   // your-workspace.js
//   const notice = GoalflowAgent.mount(document.getElementById("goalflow-notice"), {
//     baseUrl: "https://EDGE",           // the goalflow edge (its origin, no path)
//     agentId: "agent-17",               // the signed-in agent
//     // An agent token minted by your backend (AccountService.MintToken with the agent
//     // key): a string, or a function returning a fresh one. With a function, an expired
//     // or refused token is replaced by calling it again.
//     token: () => fetch("/my-backend/goalflow-token").then((r) => r.text()),
//   });
//   // later, when the agent signs out:
//   notice.stop();
//
// The page's origin must be on the edge's allow-list (GOALFLOW_CORS_ALLOWED_ORIGINS) unless
// the page is served by the edge itself (the browser does not tell a refused origin from an
// edge it cannot reach: the notice names both). Never put an API key in a page: only tokens.
//
// Every tab of the browser showing the notice for the same agent shares one live
// subscription (followAgentShared, ../src/feed.ts): an agent may keep many workspace tabs
// open without using up the browser's connections to the edge.
//
// The notice renders in a Shadow DOM with its own styles, so it neither inherits nor leaks
// the host page's CSS (its box resets every inherited property; constructed style sheets,
// where the browser has them, need no inline <style> for the host's CSP to refuse). It
// reports problems in its own box, never on the console.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";

import type { Conversion } from "../src/gen/goals/v1/tracker_pb.js";
import { TrackerService } from "../src/gen/goals/v1/tracker_pb.js";
import { followAgentShared } from "../src/feed.js";
import { edgeTransport } from "../src/transport.js";
import type { Protocol } from "../src/transport.js";
import { formatMoney, goalLabel, startOfToday, toDate } from "./format.js";

export interface MountOptions {
  /** The goalflow edge, e.g. "https://goalflow.example.com". */
  baseUrl: string;
  /** The agent whose conversions to show (the token's agent). */
  agentId: string;
  /** An agent token, or a function that returns a fresh one (called again when refused). */
  token: string | (() => Promise<string>);
  /** "connect" (default) or "grpcweb". */
  protocol?: Protocol;
  /** How long a toast stays unless dismissed, in ms (default 8000). */
  toastMs?: number;
  /** Share one subscription with this browser's other tabs of the same origin (default
   * true). Sharing trusts every script of the page's origin with the agent's conversions
   * (a BroadcastChannel of that origin carries them), which any such script could read
   * anyway with the token the page holds; false gives the tab a subscription of its own. */
  share?: boolean;
}

export interface Mounted {
  /** Stops following and removes the notice. */
  stop(): void;
}

const DEFAULT_TOAST_MS = 8000;
const COUNT_PAGE = 500;
const MAX_COUNT_PAGES = 20; // 10 000 conversions a day: past that, "10000+"
/** A refreshed token refused again at once is not asked for a third time in a row. */
const MAX_REFRESHES_WITHOUT_LIVE = 1;

const STYLES = `
:host { display: block; }
.gf { all: initial; display: block; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2430; text-align: start; border: 1px solid #d8dee8; border-radius: 8px; background: #fff; padding: .6rem .75rem; max-width: 100%; box-sizing: border-box; }
.gf * { box-sizing: border-box; }
.gf-head { display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: baseline; justify-content: space-between; }
.gf-title { font-weight: 700; }
.gf-state { color: #5b6677; font-size: .9em; }
.gf-state[data-state="live"]::before { content: ""; display: inline-block; width: .55em; height: .55em; border-radius: 50%; background: #1e7a3c; margin-right: .35em; }
.gf-state[data-state="stopped"] { color: #b3261e; }
.gf-count { font-variant-numeric: tabular-nums; }
.gf-toasts { display: flex; flex-direction: column; gap: .4rem; margin-top: .5rem; }
.gf-toasts:empty { display: none; }
.gf-toast { display: flex; gap: .75rem; align-items: start; justify-content: space-between; background: #e5f5ea; border: 1px solid #b7dfc3; border-radius: 6px; padding: .5rem .6rem; animation: gf-in .18s ease-out; }
.gf-toast p { margin: 0; overflow-wrap: anywhere; }
.gf-toast strong { display: block; }
.gf-dismiss { font: inherit; background: none; border: 1px solid #1e7a3c; color: #1e7a3c; border-radius: 4px; padding: .1rem .45rem; cursor: pointer; flex: none; }
.gf-retry { font: inherit; font-size: .9em; background: #fff; border: 1px solid #2f5bd3; color: #2f5bd3; border-radius: 4px; padding: .1rem .5rem; cursor: pointer; }
.gf-retry[hidden] { display: none; }
.gf-retry:focus-visible, .gf-dismiss:focus-visible { outline: 3px solid #2f5bd3; outline-offset: 2px; }
@keyframes gf-in { from { opacity: 0; transform: translateY(-4px); } to { opacity: 1; transform: none; } }
@media (prefers-reduced-motion: reduce) { .gf-toast { animation: none; } }
`;

function attachStyles(root: ShadowRoot): void {
  if ("adoptedStyleSheets" in root && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(STYLES);
    root.adoptedStyleSheets = [sheet];
    return;
  }
  const style = document.createElement("style");
  style.textContent = STYLES;
  root.append(style);
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K, className: string, text = "",
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

/** The notice shown in each element, so that mounting again replaces it. */
const mounted = new WeakMap<HTMLElement, Mounted>();

/** Shows the notice in `element` (in a shadow root of its own) until `stop`; mounting again
 * in the same element stops the notice shown there first. */
export function mount(element: HTMLElement, options: MountOptions): Mounted {
  mounted.get(element)?.stop();
  const root = element.shadowRoot ?? element.attachShadow({ mode: "open" });
  root.replaceChildren();
  attachStyles(root);
  const box = el("section", "gf");
  box.setAttribute("aria-label", "goalflow conversions");
  const head = el("div", "gf-head");
  const title = el("span", "gf-title", "goalflow");
  const state = el("span", "gf-state", "Connecting…");
  state.setAttribute("role", "status");
  const count = el("span", "gf-count", "Today: …");
  head.append(title, count, state);
  const toasts = el("div", "gf-toasts");
  toasts.setAttribute("aria-live", "polite");
  toasts.setAttribute("aria-label", "New conversions");
  box.append(head, toasts);
  root.append(box);

  const toastMs = options.toastMs ?? DEFAULT_TOAST_MS;
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const counted = new Set<string>();
  let dayStart = startOfToday();
  let todayCount: number | null = null;
  let todayMore = false;
  let stopFeed: (() => void) | null = null;
  let stopped = false;
  let refreshes = 0;
  let everLive = false;
  let token = typeof options.token === "string" ? options.token : "";
  const baseUrl = options.baseUrl.replace(/\/+$/, "");

  const retry = el("button", "gf-retry", "Reconnect");
  retry.type = "button";
  retry.hidden = true;
  retry.addEventListener("click", () => {
    refreshes = 0;
    start();
  });
  head.append(retry);
  const setState = (kind: string, words: string, retryable = false) => {
    state.dataset["state"] = kind;
    state.textContent = words;
    retry.hidden = !retryable;
  };
  const showCount = () => {
    count.textContent = todayCount === null ? "Today: …"
      : `Today: ${todayCount}${todayMore ? "+" : ""} conversion${todayCount === 1 ? "" : "s"}`;
  };

  const transport = () => edgeTransport({
    baseUrl, protocol: options.protocol ?? "connect", token,
  });

  const removeToast = (toast: HTMLElement, timer: ReturnType<typeof setTimeout>) => {
    clearTimeout(timer);
    timers.delete(timer);
    toast.remove();
  };

  const toast = (conversion: Conversion) => {
    const item = el("div", "gf-toast");
    item.dataset["conversionId"] = conversion.id;
    const text = el("p", "");
    text.append(el("strong", "", `New conversion: ${goalLabel(conversion)}`),
      `${formatMoney(conversion.transactionValue)} · conversation ${conversion.conversationId}`);
    const dismiss = el("button", "gf-dismiss", "×");
    dismiss.type = "button";
    dismiss.setAttribute("aria-label", "Dismiss");
    const timer = setTimeout(() => removeToast(item, timer), toastMs);
    timers.add(timer);
    dismiss.addEventListener("click", () => removeToast(item, timer));
    item.append(text, dismiss);
    toasts.prepend(item);
  };

  /** Counts today's conversions (ListConversions since local midnight). */
  const countToday = async (): Promise<void> => {
    const client = createClient(TrackerService, transport());
    dayStart = startOfToday();
    let total = 0;
    let pageToken = "";
    let pages = 0;
    const ids = new Set<string>();
    do {
      const page = await client.listConversions({
        agentId: options.agentId, startTime: timestampFromDate(dayStart), pageSize: COUNT_PAGE,
        pageToken,
      });
      total += page.conversions.length;
      page.conversions.forEach((c) => ids.add(c.id));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken && pages < MAX_COUNT_PAGES && !stopped);
    if (stopped) {
      return;
    }
    // Conversions that arrived on the feed while counting are in `counted` already.
    const extra = [...counted].filter((id) => !ids.has(id)).length;
    ids.forEach((id) => counted.add(id));
    todayCount = total + extra;
    todayMore = pageToken !== "";
    showCount();
  };

  const onConversion = (conversion: Conversion) => {
    toast(conversion);
    const when = toDate(conversion.conversionTime) ?? new Date();
    if (startOfToday().getTime() !== dayStart.getTime()) {
      dayStart = startOfToday(); // past midnight: a new day's count
      counted.clear();
      todayCount = 0;
      todayMore = false;
    }
    if (when >= dayStart && !counted.has(conversion.id)) {
      counted.add(conversion.id);
      if (todayCount !== null) {
        todayCount += 1;
        showCount();
      }
    }
  };

  /** A fresh token from the caller's function; false (and says why) when there is none. */
  const refreshToken = async (): Promise<boolean> => {
    if (typeof options.token === "string" || refreshes > MAX_REFRESHES_WITHOUT_LIVE) {
      return false;
    }
    refreshes += 1;
    try {
      token = await options.token();
      return token !== "";
    } catch (err: unknown) {
      setState("stopped", `Stopped: no token (${err instanceof Error ? err.message : String(err)}).`);
      return false;
    }
  };

  /** Why the edge could not be reached, in words. A page of another origin whose first call
   * failed in the network may as well be refused by the edge's CORS allow-list: the browser
   * tells the page nothing more, so both are said. */
  const unreachable = (error: ConnectError): string => {
    let edgeOrigin = baseUrl;
    try {
      edgeOrigin = new URL(baseUrl, window.location.href).origin;
    } catch {
      // not a URL: compared as given
    }
    if (everLive || error.code === Code.Unavailable || edgeOrigin === window.location.origin) {
      return "goalflow cannot be reached.";
    }
    return `goalflow cannot be reached, or this page's origin (${window.location.origin}) is ` +
      "not in the edge's allowed origins (GOALFLOW_CORS_ALLOWED_ORIGINS).";
  };

  const failed = async (error: ConnectError): Promise<void> => {
    if (stopped) {
      return;
    }
    // The feed ended already, or the count's call was refused: then this token stops
    // following too (a tab sharing another's subscription would go on showing its toasts).
    stopFeed?.();
    stopFeed = null;
    if (error.code === Code.Unauthenticated) {
      setState("connecting", "Signing in again…");
      if (await refreshToken()) {
        start();
        return;
      }
      setState("stopped", "Stopped: the session has ended (the token expired or was refused).");
      return;
    }
    if (error.code === Code.PermissionDenied) {
      setState("stopped", `Stopped: not allowed (${error.rawMessage}).`);
      return;
    }
    if (error.code === Code.Unavailable || /fetch|network/i.test(error.rawMessage)) {
      setState("stopped", `Stopped: ${unreachable(error)}`, true);
      return;
    }
    setState("stopped", `Stopped: ${error.rawMessage}`, true);
  };

  function start(): void {
    if (stopped) {
      return;
    }
    stopFeed?.();
    setState("connecting", "Connecting…");
    stopFeed = followAgentShared(transport(), options.agentId, {
      onLive() {
        refreshes = 0;
        everLive = true;
        setState("live", "Live");
        // Counted once live: what is recorded from now on arrives on the feed.
        countToday().catch((err: unknown) => {
          const error = ConnectError.from(err);
          if (error.code === Code.Unauthenticated) {
            void failed(error);
          } else {
            count.textContent = "Today: unavailable";
          }
        });
      },
      onConversion,
      onRetry(_error, attempt) {
        setState("connecting", `Reconnecting (attempt ${attempt + 1})…`);
      },
      onError(error) {
        void failed(error);
      },
      onEnd() {
        setState("stopped", "Stopped: the service closed the feed.", true);
      },
    }, { baseUrl, token }, options.share ?? true);
  }

  const begin = async (): Promise<void> => {
    if (typeof options.token !== "string") {
      try {
        token = await options.token();
      } catch (err: unknown) {
        setState("stopped", `Stopped: no token (${err instanceof Error ? err.message : String(err)}).`);
        return;
      }
    }
    start();
  };
  showCount();
  void begin();

  const handle: Mounted = {
    stop() {
      stopped = true;
      stopFeed?.();
      stopFeed = null;
      timers.forEach((timer) => clearTimeout(timer));
      timers.clear();
      root.replaceChildren();
      if (mounted.get(element) === handle) {
        mounted.delete(element);
      }
    },
  };
  mounted.set(element, handle);
  return handle;
}

declare global {
  interface Window {
    GoalflowAgent: { mount: typeof mount };
  }
}

window.GoalflowAgent = { mount };
