"""Guards for two hypercorn 0.18 HTTP/2 bugs the edge meets.

1. DATA for a stream already closed.

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
(tests/services/edge_svc/test_h2_guard.py fails without it).

2. A rapid reset that crashed the connection. hypercorn keeps a stream's send buffer, and
its place in the priority tree (at most 1,000 streams), until its sender task has tried to
write it, which lags behind a client resetting streams as fast as it opens them: 3,000
HEADERS, DATA, RST_STREAM on one h2c connection reached 1,001 and the next HEADERS raised
``TooManyStreamsError`` out of the connection's reader. The connection's tasks were then
cancelled, a response's cleanup waited on a send buffer no task would ever empty, and the
connection was held for ever (a descriptor in CLOSE-WAIT, every time); on SIGTERM the edge
never exited (I12-A6). :func:`install` refuses such a stream instead (RST_STREAM
REFUSED_STREAM, which a client may retry), before the application sees it; a client that
keeps under ``h2_max_concurrent_streams`` (1,000) open streams never meets it."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
from hypercorn.protocol.h2 import H2Protocol
from priority.priority import TooManyStreamsError

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
            try:
                await original(self, [event])
            except TooManyStreamsError:
                await _refuse(self, event)

    H2Protocol._handle_events = handle_events  # type: ignore[method-assign]
    _installed = True


async def _refuse(protocol: Any, event: h2.events.Event) -> None:
    """Undo what ``_create_stream`` did before the priority tree refused the stream (the
    application was not started), and reset it."""
    stream_id = event.stream_id  # type: ignore[attr-defined]  # only RequestReceived raises
    protocol.streams.pop(stream_id, None)
    protocol.stream_buffers.pop(stream_id, None)
    # In a burst the client's own RST_STREAM for it is often in the same read: closed already.
    with contextlib.suppress(h2.exceptions.StreamClosedError):
        protocol.connection.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        await protocol._flush()
