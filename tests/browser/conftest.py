"""Fixtures of the browser tests: the built test page (web/test-page, `make web`) served on
loopback from two origins (one the edge allows, one it does not), the distribution's
Chromium driven headless by Playwright, and a console watcher that fails a test on any
browser console error it did not announce.

The page follows one agent's conversions through the edge with the official Connect-Web
transports and leaves what it saw on ``window.feed`` (see web/test-page/main.ts):
``received`` (each with the page's ``Date.now()`` at receipt, the same clock as the test's
``time.time()``), ``errors`` (what ended the feed) and ``retries`` (Unavailable answers it
resubscribed after). The edge sends response headers only with the first message, so the
page cannot tell when its subscription is live: the tests ask the tracker
(:meth:`BrowserWorld.subscribed`)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, TypedDict
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, ConsoleMessage, Error, Page, async_playwright

from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2_grpc
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.conftest import TOKEN_KEYS, Tenant
from tests.services.tracker_svc import conftest as tracker_fixtures
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit
from tests.services.tracker_svc.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "web" / "dist" / "test-page"
CHROMIUM = os.environ.get("GOALFLOW_CHROMIUM", "/usr/bin/chromium")
LIVE_WITHIN_MS = 5_000  # page load + subscription registered upstream; ~100 ms measured
SECOND = dt.timedelta(seconds=1)
VISIT_AT = dt.datetime(2026, 6, 1, 12, 5, tzinfo=dt.UTC)  # the goal is tracked (clock fixture)

Protocol = Literal["connect", "grpcweb"]


class Received(TypedDict):
    """A conversion as the page recorded it (web/test-page/main.ts ``Received``)."""

    id: str
    accountId: str
    goalId: str
    conversationId: str
    agentIds: list[str]
    receivedAtMs: float
    receivedPerfMs: float


class PageError(TypedDict):
    code: str
    message: str
    atMs: float


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files, never cached, without a log line per request."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class PageServer:
    """The built page on a loopback port: its own origin."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def url(self, **query: str) -> str:
        return f"{self.origin}/index.html?{urlencode(query)}"


def _serve_page() -> PageServer:
    if not (PAGE_DIR / "main.js").is_file():
        pytest.fail(f"{PAGE_DIR / 'main.js'} is missing: build the test page with `make web`")
    handler = partial(_QuietHandler, directory=str(PAGE_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="test-page", daemon=True)
    thread.start()
    return PageServer(server, thread)


def _stop(page_server: PageServer) -> None:
    page_server.server.shutdown()
    page_server.server.server_close()
    page_server.thread.join(5)


@pytest.fixture(scope="session")
def page_origin() -> Iterator[PageServer]:
    """The test page on the origin the edge allows (the tests put it on the allow-list)."""
    served = _serve_page()
    yield served
    _stop(served)


@pytest.fixture(scope="session")
def foreign_origin() -> Iterator[PageServer]:
    """The same page on another port: an origin no edge in these tests allows."""
    served = _serve_page()
    yield served
    _stop(served)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium from the distribution (never a Playwright download)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get update && apt-get install -y "
                    "chromium (or set GOALFLOW_CHROMIUM)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Console:
    """Console errors and uncaught exceptions of the pages a test opens. A test announces
    the errors it provokes (``expect``); any other fails it at teardown."""

    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect(self, pattern: str) -> None:
        self.expected.append(re.compile(pattern))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error.message}")

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.expected)]


@dataclass
class FeedPage:
    """One open test page and what it has seen so far."""

    page: Page
    protocol: Protocol

    async def received(self) -> list[Received]:
        result: list[Received] = await self.page.evaluate("window.feed.received")
        return result

    async def errors(self) -> list[PageError]:
        result: list[PageError] = await self.page.evaluate("window.feed.errors")
        return result

    async def retries(self) -> list[PageError]:
        result: list[PageError] = await self.page.evaluate("window.feed.retries")
        return result

    async def wait_failed(self, within_ms: float = LIVE_WITHIN_MS) -> list[PageError]:
        """The page's errors, once it has at least one."""
        await self.page.wait_for_function(
            "window.feed && window.feed.errors.length > 0", timeout=within_ms
        )
        return await self.errors()

    async def wait_live(self, within_ms: float = LIVE_WITHIN_MS) -> None:
        """Until the page's subscription says it is live (its first, ``subscribed``,
        message): what a workspace waits for before telling the agent it is following."""
        await self.page.wait_for_function("window.feed && window.feed.liveAtMs !== null",
                                          timeout=within_ms)

    async def wait_received(self, conversation_id: str, within_ms: float) -> Received:
        """The first conversion of ``conversation_id`` the page receives."""
        await self.page.wait_for_function(
            "conv => window.feed.received.some(r => r.conversationId === conv)",
            arg=conversation_id, timeout=within_ms,
        )
        return next(r for r in await self.received() if r["conversationId"] == conversation_id)


