"""The ConfigService servicer (docs/rules.md §2): reads and checks each request, resolves the
caller's account, calls the goal workflows (``domain.goals``) and maps the result."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import structlog

from config_svc.adapters.replays import TrackerReplays
from config_svc.api import convert
from config_svc.domain.counts import ConversionCounts, seven_day_counts
from config_svc.domain.goals import Goals
from config_svc.domain.model import ChangeKind, Goal, GoalChange
from config_svc.domain.simulation import definition_goal, existing_goal, simulation_range
from config_svc.store.protocols import GoalStore
from goalflow_common.auth import KeyStore, current_principal
from goalflow_common.clock import Clock, today_in
from goalflow_common.errors import InvalidArgument
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc
from goalflow_common.protoconv import (
    date_between,
    decode_page_token,
    encode_page_token,
    timestamp,
)

log = structlog.get_logger(__name__)

DEFAULT_PAGE, MAX_PAGE = 50, 200
# grpc ships no type information: the servicer context is untyped.
Context = Any


def simulation_day(name: str, request: config_pb2.SimulateGoalRequest) -> dt.date:
    """A required day of a simulation's range."""
    if not request.HasField(name):
        raise InvalidArgument(name, "required")
    day: dt.date = date_between(name, getattr(request, name))
    return day


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    def __init__(
        self,
        store: GoalStore,
        keys: KeyStore,
        clock: Clock,
        counts: ConversionCounts,
        lifecycle: Lifecycle,
        page_bytes: int = 4 * 1024 * 1024,
        replays: TrackerReplays | None = None,
        simulation_max_days: int = 92,
    ) -> None:
        self._store = store
        self._goals = Goals(store, clock)
        self._keys = keys
        self._clock = clock
        self._counts = counts
        self._lifecycle = lifecycle
        self._page_bytes = page_bytes
        self._replays = replays or TrackerReplays(None)
        self._simulation_max_days = simulation_max_days

    async def _account(self, requested: str = "") -> tuple[str, str, dt.date]:
        """The caller's account (or the one a platform key names), its time zone and
        today's date there."""
        account_id = current_principal().require_account(requested)
        account = await self._keys.get_account(account_id)
        return account_id, account.time_zone, today_in(self._clock, account.time_zone)

    async def _proto(self, goal: Goal) -> config_pb2.Goal:
        """``goal`` as its account sees it (status and tracking times in its time zone)."""
        account = await self._keys.get_account(goal.account_id)
        return convert.goal_to_proto(
            goal, today_in(self._clock, account.time_zone), account.time_zone
        )

    # -- RPCs ----------------------------------------------------------------------------

    async def CreateGoal(
        self, request: config_pb2.CreateGoalRequest, context: Context
    ) -> config_pb2.CreateGoalResponse:
        account_id, tz, today = await self._account()
        fields = convert.goal_fields(request)
        goal = await self._goals.create(account_id, fields, request.active, today)
        return config_pb2.CreateGoalResponse(goal=convert.goal_to_proto(goal, today, tz))

    async def GetGoal(
        self, request: config_pb2.GetGoalRequest, context: Context
    ) -> config_pb2.GetGoalResponse:
        account_id, tz, today = await self._account(request.account_id)
        goal = await self._goals.get(account_id, request.goal_id)
        return config_pb2.GetGoalResponse(goal=convert.goal_to_proto(goal, today, tz))

    async def UpdateGoal(
        self, request: config_pb2.UpdateGoalRequest, context: Context
    ) -> config_pb2.UpdateGoalResponse:
        account_id, tz, today = await self._account()
        changes = convert.goal_patch(request.goal, convert.update_paths(request))
        goal = await self._goals.update(
            account_id, request.goal_id, changes, request.expected_revision, today
        )
        return config_pb2.UpdateGoalResponse(goal=convert.goal_to_proto(goal, today, tz))

    async def ListGoals(
        self, request: config_pb2.ListGoalsRequest, context: Context
    ) -> config_pb2.ListGoalsResponse:
        account_id, tz, today = await self._account()
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        after = decode_page_token(request.page_token, (str, str))
        goals = await self._store.page(account_id, after, size + 1)
        rows, more = self._fill_page(goals, size, today, tz)
        counts = await seven_day_counts(
            self._counts, account_id, today, tz, [row.goal.id for row in rows],
            agent_id=current_principal().agent_id,
        )
        if counts is not None:
            for row in rows:
                row.seven_day_conversions = counts.get(row.goal.id, 0)
        token = ""
        if more and rows:
            last = goals[len(rows) - 1]
            token = encode_page_token((last.name_key, last.id))
        return config_pb2.ListGoalsResponse(
            goals=rows, next_page_token=token, seven_day_conversions_available=counts is not None
        )

    def _fill_page(
        self, goals: list[Goal], size: int, today: dt.date, tz: str
    ) -> tuple[list[config_pb2.GoalSummary], bool]:
        """The rows of a page (at most ``size``) and whether goals are left after them.

        Goals of the largest allowed size (100 conditions of 2,048 characters) are about
        200 KB each: a page ends early rather than exceed the message limit."""
        more = len(goals) > size
        rows: list[config_pb2.GoalSummary] = []
        used = 0
        for goal in goals[:size]:
            message = convert.goal_to_proto(goal, today, tz)
            used += message.ByteSize() + 16
            if rows and used > self._page_bytes:
                return rows, True
            rows.append(config_pb2.GoalSummary(goal=message))
        return rows, more

    async def ActivateGoal(
        self, request: config_pb2.ActivateGoalRequest, context: Context
    ) -> config_pb2.ActivateGoalResponse:
        account_id, tz, today = await self._account()
        dates = convert.activation_dates(request)
        goal = await self._goals.activate(account_id, request.goal_id, dates, today)
        return config_pb2.ActivateGoalResponse(goal=convert.goal_to_proto(goal, today, tz))

    async def DeactivateGoal(
        self, request: config_pb2.DeactivateGoalRequest, context: Context
    ) -> config_pb2.DeactivateGoalResponse:
        account_id, tz, today = await self._account()
        goal = await self._goals.deactivate(account_id, request.goal_id)
        return config_pb2.DeactivateGoalResponse(goal=convert.goal_to_proto(goal, today, tz))

    async def DeleteGoal(
        self, request: config_pb2.DeleteGoalRequest, context: Context
    ) -> config_pb2.DeleteGoalResponse:
        account_id, _, _ = await self._account()
        await self._goals.delete(account_id, request.goal_id)
        return config_pb2.DeleteGoalResponse()

    async def ListActiveGoals(
        self, request: config_pb2.ListActiveGoalsRequest, context: Context
    ) -> config_pb2.ListActiveGoalsResponse:
        account_id = current_principal().resolve_account(request.account_id)
        goals = await self._store.active_goals(account_id)
        return config_pb2.ListActiveGoalsResponse(goals=[await self._proto(g) for g in goals])

    async def WatchGoals(
        self, request: config_pb2.WatchGoalsRequest, context: Context
    ) -> AsyncIterator[config_pb2.WatchGoalsResponse]:
        account_id = current_principal().resolve_account(request.account_id)
        # The feed is opened before the snapshot is read, so no change falls between them;
        # it ends cleanly when the server starts stopping.
        async with self._store.watch(account_id, self._lifecycle.stopping) as changes:
            if request.send_snapshot:
                async for goal in self._store.all_goals(account_id):
                    yield config_pb2.WatchGoalsResponse(
                        type=config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT,
                        goal=await self._proto(goal),
                        change_time=timestamp(dt.datetime.now(dt.UTC)),
                    )
                yield config_pb2.WatchGoalsResponse(
                    type=config_pb2.GOAL_CHANGE_TYPE_SNAPSHOT_COMPLETE,
                    change_time=timestamp(dt.datetime.now(dt.UTC)),
                )
            async for change in changes:
                yield convert.change_to_proto(change, await self._changed_goal(change))

    async def SimulateGoal(
        self, request: config_pb2.SimulateGoalRequest, context: Context
    ) -> AsyncIterator[config_pb2.SimulateGoalResponse]:
        fields, patch = convert.simulated_goal(request)
        first_day = simulation_day("start_date", request)
        last_day = simulation_day("end_date", request)
        account_id, tz, today = await self._account()
        span = simulation_range(first_day, last_day, today, tz, self._simulation_max_days)
        if fields is not None:
            goal = definition_goal(account_id, fields, self._clock.now())
        else:
            goal = await existing_goal(self._goals, account_id, request.goal_id, patch)
        message = convert.goal_to_proto(goal, today, tz)
        async for update in self._replays.replay(account_id, message, span.start, span.end):
            if update.HasField("progress"):
                yield config_pb2.SimulateGoalResponse(progress=update.progress)
            elif update.HasField("result"):
                yield config_pb2.SimulateGoalResponse(result=update.result)

    async def _changed_goal(self, change: GoalChange) -> config_pb2.Goal:
        if change.kind is ChangeKind.DELETED or change.goal is None:
            return convert.deleted_goal(change)
        return await self._proto(change.goal)
