"""Structured JSON logs. Request-scoped fields (request id, method, account) come from
structlog's contextvars, bound by the server interceptor."""

from __future__ import annotations

import logging
import sys

import structlog


class _Stderr:
    """``sys.stderr`` as it is at each write. Loggers are cached on first use, so a stream
    captured at configure time would outlive a later swap of ``sys.stderr`` (test capture,
    redirection) and end up writing to a stale or closed file."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _Stderr()


def configure_logging(level: str = "INFO", *, cache: bool = True) -> None:
    """Configure structlog to write one JSON object per line to stderr. Call once at start.

    ``cache=False`` is for tests: a logger cached while this configuration is in force
    keeps it for good, so a later ``structlog.testing.capture_logs`` would not see it."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # No local variables in tracebacks: they would put whole batches (end-user ids,
            # URLs, amounts) and keys into the logs.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=cache,
    )
