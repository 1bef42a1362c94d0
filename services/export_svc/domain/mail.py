"""The export e-mail (docs/rules.md §6) and the contract of whatever sends it.

``build_message`` writes the message; a ``MailSender`` (adapters/smtp.py on SMTP) delivers
it or raises ``MailError``, saying whether the failure is permanent and whether the
message may have been delivered all the same (then it must never be sent again).
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Protocol


class MailError(Exception):
    """The message could not be delivered to the SMTP server."""

    def __init__(self, message: str, *, permanent: bool, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.maybe_sent = maybe_sent


class MailSender(Protocol):
    async def send_message(self, message: EmailMessage) -> None:
        """Deliver ``message`` to its ``To`` address; raise ``MailError`` if it cannot."""
        ...


def build_message(
    goal_name: str,
    start: dt.date | str,
    end: dt.date | str,
    row_count: int,
    link: str,
    expires_at: dt.datetime,
    to: str,
    sender: str,
) -> EmailMessage:
    """The export e-mail: a plain-text and an HTML part naming the goal, the date range,
    the row count and the download link."""
    start_s, end_s = str(start), str(end)
    expires = expires_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = f"{row_count:,} row" + ("" if row_count == 1 else "s")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    # Header folding copes with any name; control characters are dropped first.
    message["Subject"] = f"Your export of {_one_line(goal_name)} is ready"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="goalflow")
    message.set_content(
        f"Your export of the goal {goal_name!r} is ready.\n\n"
        f"Conversions from {start_s} to {end_s}: {rows}.\n\n"
        f"Download (a zipped CSV): {link}\n\n"
        f"The link expires on {expires}.\n"
    )
    name, url = html_lib.escape(goal_name), html_lib.escape(link, quote=True)
    message.add_alternative(
        "<!DOCTYPE html><html><body>"
        f"<p>Your export of the goal <strong>{name}</strong> is ready.</p>"
        f"<p>Conversions from {html_lib.escape(start_s)} to {html_lib.escape(end_s)}: "
        f"{html_lib.escape(rows)}.</p>"
        f'<p><a href="{url}">Download the zipped CSV</a></p>'
        f"<p>The link expires on {html_lib.escape(expires)}.</p>"
        "</body></html>\n",
        subtype="html",
    )
    return message


def _one_line(value: str) -> str:
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
