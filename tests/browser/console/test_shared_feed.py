"""One live subscription per browser (web/src/feed.ts, followAgentShared): the tabs of one
browser that follow the same agent share one SubscribeConversions at the tracker.

Over plain HTTP/1.1 (``make run``, compose's default) Chromium opens at most 6 connections
to a host, and each tab's live feed held one for as long as it was open: 6 agent tabs left
the console nothing to load with. Here 8 tabs of the agent view (and 8 of the embedded
notice) in one browser context hold exactly 1 subscription at the tracker; every tab shows
a new conversion; a 9th tab still loads the console and signs in; and when the tab holding
the subscription closes, another subscribes in its place and the conversions recorded from
then on still reach every remaining tab. Another agent's tab in the same browser has a
subscription of its own and never shows the first agent's conversions. A leading tab whose
own token is refused hands over to the next tab without stopping it.

The tabs share one browser context: the browser's connection limit, its Web Locks and its
BroadcastChannels are all per context (per profile), as they are per browser for a person.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Locator, Page, expect

from goalflow_common.auth import Role
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.browser.conftest import Console
from tests.browser.console.conftest import (
    DESKTOP,
    UI_WAIT_MS,
    ConsolePages,
    ConsoleWorld,
    sign_in,
)
from tests.browser.console.test_agent import convert, tracked_goal

TABS = 8  # more than the 6 connections Chromium opens to one host over HTTP/1.1
AGENT, OTHER_AGENT = "agent-a", "agent-b"


class Tabs:
    """Tabs of one browser context, each watched for console errors."""

    def __init__(self, context: BrowserContext, console: Console) -> None:
        self.context = context
        self.console = console
        self.pages: list[Page] = []

    async def open(self, url: str) -> Page:
        page = await self.context.new_page()
        page.set_default_timeout(UI_WAIT_MS)
        page.on("console", self.console.on_console)
        page.on("pageerror", self.console.on_page_error)
        await page.goto(url)
        self.pages.append(page)
        return page

    async def close(self, page: Page) -> None:
        self.pages.remove(page)
        await page.close()


@pytest.fixture
async def tabs(browser: Browser, console_pages: ConsolePages) -> AsyncIterator[Tabs]:
    """One browser context; console errors fail the test (``console_pages``'s watcher)."""
    context = await browser.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    try:
        yield Tabs(context, console_pages.console)
    finally:
        await context.close()


async def agent_tab(world: ConsoleWorld, tabs: Tabs, agent_id: str = AGENT) -> Page:
    """A tab of the console's agent view, signed in with the agent key (each tab has a
    session of its own: sessionStorage is per tab), once its feed says it is live."""
    page = await tabs.open(world.url + "#/agent")
    await sign_in(page, world.tenant.keys[Role.AGENT], agent_id)
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    return page


def agent_notice(page: Page) -> Locator:
    return page.locator('[aria-live="polite"]')


async def embed_tab(world: ConsoleWorld, tabs: Tabs, tokens: TokenAuthority,
                    agent_id: str = AGENT) -> Page:
    """A tab of the embed's example page served by the edge, with a token minted for it,
    once the notice says it is live."""
    token = tokens.mint(world.tenant.account_id, Role.AGENT, agent_id=agent_id).token
    page = await tabs.open(f"{world.url}embed/example.html#token={token}&agent={agent_id}")
    await expect(page.locator("#goalflow-notice").get_by_role("status")).to_have_text("Live")
    return page


def embed_notice(page: Page) -> Locator:
    return page.locator("#goalflow-notice .gf-toasts")


async def all_show(pages: list[Page], notice: Callable[[Page], Locator],
                   conversation_id: str) -> None:
    for page in pages:
        await expect(notice(page)).to_contain_text(f"conversation {conversation_id}")


async def leader_closes_and_another_subscribes(
    world: ConsoleWorld, tabs: Tabs, notice: Callable[[Page], Locator], held: set[Any],
) -> None:
    """Closes the tab holding the subscription (the first: it took the lock before the
    others asked); another tab subscribes in its place and later conversions reach every
    remaining tab."""
    leader = tabs.pages[0]
    # The lock is held by one tab, the others wait for it.
    locks = await leader.evaluate(
        "navigator.locks.query().then(q => [q.held.length, q.pending.length])")
    assert locks == [1, TABS - 1], locks
    await tabs.close(leader)
    replaced = await world.until_subscriptions(
        "1, not the closed tab's", lambda now: len(now) == 1 and now.isdisjoint(held))
    locks = await tabs.pages[0].evaluate(
        "navigator.locks.query().then(q => [q.held.length, q.pending.length])")
    assert locks == [1, TABS - 2], locks
    await convert(world, "conv-after-close", AGENT)
    await all_show(tabs.pages, notice, "conv-after-close")
    assert world.subscriptions() == replaced


async def test_eight_agent_view_tabs_share_one_subscription(
    console_world: ConsoleWorld, tabs: Tabs,
) -> None:
    await tracked_goal(console_world)
    for _ in range(TABS):
        await agent_tab(console_world, tabs)
    held = await console_world.until_subscriptions("1", lambda now: len(now) == 1)

    await convert(console_world, "conv-shared", AGENT)
    await all_show(tabs.pages, agent_notice, "conv-shared")
    for page in tabs.pages:  # and prepended to each tab's list
        await expect(page.locator("tbody tr").first).to_contain_text("conv-shared")

    # A 9th tab still loads the console and signs in (here as the admin, to its goals).
    ninth = await tabs.open(console_world.url)
    await ninth.get_by_label("API key or token").fill(console_world.admin_key)
    await ninth.get_by_role("button", name="Sign in").click()
    await expect(ninth.get_by_role("heading", level=1)).to_have_text("Goals")
    await tabs.close(ninth)
    assert console_world.subscriptions() == held

    await leader_closes_and_another_subscribes(console_world, tabs, agent_notice, held)


async def test_eight_embed_tabs_share_one_subscription(
    console_world: ConsoleWorld, tabs: Tabs, tokens: TokenAuthority,
) -> None:
    await tracked_goal(console_world)
    await convert(console_world, "conv-before", AGENT)
    for _ in range(TABS):
        await embed_tab(console_world, tabs, tokens)
    held = await console_world.until_subscriptions("1", lambda now: len(now) == 1)
    for page in tabs.pages:  # every tab counted today's conversion itself
        await expect(page.locator("#goalflow-notice").get_by_text(
            "Today: 1 conversion", exact=True)).to_be_visible()

    await convert(console_world, "conv-shared", AGENT)
    await all_show(tabs.pages, embed_notice, "conv-shared")
    for page in tabs.pages:
        await expect(page.locator("#goalflow-notice").get_by_text(
            "Today: 2 conversions", exact=True)).to_be_visible()

    ninth = await tabs.open(console_world.url)
    await ninth.get_by_label("API key or token").fill(console_world.admin_key)
    await ninth.get_by_role("button", name="Sign in").click()
    await expect(ninth.get_by_role("heading", level=1)).to_have_text("Goals")
    await tabs.close(ninth)

    await leader_closes_and_another_subscribes(console_world, tabs, embed_notice, held)


async def test_another_agents_tab_has_its_own_subscription(
    console_world: ConsoleWorld, tabs: Tabs, tokens: TokenAuthority,
) -> None:
    """Tabs never share across agents: agent B's embed in the same browser subscribes by
    itself and shows B's conversions only, and A's tabs only A's."""
    await tracked_goal(console_world)
    first = await embed_tab(console_world, tabs, tokens)
    second = await embed_tab(console_world, tabs, tokens)
    other = await embed_tab(console_world, tabs, tokens, agent_id=OTHER_AGENT)
    await console_world.until_subscriptions("2", lambda now: len(now) == 2)

    await convert(console_world, "conv-b", OTHER_AGENT)
    await convert(console_world, "conv-a", AGENT)
    await all_show([first, second], embed_notice, "conv-a")
    await all_show([other], embed_notice, "conv-b")
    for page in (first, second):
        assert "conv-b" not in await embed_notice(page).inner_text()
    await expect(other.locator("#goalflow-notice").get_by_text(
        "Today: 1 conversion", exact=True)).to_be_visible()
    assert "conv-a" not in await embed_notice(other).inner_text()



LOCKS = ("navigator.locks.query().then(q => ({held: q.held.map(l => l.name), "
         "pending: q.pending.map(l => l.name)}))")


async def until_waiting(page: Page, name: str, count: int) -> None:
    """Until ``count`` requests wait for the lock ``name`` (the browser's, seen from
    ``page``)."""
    deadline = time.monotonic() + UI_WAIT_MS / 1000
    while (await page.evaluate(LOCKS))["pending"] != [name] * count:
        assert time.monotonic() < deadline, await page.evaluate(LOCKS)
        await asyncio.sleep(0.01)


async def test_a_refused_leader_hands_over_without_stopping_the_others(
    console_world: ConsoleWorld, tabs: Tabs, tokens: TokenAuthority,
) -> None:
    """The subscription's Unauthenticated is the leader's token's, not the others': it is
    not relayed; the next tab subscribes with its own token. To make a tab with a refused
    token lead, the test holds the feed's lock in a tab of its own until both wait for it."""
    await tracked_goal(console_world)
    tabs.console.expect("401")  # Chromium logs the refused request itself
    first = await embed_tab(console_world, tabs, tokens)
    holder = await tabs.open(f"{console_world.url}embed/example.html")  # no token: no feed
    [name] = (await holder.evaluate(LOCKS))["held"]
    await holder.evaluate("name => { navigator.locks.request(name, () => new Promise(() => {})); }",
                          name)
    await tabs.close(first)  # the lock passes to the holder, which follows nothing
    await console_world.until_subscriptions("0", lambda now: not now)

    other = TokenAuthority(parse_token_keys("other-1:" + "x" * 43))  # same claims, refused
    refused = other.mint(console_world.tenant.account_id, Role.AGENT, agent_id=AGENT).token
    refused_tab = await tabs.open(
        f"{console_world.url}embed/example.html#token={refused}&agent={AGENT}")
    await until_waiting(refused_tab, name, 1)
    token = tokens.mint(console_world.tenant.account_id, Role.AGENT, agent_id=AGENT).token
    good = await tabs.open(f"{console_world.url}embed/example.html#token={token}&agent={AGENT}")
    await until_waiting(good, name, 2)
    for page in (refused_tab, good):
        await expect(page.locator("#goalflow-notice").get_by_role("status")).to_have_text(
            "Connecting…")

    await tabs.close(holder)  # the refused tab leads, is refused, and hands over
    await expect(refused_tab.locator("#goalflow-notice").get_by_role("status")).to_have_text(
        "Stopped: the session has ended (the token expired or was refused).")
    await expect(good.locator("#goalflow-notice").get_by_role("status")).to_have_text("Live")
    await console_world.until_subscriptions("1", lambda now: len(now) == 1)
    await convert(console_world, "conv-handed-over", AGENT)
    await all_show([good], embed_notice, "conv-handed-over")

