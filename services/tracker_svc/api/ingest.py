"""IngestEvents: read a stream of batches, validate each, hand it to the domain's
``Ingestor`` and acknowledge it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from goalflow_common.auth import current_principal
from goalflow_common.clock import Clock
from goalflow_common.errors import Unavailable
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import tracker_pb2
from tracker_svc.api.events import Rejected, parse_event
from tracker_svc.domain.goal_table import GoalSource
from tracker_svc.domain.ingest import Ingestor
from tracker_svc.domain.model import StoredEvent

GOALS_SYNC_WAIT_S = 5.0


class IngestHandler:
    def __init__(
        self, ingestor: Ingestor, goals: GoalSource, clock: Clock, lifecycle: Lifecycle, *,
        max_batch: int,
    ) -> None:
        self._ingestor = ingestor
        self._goals = goals
        self._clock = clock
        self._lifecycle = lifecycle
        self._max_batch = max_batch

    async def stream(
        self, requests: AsyncIterator[tracker_pb2.IngestEventsRequest]
    ) -> AsyncIterator[tracker_pb2.IngestEventsResponse]:
        account_id = current_principal().require_account()
        try:
            async with asyncio.timeout(GOALS_SYNC_WAIT_S):
                await self._goals.wait_synced()
        except TimeoutError:
            raise Unavailable(
                "goals are not loaded from the config service yet; retry"
            ) from None
        batches = aiter(requests)
        while True:
            # A batch that has started is finished and acknowledged; on shutdown no new one
            # is started, and the producer resends what was not acknowledged. Waiting for the
            # next batch also ends on shutdown: an idle stream would otherwise hold the
            # process for the whole grace period before being cancelled.
            stopped, batch = await self._lifecycle.wait_or(anext(batches, None))
            if stopped or self._lifecycle.stopping.is_set():
                raise Unavailable("the tracker is shutting down; resend unacknowledged batches")
            if batch is None:
                return
            yield await self.process(batch, account_id)

    async def process(
        self, batch: tracker_pb2.IngestEventsRequest, account_id: str
    ) -> tracker_pb2.IngestEventsResponse:
        ack = tracker_pb2.IngestEventsResponse(batch_id=batch.batch_id)
        if len(batch.events) > self._max_batch:
            ack.rejected.add(
                index=0, field="events",
                reason=f"a batch holds at most {self._max_batch} events (got {len(batch.events)})",
            )
            return ack
        events, positions = self._parse(batch, account_id, ack)
        outcome = await self._ingestor.ingest(account_id, batch.batch_id, events, positions)
        ack.unsupported_channel_indexes.extend(outcome.unsupported_channel_indexes)
        ack.conversions = outcome.conversions
        ack.duplicates += outcome.duplicates
        ack.accepted = outcome.accepted
        return ack

    def _parse(
        self, batch: tracker_pb2.IngestEventsRequest, account_id: str,
        ack: tracker_pb2.IngestEventsResponse,
    ) -> tuple[list[StoredEvent], list[int]]:
        """The batch's valid, distinct events and their indexes in it; the ack gets the
        rejections and the in-batch duplicates."""
        now = self._clock.now()
        events: list[StoredEvent] = []
        positions: list[int] = []
        seen: set[str] = set()
        for index, message in enumerate(batch.events):
            try:
                event = parse_event(message, account_id, now)
            except Rejected as exc:
                ack.rejected.add(index=index, event_id=message.event_id[:128], field=exc.field,
                                 reason=exc.reason)
                continue
            if event.key in seen:  # the same event twice in one batch
                ack.duplicates += 1
                continue
            seen.add(event.key)
            events.append(event)
            positions.append(index)
        return events, positions
