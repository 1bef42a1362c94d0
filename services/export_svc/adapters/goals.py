"""A goal's name for a new export, from config, or for a deleted goal from the tracker.

A goal config no longer has (deleted) can still be exported when the tracker holds
conversions of it for the account, since conversions recorded for a deleted goal stay in
reports and exports (docs/rules.md §2); each CSV row carries the goal name stored with its
conversion. Otherwise the answer is NOT_FOUND, the same as for an id that never existed or
belongs to another account.
"""

from __future__ import annotations

import datetime as dt

import grpc

from goalflow_common.errors import NotFound, Unavailable
from goalflow_common.pb.goals.v1 import (
    config_pb2,
    config_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)

# The tracker stores no event before 2000-01-01 nor more than a day ahead, so this span
# holds every conversion a deleted goal can have.
CONVERSIONS_FROM = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CONVERSIONS_TO = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
DEPENDENCY_TIMEOUT_S = 5.0


class GoalNames:
    def __init__(
        self,
        config: config_pb2_grpc.ConfigServiceStub,
        tracker: tracker_pb2_grpc.TrackerServiceStub,
    ) -> None:
        self._config = config
        self._tracker = tracker

    async def name(self, account_id: str, goal_id: str) -> str:
        """The goal's name for the job and the e-mail: as config has it now, or for a
        deleted goal the name stored with its first conversion. Raises ``NotFound`` or
        ``Unavailable``."""
        try:
            reply = await self._config.GetGoal(
                config_pb2.GetGoalRequest(goal_id=goal_id, account_id=account_id),
                timeout=DEPENDENCY_TIMEOUT_S,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise Unavailable("the config service cannot be reached; retry") from None
        else:
            return str(reply.goal.name)
        name = await self._deleted_goal_name(account_id, goal_id)
        if name is None:
            raise NotFound(f"goal {goal_id!r} not found")
        return name

    async def _deleted_goal_name(self, account_id: str, goal_id: str) -> str | None:
        """The goal name stored with the account's first conversion of ``goal_id``, or None
        if the tracker has none. Reads one chunk of the stream and cancels the rest."""
        request = tracker_pb2.StreamConversionsRequest(account_id=account_id, goal_id=goal_id)
        request.start_time.FromDatetime(CONVERSIONS_FROM)
        request.end_time.FromDatetime(CONVERSIONS_TO)
        call = self._tracker.StreamConversions(request, timeout=DEPENDENCY_TIMEOUT_S)
        try:
            async for chunk in call:
                if chunk.conversions:
                    return str(chunk.conversions[0].goal_name)
        except grpc.RpcError:
            raise Unavailable("the tracker service cannot be reached; retry") from None
        finally:
            call.cancel()
        return None
