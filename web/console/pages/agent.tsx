// The agent view (agent tokens): the agent's own conversions, newest first, and a live
// notice when a new one credits the agent.
//
// The notice comes from the live feed (followAgentShared: SubscribeConversions for this
// agent, announced, with heartbeats, one subscription shared by every tab of the browser
// following the agent) and is prepended to the list. The feed's state is said in
// words. Conversions recorded while the feed was down are not replayed by it, so the list's
// first page is read again each time the feed is live after a reconnect. An ended session
// (the feed or a read answered Unauthenticated) takes the agent back to sign-in.
import { Code } from "@connectrpc/connect";
import type { ConnectError } from "@connectrpc/connect";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";

import { Channel } from "../../src/gen/goals/v1/tracker_pb.js";
import type { Conversion } from "../../src/gen/goals/v1/tracker_pb.js";
import { followAgentShared } from "../../src/feed.js";
import { formatMoney, formatTime, goalLabel } from "../../embed/format.js";
import type { Problem } from "../api.js";
import { describe } from "../api.js";
import { useApp } from "../app.js";
import { edgeBaseUrl } from "../session.js";
import type { Route } from "../router.js";
import { ProblemBanner } from "../ui/problem.js";

const PAGE_SIZE = 50;
/** Notices kept on screen at once (each until dismissed). */
const MAX_NOTICES = 3;

type FeedState =
  | { kind: "connecting" }
  | { kind: "live" }
  | { kind: "reconnecting"; attempt: number; delayMs: number }
  | { kind: "stopped"; reason: string };

function feedWords(state: FeedState): string {
  switch (state.kind) {
    case "connecting":
      return "Connecting to the live feed…";
    case "live":
      return "Live: new conversions credited to you appear here as they happen.";
    case "reconnecting":
      return `Reconnecting (the service did not answer; attempt ${state.attempt + 1} ` +
        `in ${(state.delayMs / 1000).toFixed(1)} s)…`;
    case "stopped":
      return `Stopped: ${state.reason}`;
  }
}

/** Why the feed stopped, in words (the feed retried Unavailable before giving up). */
function feedReason(error: ConnectError): string {
  switch (error.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "goalflow cannot be reached (the service or the network is down).";
    case Code.PermissionDenied:
      return `not allowed (${error.rawMessage}).`;
    case Code.ResourceExhausted:
      return "this page fell behind the feed. Reconnect to go on; the list is read again.";
    default: {
      const problem = describe(error);
      return problem.kind === "unavailable"
        ? "goalflow cannot be reached (the service or the network is down)."
        : error.rawMessage || problem.message;
    }
  }
}

function channelWords(channel: Channel): string {
  const name = Channel[channel] ?? "UNSPECIFIED";
  if (channel === Channel.UNSPECIFIED) {
    return "—";
  }
  return name.charAt(0) + name.slice(1).toLowerCase().replace(/_/g, " ");
}

/** Newest first, each conversion once: `fresh` in front of what is already shown. */
function merge(fresh: Conversion[], shown: Conversion[]): Conversion[] {
  const seen = new Set<string>();
  const out: Conversion[] = [];
  for (const conversion of [...fresh, ...shown]) {
    if (!seen.has(conversion.id)) {
      seen.add(conversion.id);
      out.push(conversion);
    }
  }
  return out;
}

function Notices({ notices, onDismiss }: {
  notices: Conversion[];
  onDismiss(id: string): void;
}) {
  // One live region, present from the start, so that what is added to it is announced.
  return (
    <div class="agent-notices" aria-live="polite" aria-label="New conversions">
      {notices.map((conversion) => (
        <div class="agent-notice" key={conversion.id} data-conversion-id={conversion.id}>
          <p>
            <strong>New conversion: {goalLabel(conversion)}</strong>
            {" · "}<span>{formatMoney(conversion.transactionValue)}</span>
            {" · "}<span>conversation {conversion.conversationId}</span>
          </p>
          <button type="button" class="secondary" onClick={() => onDismiss(conversion.id)}
            aria-label={`Dismiss the notice of ${goalLabel(conversion)}`}>Dismiss</button>
        </div>
      ))}
    </div>
  );
}

