"""The console's agent view and the embeddable agent notice (issue 13), in a real browser
against the real services: an agent signed in with the tenant's agent key and an agent id
sees its own conversions only, and a live notice (goal, value, conversation) within a
second of a conversion crediting it being ingested; another agent's conversion never shows.
The embed's example page (served by the edge, strict CSP) shows the same notice and the
agent's count for today; served from another origin it works through an edge that allows
that origin (CORS) and says it cannot reach one that does not; given a function for its
token, it asks for a new one when the first is refused. At phone width nothing overflows.

Latency is measured as tests/browser/test_live_feed.py does: the test's ``time.time()``
just before the batch is sent against the page's ``Date.now()`` when the notice is on the
page (the same machine clock)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.async_api import Page, expect

from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.browser.console.conftest import (
    CONSOLE_DIR,
    PHONE,
    ConsolePages,
    ConsoleWorld,
    screenshot,
)
from tests.conftest import TOKEN_KEYS
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit

MAX_LATENCY_MS = 1000.0  # batch sent -> notice on the agent's page (issue 13)
GOAL = "Checkout upsell"

# The page's Date.now() once a notice in the live region names `conv`; false until then.
NOTICE_SHOWN_AT = """conv => {
  const region = document.querySelector('[aria-live="polite"]');
  return region && region.textContent.includes('conversation ' + conv) ? Date.now() : false;
}"""


async def tracked_goal(world: ConsoleWorld) -> None:
    """A goal tracked from the services' today, worth 149.99 USD a conversion."""
    await create_goal(world.stack, world.tenant, GOAL,
                      model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
                      start=world.clock.now().date(), value=("USD", "149.99"))


async def convert(world: ConsoleWorld, conversation_id: str, agent_id: str) -> float:
    """One batch in which ``agent_id`` takes ``conversation_id`` and the end user reaches the
    checkout, at the services' now: one conversion crediting that agent. The wall-clock
    time (ms) just before the batch was sent."""
    now = world.clock.now()
    user = f"user-{conversation_id}"
    producer = world.producer()
    sent_ms = time.time() * 1000
    [ack] = await ingest(producer, [
        opened(conversation_id, now, user=user),
        assigned(conversation_id, now, agent(agent_id)),
        visit("https://shop.example/checkout", now + dt.timedelta(seconds=1), user=user,
              conv=conversation_id),
    ])
    assert ack.conversions == 1, ack
    return sent_ms


async def agent_page(world: ConsoleWorld, pages: ConsolePages, agent_id: str,
                     viewport: dict[str, int] | None = None) -> Page:
    page = await pages.signed_in(world, credential=world.tenant.keys[Role.AGENT],
                                 agent_id=agent_id, page="agent", viewport=viewport)
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    return page


async def notice_latency_ms(page: Page, conversation_id: str, sent_ms: float) -> float:
    shown = await page.wait_for_function(NOTICE_SHOWN_AT, arg=conversation_id)
    shown_ms: float = await shown.json_value()
    return shown_ms - sent_ms


