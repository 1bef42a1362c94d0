"""The tracker's copy of every account's goals, followed live from the config service.

One background task calls ``WatchGoals(send_snapshot=True)`` (every account: the channel
carries the platform service key) and keeps the answer in a :class:`GoalTable`:

- A change is applied only if its revision is higher than the one known for that goal id.
  Deleted goals leave a tombstone with their revision, so a late, stale ``UPSERTED``
  cannot bring a deleted goal back.
- On every (re)connection the snapshot is collected aside and swapped in at
  ``SNAPSHOT_COMPLETE``: goals missing from it were deleted while the tracker was away.
  Until then, and while config is down, the last known goals keep being served.
- Each account's active goals are compiled into one :class:`UrlMatcher`, lazily, and only
  again after that account's goals changed.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
import structlog

from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from goalflow_common.protoconv import enum_name, to_datetime
from goalflow_common.server import cancel_and_wait
from tracker_svc.attribution import TrackedGoal
from tracker_svc.matching import Condition, UrlMatcher

log = structlog.get_logger(__name__)

_FIRST_RETRY_S = 0.1


@dataclass(frozen=True, slots=True)
class KnownGoal:
    """A goal as the tracker holds it: what attribution needs, and its URL conditions."""

    goal: TrackedGoal
    conditions: tuple[Condition, ...]

    @property
    def matchable(self) -> bool:
        # A goal without a model this build understands is kept, but never hit.
        return self.goal.active and self.goal.model is not None and bool(self.conditions)


def convert_goal(goal: config_pb2.Goal) -> KnownGoal:
    """A config ``Goal`` message as the tracker keeps it."""
    model = enum_name(config_pb2.AttributionModel, goal.attribution_model)
    if model is None:
        log.warning("goal_model_unknown", goal_id=goal.id, model=goal.attribution_model)
    value = None
    if goal.HasField("transaction_value"):
        value = {
            "currency_code": goal.transaction_value.currency_code,
            "amount": goal.transaction_value.amount,
        }
    tracked = TrackedGoal(
        id=goal.id,
        account_id=goal.account_id,
        name=goal.name,
        goal_type=enum_name(config_pb2.GoalType, goal.goal_type),
        model=model,  # type: ignore[arg-type]  # None: never matched, see KnownGoal.matchable
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
    conditions = []
    for cond in goal.conditions:
        operator = enum_name(config_pb2.ConditionOperator, cond.operator)
        if cond.category == config_pb2.CONDITION_CATEGORY_URL and operator and cond.value:
            conditions.append(Condition(operator, cond.value))
        else:
            log.warning("goal_condition_skipped", goal_id=goal.id, operator=cond.operator)
    return KnownGoal(tracked, tuple(conditions))


@dataclass(frozen=True, slots=True)
class _AccountIndex:
    """One account's active goals, precompiled."""

    goals: dict[str, TrackedGoal]
    matcher: UrlMatcher


class GoalTable:
    """Every known goal with revision ordering, and the per-account matchers. Synchronous:
    each method runs without yielding to the event loop, so readers never see half a
    change."""

    def __init__(self) -> None:
        self._goals: dict[str, KnownGoal] = {}
        self._deleted: dict[str, int] = {}  # goal id -> revision of its deletion
        self._by_account: dict[str, set[str]] = {}
        self._indexes: dict[str, _AccountIndex] = {}

    def __len__(self) -> int:
        return len(self._goals)

    def known_revision(self, goal_id: str) -> int | None:
        if goal_id in self._goals:
            return self._goals[goal_id].goal.revision
        return self._deleted.get(goal_id)

    def _is_newer(self, goal_id: str, revision: int) -> bool:
        known = self.known_revision(goal_id)
        return known is None or revision > known

    def goal(self, goal_id: str) -> TrackedGoal | None:
        known = self._goals.get(goal_id)
        return known.goal if known else None

    def upsert(self, known: KnownGoal) -> bool:
        """Store ``known`` unless a revision at least as high is known. True if applied."""
        goal = known.goal
        if not self._is_newer(goal.id, goal.revision):
            return False
        self._deleted.pop(goal.id, None)
        self._put(known)
        return True

    def delete(self, goal_id: str, revision: int) -> bool:
        """Forget a goal deleted at ``revision`` unless a revision at least as high is
        known. True if applied."""
        if not self._is_newer(goal_id, revision):
            return False
        self._drop(goal_id)
        self._deleted[goal_id] = revision
        return True

    def replace_all(self, snapshot: Iterable[KnownGoal]) -> None:
        """Make ``snapshot`` (every goal that exists) the table's content. A goal known at a
        revision at least as high as the snapshot's (or deleted at one) stays as known."""
        incoming = {known.goal.id: known for known in snapshot}
        for goal_id in [g for g in self._goals if g not in incoming]:
            # Deleted while we were not watching; its known revision becomes the tombstone,
            # so only a genuinely newer revision could bring it back.
            self._deleted[goal_id] = self._goals[goal_id].goal.revision
            self._drop(goal_id)
        for known in incoming.values():
            self.upsert(known)

    def _put(self, known: KnownGoal) -> None:
        old = self._goals.get(known.goal.id)
        if old is not None and old.goal.account_id != known.goal.account_id:
            self._drop(known.goal.id)  # never happens in config; keeps the indexes honest
        self._goals[known.goal.id] = known
        self._by_account.setdefault(known.goal.account_id, set()).add(known.goal.id)
        self._invalidate(known.goal.account_id)

    def _drop(self, goal_id: str) -> None:
        old = self._goals.pop(goal_id, None)
        if old is None:
            return
        account_id = old.goal.account_id
        ids = self._by_account.get(account_id)
        if ids is not None:
            ids.discard(goal_id)
            if not ids:
                del self._by_account[account_id]
        self._invalidate(account_id)

    def _invalidate(self, account_id: str) -> None:
        self._indexes.pop(account_id, None)

    def _index(self, account_id: str) -> _AccountIndex | None:
        index = self._indexes.get(account_id)
        if index is None:
            ids = self._by_account.get(account_id)
            if not ids:
                return None
            active = [self._goals[g] for g in sorted(ids) if self._goals[g].matchable]
            index = _AccountIndex(
                {k.goal.id: k.goal for k in active},
                UrlMatcher((k.goal.id, k.conditions) for k in active),
            )
            self._indexes[account_id] = index
        return index

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]:
        """The account's active goals with a condition matching ``url``, ordered by id."""
        index = self._index(account_id)
        if index is None or not index.goals:
            return []
        return [index.goals[goal_id] for goal_id in sorted(index.matcher.match(url))]


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

    async def wait_synced(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once synced; False if ``timeout`` seconds pass first."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

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
            known = convert_goal(change.goal)
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
            self._table.upsert(convert_goal(change.goal))
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
