"""ReplayGoal: request checks, the domain's ``Replayer`` (``tracker_svc.domain.replay``,
where the semantics are), and its progress and result as messages."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator

import structlog

from goalflow_common.auth import current_principal
from goalflow_common.errors import InvalidArgument
from goalflow_common.money import from_micros
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from goalflow_common.protoconv import timestamp, to_datetime
from tracker_svc.adapters.goal_feed import goal_from_proto
from tracker_svc.domain.replay import (
    ModelResult,
    Replayer,
    ReplayProgress,
    ReplayRequest,
    ReplayResult,
)
from tracker_svc.domain.reports import ReportLine

log = structlog.get_logger(__name__)

# The goal's id when the caller gives none (a definition that was never created).
UNSAVED_GOAL_ID = "simulated"
_MODELS = {
    "FIRST_TOUCH": config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH,
    "LAST_TOUCH": config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
    "ALL_TOUCHES": config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
}


def _time(request: tracker_pb2.ReplayGoalRequest, name: str) -> dt.datetime:
    if not request.HasField(name):
        raise InvalidArgument(name, "required")
    stamp = getattr(request, name)
    if stamp.nanos:
        raise InvalidArgument(name, "must be a whole second")
    try:
        return to_datetime(stamp)
    except (ValueError, OverflowError):
        raise InvalidArgument(name, "not a valid time") from None


def parse_request(
    account_id: str, request: tracker_pb2.ReplayGoalRequest, max_days: int
) -> ReplayRequest:
    """Validate ``request``; raise InvalidArgument naming the first field that fails. The
    range may span ``max_days`` days and one more (days in a time zone vary in length)."""
    if not request.HasField("goal"):
        raise InvalidArgument("goal", "required")
    start, end = _time(request, "start_time"), _time(request, "end_time")
    if end <= start:
        raise InvalidArgument("end_time", "must be after start_time")
    if end - start > dt.timedelta(days=max_days + 1):
        raise InvalidArgument(
            "end_time", f"the range spans at most {max_days} days "
            "(GOALFLOW_SIMULATION_MAX_DAYS)")
    known = goal_from_proto(request.goal)
    if not known.conditions:
        raise InvalidArgument("goal.conditions", "at least one URL condition is required")
    goal = dataclasses.replace(
        known.goal, id=known.goal.id or UNSAVED_GOAL_ID, account_id=account_id)
    return ReplayRequest(account_id, goal, known.conditions, start, end)


def _money(sums: dict[str, int]) -> list[common_pb2.Money]:
    return [common_pb2.Money(currency_code=currency, amount=from_micros(micros))
            for currency, micros in sorted(sums.items())]


def _rows(lines: list[ReportLine]) -> list[config_pb2.SimulationRow]:
    return [
        config_pb2.SimulationRow(
            key=line.key, label=line.label, conversions=line.metrics.conversions,
            transaction_values=_money(line.metrics.transaction_micros),
            lead_values=_money(line.metrics.lead_micros))
        for line in lines
    ]


def _model(result: ModelResult) -> config_pb2.SimulationModelResult:
    totals = result.totals
    return config_pb2.SimulationModelResult(
        attribution_model=_MODELS[result.model], conversions=totals.conversions,
        transaction_values=_money(totals.transaction_micros),
        lead_values=_money(totals.lead_micros), agents=_rows(result.agents),
        groups=_rows(result.groups), skills=_rows(result.skills),
        rows_truncated=result.truncated,
    )


def progress_message(progress: ReplayProgress) -> config_pb2.SimulationProgress:
    return config_pb2.SimulationProgress(
        events_scanned=progress.events_scanned, events_total=progress.events_total,
        conversions=[config_pb2.ModelConversions(attribution_model=_MODELS[m], conversions=n)
                     for m, n in progress.conversions.items()],
    )


def result_message(
    result: ReplayResult, request: ReplayRequest
) -> config_pb2.SimulationResult:
    return config_pb2.SimulationResult(
        events_scanned=result.events_scanned, hits=result.hits,
        models=[_model(m) for m in result.models], start_time=timestamp(request.start),
        end_time=timestamp(request.end),
    )


class ReplayHandler:
    def __init__(self, replayer: Replayer, max_days: int) -> None:
        self._replayer = replayer
        self._max_days = max_days

    async def replay(
        self, request: tracker_pb2.ReplayGoalRequest
    ) -> AsyncIterator[tracker_pb2.ReplayGoalResponse]:
        account_id = current_principal().require_account(request.account_id)
        parsed = parse_request(account_id, request, self._max_days)
        began = time.perf_counter()
        async for update in self._replayer.replay(parsed):
            if isinstance(update, ReplayProgress):
                yield tracker_pb2.ReplayGoalResponse(progress=progress_message(update))
            else:
                log.info(
                    "goal_replayed", account_id=account_id, events=update.events_scanned,
                    hits=update.hits, ms=round((time.perf_counter() - began) * 1000, 1))
                yield tracker_pb2.ReplayGoalResponse(result=result_message(update, parsed))
