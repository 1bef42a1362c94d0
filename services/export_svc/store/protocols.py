"""What the domain needs from the export service's stores (implemented in ``jobs.py`` and
``files.py`` on MongoDB; tests may implement them in memory)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Protocol

from export_svc.domain.model import ExportJob


class BadPageToken(ValueError):
    """The page token is not one ``JobStore.page`` returned."""


class JobStore(Protocol):
    async def insert(self, job: ExportJob) -> ExportJob:
        """Store a new job; if the account already has a job with its ``request_id``,
        return that job instead (concurrent inserts: exactly one wins)."""
        ...

    async def get(self, account_id: str, export_id: str) -> ExportJob | None: ...

    async def get_by_id(self, export_id: str) -> ExportJob | None:
        """Any account's job: the download server checks the account itself."""
        ...

    async def page(
        self, account_id: str, page_size: int, page_token: str
    ) -> tuple[list[ExportJob], str]:
        """The account's jobs newest first, and the next page's token ("" at the end);
        raises ``BadPageToken``."""
        ...

    async def due_queued(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        """Up to ``limit`` QUEUED jobs with ``available_at <= now``, oldest first."""
        ...

    async def expired_leases(self, now: dt.datetime, limit: int) -> list[ExportJob]:
        """Up to ``limit`` BUILDING jobs with ``lease_expires < now``, longest expired first."""
        ...

    async def replace(self, old: ExportJob, new: ExportJob) -> bool:
        """Write ``new`` over ``old`` if the stored job still has ``old``'s revision and
        lease owner; False if someone else changed it first."""
        ...


class FileStore(Protocol):
    async def save(
        self,
        file_id: str,
        account_id: str,
        chunks: AsyncIterator[bytes],
        *,
        expire_at: dt.datetime,
        filename: str = "export.zip",
    ) -> int:
        """Store the stream as ``file_id`` (replacing any earlier file of that id) and
        return its size in bytes."""
        ...
