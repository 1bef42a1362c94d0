"""The SMTP ``MailSender`` (domain/mail.py): sends export e-mails with bounded retries.

Retries never risk a second copy: a failure before the message text is transmitted
(connection refused, timeouts, 4xx replies to the greeting, MAIL or RCPT) and a 4xx reply to
DATA (the server refused the message) are safe to retry. A connection lost or a timeout
*while* the message is being transmitted is ambiguous - the server may have accepted it - so
it is not retried; ``MailError.maybe_sent`` tells the caller (see domain/jobs.py).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid

import aiosmtplib
import structlog
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from export_svc.domain.mail import MailError

log = structlog.get_logger(__name__)


class _Transient(Exception):
    """A failure after which sending again cannot produce a duplicate."""


class Mailer:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        timeout_s: float = 10.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout_s = timeout_s
        self.attempts = attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s

    async def send(self, to: str, subject: str, text: str, html: str) -> None:
        """Send a two-part message; raise ``MailError`` when it cannot be delivered."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = make_msgid(domain="goalflow")
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        await self.send_message(message)

    async def send_message(self, message: EmailMessage) -> None:
        """Send a built message (see ``build_message``) to its ``To`` address."""
        to = str(message["To"])
        data = message.as_bytes(policy=SMTP_POLICY)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Transient),
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self._backoff_s, max=self._max_backoff_s),
            ):
                with attempt:
                    await self._send_once(to, data, attempt.retry_state.attempt_number)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise MailError(
                f"SMTP {self.host}:{self.port} unavailable after {self.attempts} attempts: "
                f"{(cause and cause.__cause__) or cause}",
                permanent=False,
            ) from cause
        log.info("mail_sent", to=to, bytes=len(data))

    async def _send_once(self, to: str, data: bytes, attempt: int) -> None:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=self.timeout_s, start_tls=False
        )
        in_data = False
        try:
            await smtp.connect()
            await smtp.ehlo()
            await smtp.mail(self.sender)
            await smtp.rcpt(to)
            in_data = True
            await smtp.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            if 400 <= exc.code < 500:
                log.warning("mail_transient", attempt=attempt, code=exc.code, error=exc.message)
                raise _Transient(f"{exc.code} {exc.message}") from exc
            raise MailError(
                f"SMTP refused the message: {exc.code} {exc.message}", permanent=True
            ) from exc
        except (OSError, TimeoutError, aiosmtplib.SMTPException) as exc:
            if in_data:
                # The message text may have reached the server: sending again could
                # deliver it twice.
                raise MailError(
                    f"connection lost while sending the message: {exc}",
                    permanent=False, maybe_sent=True,
                ) from exc
            log.warning("mail_transient", attempt=attempt, error=str(exc) or type(exc).__name__)
            raise _Transient(str(exc) or type(exc).__name__) from exc
        finally:
            if smtp.is_connected:
                try:
                    await smtp.quit()
                except (OSError, TimeoutError, aiosmtplib.SMTPException):
                    smtp.close()
