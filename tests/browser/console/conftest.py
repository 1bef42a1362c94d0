"""Fixtures of the web console's browser tests: the whole system on loopback (config,
tracker, export with the SMTP sink, the real database) and the edge serving the built
console (web/dist/console, ``make web``), opened in the distribution's Chromium.

The services run on a clock set to the real time of the test (frozen there): the console
reads "today" from the browser's clock, and a goal created through its form must be
Active on the server's. Every page a test opens is watched for console errors (the
``console`` fixture of tests/browser): any the test did not announce fails it.

Screenshots go to ``build/test-output/browser/`` (:func:`screenshot`); with
``GOALFLOW_UPDATE_SCREENSHOTS=1`` (``make screenshots``) also to ``docs/screenshots/``, the
README's copies."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from playwright.async_api import Browser, Page

from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.clock import ManualClock
from goalflow_common.pb.goals.v1 import export_pb2_grpc, tracker_pb2_grpc
from tests.browser.conftest import Console
from tests.conftest import TOKEN_KEYS, Tenant
from tests.services.export_svc import conftest as export_fixtures
from tests.services.tracker_svc import conftest as tracker_fixtures
from tests.services.tracker_svc.conftest import Stack

ROOT = Path(__file__).resolve().parents[3]
CONSOLE_DIR = ROOT / "web" / "dist" / "console"
OUTPUT_DIR = ROOT / "build" / "test-output" / "browser"
README_SCREENSHOTS = ROOT / "docs" / "screenshots"
README_SCREENSHOT_NAMES = frozenset({"goals", "reports"})  # the pictures README.md shows
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
UI_WAIT_MS = 10_000  # how long a test waits for the page before calling it broken

stack = tracker_fixtures.stack
sink = export_fixtures.sink


@pytest.fixture
def clock() -> ManualClock:
    """The real time of the test, frozen: the browser's "today" is the services' too."""
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@dataclass
class ConsoleWorld:
    """The system behind the console's edge, and an account to sign in with."""

    stack: Stack
    edge: EdgeServer
    tenant: Tenant
    export_address: str
    outbox: Path
    clock: ManualClock
    channels: list[aio.Channel] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The console, as `make run` prints it."""
        return f"http://127.0.0.1:{self.edge.port}/"

    @property
    def admin_key(self) -> str:
        return self.tenant.keys[Role.ADMIN]

    def producer(self) -> tracker_pb2_grpc.TrackerServiceStub:
        """The tracker, natively, with the tenant's ingest key (events as a producer sends
        them)."""
        channel = make_channel(self.stack.tracker_address, self.tenant.keys[Role.INGEST])
        self.channels.append(channel)
        return tracker_pb2_grpc.TrackerServiceStub(channel)

    def subscriptions(self) -> set[Any]:
        """The tracker's live-feed subscriptions right now (its Subscriber objects: a new
        one is a new subscription, not the same one counted again)."""
        server = self.stack.tracker_server
        assert server is not None
        feed = server.components["feed"]
        return {sub for subs in feed._subscribers.values() for sub in subs}

    async def until_subscriptions(self, what: str, done: Callable[[set[Any]], bool]
                                  ) -> set[Any]:
        """The tracker's subscriptions, once ``done`` says they are as the test expects."""
        deadline = time.monotonic() + UI_WAIT_MS / 1000
        while not done(current := self.subscriptions()):
            assert time.monotonic() < deadline, f"{len(current)} subscriptions, expected {what}"
            await asyncio.sleep(0.01)
        return current

    def exports(self) -> export_pb2_grpc.ExportServiceStub:
        channel = make_channel(self.export_address, self.admin_key)
        self.channels.append(channel)
        return export_pb2_grpc.ExportServiceStub(channel)


@pytest.fixture
async def console_world(
    stack: Stack, sink: tuple[int, Path], mongo_uri: str, db_prefix: str, clock: ManualClock,
    platform_key: str, make_tenant: Callable[[], Awaitable[Tenant]],
) -> AsyncIterator[ConsoleWorld]:
    if not (CONSOLE_DIR / "index.html").is_file():
        pytest.fail(f"{CONSOLE_DIR} is not built: run `make web`")
    smtp_port, outbox = sink
    export, export_address = await export_fixtures.start_export_beside(
        stack, mongo_uri=mongo_uri, db_prefix=db_prefix, smtp_port=smtp_port,
        platform_key=platform_key, clock=clock)
    edge = EdgeServer(EdgeSettings(
        http_port=0, config_address=stack.config_address,
        tracker_address=stack.tracker_address, export_address=export_address,
        shutdown_grace_s=1.0, token_keys=TOKEN_KEYS, console_dir=str(CONSOLE_DIR),
    ))
    await edge.start()
    tenant = await make_tenant(f"console-{uuid.uuid4().hex[:8]}")
    world = ConsoleWorld(stack, edge, tenant, export_address, outbox, clock)
    try:
        yield world
    finally:
        for channel in world.channels:
            await channel.close()
        await edge.stop()
        await export.stop(0.5)


@dataclass
class ConsolePages:
    """Opens the console in fresh browser contexts, each watched for console errors."""

    browser: Browser
    console: Console
    opened: list[Page] = field(default_factory=list)

    async def open(self, url: str, *, viewport: dict[str, int] | None = None) -> Page:
        context = await self.browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
        page = await context.new_page()
        page.set_default_timeout(UI_WAIT_MS)
        page.on("console", self.console.on_console)
        page.on("pageerror", self.console.on_page_error)
        await page.goto(url)
        self.opened.append(page)
        return page

    async def signed_in(self, world: ConsoleWorld, *, credential: str | None = None,
                        agent_id: str = "", viewport: dict[str, int] | None = None,
                        page: str = "") -> Page:
        """The console, signed in with ``credential`` (the tenant's admin key by default;
        an agent key or the admin key with ``agent_id``: that agent's view), at ``#/page``."""
        opened = await self.open(world.url + (f"#/{page}" if page else ""), viewport=viewport)
        await sign_in(opened, credential or world.admin_key, agent_id)
        await opened.get_by_role("button", name="Sign out").wait_for()
        return opened

    async def close(self) -> None:
        for page in self.opened:
            await page.context.close()


@pytest.fixture
async def console_pages(browser: Browser, console: Console) -> AsyncIterator[ConsolePages]:
    opened = ConsolePages(browser, console)
    try:
        yield opened
    finally:
        await opened.close()
    assert console.unexpected() == [], "browser console errors"


async def sign_in(page: Page, credential: str, agent_id: str = "") -> None:
    """Fill the sign-in form of ``page`` (an agent's id: that agent's view) and submit it."""
    await page.get_by_label("API key or token").fill(credential)
    if agent_id:
        await page.get_by_label("Agent id, to open that agent's view").fill(agent_id)
    await page.get_by_role("button", name="Sign in").click()


async def screenshot(page: Page, name: str) -> Path:
    """``name``.png of the whole page under build/test-output/browser (and, for the
    README's pictures, docs/screenshots with GOALFLOW_UPDATE_SCREENSHOTS=1)."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if name in README_SCREENSHOT_NAMES and os.environ.get("GOALFLOW_UPDATE_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (README_SCREENSHOTS / f"{name}.png").write_bytes(path.read_bytes())
    return path
