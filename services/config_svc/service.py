"""The ConfigService servicer: docs/rules.md §2."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import grpc
import structlog
from grpc import aio

from config_svc import rules
from config_svc.convert import goal_to_proto
from config_svc.store import DuplicateName, GoalStore, SlotBusy
from goalflow_common.auth import KeyStore, current_principal
from goalflow_common.clock import Clock, start_of_day, today_in
from goalflow_common.db import change_events, decode_change_document
from goalflow_common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import decode_page_token, encode_page_token, timestamp
from goalflow_common.server import Lifecycle, cancel_and_wait

log = structlog.get_logger(__name__)

CONFLICT_RETRIES = 5
DEFAULT_PAGE, MAX_PAGE = 50, 200
MAX_GOAL_ID = 128


class SevenDayCounts:
    """Asks the tracker for 7-day conversion counts; None whenever it cannot answer."""

    def __init__(self, stub: tracker_pb2_grpc.TrackerServiceStub | None, timeout_s: float):
        self._stub = stub
        self._timeout = timeout_s

    async def fetch(
        self, account_id: str, since: dt.datetime, goal_ids: list[str]
    ) -> dict[str, int] | None:
        if self._stub is None or not goal_ids:
            return {} if self._stub is not None else None
        since_ts = timestamp(since)
        try:
            reply = await self._stub.CountConversions(
                tracker_pb2.CountConversionsRequest(
                    account_id=account_id, since=since_ts, goal_ids=goal_ids
                ),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            log.warning("seven_day_counts_unavailable", code=str(exc.code()))
            return None
        return {c.goal_id: c.count for c in reply.counts}


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    def __init__(
        self,
        store: GoalStore,
        keys: KeyStore,
        clock: Clock,
        counts: SevenDayCounts,
        lifecycle: Lifecycle,
        page_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._keys = keys
        self._clock = clock
        self._counts = counts
        self._lifecycle = lifecycle
        self._page_bytes = page_bytes

    # -- helpers -------------------------------------------------------------------------

    async def _account(self, requested: str = "") -> tuple[str, str, dt.date]:
        """The caller's account (or the one a platform key names), its time zone and
        today's date there."""
        account_id = current_principal().require_account(requested)
        account = await self._keys.get_account(account_id)
        return account_id, account.time_zone, today_in(self._clock, account.time_zone)

    @staticmethod
    def _check_goal_id(goal_id: str) -> None:
        if not goal_id:
            raise InvalidArgument("goal_id", "required")
        # Ids are 32 hex characters, so a longer one cannot exist; refusing it also keeps
        # the NOT_FOUND details that echo the id small (an echoed 10 KB id overflowed the
        # client's 8 KB metadata limit and the caller saw RESOURCE_EXHAUSTED instead).
        if len(goal_id) > MAX_GOAL_ID:
            raise InvalidArgument("goal_id", f"at most {MAX_GOAL_ID} characters")

    async def _load(self, account_id: str, goal_id: str) -> dict[str, Any]:
        self._check_goal_id(goal_id)
        doc = await self._store.get(account_id, goal_id)
        if doc is None:
            raise NotFound(f"goal {goal_id!r} not found")
        return doc

    def _stamp(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {**doc, "revision": doc["revision"] + 1, "update_time": self._clock.now()}

    @staticmethod
    def _limit_error() -> FailedPrecondition:
        return FailedPrecondition(
            f"the account already has {rules.MAX_ACTIVE_GOALS} active goals (ended goals "
            "included); deactivate or delete one first",
            field="active",
        )

    # -- RPCs ----------------------------------------------------------------------------

    async def CreateGoal(self, request, context):
        account_id, tz, today = await self._account()
        fields = rules.fields_from(request, rules.UPDATABLE)
        now = self._clock.now()
        doc = {
            "_id": uuid.uuid4().hex,
            "account_id": account_id,
            **fields,
            "name_key": rules.name_key(fields["name"]),
            "active": request.active,
            "create_time": now,
            "update_time": now,
            "revision": 1,
        }
        rules.check_dates(doc, today, None)
        reply = config_pb2.CreateGoalResponse(goal=goal_to_proto(doc, today, tz))
        token = None
        if request.active:
            token = await self._store.claim_slot(account_id, doc["_id"])
            if token is None:
                raise self._limit_error()
        try:
            await self._store.insert(doc)
        except DuplicateName:
            if token:
                await self._store.release_slot(doc["_id"], token)
            raise AlreadyExists("name", f"a goal named {doc['name']!r} already exists") from None
        return reply

    async def GetGoal(self, request, context):
        account_id, tz, today = await self._account(request.account_id)
        doc = await self._load(account_id, request.goal_id)
        return config_pb2.GetGoalResponse(goal=goal_to_proto(doc, today, tz))

    async def UpdateGoal(self, request, context):
        account_id, tz, today = await self._account()
        paths = list(request.update_mask.paths) or list(rules.UPDATABLE)
        for path in paths:
            if path not in rules.UPDATABLE:
                allowed = ", ".join(rules.UPDATABLE)
                # The path is cut short: details echoing an unbounded path could exceed
                # the client's metadata limit.
                raise InvalidArgument(
                    "update_mask", f"{path[:64]!r} cannot be updated; allowed: {allowed}"
                )
        changes = rules.fields_from(request.goal, tuple(paths))
        for _ in range(CONFLICT_RETRIES):
            doc = await self._load(account_id, request.goal_id)
            if request.expected_revision and doc["revision"] != request.expected_revision:
                raise Aborted(
                    f"goal changed: revision is {doc['revision']}, "
                    f"expected {request.expected_revision}"
                )
            new = self._stamp({**doc, **changes})
            new["name_key"] = rules.name_key(new["name"])
            rules.check_dates(new, today, doc)
            try:
                if await self._store.replace(new, doc["revision"]):
                    return config_pb2.UpdateGoalResponse(goal=goal_to_proto(new, today, tz))
            except DuplicateName:
                raise AlreadyExists(
                    "name", f"a goal named {new['name']!r} already exists"
                ) from None
        raise Aborted("the goal kept changing concurrently; retry")

    async def ListGoals(self, request, context):
        account_id, tz, today = await self._account()
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = decode_page_token(request.page_token, (str, str))
        docs = await self._store.page(account_id, after, size + 1)
        more = len(docs) > size
        docs = docs[:size]
        # Goals of the largest allowed size (100 conditions of 2,048 characters) are about
        # 200 KB each: a page ends early rather than exceed the message limit.
        rows, used = [], 0
        for doc in docs:
            goal = goal_to_proto(doc, today, tz)
            used += goal.ByteSize() + 16
            if rows and used > self._page_bytes:
                more = True
                break
            rows.append(config_pb2.GoalSummary(goal=goal))
        since = start_of_day(today - dt.timedelta(days=6), tz)
        counts = await self._counts.fetch(account_id, since, [row.goal.id for row in rows])
        if counts is not None:
            for row in rows:
                row.seven_day_conversions = counts.get(row.goal.id, 0)
        token = ""
        if more and rows:
            last = docs[len(rows) - 1]
            token = encode_page_token((last["name_key"], last["_id"]))
        return config_pb2.ListGoalsResponse(
            goals=rows, next_page_token=token, seven_day_conversions_available=counts is not None
        )

    async def ActivateGoal(self, request, context):
        account_id, tz, today = await self._account()
        dates = {
            name: rules.date_or_none(name, request)
            for name in ("start_date", "end_date")
            if request.HasField(name)
        }
        for _ in range(CONFLICT_RETRIES):
            doc = await self._load(account_id, request.goal_id)
            new = self._stamp({**doc, **dates, "active": True})
            rules.check_dates(new, today, doc)
            if doc["active"]:
                if not dates or all(doc.get(k) == v for k, v in dates.items()):
                    return config_pb2.ActivateGoalResponse(goal=goal_to_proto(doc, today, tz))
                if await self._store.replace(new, doc["revision"]):
                    return config_pb2.ActivateGoalResponse(goal=goal_to_proto(new, today, tz))
                continue
            try:
                token = await self._store.claim_slot(account_id, doc["_id"])
            except SlotBusy:
                await asyncio.sleep(0.01)  # another activation or deactivation is mid-way
                continue
            if token is None:
                raise self._limit_error()
            if await self._store.replace(new, doc["revision"]):
                return config_pb2.ActivateGoalResponse(goal=goal_to_proto(new, today, tz))
            await self._store.release_slot(doc["_id"], token)
        raise Aborted("the goal kept changing concurrently; retry")

    async def DeactivateGoal(self, request, context):
        account_id, tz, today = await self._account()
        for _ in range(CONFLICT_RETRIES):
            doc = await self._load(account_id, request.goal_id)
            if not doc["active"]:
                return config_pb2.DeactivateGoalResponse(goal=goal_to_proto(doc, today, tz))
            # The slot is read before the flag goes off and released by its token: a slot
            # claimed afterwards belongs to a later activation of this goal and must stay.
            token = await self._store.slot_token(doc["_id"])
            # A whole-document conditional replace, like every other write (nx-27017 also
            # stores a datetime given to $set as a string).
            new = self._stamp({**doc, "active": False})
            if await self._store.replace(new, doc["revision"]):
                if token is not None:
                    await self._store.release_slot(doc["_id"], token)
                return config_pb2.DeactivateGoalResponse(goal=goal_to_proto(new, today, tz))
        raise Aborted("the goal kept changing concurrently; retry")

    async def DeleteGoal(self, request, context):
        account_id, _, _ = await self._account()
        self._check_goal_id(request.goal_id)
        if await self._store.delete(account_id, request.goal_id) is None:
            raise NotFound(f"goal {request.goal_id!r} not found")
        return config_pb2.DeleteGoalResponse()

    async def ListActiveGoals(self, request, context):
        account_id = current_principal().resolve_account(request.account_id)
        docs = await self._store.active_goals(account_id)
        return config_pb2.ListActiveGoalsResponse(goals=[await self._proto(d) for d in docs])

    async def _proto(self, doc: dict[str, Any]) -> config_pb2.Goal:
        account = await self._keys.get_account(doc["account_id"])
        return goal_to_proto(doc, today_in(self._clock, account.time_zone), account.time_zone)

    async def WatchGoals(self, request, context: aio.ServicerContext):
        account_id = current_principal().resolve_account(request.account_id)
        changes: asyncio.Queue[config_pb2.WatchGoalsResponse] = asyncio.Queue()
        # Streams are opened before the snapshot is read, so no change falls between them.
        goal_stream = await self._store.goals.watch(full_document="updateLookup")
        tomb_stream = await self._store.tombstones.watch()
        readers = [
            asyncio.create_task(self._follow(goal_stream, account_id, changes, False)),
            asyncio.create_task(self._follow(tomb_stream, account_id, changes, True)),
        ]
        stopping = asyncio.ensure_future(self._lifecycle.stopping.wait())
        getter: asyncio.Future[config_pb2.WatchGoalsResponse] | None = None
        try:
            if request.send_snapshot:
                async for doc in self._store.all_goals(account_id):
                    yield _change(config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT, await self._proto(doc))
                yield config_pb2.WatchGoalsResponse(
                    type=config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE,
                    change_time=timestamp(dt.datetime.now(dt.UTC)),
                )
            while True:
                getter = asyncio.ensure_future(changes.get())
                done, _ = await asyncio.wait(
                    {getter, stopping, *readers}, return_when=asyncio.FIRST_COMPLETED
                )
                if getter not in done:
                    getter.cancel()
                    for task in readers:
                        if task.done() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                    return  # the server is stopping: end the stream cleanly
                yield getter.result()
        finally:
            if getter is not None:  # the client went away while we waited for a change
                getter.cancel()
            stopping.cancel()
            await cancel_and_wait(*readers)
            await goal_stream.close()
            await tomb_stream.close()

    async def _follow(self, stream, account_id, out: asyncio.Queue, deletions: bool):
        """Forward one change stream into ``out`` as goal changes."""
        async for event in change_events(stream):
            if event.get("operationType") not in ("insert", "replace", "update"):
                continue
            doc = decode_change_document(event.get("fullDocument"))
            if not doc or (account_id is not None and doc.get("account_id") != account_id):
                continue
            if deletions:
                goal = config_pb2.Goal(
                    id=doc["_id"], account_id=doc["account_id"], revision=doc["revision"]
                )
                out.put_nowait(_change(config_pb2.GOAL_CHANGE_TYPE_DELETED, goal))
            else:
                out.put_nowait(
                    _change(config_pb2.GOAL_CHANGE_TYPE_UPSERTED, await self._proto(doc))
                )


def _change(kind: int, goal: config_pb2.Goal) -> config_pb2.WatchGoalsResponse:
    return config_pb2.WatchGoalsResponse(
        type=kind, goal=goal, change_time=timestamp(dt.datetime.now(dt.UTC))
    )
