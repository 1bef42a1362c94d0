// The agent workspace's live feed: SubscribeConversions for one agent, as a callback API
// that a page can start and stop.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";

import type { Conversion } from "./gen/goals/v1/tracker_pb.js";
import { TrackerService } from "./gen/goals/v1/tracker_pb.js";

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
  /** The edge said Unavailable; the subscription is made again after `delayMs`. */
  onRetry?(error: ConnectError, attempt: number, delayMs: number): void;
  /** The server ended the stream normally. */
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
 * message asks; every other error ends the feed. Conversions recorded while no subscription
 * was open are not replayed: a workspace lists them (ListConversions) after a reconnect. */
export function followAgent(
  transport: Transport,
  agentId: string,
  handlers: FeedHandlers,
): () => void {
  const client = createClient(TrackerService, transport);
  const abort = new AbortController();
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
        handlers.onLive?.();
      } else if (message.conversion) {
        handlers.onConversion(message.conversion);
      }
    }
  };
  const run = async (): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await once();
        handlers.onEnd?.();
        return;
      } catch (err: unknown) {
        const error = ConnectError.from(err);
        if (abort.signal.aborted) {
          return;
        }
        if (error.code !== Code.Unavailable || attempt >= MAX_ATTEMPTS) {
          handlers.onError(error);
          return;
        }
        const delayMs = FIRST_BACKOFF_MS * 2 ** (attempt - 1);
        handlers.onRetry?.(error, attempt, delayMs);
        await sleep(delayMs, abort.signal);
      }
    }
  };
  void run();
  return () => abort.abort();
}
