// The browser's way to the edge service: one Connect or gRPC-Web transport carrying the
// caller's bearer credential (an agent/supervisor/admin token minted by a backend; never an
// account-wide API key in a real page).
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

export type Protocol = "connect" | "grpcweb";

export interface EdgeOptions {
  /** The edge's origin, e.g. "http://127.0.0.1:8080" (no trailing path). */
  baseUrl: string;
  protocol: Protocol;
  /** Sent as `authorization: Bearer <token>`; omitted when empty. */
  token: string;
  /** Connect only: binary protobuf instead of JSON (gRPC-Web is always binary). */
  binary?: boolean;
}

export function isProtocol(value: string): value is Protocol {
  return value === "connect" || value === "grpcweb";
}

function bearer(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}

/** A transport for `options`; the credential travels in a header, never in a cookie. */
export function edgeTransport(options: EdgeOptions): Transport {
  const interceptors = options.token ? [bearer(options.token)] : [];
  if (options.protocol === "grpcweb") {
    return createGrpcWebTransport({ baseUrl: options.baseUrl, interceptors });
  }
  return createConnectTransport({
    baseUrl: options.baseUrl,
    interceptors,
    useBinaryFormat: options.binary ?? false,
  });
}
