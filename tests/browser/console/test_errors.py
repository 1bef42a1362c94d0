"""Errors a person can act on, in words, in a real browser: a session that ends (its token
expires while the console is open, while the tab sleeps, or before a reload; or the
services refuse it), the services or the edge going down, and the console used from the
keyboard alone (sign-in, the page links, a visible focus)."""

from __future__ import annotations

import asyncio
import time

from playwright.async_api import Page, expect

from goalflow_common.auth import Role
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from tests.browser.console.conftest import ConsolePages, ConsoleWorld
from tests.conftest import TOKEN_KEYS

SESSION_ENDED = "Your session has ended"
UNREACHABLE = "cannot be reached"
STORAGE_KEY = "goalflow.session"  # web/console/session.ts


def admin_token(world: ConsoleWorld, *, life_s: float, ttl_s: int = 60,
                keys: str = TOKEN_KEYS) -> tuple[str, float]:
    """An admin token of the world's account with ``life_s`` seconds left (negative: expired
    that long ago), minted by a minter whose clock is behind, as the console would with the
    admin key (its id in the token); and its expiry (epoch s)."""
    minted_at = time.time() - (ttl_s - life_s)
    minter = TokenAuthority(parse_token_keys(keys), now=lambda: minted_at)
    minted = minter.mint(world.tenant.account_id, Role.ADMIN, ttl_s=ttl_s,
                         minted_by=world.admin_key.split("_")[1])
    return minted.token, minted.expire_time.timestamp()


async def sign_in_form_says(page: Page, words: str) -> None:
    """The sign-in form is shown (not a blank page), with ``words`` in its notice."""
    await page.get_by_label("API key or token").wait_for()
    await page.get_by_role("button", name="Sign in").wait_for()
    notice = page.get_by_role("status")
    await notice.wait_for()
    assert words in await notice.inner_text()


# -- an ended session ----------------------------------------------------------------------


