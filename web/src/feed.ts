// The agent workspace's live feed: SubscribeConversions for one agent, as a callback API
// that a page can start and stop.
//
// followAgentShared: one live subscription per browser, whatever the number of tabs. Each
// tab's streaming fetch holds one of the 6 HTTP/1.1 connections a browser opens to a host,
// so 6 tabs following an agent would leave none for anything else (the console would not
// load). The contract:
// - Tabs of one origin that follow the same agent with tokens of the same edge, account,
//   role and agent share one subscription; any other combination has a name of its own
//   (the agent id and those claims are in it), so nothing is ever shared across agents. A
//   token whose claims cannot be read is not shared.
// - The tab holding the Web Lock of that name (the leader) runs followAgent with its own
//   token and relays every event (live, each conversion as binary protobuf, retry, error,
//   end) on a BroadcastChannel of the same name; the other tabs wait in the lock's queue and
//   call their handlers with what it relays. A tab that joins a live feed is told it is live.
// - When the leader closes or stops, the lock passes to the next tab, which subscribes and
//   says "live" again: conversions recorded in between are not replayed, as after any
//   reconnect (a page lists its conversions again on every onLive after the first).
// - An error or end of the subscription stops every tab's feed, as followAgent's do (each
//   tab follows again when its page asks). Except Unauthenticated: the leader's own token
//   ended, so only the leader is told, and the next tab subscribes with its own.
// - Where navigator.locks (secure contexts only: https, or http://127.0.0.1 / localhost)
//   or BroadcastChannel is missing, or the caller says `enabled = false`, each tab
//   subscribes by itself (followAgent).
// - Trust: the lock and the channel are the origin's; any script of the origin can listen,
//   post or hold the lock. Such a script can already read the token the page holds, so
//   sharing gives it nothing new; a page that embeds scripts it does not trust passes
//   enabled = false (the embed's `share: false`).
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";

import type { Conversion } from "./gen/goals/v1/tracker_pb.js";
import { ConversionSchema, TrackerService } from "./gen/goals/v1/tracker_pb.js";

/** Attempts of one subscription when the edge answers Unavailable ("retry with backoff"),
 * and the first wait between them (doubled each time: 0.1, 0.2, 0.4, 0.8 s). */
export const MAX_ATTEMPTS = 5;
export const FIRST_BACKOFF_MS = 100;

/** Seconds between keep-alive notices on an idle feed: proxies commonly close a connection
 * idle for 60 s. */
export const HEARTBEAT_SECONDS = 25;

export interface FeedHandlers {
  /** The subscription is live: every conversion recorded from now on will arrive. (The
   * feed asks for a first `subscribed` message: the edge sends response headers only with
   * the first message, so headers are no signal.) */
  onLive?(): void;
  onConversion(conversion: Conversion): void;
  /** The stream failed for good (not called when stopped by the caller). */
  onError(error: ConnectError): void;
  /** The edge said Unavailable, or the server ended the stream; the subscription is made
   * again after `delayMs`. */
  onRetry?(error: ConnectError, attempt: number, delayMs: number): void;
  /** The server ended the stream normally, again and again (MAX_ATTEMPTS times in a row
   * without the feed going live in between): no longer followed. */
  onEnd?(): void;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** Follows the conversions crediting `agentId` until the returned function is called.
 *
 * Unavailable (the edge could not reach the tracker) is retried with backoff, as the edge's
 * message asks, and so is a stream the server ends cleanly (an edge or tracker shutting
 * down ends its streams so that browsers reconnect elsewhere); every other error ends the
 * feed. A subscription that was live starts a fresh run of attempts. Conversions recorded
 * while no subscription was open are not replayed: a workspace lists them
 * (ListConversions) after a reconnect, when onLive is called again. */
export function followAgent(
  transport: Transport,
  agentId: string,
  handlers: FeedHandlers,
): () => void {
  const client = createClient(TrackerService, transport);
  const abort = new AbortController();
  let live = false;
  const once = async (): Promise<void> => {
    const stream = client.subscribeConversions(
      {
        target: { case: "agentId", value: agentId },
        announce: true,
        heartbeatSeconds: HEARTBEAT_SECONDS,
      },
      { signal: abort.signal },
    );
    for await (const message of stream) {
      if (message.subscribed) {
        live = true;
        handlers.onLive?.();
      } else if (message.conversion) {
        handlers.onConversion(message.conversion);
      }
    }
  };
  const run = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      let failure: ConnectError | null = null;
      live = false;
      try {
        await once();
      } catch (err: unknown) {
        failure = ConnectError.from(err);
      }
      if (abort.signal.aborted) {
        return;
      }
      if (live) {
        attempt = 1; // it was live: whatever ended it starts a fresh run of attempts
      }
      if (failure !== null && failure.code !== Code.Unavailable) {
        handlers.onError(failure);
        return;
      }
      if (attempt >= MAX_ATTEMPTS) {
        if (failure !== null) {
          handlers.onError(failure);
        } else {
          handlers.onEnd?.();
        }
        return;
      }
      const delayMs = FIRST_BACKOFF_MS * 2 ** (attempt - 1);
      handlers.onRetry?.(failure ?? new ConnectError(ENDED_BY_SERVER, Code.Unavailable),
        attempt, delayMs);
      await sleep(delayMs, abort.signal);
    }
  };
  void run();
  return () => abort.abort();
}

