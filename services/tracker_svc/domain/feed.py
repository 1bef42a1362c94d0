"""The live conversion feed behind SubscribeConversions (``api.servicer`` turns a
subscription into the gRPC stream; the store's ``watch_conversions`` is the change stream).

Conversions this process records are published straight to its subscribers (no database
round trip on the way). One change stream per tracker process follows inserts into
``conversions`` as well, which is what makes a conversion recorded by another tracker
replica reach these subscribers too.

Each conversion reaches a subscriber once. A conversion this process inserts arrives by
both paths, in either order: conversions are inserted in concurrent chunks, so the change
stream can deliver the first chunk before the insert returns and ``publish`` runs (60
batches of 300 conversions gave 101-404 duplicates of 18,000 when only ``publish`` marked
them). So the ingest announces the ids it is about to insert (``inserting``), the first
path to see one of those dispatches it and remembers it, and the second skips it.

A subscriber is dropped only when it falls behind in time: when the oldest conversion
queued for it has waited ``max_lag_s``. A burst (one batch crediting an agent with 1,200
conversions) is queued whole and delivered. Memory is bounded by that time limit and by a
hard cap of ``max_queued`` conversions per subscriber (reaching it drops the subscriber
too). A message (~3.3 KB in memory, measured) is built once and shared by every subscriber
it goes to, so the feed holds at most the conversions dispatched in the last ``max_lag_s``
plus one sweep interval (at ~2,000 a second and the 10 s default, ~70 MB in the worst case
of every subscriber stalled), and each subscriber at most ``max_queued`` entries (~90 bytes
each) pointing to them. A dropped subscriber whose client never reads again holds only what
gRPC's flow-control window lets the server buffer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

import structlog

from goalflow_common.lifecycle import Lifecycle, cancel_and_wait
from tracker_svc.domain.model import ConversionRecord
from tracker_svc.store.protocols import ConversionWatch, WatchLost

log = structlog.get_logger(__name__)

M = TypeVar("M")
SubscriberKey = tuple[str, str, str]  # (kind, account_id, id); kind "conversation" | "agent"


class Publisher(Protocol):
    """What ingest tells the feed (``ConversionFeed``)."""

    def inserting(self, ids: list[str]) -> contextlib.AbstractContextManager[None]: ...

    def publish(self, records: list[ConversionRecord]) -> None: ...


class SubscriberDropped(Exception):
    """The subscriber fell behind (in time or in count) and was dropped."""


# Ids of conversions this process inserted that one path (publish or change stream) has
# dispatched and the other has not seen yet. An entry normally lives for the change stream's
# lag (milliseconds); only an id whose second sighting never comes (the stream's history was
# lost, or another replica won the insert) stays until evicted. A duplicate would need more
# than this many local conversions between an id's two sightings: at the ~2,000 conversions
# a second one tracker records, a change stream 10 s behind. ~175 bytes an entry: 3.5 MB.
SEEN_ONCE_IDS = 20_000
_STOP = "stop"  # end the stream cleanly (shutdown)
_OVERFLOW = "overflow"  # the subscriber fell behind: SubscriberDropped


class Subscriber(Generic[M]):
    """One subscription's undelivered conversions, each with the time it was queued.

    ``only_agent``: deliver only conversions crediting this agent (an agent token following
    a conversation, ``scope.py``); None delivers every conversion of the target."""

    __slots__ = ("end", "key", "only_agent", "pending", "wakeup")

    def __init__(self, key: SubscriberKey, only_agent: str | None = None) -> None:
        self.key = key
        self.only_agent = only_agent
        self.pending: collections.deque[tuple[float, M]] = collections.deque()
        self.wakeup = asyncio.Event()
        self.end: str | None = None  # _STOP or _OVERFLOW, read after what is pending

    def put(self, message: M, now: float) -> None:
        self.pending.append((now, message))
        self.wakeup.set()

    def lag(self, now: float) -> float:
        """How long the oldest undelivered conversion has waited (0 if none)."""
        return now - self.pending[0][0] if self.pending else 0.0

    def finish(self, marker: str, *, drop_pending: bool) -> None:
        """Make ``marker`` the last thing read: after what is pending, unless that is
        dropped."""
        if drop_pending:
            self.pending.clear()
        self.end = marker
        self.wakeup.set()

    async def get(self) -> M | None:
        """The next message; None when the feed stopped (shutdown). Raises
        ``SubscriberDropped`` when this subscriber fell behind."""
        while not self.pending:
            if self.end == _OVERFLOW:
                raise SubscriberDropped
            if self.end is not None:
                return None
            self.wakeup.clear()
            await self.wakeup.wait()
        return self.pending.popleft()[1]


class ConversionFeed(Generic[M]):
    """Dispatches conversions to the subscribers they concern, as messages ``render`` builds
    (once per conversion, shared by its subscribers)."""

    def __init__(
        self,
        changes: ConversionWatch,
        lifecycle: Lifecycle,
        render: Callable[[ConversionRecord], M],
        *,
        max_lag_s: float = 10.0,
        max_queued: int = 20_000,
        max_backoff_s: float = 5.0,
    ) -> None:
        self._changes = changes
        self._lifecycle = lifecycle
        self._render = render
        self._max_lag = max_lag_s
        self._max_queued = max_queued
        self._max_backoff = max_backoff_s
        # Ids this process is inserting right now (count of inserts in flight per id).
        self._inserting: collections.Counter[str] = collections.Counter()
        self._seen_once: collections.OrderedDict[str, None] = collections.OrderedDict()
        # (kind, account_id, id) -> subscribers; kind is "conversation" or "agent".
        self._subscribers: dict[SubscriberKey, set[Subscriber[M]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    @property
    def max_lag_s(self) -> float:
        return self._max_lag

    @property
    def max_queued(self) -> int:
        return self._max_queued

    async def start(self) -> None:
        """Open the change stream now, so every conversion inserted from here on is seen."""
        try:
            await self._changes.open()
        except WatchLost as exc:
            log.warning("conversion_feed_open_failed", error=str(exc))  # _run retries
        self._tasks = [
            asyncio.create_task(self._run(), name="conversion-feed"),
            asyncio.create_task(self._end_on_shutdown(), name="conversion-feed-shutdown"),
            asyncio.create_task(self._sweep(), name="conversion-feed-lag"),
        ]

    async def stop(self) -> None:
        self._broadcast_stop()
        await cancel_and_wait(*self._tasks)
        await self._changes.close()

    # -- subscribers ---------------------------------------------------------------------

    @contextlib.contextmanager
    def subscription(
        self, kind: str, account_id: str, target: str, *, only_agent: str | None = None
    ) -> Iterator[Subscriber[M] | None]:
        """A subscriber to the conversions of ``target`` (a conversation or an agent id, as
        ``kind`` says), limited to those crediting ``only_agent`` if given, for as long as
        the block runs; None once the feed is stopping."""
        if self._closed or self._lifecycle.stopping.is_set():
            yield None
            return
        sub: Subscriber[M] = Subscriber((kind, account_id, target), only_agent)
        self._subscribers.setdefault(sub.key, set()).add(sub)
        try:
            yield sub
        finally:
            self._remove(sub)

    def _remove(self, sub: Subscriber[M]) -> None:
        subs = self._subscribers.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.key]

    @contextlib.contextmanager
    def inserting(self, ids: list[str]) -> Iterator[None]:
        """Around an insert of conversions with these ids whose new ones are then given to
        ``publish``: the change stream may deliver them first, and either way each is
        dispatched once. An id the insert finds already stored (another replica's) is not
        published here; its change, if still to come, is dispatched as any other."""
        self._inserting.update(ids)
        try:
            yield
        finally:
            self._inserting.subtract(ids)
            for doc_id in ids:
                if self._inserting[doc_id] <= 0:
                    del self._inserting[doc_id]

    def publish(self, records: list[ConversionRecord]) -> None:
        """Deliver conversions just inserted by this process (inside ``inserting``), without
        waiting for the change stream; whichever of the two comes second is skipped."""
        for record in records:
            if not self._first_sighting(record.id):
                continue
            self._dispatch(record)

    def _first_sighting(self, doc_id: str) -> bool:
        """Whether a conversion this process inserted is seen for the first time (then
        remembered until its second sighting)."""
        if doc_id in self._seen_once:
            del self._seen_once[doc_id]
            return False
        self._seen_once[doc_id] = None
        if len(self._seen_once) > SEEN_ONCE_IDS:
            self._seen_once.popitem(last=False)
        return True

    def _dispatch(self, record: ConversionRecord) -> None:
        account_id = record.account_id
        credited = record.credited_agent_ids
        # A scoped subscriber costs a look through the conversion's few credited agents.
        targets: set[Subscriber[M]] = {
            sub for sub in
            self._subscribers.get(("conversation", account_id, record.conversation_id), ())
            if sub.only_agent is None or sub.only_agent in credited
        }
        for agent_id in credited:
            targets.update(self._subscribers.get(("agent", account_id, agent_id), ()))
        if not targets:
            return
        try:
            message = self._render(record)
        except (TypeError, ValueError) as exc:  # a stored value the message cannot hold
            log.error("conversion_feed_bad_document", id=record.id, error=str(exc))
            return
        now = time.monotonic()
        for sub in targets:
            if sub.lag(now) > self._max_lag or len(sub.pending) >= self._max_queued:
                self._drop(sub)  # never wait for a slow subscriber
            else:
                sub.put(message, now)

    def _drop(self, sub: Subscriber[M]) -> None:
        """Stop sending to a subscriber that fell behind, and tell it why."""
        self._remove(sub)
        sub.finish(_OVERFLOW, drop_pending=True)

    async def _sweep(self) -> None:
        """Drop subscribers whose oldest undelivered conversion is older than the limit,
        also when no new conversion comes for them (the check in ``_dispatch`` would not
        run), so what they hold is freed within ``max_lag_s`` plus one interval."""
        interval = min(1.0, self._max_lag / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for subs in list(self._subscribers.values()):
                for sub in list(subs):
                    if sub.lag(now) > self._max_lag:
                        self._drop(sub)

    def _broadcast_stop(self) -> None:
        self._closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                self._remove(sub)
                sub.finish(_STOP, drop_pending=False)

    async def _end_on_shutdown(self) -> None:
        await self._lifecycle.stopping.wait()
        self._broadcast_stop()

    # -- the change stream ---------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                record = await self._changes.next()
            except WatchLost as exc:
                # A database restart or failover: reopen, resuming after the last change
                # seen, with capped backoff; subscribers stay connected.
                log.warning("conversion_feed_failed", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.1
            if record is None:  # none yet (``next`` waited a moment for one)
                continue
            # Inserted here: ``publish`` may have dispatched it, or will.
            mine = record.id in self._inserting or record.id in self._seen_once
            if not mine or self._first_sighting(record.id):
                self._dispatch(record)
