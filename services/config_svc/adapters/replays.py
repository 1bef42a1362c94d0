"""The tracker's ReplayGoal, as config's SimulateGoal relays it.

A simulation cannot run without the tracker: when it is not configured, or cannot be
reached, or fails mid-way, the caller gets UNAVAILABLE with a message that names no
address (the tracker's location is none of the caller's business). The tracker's own
refusals (INVALID_ARGUMENT, for a request config should not have sent) pass through as
they are. Cancelling the caller's stream cancels the tracker's."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import structlog

from goalflow_common.errors import DomainError, InvalidArgument, Unavailable
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import timestamp

log = structlog.get_logger(__name__)

UNAVAILABLE = "the tracker cannot be reached to simulate the goal now; try again later"


class TrackerReplays:
    """Streams a replay from the tracker (``stub`` None: no tracker configured)."""

    def __init__(self, stub: tracker_pb2_grpc.TrackerServiceStub | None) -> None:
        self._stub = stub

    async def replay(
        self, account_id: str, goal: config_pb2.Goal, start: dt.datetime, end: dt.datetime
    ) -> AsyncIterator[tracker_pb2.ReplayGoalResponse]:
        if self._stub is None:
            raise Unavailable("simulations need the tracker, and none is configured")
        call = self._stub.ReplayGoal(tracker_pb2.ReplayGoalRequest(
            account_id=account_id, goal=goal, start_time=timestamp(start),
            end_time=timestamp(end)))
        finished = False
        try:
            async for update in call:
                finished = update.HasField("result")
                yield update
        except grpc.aio.AioRpcError as exc:
            raise _mapped(exc) from None
        finally:
            call.cancel()
        if not finished:  # the tracker stopped (shutting down) before its result
            log.warning("replay_ended_early")
            raise Unavailable(UNAVAILABLE)


def _mapped(exc: grpc.aio.AioRpcError) -> DomainError:
    code = exc.code()
    log.warning("replay_failed", code=code.name, details=exc.details())
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, rule = (exc.details() or "").partition(": ")
        return InvalidArgument(field, rule)
    return Unavailable(UNAVAILABLE)