const ENDED_BY_SERVER = "the server ended the live feed (it is shutting down); following again";

/** What the leader relays to the other tabs (and "hello", a joining tab's question). */
type Relay =
  | { kind: "hello" }
  | { kind: "live"; joined: boolean }
  | { kind: "conversion"; conversion: Uint8Array }
  | { kind: "retry"; code: Code; message: string; attempt: number; delayMs: number }
  | { kind: "error"; code: Code; message: string }
  | { kind: "end" };

/** The lock's and the channel's name for following `agentId` at `baseUrl` with `token`
 * (its claims read without checking: the edge checks them); null when they cannot be read. */
function shareName(agentId: string, baseUrl: string, token: string): string | null {
  const parts = token.split(".");
  if (parts.length !== 3) {
    return null;
  }
  try {
    const claims: unknown = JSON.parse(atob(parts[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (typeof claims !== "object" || claims === null) {
      return null;
    }
    const { acct, role, agent } = claims as Record<string, unknown>;
    return `goalflow-feed:${agentId}:${JSON.stringify([baseUrl, acct, role, agent ?? ""])}`;
  } catch {
    return null;
  }
}

/** followAgent, shared by the tabs of this browser (the contract is at the top of this
 * module). `share`: the edge `transport` reaches and the token it carries. */
export function followAgentShared(
  transport: Transport,
  agentId: string,
  handlers: FeedHandlers,
  share: { baseUrl: string; token: string },
  enabled = true,
): () => void {
  const name = enabled ? shareName(agentId, share.baseUrl, share.token) : null;
  if (name === null || typeof BroadcastChannel !== "function" || !navigator.locks) {
    return followAgent(transport, agentId, handlers);
  }
  const channel = new BroadcastChannel(name);
  const abort = new AbortController();
  let leading = false;
  let live = false; // what this tab's handlers were last told
  let leaderLive = false; // this tab leads and its subscription is live
  let stopLeading: (() => void) | null = null;
  const post = (message: Relay) => channel.postMessage(message);
  const stop = () => {
    abort.abort(); // leaves the lock's queue
    stopLeading?.();
    channel.close();
  };

  channel.onmessage = (event: MessageEvent<Relay>) => {
    const message = event.data;
    if (typeof message !== "object" || message === null) {
      return;
    }
    if (leading) {
      if (message.kind === "hello" && leaderLive) {
        post({ kind: "live", joined: true });
      }
      return;
    }
    switch (message.kind) {
      case "live":
        if (!(message.joined && live)) {
          live = true;
          handlers.onLive?.();
        }
        break;
      case "conversion":
        handlers.onConversion(fromBinary(ConversionSchema, message.conversion));
        break;
      case "retry":
        live = false;
        handlers.onRetry?.(new ConnectError(message.message, message.code), message.attempt,
          message.delayMs);
        break;
      case "error":
        stop();
        handlers.onError(new ConnectError(message.message, message.code));
        break;
      case "end":
        stop();
        handlers.onEnd?.();
        break;
    }
  };

  const lead = () => new Promise<void>((release) => {
    if (abort.signal.aborted) { // stopped as the lock was granted
      release();
      return;
    }
    leading = true;
    const stopFeed = followAgent(transport, agentId, {
      onLive() {
        live = leaderLive = true;
        post({ kind: "live", joined: false });
        handlers.onLive?.();
      },
      onConversion(conversion) {
        post({ kind: "conversion", conversion: toBinary(ConversionSchema, conversion) });
        handlers.onConversion(conversion);
      },
      onRetry(error, attempt, delayMs) {
        live = leaderLive = false;
        post({ kind: "retry", code: error.code, message: error.rawMessage, attempt, delayMs });
        handlers.onRetry?.(error, attempt, delayMs);
      },
      onError(error) {
        if (error.code !== Code.Unauthenticated) {
          post({ kind: "error", code: error.code, message: error.rawMessage });
        }
        stop();
        handlers.onError(error);
      },
      onEnd() {
        post({ kind: "end" });
        stop();
        handlers.onEnd?.();
      },
    });
    stopLeading = () => {
      stopLeading = null;
      leading = leaderLive = false;
      stopFeed();
      release();
    };
  });
  // Rejected (AbortError) when stopped before this tab led.
  navigator.locks.request(name, { signal: abort.signal }, lead).catch(() => undefined);
  post({ kind: "hello" });
  return stop;
}
