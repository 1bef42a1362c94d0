"""The tracker's copy of every account's goals, followed live from the config service.

One background task calls ``WatchGoals(send_snapshot=True)`` (every account: the channel
carries the platform service key) and feeds the answer to a
:class:`tracker_svc.domain.goal_table.GoalTable` (revision ordering, tombstones, matchers):

- On every (re)connection the snapshot is collected aside and swapped in at
  ``SNAPSHOT_COMPLETE``: goals missing from it were deleted while the tracker was away.
  Until then, and while config is down, the last known goals keep being served.
- :func:`goal_from_proto` maps config's ``Goal`` message to the tracker's ``KnownGoal``.
"""

from __future__ import annotations

import asyncio
import random

import grpc
import structlog

from goalflow_common.lifecycle import cancel_and_wait
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from goalflow_common.protoconv import enum_name, to_datetime
from tracker_svc.domain.goal_table import GoalTable, KnownGoal
from tracker_svc.domain.matching import Condition
from tracker_svc.domain.model import Money, TrackedGoal

log = structlog.get_logger(__name__)

_FIRST_RETRY_S = 0.1


class GoalCache:
    """Follows config's goal feed in the background and answers goal look-ups from
    memory."""

    def __init__(self, stub: config_pb2_grpc.ConfigServiceStub, *, max_backoff_s: float) -> None:
        self._stub = stub
        self._max_backoff_s = max_backoff_s
        self._table = GoalTable()
        self._snapshot: dict[str, KnownGoal] | None = None  # being received
        self._held: list[config_pb2.WatchGoalsResponse] = []  # live changes before its end
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following config; returns at once, even when config is down."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._follow(), name="goal-cache")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    @property
    def synced(self) -> bool:
        """A full snapshot has been received at least once."""
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        """Return once synced (bound the wait with ``asyncio.timeout``)."""
        await self._synced.wait()

    def goal(self, goal_id: str) -> TrackedGoal | None:
        """Any known goal, active or not; None if unknown or deleted."""
        return self._table.goal(goal_id)

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]:
        """The account's active goals with a condition matching ``url`` (whether each is
        tracked at the hit time is the caller's ``tracked_at``)."""
        return self._table.matching(account_id, url)

    # The feed.

    def begin_stream(self) -> None:
        """A new WatchGoals stream starts: drop whatever a broken one left half-received."""
        self._snapshot = None
        self._held.clear()

    def apply(self, change: config_pb2.WatchGoalsResponse) -> None:
        """Apply one message of the WatchGoals stream."""
        kind = change.type
        if kind == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT:
            known = goal_from_proto(change.goal)
            if self._snapshot is None:
                self._snapshot = {}
            current = self._snapshot.get(known.goal.id)
            if current is None or known.goal.revision > current.goal.revision:
                self._snapshot[known.goal.id] = known
        elif kind == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE:
            snapshot = self._snapshot or {}  # no SNAPSHOT message at all: no goals exist
            self._snapshot = None
            self._table.replace_all(snapshot.values())
            held, self._held = self._held, []
            for late in held:
                self._apply_live(late)
            if not self._synced.is_set():
                self._synced.set()
            log.info("goal_feed_synced", goals=len(self._table))
        elif self._snapshot is not None:
            # Config sends live changes after the snapshot; should one come first, it is
            # replayed after the swap rather than lost in it.
            self._held.append(change)
        else:
            self._apply_live(change)

    def _apply_live(self, change: config_pb2.WatchGoalsResponse) -> None:
        if change.type == config_pb2.GOAL_CHANGE_TYPE_UPSERTED:
            self._table.upsert(goal_from_proto(change.goal))
        elif change.type == config_pb2.GOAL_CHANGE_TYPE_DELETED:
            self._table.delete(change.goal.id, change.goal.revision)
        else:
            log.warning("goal_change_unknown", type=change.type)

    async def _follow(self) -> None:
        """Watch config for good: on any end or failure, retry with capped backoff."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            synced_at: float | None = None
            call = None
            self.begin_stream()
            reason: dict[str, object] = {}
            try:
                call = self._stub.WatchGoals(config_pb2.WatchGoalsRequest(send_snapshot=True))
                async for change in call:
                    try:
                        self.apply(change)
                    except Exception:  # one bad message must not stop the feed
                        log.exception("goal_change_failed", type=change.type)
                    if change.type == config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE:
                        synced_at = loop.time()
                reason = {"ended": "stream closed by config"}
            except grpc.aio.AioRpcError as exc:
                reason = {"code": exc.code().name, "details": exc.details()}
            except Exception as exc:
                reason = {"error": repr(exc)}
            finally:
                if call is not None:
                    call.cancel()
            # A feed that stayed synced for a while was healthy: start backing off afresh.
            # One that keeps dropping right after its snapshot keeps backing off.
            if synced_at is not None and loop.time() - synced_at >= self._max_backoff_s:
                failures = 0
            delay = min(self._max_backoff_s, _FIRST_RETRY_S * 2**failures)
            delay *= random.uniform(0.5, 1.0)  # replicas must not reconnect in lockstep
            failures = min(failures + 1, 30)
            log.warning(
                "goal_feed_lost", retry_in_s=round(delay, 3), goals=len(self._table), **reason
            )
            await asyncio.sleep(delay)


def goal_from_proto(goal: config_pb2.Goal) -> KnownGoal:
    """A config ``Goal`` message as the tracker keeps it."""
    model = enum_name(config_pb2.AttributionModel, goal.attribution_model)
    if model is None:
        log.warning("goal_model_unknown", goal_id=goal.id, model=goal.attribution_model)
    value: Money | None = None
    if goal.HasField("transaction_value"):
        value = Money(goal.transaction_value.currency_code, goal.transaction_value.amount)
    tracked = TrackedGoal(
        id=goal.id,
        account_id=goal.account_id,
        name=goal.name,
        goal_type=enum_name(config_pb2.GoalType, goal.goal_type),
        model=model,  # None: never matched, see KnownGoal.matchable
        period_days=goal.attribution_period_days,
        group_ids=frozenset(goal.agent_group_ids),
        value=value,
        active=goal.active,
        tracking_start=(
            to_datetime(goal.tracking_start_time) if goal.HasField("tracking_start_time") else None
        ),
        tracking_end=(
            to_datetime(goal.tracking_end_time) if goal.HasField("tracking_end_time") else None
        ),
        revision=goal.revision,
    )
    conditions: list[Condition] = []
    for cond in goal.conditions:
        operator = enum_name(config_pb2.ConditionOperator, cond.operator)
        if cond.category == config_pb2.CONDITION_CATEGORY_URL and operator and cond.value:
            conditions.append(Condition(operator, cond.value))
        else:
            log.warning("goal_condition_skipped", goal_id=goal.id, operator=cond.operator)
    return KnownGoal(tracked, tuple(conditions))
