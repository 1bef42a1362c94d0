// The agent workspace's live feed: SubscribeConversions for one agent, as a callback API
// that a page can start and stop.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Transport } from "@connectrpc/connect";

import type { Conversion } from "./gen/goals/v1/tracker_pb.js";
import { TrackerService } from "./gen/goals/v1/tracker_pb.js";

/** The tracker's initial metadata once the subscription is live (tracker servicer). */
export const SUBSCRIBED_HEADER = "x-goalflow-subscribed";

export interface FeedHandlers {
  /** Response headers arrived: the subscription is registered upstream. */
  onLive?(headers: Headers): void;
  onConversion(conversion: Conversion): void;
  /** The stream failed or ended with an error (not called when stopped by the caller). */
  onError(error: ConnectError): void;
  /** The server ended the stream normally. */
  onEnd?(): void;
}

/** Follows the conversions crediting `agentId` until the returned function is called. */
export function followAgent(
  transport: Transport,
  agentId: string,
  handlers: FeedHandlers,
): () => void {
  const client = createClient(TrackerService, transport);
  const abort = new AbortController();
  const run = async (): Promise<void> => {
    const stream = client.subscribeConversions(
      { target: { case: "agentId", value: agentId } },
      { signal: abort.signal, onHeader: (headers) => handlers.onLive?.(headers) },
    );
    for await (const message of stream) {
      if (message.conversion) {
        handlers.onConversion(message.conversion);
      }
    }
    handlers.onEnd?.();
  };
  run().catch((err: unknown) => {
    const error = ConnectError.from(err);
    if (!(abort.signal.aborted && error.code === Code.Canceled)) {
      handlers.onError(error);
    }
  });
  return () => abort.abort();
}
