// The console's session: a short-lived token, never the API key it was exchanged for.
//
// Signing in sends the key once to AccountService.MintToken through the edge and keeps only
// the token it returns (sessionStorage: this tab, gone when it closes). A token pasted
// instead (minted by a backend) is used as is. When the token is refused or past its expiry
// the console says so and asks for a key again (see `api.ts`, `SessionExpired`).
import { Code, ConnectError, createClient } from "@connectrpc/connect";

import { AccountService, Role as RoleMessage } from "../src/gen/goals/v1/accounts_pb.js";
import { edgeTransport } from "../src/transport.js";

export type Role = "admin" | "supervisor" | "agent";

export interface Session {
  token: string;
  role: Role;
  accountId: string;
  /** The agent an agent token sees (role agent only). */
  agentId: string;
  /** Milliseconds since the epoch at which the token stops being accepted. */
  expiresAtMs: number;
  /** The id of the key that minted the token ("" if it does not say). */
  mintedBy: string;
}

const STORAGE_KEY = "goalflow.session";
const API_KEY_RE = /^gf_[A-Za-z0-9_-]+$/;

/** The edge serving this page: the console is served by the edge it calls. */
export function edgeBaseUrl(): string {
  return window.location.origin;
}

/** The claims of a token, read without checking its signature: the edge and the services
 * check it on every call; the console only needs to know what to show. */
export function readToken(token: string): Session | null {
  const parts = token.split(".");
  if (parts.length !== 3) {
    return null;
  }
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json) as Record<string, unknown>;
    const role = claims["role"];
    if (role !== "admin" && role !== "supervisor" && role !== "agent") {
      return null;
    }
    return {
      token,
      role,
      accountId: String(claims["acct"] ?? ""),
      agentId: String(claims["agent"] ?? ""),
      expiresAtMs: Number(claims["exp"] ?? 0) * 1000,
      mintedBy: String(claims["by"] ?? ""),
    };
  } catch {
    return null;
  }
}

export function isApiKey(value: string): boolean {
  return API_KEY_RE.test(value);
}

export function loadSession(): Session | null {
  const stored = window.sessionStorage.getItem(STORAGE_KEY);
  const session = stored ? readToken(stored) : null;
  return session && session.expiresAtMs > Date.now() ? session : null;
}

/** Whether this tab kept a session whose token has expired since (a reload after it
 * passed); forgets it, so that the console says so once. */
export function takeEndedSession(): boolean {
  const stored = window.sessionStorage.getItem(STORAGE_KEY);
  const session = stored ? readToken(stored) : null;
  if (session === null || session.expiresAtMs > Date.now()) {
    return false;
  }
  clearSession();
  return true;
}

export function saveSession(session: Session): void {
  window.sessionStorage.setItem(STORAGE_KEY, session.token);
}

export function clearSession(): void {
  window.sessionStorage.removeItem(STORAGE_KEY);
}

/** A session from what the person typed: an API key (exchanged for a token of `role`; an
 * agent key needs `agentId`) or a token. Throws ConnectError from the edge, or Error with
 * a sentence for the person. */
export async function signIn(credential: string, agentId: string): Promise<Session> {
  const value = credential.trim();
  if (!isApiKey(value)) {
    const session = readToken(value);
    if (session === null) {
      throw new Error("This is neither an API key (gf_…) nor a goalflow token.");
    }
    if (session.expiresAtMs <= Date.now()) {
      throw new Error("This token has expired. Ask for a new one, or sign in with a key.");
    }
    return session;
  }
  const accounts = createClient(
    AccountService,
    edgeTransport({ baseUrl: edgeBaseUrl(), protocol: "connect", token: value }),
  );
  const agent = agentId.trim();
  let minted;
  try {
    minted = await accounts.mintToken({
      role: agent ? RoleMessage.AGENT : RoleMessage.ADMIN,
      agentId: agent,
      longest: true, // the deployment's maximum (one hour unless configured)
    });
  } catch (err: unknown) {
    throw new Error(signInRefusal(ConnectError.from(err), agent) ?? "", { cause: err });
  }
  const session = readToken(minted.token);
  if (session === null) {
    throw new Error("The edge returned a token this console cannot read.");
  }
  return session;
}

/** A sentence for a refused sign-in whose cause the person can act on, or null to let the
 * caller describe the error (`cause`) as any other. */
function signInRefusal(error: ConnectError, agentId: string): string | null {
  if (error.code === Code.PermissionDenied && !agentId && /agent tokens only/.test(error.rawMessage)) {
    return "This is an agent key: give the id of the agent whose view to open.";
  }
  if (error.code === Code.PermissionDenied && error.rawMessage === "HTTP 403") {
    // A bare 403 (no Connect error body): the edge's CORS refusal, the only 403 it sends.
    // Behind a proxy that rewrote the Host header, this console's own origin no longer
    // looks like the edge's (README: Web console).
    return "The edge refused this page's origin. If a proxy sits in front of it, it must " +
      "pass the Host header on, or the console's address must be listed in " +
      "GOALFLOW_CORS_ALLOWED_ORIGINS.";
  }
  return null;
}
