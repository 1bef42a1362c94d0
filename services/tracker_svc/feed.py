"""The live conversion feed behind SubscribeConversions.

Conversions this process records are published straight to its subscribers (no database
round trip on the way). One change stream per tracker process follows inserts into
``conversions`` as well, which is what makes a conversion recorded by another tracker
replica reach these subscribers too; a conversion already published here is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import structlog
from grpc import aio
from pymongo.errors import OperationFailure, PyMongoError

from goalflow_common.auth import current_principal
from goalflow_common.client import SUBSCRIBED_KEY
from goalflow_common.db import decode_change_document
from goalflow_common.errors import InvalidArgument
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_common.server import Lifecycle, cancel_and_wait
from tracker_svc.convert import conversion_to_proto
from tracker_svc.store import TrackerStore

log = structlog.get_logger(__name__)

MAX_ID = 128
RECENT_IDS = 50_000  # conversions published locally, remembered to skip their echo
_STOP = object()  # end the stream cleanly (shutdown)
_OVERFLOW = object()  # end the stream with RESOURCE_EXHAUSTED (subscriber too slow)


class _Subscriber:
    __slots__ = ("key", "queue")

    def __init__(self, key: tuple[str, str, str], size: int) -> None:
        self.key = key  # (kind, account_id, id)
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)


class ConversionFeed:
    def __init__(
        self,
        store: TrackerStore,
        lifecycle: Lifecycle,
        *,
        queue_size: int = 1000,
        max_backoff_s: float = 5.0,
        idle_poll_s: float = 0.02,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._queue_size = queue_size
        self._max_backoff = max_backoff_s
        self._idle_poll = idle_poll_s
        self._published: collections.OrderedDict[str, None] = collections.OrderedDict()
        # (kind, account_id, id) -> subscribers; kind is "conversation" or "agent".
        self._subscribers: dict[tuple[str, str, str], set[_Subscriber]] = {}
        self._stream: Any = None
        self._resume_token: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())

    async def start(self) -> None:
        """Open the change stream now, so every conversion inserted from here on is seen."""
        try:
            self._stream = await self._open()
        except PyMongoError as exc:
            log.warning("conversion_feed_open_failed", error=str(exc))  # _run retries
        self._tasks = [
            asyncio.create_task(self._run(), name="conversion-feed"),
            asyncio.create_task(self._end_on_shutdown(), name="conversion-feed-shutdown"),
        ]

    async def stop(self) -> None:
        self._broadcast_stop()
        await cancel_and_wait(*self._tasks)
        await self._close_stream()

    # -- subscribers ---------------------------------------------------------------------

    async def subscribe(
        self, request: tracker_pb2.SubscribeConversionsRequest, context: aio.ServicerContext
    ) -> AsyncIterator[tracker_pb2.SubscribeConversionsResponse]:
        account_id = current_principal().require_account()
        which = request.WhichOneof("target")
        if which is None:
            raise InvalidArgument("target", "exactly one of conversation_id or agent_id")
        target = getattr(request, which)
        if not 1 <= len(target) <= MAX_ID:
            raise InvalidArgument(which, f"1 to {MAX_ID} characters")
        if self._closed or self._lifecycle.stopping.is_set():
            return
        kind = "conversation" if which == "conversation_id" else "agent"
        sub = _Subscriber((kind, account_id, target), self._queue_size)
        self._subscribers.setdefault(sub.key, set()).add(sub)
        try:
            # Initial metadata tells the client the subscription is live: conversions
            # recorded from now on will reach it.
            await context.send_initial_metadata(((SUBSCRIBED_KEY, "1"),))
            while True:
                item = await sub.queue.get()
                if item is _STOP:
                    return
                if item is _OVERFLOW:
                    log.warning("conversion_subscriber_overflow", target=which)
                    await context.abort(
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"subscriber fell {self._queue_size} conversions behind; resubscribe "
                        "and list what was missed with ListConversions",
                    )
                yield item
        finally:
            self._remove(sub)

    def _remove(self, sub: _Subscriber) -> None:
        subs = self._subscribers.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.key]

    def publish(self, docs: list[dict[str, Any]]) -> None:
        """Deliver conversions just recorded by this process, without waiting for the
        change stream (which will echo them; the echo is skipped)."""
        for doc in docs:
            self._published[doc["_id"]] = None
            if len(self._published) > RECENT_IDS:
                self._published.popitem(last=False)
            self._dispatch(doc)

    def _dispatch(self, doc: dict[str, Any]) -> None:
        account_id = doc.get("account_id")
        targets: set[_Subscriber] = set()
        targets.update(
            self._subscribers.get(("conversation", account_id, doc.get("conversation_id")), ())
        )
        for agent_id in doc.get("credited_agent_ids") or ():
            targets.update(self._subscribers.get(("agent", account_id, agent_id), ()))
        if not targets:
            return
        try:
            message = tracker_pb2.SubscribeConversionsResponse(
                conversion=conversion_to_proto(doc)
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.error("conversion_feed_bad_document", id=doc.get("_id"), error=str(exc))
            return
        for sub in targets:
            try:
                sub.queue.put_nowait(message)
            except asyncio.QueueFull:
                # Never wait for a slow subscriber: drop it, and tell it why.
                self._remove(sub)
                _end(sub, _OVERFLOW, drop_pending=True)

    def _broadcast_stop(self) -> None:
        self._closed = True
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                self._remove(sub)
                _end(sub, _STOP, drop_pending=False)

    async def _end_on_shutdown(self) -> None:
        await self._lifecycle.stopping.wait()
        self._broadcast_stop()

    # -- the change stream ---------------------------------------------------------------

    async def _open(self) -> Any:
        pipeline = [{"$match": {"operationType": "insert"}}]
        if self._resume_token is not None:
            try:
                return await self._store.conversions.watch(
                    pipeline, resume_after=self._resume_token
                )
            except OperationFailure as exc:
                # The history is gone (pruned, or a new database): start from now.
                log.warning("conversion_feed_resume_failed", error=str(exc))
                self._resume_token = None
        return await self._store.conversions.watch(pipeline)

    async def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):
                await stream.close()

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._stream is None:
                    self._stream = await self._open()
                    log.info("conversion_feed_reopened")
                change = await self._stream.try_next()
                self._resume_token = self._stream.resume_token
                lost = change is None and not self._stream.alive
                error = "the server closed the change stream" if lost else ""
            except PyMongoError as exc:
                lost, error = True, str(exc)
            if lost:
                # A database restart or failover (nx-27017 answers a getMore on a cursor it
                # no longer knows with an empty, closed one): reopen, resuming after the
                # last change seen, with capped backoff; subscribers stay connected.
                log.warning("conversion_feed_failed", error=error, retry_in_s=backoff)
                await self._close_stream()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            backoff = 0.1
            if change is None:
                # nx-27017 answers getMore at once instead of waiting for data; pause so
                # an idle feed does not spin.
                await asyncio.sleep(self._idle_poll)
                continue
            try:
                doc = decode_change_document(change.get("fullDocument"))
                if doc and doc.get("_id") in self._published:
                    del self._published[doc["_id"]]  # published when recorded here
                elif doc:
                    self._dispatch(doc)
            except Exception:  # one bad change must not end the feed for everyone
                log.exception("conversion_feed_dispatch_failed")


def _end(sub: _Subscriber, marker: object, *, drop_pending: bool) -> None:
    """Make ``marker`` the last thing the subscriber reads: after what is already queued,
    unless that is dropped or there is no room left for it."""
    if drop_pending or sub.queue.full():
        while not sub.queue.empty():
            sub.queue.get_nowait()
    sub.queue.put_nowait(marker)
