"""The tracker-backed ``ConversionCounts``: one CountConversions call with a short deadline.

Counts are a nicety beside a listing, so any failure answers None (the listing then says the
counts are unavailable) rather than failing the list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import grpc
import structlog

from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc
from goalflow_common.protoconv import timestamp

log = structlog.get_logger(__name__)


class TrackerCounts:
    """Asks the tracker for conversion counts; None whenever it cannot answer (and always
    when no tracker is configured)."""

    def __init__(self, stub: tracker_pb2_grpc.TrackerServiceStub | None, timeout_s: float):
        self._stub = stub
        self._timeout = timeout_s

    async def since(
        self, account_id: str, since: dt.datetime, goal_ids: Sequence[str]
    ) -> dict[str, int] | None:
        if self._stub is None:
            return None
        if not goal_ids:
            return {}
        try:
            reply = await self._stub.CountConversions(
                tracker_pb2.CountConversionsRequest(
                    account_id=account_id, since=timestamp(since), goal_ids=goal_ids
                ),
                timeout=self._timeout,
            )
        except grpc.RpcError as exc:
            log.warning("seven_day_counts_unavailable", code=str(exc.code()))
            return None
        return {c.goal_id: c.count for c in reply.counts}
