"""The browser harness itself, without an edge: the page reports what it cannot do on
``window.feed.errors``, and the console watcher sees the browser's own error lines."""

from __future__ import annotations

import socket

from tests.browser.conftest import Console, Pages, PageServer


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_page_refuses_a_query_without_its_parameters(
    pages: Pages, page_origin: PageServer
) -> None:
    feed = await pages.open(page_origin, base="", agent="a1", token="t")
    errors = await feed.wait_failed()
    assert [e["code"] for e in errors] == ["page"]
    assert "base" in errors[0]["message"]
    assert await feed.received() == []


async def test_unreachable_edge_is_an_error_on_the_page_and_the_console(
    pages: Pages, page_origin: PageServer, console: Console
) -> None:
    console.expect(r"net::ERR_CONNECTION_REFUSED")
    for protocol in ("connect", "grpcweb"):
        feed = await pages.open(page_origin, base=f"http://127.0.0.1:{_closed_port()}",
                                agent="a1", token="t", protocol=protocol)
        [error] = await feed.wait_failed()
        assert error["code"] == "Unknown", error  # fetch's TypeError, as Connect-Web maps it
        assert await feed.received() == []
    assert len(console.errors) == 2 and console.unexpected() == []
