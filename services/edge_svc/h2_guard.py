"""A guard for a hypercorn 0.18 HTTP/2 bug the edge meets by design.

The edge refuses a call before reading its body (a missing key, a forged token, an unknown
path, a disallowed origin). Over HTTP/2 a client sends the request's HEADERS and DATA
frames together; hypercorn starts the application on HEADERS, the refusal is written and
the stream closed, and the DATA event of the same read then finds no stream: hypercorn's
``_handle_events`` raises ``KeyError`` and the whole connection dies, with every other call
on it (seen in tests/security/test_browser_protocols.py: a refused gRPC call over h2c broke
its neighbours with "broken pipe"). Upstream: pgjones/hypercorn issue #329, pull requests
#312/#334/#365 (the same guard), not in a release yet.

:func:`install` wraps ``H2Protocol._handle_events`` so that DATA for a stream the server
has already closed is acknowledged (the connection's flow-control window is handed back)
and dropped, which is what the unreleased fix does; every other event goes through
unchanged, one at a time, in order. Remove once a hypercorn release carries the fix
(tests/services/edge_svc/test_h2_guard.py fails without it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import h2.events
from hypercorn.protocol.h2 import H2Protocol

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    original: Callable[[Any, list[h2.events.Event]], Awaitable[None]] = (
        H2Protocol._handle_events)

    async def handle_events(self: Any, events: list[h2.events.Event]) -> None:
        for event in events:
            if (isinstance(event, h2.events.DataReceived)
                    and event.stream_id not in self.streams):
                self.connection.acknowledge_received_data(event.flow_controlled_length,
                                                          event.stream_id)
                continue
            await original(self, [event])

    H2Protocol._handle_events = handle_events  # type: ignore[method-assign]
    _installed = True