@dataclass
class Pages:
    """Opens test pages in fresh browser contexts (no shared cache or storage)."""

    browser: Browser
    console: Console
    opened: list[FeedPage] = field(default_factory=list)

    async def open(
        self, served: PageServer, *, base: str, agent: str, token: str,
        protocol: Protocol = "connect", binary: bool = False,
    ) -> FeedPage:
        context = await self.browser.new_context()
        page = await context.new_page()
        page.on("console", self.console.on_console)
        page.on("pageerror", self.console.on_page_error)
        query = {"base": base, "protocol": protocol, "agent": agent, "token": token}
        if binary:
            query["binary"] = "1"
        await page.goto(served.url(**query))
        feed = FeedPage(page, protocol)
        self.opened.append(feed)
        return feed

    async def close(self) -> None:
        for feed in self.opened:
            await feed.page.evaluate("window.feed && window.feed.stop()")
            await feed.page.context.close()


@pytest.fixture
def console() -> Console:
    return Console()


@pytest.fixture
async def pages(browser: Browser, console: Console) -> AsyncIterator[Pages]:
    """Test pages for this test; at the end, no console error the test did not expect."""
    opened = Pages(browser, console)
    try:
        yield opened
    finally:
        await opened.close()
    assert console.unexpected() == [], "browser console errors"


# -- the system behind the edge ----------------------------------------------------------

AGENT_A, AGENT_B = "agent-a", "agent-b"


stack = tracker_fixtures.stack


@dataclass(frozen=True)
class Ingested:
    """Wall-clock times (ms since the epoch) of one ingested batch."""

    sent_ms: float
    """Just before the batch was sent."""
    acked_ms: float
    """When its acknowledgement arrived: the batch and its conversions are stored."""


@dataclass
class BrowserWorld:
    """Config and tracker on loopback, the edge in front of them allowing ``page_origin``
    only, and an account with a goal that converts a checkout visit for the agent assigned."""

    stack: Stack
    edge: EdgeServer
    tenant: Tenant
    tokens: TokenAuthority
    producer: tracker_pb2_grpc.TrackerServiceStub
    """The tracker, natively, with the tenant's ingest key, connected before the test."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.edge.port}"

    def agent_token(self, agent_id: str, minted_s_ago: float = 0) -> str:
        """A token for ``agent_id`` of the tenant, as a backend mints it (``minted_s_ago``:
        by a minter whose clock is that far behind, to make an expired one)."""
        minter = self.tokens
        if minted_s_ago:
            minter = TokenAuthority(parse_token_keys(TOKEN_KEYS),
                                    now=lambda: time.time() - minted_s_ago)
        return minter.mint(self.tenant.account_id, Role.AGENT, agent_id=agent_id).token

    async def subscribed(self, count: int, within_s: float = LIVE_WITHIN_MS / 1000) -> None:
        """Until the tracker holds ``count`` live-feed subscriptions (pages see their own
        with :meth:`FeedPage.wait_live`; this counts every page's, refused ones included)."""
        feed = self.stack.tracker_server.components["feed"] if self.stack.tracker_server else None
        assert feed is not None
        deadline = time.monotonic() + within_s
        while feed.subscriber_count != count:
            assert time.monotonic() < deadline, (
                f"{feed.subscriber_count} subscriptions at the tracker, expected {count}")
            await asyncio.sleep(0.01)

    async def convert(self, conversation_id: str, agent_id: str) -> Ingested:
        """Ingest one batch (native gRPC IngestEvents) in which ``agent_id`` is assigned
        ``conversation_id`` and the end user reaches the checkout: one conversion crediting
        that agent."""
        at = VISIT_AT
        user = f"user-{conversation_id}"
        sent_ms = time.time() * 1000
        [ack] = await ingest(self.producer, [
            opened(conversation_id, at, user=user),
            assigned(conversation_id, at, agent(agent_id)),
            visit("https://shop.example/checkout", at + SECOND, user=user, conv=conversation_id),
        ])
        acked_ms = time.time() * 1000
        assert ack.conversions == 1, ack
        return Ingested(sent_ms, acked_ms)


@pytest.fixture
async def world(
    stack: Stack, make_tenant: Callable[[], Awaitable[Tenant]], page_origin: PageServer,
    tokens: TokenAuthority,
) -> AsyncIterator[BrowserWorld]:
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    edge = EdgeServer(EdgeSettings(
        http_port=0, config_address=stack.config_address,
        tracker_address=stack.tracker_address, export_address="127.0.0.1:1",
        cors_allowed_origins=page_origin.origin, shutdown_grace_s=1.0,
        token_keys=TOKEN_KEYS,  # the services' GOALFLOW_TOKEN_KEYS (tests/conftest.py)
    ))
    await edge.start()
    # Connected before the clock starts: make_channel's 100 ms minimum reconnect backoff is
    # also gRPC's connect timeout, which the in-process tracker missed once in a full
    # `make test` on a loaded 2-core machine (UNAVAILABLE "connection attempt timed out
    # before receiving SETTINGS frame"); channel_ready() keeps trying until connected.
    channel = make_channel(stack.tracker_address, tenant.keys[Role.INGEST])
    try:
        await asyncio.wait_for(channel.channel_ready(), 10)
        yield BrowserWorld(stack, edge, tenant, tokens,
                           tracker_pb2_grpc.TrackerServiceStub(channel))
    finally:
        await channel.close()
        await edge.stop()