async def test_a_session_that_expires_while_open_returns_to_sign_in_in_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    token, expires_at = admin_token(console_world, life_s=4)
    page = await console_pages.signed_in(console_world, credential=token, page="reports")
    await expect(page.get_by_role("link", name="Reports")).to_have_attribute(
        "aria-current", "page")
    await asyncio.sleep(max(expires_at - time.time(), 0) + 0.2)
    await sign_in_form_says(page, SESSION_ENDED)
    # Acting now (another page) keeps the person at sign-in, told why; nothing went blank.
    await page.evaluate("location.hash = '#/goals'")
    await sign_in_form_says(page, SESSION_ENDED)
    assert await page.evaluate(f"sessionStorage.getItem('{STORAGE_KEY}')") is None
    # And signing in again is all it takes.
    await page.get_by_label("API key or token").fill(console_world.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()


async def test_a_session_that_expired_while_the_tab_slept_ends_at_the_next_action(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """A sleeping tab's timers run late: the browser's clock jumps past the token's expiry
    without the console's timer firing (Playwright's clock), then the person clicks a link."""
    token, expires_at = admin_token(console_world, life_s=40)
    page = await console_pages.open(console_world.url + "#/reports")
    await page.clock.install()
    await page.get_by_label("API key or token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()
    await page.clock.pause_at(expires_at - 30)  # timers stop
    await page.clock.set_system_time(expires_at + 5)  # the lid opens: Date.now() jumped
    assert await page.get_by_role("button", name="Sign out").is_visible()  # no timer ran
    await page.get_by_role("link", name="Goals").click()
    await sign_in_form_says(page, SESSION_ENDED)


async def test_a_reload_after_the_session_expired_says_so(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    page = await console_pages.signed_in(console_world)
    expired, _ = admin_token(console_world, life_s=-5)
    await page.evaluate("([key, token]) => sessionStorage.setItem(key, token)",
                        [STORAGE_KEY, expired])
    await page.reload()
    await sign_in_form_says(page, SESSION_ENDED)
    # Said once: the ended session is forgotten, a later reload is a plain sign-in page.
    await page.reload()
    await page.get_by_label("API key or token").wait_for()
    assert await page.get_by_role("status").count() == 0


async def test_a_token_the_services_refuse_ends_the_session_in_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """A token the console cannot tell from a good one (unexpired, readable) but signed
    with a key the deployment does not hold: the goals page's call is refused, and the
    console signs out saying so."""
    console_pages.console.expect("401")  # Chromium logs the refused call itself
    forged, _ = admin_token(console_world, life_s=600, ttl_s=900,
                            keys="other:" + "x" * 40)
    page = await console_pages.open(console_world.url + "#/goals")
    await page.get_by_label("API key or token").fill(forged)
    await page.get_by_role("button", name="Sign in").click()
    await sign_in_form_says(page, SESSION_ENDED)


# -- the services or the edge down ---------------------------------------------------------


async def test_the_config_service_down_is_said_in_words_with_try_again(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    console_pages.console.expect("503")  # Chromium logs the failed call itself
    page = await console_pages.signed_in(console_world, page="goals")
    await page.wait_for_load_state("networkidle")  # no call in flight for the stop to cut
    config = next(s for s in console_world.stack.servers
                  if s is not console_world.stack.tracker_server)
    await config.stop(0.5)
    await page.reload()
    alert = page.get_by_role("alert").filter(has_text=UNREACHABLE)
    await alert.wait_for()
    retry = alert.get_by_role("button", name="Try again")
    await retry.click()  # still down: the words stay, the page stays
    await alert.wait_for()
    assert await page.get_by_role("button", name="Sign out").is_visible()


async def test_the_edge_down_is_said_in_words_after_an_action(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    console_pages.console.expect("ERR_CONNECTION_REFUSED|Failed to fetch")
    page = await console_pages.signed_in(console_world, page="goals")
    await page.wait_for_load_state("networkidle")
    await console_world.edge.stop()
    await page.get_by_role("link", name="Reports").click()
    await page.get_by_role("link", name="Goals").click()  # the goals page loads again
    await page.get_by_role("alert").filter(has_text=UNREACHABLE).wait_for()
    assert await page.get_by_role("button", name="Sign out").is_visible()


async def test_signing_in_while_the_edge_is_down_is_said_in_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    console_pages.console.expect("ERR_CONNECTION_REFUSED|Failed to fetch")
    page = await console_pages.open(console_world.url)
    await console_world.edge.stop()
    await page.get_by_label("API key or token").fill(console_world.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert UNREACHABLE in await alert.inner_text()
    assert await page.get_by_role("button", name="Sign in").is_enabled()  # can try again


# -- the keyboard alone --------------------------------------------------------------------


async def focused(page: Page) -> dict[str, str]:
    """The focused element: tag, id, text, and its computed outline."""
    result: dict[str, str] = await page.evaluate("""() => {
        const el = document.activeElement;
        const style = getComputedStyle(el);
        return {tag: el.tagName.toLowerCase(), id: el.id, text: el.textContent.trim(),
                outline: style.outlineStyle, outlineWidth: style.outlineWidth};
    }""")
    return result


async def test_signing_in_and_moving_between_pages_by_keyboard_with_visible_focus(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    page = await console_pages.open(console_world.url)
    await page.keyboard.press("Tab")
    assert (await focused(page))["id"] == "credential"
    await page.keyboard.type(console_world.admin_key)
    await page.keyboard.press("Tab")  # an API key shows the agent id field next
    assert (await focused(page))["id"] == "agent-id"
    await page.keyboard.press("Tab")
    button = await focused(page)
    assert (button["tag"], button["text"]) == ("button", "Sign in")
    assert button["outline"] != "none" and button["outlineWidth"] != "0px"
    await page.keyboard.press("Enter")
    await page.get_by_role("button", name="Sign out").wait_for()

    # Enter in the key field submits too.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API key or token").wait_for()
    await page.get_by_label("API key or token").focus()
    await page.keyboard.type(console_world.admin_key)
    await page.keyboard.press("Enter")
    await page.get_by_role("button", name="Sign out").wait_for()

    # From the top of the page, Tab reaches every page link, each with a visible outline.
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    reached: dict[str, dict[str, str]] = {}
    for _ in range(12):
        await page.keyboard.press("Tab")
        now = await focused(page)
        if now["tag"] == "a":
            reached[now["text"]] = now
        if now["text"] == "Sign out":
            break
    for name in ("Goals", "Reports", "Exports"):
        assert name in reached, f"{name} not reachable by Tab: {sorted(reached)}"
        link = reached[name]
        assert link["outline"] != "none" and link["outlineWidth"] != "0px", link
    # And Enter follows the focused link.
    await page.get_by_role("link", name="Reports").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function("location.hash === '#/reports'")
    await expect(page.get_by_role("link", name="Reports")).to_have_attribute(
        "aria-current", "page")
