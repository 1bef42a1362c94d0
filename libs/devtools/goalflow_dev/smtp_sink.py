"""A local SMTP sink for development: every message it receives becomes one ``.eml`` file.

``python -m goalflow_dev.smtp_sink --port 8025 --outbox .run/outbox`` accepts any sender
and recipient, delivers nothing, and writes each message to the outbox folder so that
e-mails (export links) can be opened by hand or read by tests. ``make run`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session

from goalflow_common.logs import configure_logging

log = structlog.get_logger(__name__)


class OutboxHandler:
    """aiosmtpd handler that writes each accepted message into ``outbox`` as a .eml file."""

    def __init__(self, outbox: Path) -> None:
        self.outbox = Path(outbox)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        # The envelope is what a real MTA delivered on; Bcc recipients appear nowhere else.
        # Return-Path / Delivered-To are the headers MTAs add for exactly this.
        trace = f"Return-Path: <{envelope.mail_from or ''}>\r\n" + "".join(
            f"Delivered-To: {rcpt}\r\n" for rcpt in envelope.rcpt_tos
        )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.outbox / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
        await asyncio.to_thread(_write_atomically, path, trace.encode() + content)
        log.info(
            "message_stored",
            mail_from=envelope.mail_from,
            rcpt_tos=list(envelope.rcpt_tos),
            bytes=len(content),
            file=str(path),
        )
        return "250 Message accepted for delivery"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write then rename, so a reader watching the folder never sees half a message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def serve(host: str, port: int, outbox: Path) -> None:
    """Serve until SIGTERM or SIGINT."""
    handler = OutboxHandler(outbox)
    loop = asyncio.get_running_loop()

    # A fixed hostname: the default asks DNS for the FQDN, which can stall start-up.
    def factory() -> Any:
        return SMTP(handler, hostname="goalflow-smtp-sink")

    server = await loop.create_server(factory, host, port)
    log.info("listening", service="smtp_sink", address=f"{host}:{port}", outbox=str(outbox))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    log.info("shutdown_complete", service="smtp_sink")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m goalflow_dev.smtp_sink",
        description="Accept SMTP on a local port and store each message as a .eml file.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--outbox", type=Path, default=Path(".run/outbox"))
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    args.outbox.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.outbox))


if __name__ == "__main__":
    main()
