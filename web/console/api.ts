// The services as the console reaches them (Connect through the edge that serves it), and
// every failure turned into words a person can act on.
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client } from "@connectrpc/connect";

import { ConfigService } from "../src/gen/goals/v1/config_pb.js";
import { ExportService } from "../src/gen/goals/v1/export_pb.js";
import { TrackerService } from "../src/gen/goals/v1/tracker_pb.js";
import { edgeTransport } from "../src/transport.js";
import type { Transport } from "@connectrpc/connect";
import { edgeBaseUrl } from "./session.js";
import type { Session } from "./session.js";

export interface Api {
  transport: Transport;
  config: Client<typeof ConfigService>;
  tracker: Client<typeof TrackerService>;
  exports: Client<typeof ExportService>;
}

export function makeApi(session: Session): Api {
  const transport = edgeTransport({
    baseUrl: edgeBaseUrl(), protocol: "connect", token: session.token,
  });
  return {
    transport,
    config: createClient(ConfigService, transport),
    tracker: createClient(TrackerService, transport),
    exports: createClient(ExportService, transport),
  };
}

export type Problem =
  /** The session's token expired or was refused: sign in again. */
  | { kind: "expired"; message: string }
  /** The edge or a service behind it cannot be reached. */
  | { kind: "unavailable"; message: string }
  /** A field broke a rule; `field` is its path as the server named it (`conditions[3].value`). */
  | { kind: "invalid"; message: string; field: string; rule: string }
  /** Anything else the server refused (not found, limit reached, permission). */
  | { kind: "refused"; message: string };

/** What the console says when a session's token has passed its expiry or is refused. */
export const SESSION_ENDED = "Your session has ended. Sign in again to go on.";

const UNAVAILABLE =
  "goalflow cannot be reached right now (the service or the network is down). " +
  "Try again in a moment.";
/** Said as well when the failed call was a change (a save, an activation, a request). */
const NOT_SAVED = " Your changes were not saved.";

/** The server's field-first messages ("conditions: at most 100 ...", also inside a request's
 * message: "definition.conditions[0].value: ..."), docs/rules.md. */
const FIELD_RE = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*): (.+)$/s;

/** What went wrong, in words, from any error a call threw; `saving`: the call was a change,
 * and an unreachable service must also say that nothing was saved. */
export function describe(err: unknown, saving = false): Problem {
  const error = ConnectError.from(err);
  const message = error.rawMessage;
  switch (error.code) {
    case Code.Unauthenticated:
      return { kind: "expired", message: SESSION_ENDED };
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return { kind: "unavailable", message: UNAVAILABLE + (saving ? NOT_SAVED : "") };
    case Code.Unknown:
    case Code.Internal:
      // fetch() itself failed (edge down, network gone): connect-web reports Unknown.
      if (/fetch|network|load failed/i.test(message)) {
        return { kind: "unavailable", message: UNAVAILABLE + (saving ? NOT_SAVED : "") };
      }
      return { kind: "refused", message: `The server failed: ${message}` };
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.AlreadyExists:
    case Code.ResourceExhausted: {
      const match = FIELD_RE.exec(message);
      if (match) {
        return { kind: "invalid", message, field: match[1], rule: match[2] };
      }
      return { kind: "refused", message };
    }
    case Code.PermissionDenied:
      return { kind: "refused", message: `Not allowed: ${message}` };
    default:
      return { kind: "refused", message };
  }
}