async def test_the_agent_sees_its_own_conversions_and_a_live_notice_within_a_second(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    await tracked_goal(console_world)
    await convert(console_world, "conv-earlier-a", "agent-a")
    await convert(console_world, "conv-earlier-b", "agent-b")
    page = await agent_page(console_world, console_pages, "agent-a")
    assert await page.get_by_role("link", name="My conversions").get_attribute(
        "aria-current") == "page"

    table = page.locator("table")
    await expect(table.locator("tbody tr")).to_have_count(1)
    assert "conv-earlier-a" in await table.inner_text()  # its own; never agent-b's

    sent_ms = await convert(console_world, "conv-a", "agent-a")
    latency_ms = await notice_latency_ms(page, "conv-a", sent_ms)
    print(f"batch sent -> notice on the agent's page: {latency_ms:.0f} ms")
    assert latency_ms < MAX_LATENCY_MS
    notice = page.locator('[aria-live="polite"]')
    text = await notice.inner_text()
    assert GOAL in text and "149.99 USD" in text and "conv-a" in text, text
    # Prepended to the list.
    await expect(table.locator("tbody tr").first).to_contain_text("conv-a")

    # Agent B's conversion, then another of A's: the feed delivers in order, so had B's
    # reached this page it would be there before A's second.
    await convert(console_world, "conv-b", "agent-b")
    await notice_latency_ms(page, "conv-a2", await convert(console_world, "conv-a2", "agent-a"))
    body = await page.locator("body").inner_text()
    assert "conv-b" not in body and "conv-earlier-b" not in body
    await expect(table.locator("tbody tr")).to_have_count(3)

    # A notice stays until dismissed.
    await notice.get_by_role("button", name=f"Dismiss the notice of {GOAL}").first.click()
    await expect(notice.locator("[data-conversion-id]")).to_have_count(1)
    await screenshot(page, "agent")


async def test_a_session_that_has_ended_takes_the_agent_back_to_sign_in(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """The console keeps a token it was given; once the services refuse it the agent view
    says so on the sign-in page (here: a token signed with a key the services do not have,
    refused as an expired one is)."""
    console_pages.console.expect("401")  # Chromium logs the refused request itself
    other = TokenAuthority(parse_token_keys("other-1:" + "x" * 43))
    token = other.mint(console_world.tenant.account_id, Role.AGENT, agent_id="agent-a").token
    page = await console_pages.open(console_world.url + "#/agent")
    await page.get_by_label("API key or token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    # Signed in (the token is readable), then out again at the first refusal, in words.
    await expect(page.get_by_role("status").filter(
        has_text="Your session has ended")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_the_embedded_notice_shows_a_conversion_and_todays_count(
    console_world: ConsoleWorld, console_pages: ConsolePages, tokens: TokenAuthority,
) -> None:
    await tracked_goal(console_world)
    await convert(console_world, "conv-before", "agent-a")
    token = tokens.mint(console_world.tenant.account_id, Role.AGENT, agent_id="agent-a").token
    page = await console_pages.open(
        f"{console_world.url}embed/example.html#token={token}&agent=agent-a")
    # Playwright's locators reach into the notice's (open) shadow root.
    notice = page.locator("#goalflow-notice")
    await expect(notice.get_by_role("status")).to_have_text("Live")
    # The token, read, is out of the address bar and the history.
    assert await page.evaluate("location.hash") == ""
    assert token not in await page.evaluate("location.href")
    await expect(notice.get_by_text("Today: 1 conversion", exact=True)).to_be_visible()

    sent_ms = await convert(console_world, "conv-embed", "agent-a")
    shown = await page.wait_for_function("""conv => {
      const root = document.getElementById('goalflow-notice').shadowRoot;
      const toast = root && root.querySelector('.gf-toast');
      return toast && toast.textContent.includes('conversation ' + conv) ? Date.now() : false;
    }""", arg="conv-embed")
    latency_ms = await shown.json_value() - sent_ms
    print(f"batch sent -> embedded notice: {latency_ms:.0f} ms")
    assert latency_ms < MAX_LATENCY_MS
    toast = notice.locator(".gf-toast")
    await expect(toast).to_contain_text(f"New conversion: {GOAL}")
    await expect(toast).to_contain_text("149.99 USD")
    await expect(notice.get_by_text("Today: 2 conversions", exact=True)).to_be_visible()
    await screenshot(page, "agent-embed")

    # The host page's loud styles stay outside: the toast keeps its own colours.
    colour = await toast.evaluate("t => getComputedStyle(t.querySelector('p')).color")
    host = await page.evaluate("getComputedStyle(document.querySelector('header p')).color")
    assert colour != host

    await notice.get_by_role("button", name="Dismiss").click()
    await expect(toast).to_have_count(0)

    # Another agent's conversion never shows here.
    await convert(console_world, "conv-other", "agent-b")
    await convert(console_world, "conv-embed-2", "agent-a")
    await expect(toast).to_contain_text("conv-embed-2")
    assert "conv-other" not in await notice.inner_text()
    await expect(notice.get_by_text("Today: 3 conversions", exact=True)).to_be_visible()


async def test_the_embed_example_without_a_token_says_how_to_open_it(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    page = await console_pages.open(f"{console_world.url}embed/example.html")
    await expect(page.get_by_role("alert")).to_contain_text("#token=")


async def test_at_phone_width_the_agent_view_does_not_overflow(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    await tracked_goal(console_world)
    await convert(console_world, "conv-earlier-a", "agent-a")
    page = await agent_page(console_world, console_pages, "agent-a", viewport=PHONE)
    await notice_latency_ms(page, "conv-phone-a",
                            await convert(console_world, "conv-phone-a", "agent-a"))
    await expect(page.locator("tbody tr")).to_have_count(2)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    await screenshot(page, "agent-phone")


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def embed_origin() -> Iterator[str]:
    """The built embed (goalflow-agent.js and the example) served from an origin of its own,
    as an agent workspace's site would serve its page."""
    handler = partial(_QuietFiles, directory=str(CONSOLE_DIR / "embed"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="embed-origin", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
async def allowing_edge(console_world: ConsoleWorld, embed_origin: str) -> AsyncIterator[str]:
    """A second edge in front of the same services whose CORS allow-list has the embed's
    origin (GOALFLOW_CORS_ALLOWED_ORIGINS). Its origin."""
    edge = EdgeServer(EdgeSettings(
        http_port=0, config_address=console_world.stack.config_address,
        tracker_address=console_world.stack.tracker_address,
        export_address=console_world.export_address, cors_allowed_origins=embed_origin,
        shutdown_grace_s=1.0, token_keys=TOKEN_KEYS,
    ))
    await edge.start()
    try:
        yield f"http://127.0.0.1:{edge.port}"
    finally:
        await edge.stop()


async def test_the_embed_works_from_another_origin_the_edge_allows(
    console_world: ConsoleWorld, embed_origin: str, allowing_edge: str,
    console_pages: ConsolePages, tokens: TokenAuthority,
) -> None:
    # (console_pages after allowing_edge: its pages close before that edge stops, which
    # would end their feeds, and a feed ended cleanly is followed again: refused, logged.)
    await tracked_goal(console_world)
    token = tokens.mint(console_world.tenant.account_id, Role.AGENT, agent_id="agent-a").token
    page = await console_pages.open(
        f"{embed_origin}/example.html#token={token}&agent=agent-a&edge={allowing_edge}")
    notice = page.locator("#goalflow-notice")
    await expect(notice.get_by_role("status")).to_have_text("Live")
    await expect(notice.get_by_text("Today: 0 conversions", exact=True)).to_be_visible()
    await convert(console_world, "conv-cross", "agent-a")
    await expect(notice.locator(".gf-toast")).to_contain_text("conversation conv-cross")

    # The console's own edge does not list that origin: the browser blocks the calls, and
    # the notice says so in its box.
    console_pages.console.expect("CORS|Access-Control-Allow-Origin|Failed to fetch|ERR_FAILED")
    refused = await console_pages.open(
        f"{embed_origin}/example.html#token={token}&agent=agent-a&edge="
        f"{console_world.url.rstrip('/')}")
    refused_notice = refused.locator("#goalflow-notice")
    await expect(refused_notice.get_by_role("status")).to_have_text(
        f"Stopped: goalflow cannot be reached, or this page's origin ({embed_origin}) is not "
        "in the edge's allowed origins (GOALFLOW_CORS_ALLOWED_ORIGINS).")
    await expect(refused_notice.get_by_role("button", name="Reconnect")).to_be_visible()


async def test_the_embed_asks_its_token_function_again_when_a_token_is_refused(
    console_world: ConsoleWorld, console_pages: ConsolePages, tokens: TokenAuthority,
) -> None:
    await tracked_goal(console_world)
    console_pages.console.expect("401")  # Chromium logs the refused request itself
    expired = TokenAuthority(parse_token_keys(TOKEN_KEYS), now=lambda: time.time() - 86_400)
    stale = expired.mint(console_world.tenant.account_id, Role.AGENT, agent_id="agent-a").token
    fresh = tokens.mint(console_world.tenant.account_id, Role.AGENT, agent_id="agent-a").token
    page = await console_pages.open(f"{console_world.url}embed/example.html")
    # As a workspace's own script would: a token from its backend, stale the first time.
    await page.evaluate("""([stale, fresh]) => {
      const box = document.createElement('div');
      box.id = 'refreshing';
      document.querySelector('main').prepend(box);
      window.tokenCalls = 0;
      window.GoalflowAgent.mount(box, {
        baseUrl: location.origin, agentId: 'agent-a',
        token: async () => (++window.tokenCalls === 1 ? stale : fresh),
      });
    }""", [stale, fresh])
    notice = page.locator("#refreshing")
    await expect(notice.get_by_role("status")).to_have_text("Live")
    assert await page.evaluate("window.tokenCalls") == 2
    await convert(console_world, "conv-refreshed", "agent-a")
    await expect(notice.locator(".gf-toast")).to_contain_text("conversation conv-refreshed")


async def test_a_feed_the_edge_ends_cleanly_is_followed_again(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """An edge shutting down ends its live streams cleanly so that browsers reconnect (to
    another replica): the agent view follows again and later conversions still arrive."""
    await tracked_goal(console_world)
    page = await agent_page(console_world, console_pages, "agent-a")
    [first] = await console_world.until_subscriptions("1", lambda subs: len(subs) == 1)
    console_world.edge.upstreams.end_streams()  # what SIGTERM does first (EdgeServer.stop)
    await console_world.until_subscriptions(
        "a new one", lambda subs: len(subs) == 1 and first not in subs)
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    sent_ms = await convert(console_world, "conv-after-end", "agent-a")
    assert await notice_latency_ms(page, "conv-after-end", sent_ms) < MAX_LATENCY_MS