function ConversionTable({ conversions }: { conversions: Conversion[] }) {
  return (
    <div class="table-wrap">
      <table>
        <caption class="visually-hidden">Your conversions, newest first</caption>
        <thead>
          <tr>
            <th scope="col">When</th><th scope="col">Goal</th>
            <th scope="col" class="num">Value</th><th scope="col">Conversation</th>
            <th scope="col">Channel</th><th scope="col">Skill</th>
          </tr>
        </thead>
        <tbody>
          {conversions.map((conversion) => (
            <tr key={conversion.id} data-conversion-id={conversion.id}>
              <td>{formatTime(conversion.conversionTime)}</td>
              <td>{goalLabel(conversion)}</td>
              <td class="num">{formatMoney(conversion.transactionValue)}</td>
              <td>{conversion.conversationId}</td>
              <td>{channelWords(conversion.channel)}</td>
              <td>{conversion.skill || "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function AgentPage(_props: { route: Route }) {
  const { api, fail, session } = useApp();
  const agentId = session.agentId;
  const [conversions, setConversions] = useState<Conversion[]>([]);
  const [nextToken, setNextToken] = useState("");
  const [loading, setLoading] = useState(true);
  const [listProblem, setListProblem] = useState<Problem | null>(null);
  const [feed, setFeed] = useState<FeedState>({ kind: "connecting" });
  const [notices, setNotices] = useState<Conversion[]>([]);
  const [follow, setFollow] = useState(0); // bumped to follow again after a stop
  const alive = useRef(true);
  useEffect(() => () => { alive.current = false; }, []);

  /** A page of the agent's conversions: the first (`refresh`: read again after a reconnect,
   * merged in front without moving where "Load more" goes on) or the one at `pageToken`. */
  const load = useCallback(async (pageToken: string, refresh = false) => {
    setLoading(true);
    try {
      const page = await api.tracker.listConversions({ agentId, pageSize: PAGE_SIZE, pageToken });
      if (!alive.current) {
        return;
      }
      setListProblem(null);
      setConversions((shown) => (pageToken ? merge(shown, page.conversions)
        : merge(page.conversions, shown)));
      if (!refresh) {
        setNextToken(page.nextPageToken);
      }
    } catch (err: unknown) {
      if (alive.current) {
        setListProblem(fail(err));
      }
    } finally {
      if (alive.current) {
        setLoading(false);
      }
    }
  }, [api, fail, agentId]);

  useEffect(() => { void load(""); }, [load]);

  useEffect(() => {
    let wasLive = false;
    setFeed({ kind: "connecting" });
    const stop = followAgentShared(api.transport, agentId, {
      onLive() {
        if (wasLive || follow > 0) {
          void load("", true); // what was recorded while the feed was down
        }
        wasLive = true;
        setFeed({ kind: "live" });
      },
      onConversion(conversion) {
        setConversions((shown) => merge([conversion], shown));
        setNotices((shown) => [conversion, ...shown.filter((n) => n.id !== conversion.id)]
          .slice(0, MAX_NOTICES));
      },
      onRetry(_error, attempt, delayMs) {
        setFeed({ kind: "reconnecting", attempt, delayMs });
      },
      onError(error: ConnectError) {
        if (error.code === Code.Unauthenticated) {
          fail(error); // the session ended: back to sign-in, saying so
          return;
        }
        setFeed({ kind: "stopped", reason: feedReason(error) });
      },
      onEnd() {
        setFeed({ kind: "stopped", reason: "the service closed the feed." });
      },
    }, { baseUrl: edgeBaseUrl(), token: session.token });
    return stop;
  }, [api, fail, agentId, load, follow, session.token]);

  const dismiss = (id: string) => {
    setNotices((shown) => shown.filter((n) => n.id !== id));
  };

  return (
    <section class="agent-page">
      <h1>My conversions</h1>
      <p class={`agent-feed agent-feed-${feed.kind}`} role="status">
        <span class="agent-feed-dot" aria-hidden="true" />
        <span class="agent-feed-words">{feedWords(feed)}</span>
        {feed.kind === "stopped" && (
          <button type="button" class="secondary" onClick={() => setFollow((n) => n + 1)}>
            Reconnect
          </button>
        )}
      </p>
      <Notices notices={notices} onDismiss={dismiss} />
      <h2>Conversions credited to {agentId}</h2>
      <ProblemBanner problem={listProblem} onRetry={() => { void load(""); }} />
      {conversions.length === 0 && !loading && !listProblem && (
        <p class="hint">No conversions credited to you yet.</p>
      )}
      {conversions.length > 0 && <ConversionTable conversions={conversions} />}
      {loading && <p class="hint">Loading conversions…</p>}
      {nextToken && !loading && (
        <button type="button" class="secondary load-more"
          onClick={() => { void load(nextToken); }}>Load more</button>
      )}
    </section>
  );
}
