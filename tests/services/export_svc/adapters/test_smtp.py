"""The export mailer over loopback: the real SMTP sink (as `make run` starts it) and small
aiosmtpd servers that answer 4xx/5xx or stall, to prove what is retried and what is not."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from export_svc.adapters.smtp import Mailer
from export_svc.domain.mail import MailError, build_message
from goalflow_dev.embedded_mongo import free_port
from tests.services.export_svc.conftest import read_outbox, start_sink, stop_sink

SENDER = "goalflow@localhost"
TO = "admin@example.com"
LINK = "https://exports.example.com/d/abc?sig=1&exp=2"
EXPIRES = dt.datetime(2026, 6, 15, 12, 0, tzinfo=dt.UTC)


def _message(goal_name: str = "Checkout") -> EmailMessage:
    return build_message(
        goal_name, dt.date(2026, 5, 1), dt.date(2026, 5, 31), 1234, LINK, EXPIRES, TO, SENDER
    )


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


async def test_message_arrives_in_the_sink_with_both_parts(sink):
    port, outbox = sink
    await Mailer("127.0.0.1", port, SENDER, timeout_s=5, attempts=2).send_message(_message())
    [received] = read_outbox(outbox)
    assert received["To"] == TO and received["From"] == SENDER
    assert received["Delivered-To"] == TO
    assert "Checkout" in received["Subject"]
    text, html = _parts(received)
    for body in (text, html):
        assert "Checkout" in body
        assert "2026-05-01" in body and "2026-05-31" in body
        assert "1,234 rows" in body
        assert "2026-06-15 12:00 UTC" in body
    assert LINK in text
    assert 'href="https://exports.example.com/d/abc?sig=1&amp;exp=2"' in html


async def test_send_with_explicit_parts(sink):
    port, outbox = sink
    mailer = Mailer("127.0.0.1", port, SENDER, timeout_s=5, attempts=2)
    await mailer.send(TO, "Subject line", "plain body", "<p>html body</p>")
    [received] = read_outbox(outbox)
    assert received["Subject"] == "Subject line"
    text, html = _parts(received)
    assert text.strip() == "plain body" and html.strip() == "<p>html body</p>"


async def test_goal_name_is_escaped_in_html(sink):
    port, outbox = sink
    name = '<script>alert("x")</script> & co'
    await Mailer("127.0.0.1", port, SENDER, timeout_s=5, attempts=2).send_message(
        _message(name)
    )
    [received] = read_outbox(outbox)
    text, html = _parts(received)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in html
    assert name in text  # plain text shows the name as it is


async def test_smtp_down_then_up_delivers_exactly_once(tmp_path: Path):
    port, outbox = free_port(), tmp_path / "outbox"
    mailer = Mailer(
        "127.0.0.1", port, SENDER, timeout_s=5, attempts=8, backoff_s=0.25, max_backoff_s=2
    )
    proc = None
    try:
        with structlog.testing.capture_logs() as logs:
            sending = asyncio.create_task(mailer.send_message(_message()))
            await asyncio.sleep(1.0)  # the first attempts meet a closed port
            assert not sending.done()
            proc = await start_sink(port, outbox)
            await asyncio.wait_for(sending, 30)
        refused = [e for e in logs if e["event"] == "mail_transient"]
        assert refused, "the first attempt should have failed"
        assert [e["event"] for e in logs].count("mail_sent") == 1
        assert len(read_outbox(outbox)) == 1
        await asyncio.sleep(0.5)  # nothing else trickles in
        assert len(read_outbox(outbox)) == 1
    finally:
        if proc is not None:
            await stop_sink(proc)


async def test_smtp_never_up_raises_after_bounded_attempts():
    port = free_port()
    mailer = Mailer("127.0.0.1", port, SENDER, timeout_s=1, attempts=3, backoff_s=0.05)
    with structlog.testing.capture_logs() as logs, pytest.raises(MailError) as caught:
        await mailer.send_message(_message())
    assert not caught.value.permanent and not caught.value.maybe_sent
    assert "after 3 attempts" in str(caught.value)
    assert [e["event"] for e in logs].count("mail_transient") == 3


# --- servers that misbehave on purpose -------------------------------------------------


class _Scripted:
    """aiosmtpd handler: answers RCPT with the scripted replies in turn, then stores."""

    def __init__(self, rcpt_replies: list[str], data_delay_s: float = 0.0) -> None:
        self.rcpt_replies = list(rcpt_replies)
        self.rcpt_calls = 0
        self.data_calls = 0
        self.data_delay_s = data_delay_s

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.rcpt_calls += 1
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        await asyncio.sleep(self.data_delay_s)
        return "250 accepted"


@pytest.fixture
async def scripted_server() -> AsyncIterator[Callable[[_Scripted], Any]]:
    servers = []

    async def start(handler: _Scripted) -> int:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="scripted"), "127.0.0.1", 0, family=socket.AF_INET
        )
        servers.append(server)
        return server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_4xx_is_retried_then_delivered(scripted_server):
    handler = _Scripted(["451 try again later", "421 busy"])
    port = await scripted_server(handler)
    mailer = Mailer("127.0.0.1", port, SENDER, timeout_s=5, attempts=4, backoff_s=0.05)
    await mailer.send_message(_message())
    assert handler.rcpt_calls == 3 and handler.data_calls == 1


async def test_5xx_is_permanent_and_not_retried(scripted_server):
    handler = _Scripted(["550 no such user"])
    port = await scripted_server(handler)
    mailer = Mailer("127.0.0.1", port, SENDER, timeout_s=5, attempts=4, backoff_s=0.05)
    with pytest.raises(MailError) as caught:
        await mailer.send_message(_message())
    assert caught.value.permanent and not caught.value.maybe_sent
    assert "550" in str(caught.value)
    assert handler.rcpt_calls == 1 and handler.data_calls == 0


async def test_timeout_during_data_is_not_retried(scripted_server):
    """The server got the text but answers too late: it may have delivered, so the mailer
    must not send again (that would be the duplicate the job store rules out)."""
    handler = _Scripted([], data_delay_s=1.0)
    port = await scripted_server(handler)
    mailer = Mailer("127.0.0.1", port, SENDER, timeout_s=0.3, attempts=4, backoff_s=0.05)
    with pytest.raises(MailError) as caught:
        await mailer.send_message(_message())
    assert caught.value.maybe_sent and not caught.value.permanent
    assert handler.data_calls == 1
    await asyncio.sleep(1.0)  # let the slow handler finish before the server closes
