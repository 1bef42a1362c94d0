// The browser tests' page (tests/browser): follows one agent's conversions through the edge
// with the official Connect-Web transports and leaves what happened on `window` for the test
// to read. Query string: base (the edge's origin), protocol (connect | grpcweb), token
// (bearer credential), agent (agent id to follow), binary (1: Connect binary instead of JSON).
import { Code } from "@connectrpc/connect";
import type { ConnectError } from "@connectrpc/connect";

import { followAgent } from "../src/feed.js";
import { edgeTransport, isProtocol } from "../src/transport.js";

/** A conversion as the page saw it, with the page's clocks at receipt. */
interface Received {
  id: string;
  accountId: string;
  goalId: string;
  conversationId: string;
  agentIds: string[];
  /** Date.now() at receipt: comparable with the test's wall clock (same machine). */
  receivedAtMs: number;
  /** performance.now() at receipt, relative to the page's time origin. */
  receivedPerfMs: number;
}

interface PageError {
  /** The Connect code's name ("Unauthenticated", "Unknown", ...), or "page". */
  code: string;
  message: string;
  atMs: number;
}

interface FeedState {
  received: Received[];
  /** Errors that ended the feed (or a bad query). */
  errors: PageError[];
  /** Unavailable answers the feed retried after (see src/feed.ts). */
  retries: PageError[];
  /** Date.now() when the subscription became live (its `subscribed` message), else null. */
  liveAtMs: number | null;
  ended: boolean;
  stop: () => void;
}

declare global {
  interface Window {
    feed: FeedState;
    received: Received[];
    errors: PageError[];
  }
}

const state: FeedState = {
  received: [],
  errors: [],
  retries: [],
  liveAtMs: null,
  ended: false,
  stop: () => undefined,
};
window.feed = state;
window.received = state.received;
window.errors = state.errors;

function show(line: string): void {
  const item = document.createElement("li");
  item.textContent = line;
  document.getElementById("log")?.append(item);
}

function fail(code: string, message: string): void {
  state.errors.push({ code, message, atMs: Date.now() });
  show(`error ${code}: ${message}`);
}

function start(params: URLSearchParams): void {
  const base = params.get("base") ?? "";
  const protocol = params.get("protocol") ?? "connect";
  const agent = params.get("agent") ?? "";
  if (!base || !agent || !isProtocol(protocol)) {
    fail("page", "query needs base, agent and protocol=connect|grpcweb");
    return;
  }
  const transport = edgeTransport({
    baseUrl: base,
    protocol,
    token: params.get("token") ?? "",
    binary: params.get("binary") === "1",
  });
  state.stop = followAgent(transport, agent, {
    onLive() {
      state.liveAtMs = Date.now();
      show(`live (${protocol})`);
    },
    onConversion(conversion) {
      state.received.push({
        id: conversion.id,
        accountId: conversion.accountId,
        goalId: conversion.goalId,
        conversationId: conversion.conversationId,
        agentIds: conversion.credits.map((credit) => credit.agent?.id ?? ""),
        receivedAtMs: Date.now(),
        receivedPerfMs: performance.now(),
      });
      show(`conversion ${conversion.id} of ${conversion.goalName}`);
    },
    onError(error: ConnectError) {
      fail(Code[error.code], error.rawMessage);
    },
    onRetry(error: ConnectError, attempt: number, delayMs: number) {
      state.retries.push({ code: Code[error.code], message: error.rawMessage, atMs: Date.now() });
      show(`retry ${attempt} in ${delayMs} ms after ${Code[error.code]}: ${error.rawMessage}`);
    },
    onEnd() {
      state.ended = true;
      show("stream ended");
    },
  });
}

start(new URLSearchParams(window.location.search));
