"""The console's shell: served by the edge, signing in with a key keeps only a token, a
wrong key is refused in words, and signing out forgets the session."""

from __future__ import annotations

import asyncio
import urllib.request
from email.message import Message

from tests.browser.console.conftest import ConsolePages, ConsoleWorld


async def test_signing_in_with_an_admin_key_keeps_only_a_token(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    page = await console_pages.signed_in(console_world)
    stored = await page.evaluate("JSON.stringify(Object.entries(sessionStorage))")
    assert console_world.admin_key not in stored
    assert "eyJ" in stored  # the token (a JWT)
    # ... of the deployment's longest lifetime (MintToken's `longest`), whatever it is.
    lifetime = await page.evaluate("""() => {
        const token = sessionStorage.getItem("goalflow.session");
        const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
        return claims.exp - claims.iat;
    }""")
    assert lifetime == 3600
    assert await page.get_by_role("link", name="Goals").get_attribute("aria-current") == "page"
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API key or token").wait_for()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_a_wrong_key_is_refused_in_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    console_pages.console.expect("401")  # Chromium logs the refused request itself
    page = await console_pages.open(console_world.url)
    await page.get_by_label("API key or token").fill("gf_nosuchkey_" + "x" * 30)
    await page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    assert "not valid" in await alert.inner_text()


async def test_the_edge_serves_the_console_with_its_security_headers(
    console_world: ConsoleWorld,
) -> None:
    def fetch() -> tuple[str, Message]:
        with urllib.request.urlopen(console_world.url, timeout=10) as reply:
            return reply.read().decode(), reply.headers

    body, headers = await asyncio.to_thread(fetch)
    assert '<div id="console">' in body
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
