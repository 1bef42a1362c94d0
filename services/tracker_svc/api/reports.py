"""GetReport: request parsing and caller checks (``parse_request``), then the domain's
``Reporter`` (``tracker_svc.domain.reports``, where the definitions are), then the reply."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

import structlog

from goalflow_common.auth import current_principal
from goalflow_common.errors import InvalidArgument
from goalflow_common.money import from_micros
from goalflow_common.pb.goals.v1 import common_pb2, tracker_pb2
from goalflow_common.protoconv import date_between
from tracker_svc.domain.reports import Metrics, Reporter, ReportQuery

log = structlog.get_logger(__name__)

MAX_RANGE_DAYS = 366
MIN_OFFSET_MINUTES, MAX_OFFSET_MINUTES = -720, 840
MAX_FILTER_ENTRIES = 100

_G = tracker_pb2
GROUPINGS = {
    _G.REPORT_GROUPING_SKILL: "SKILL",
    _G.REPORT_GROUPING_GROUP: "GROUP",
    _G.REPORT_GROUPING_AGENT: "AGENT",
    _G.REPORT_GROUPING_GOAL: "GOAL",
    _G.REPORT_GROUPING_DAY: "DAY",
    _G.REPORT_GROUPING_DAY_OF_WEEK: "DAY_OF_WEEK",
    _G.REPORT_GROUPING_WEEK: "WEEK",
    _G.REPORT_GROUPING_HOUR: "HOUR",
    _G.REPORT_GROUPING_DAY_OF_WEEK_HOUR: "DAY_OF_WEEK_HOUR",
}


def _parse_date(name: str, message: common_pb2.Date, present: bool) -> dt.date:
    if not present:
        raise InvalidArgument(name, "required")
    # The day after the end date must exist in every offset, as must the day before the start.
    return date_between(name, message)


def _filter(name: str, values: Iterable[str]) -> frozenset[str]:
    entries = list(values)
    if len(entries) > MAX_FILTER_ENTRIES:
        raise InvalidArgument(name, f"at most {MAX_FILTER_ENTRIES} entries")
    return frozenset(entries)


def _grouping(request: tracker_pb2.GetReportRequest) -> str:
    grouping = GROUPINGS.get(request.group_by)
    if grouping is None:
        if request.group_by == _G.REPORT_GROUPING_UNSPECIFIED:
            raise InvalidArgument("group_by", "required")
        raise InvalidArgument("group_by", "unknown grouping")
    return grouping


def _offset(minutes: int) -> dt.timezone:
    if not MIN_OFFSET_MINUTES <= minutes <= MAX_OFFSET_MINUTES:
        raise InvalidArgument(
            "utc_offset_minutes", f"must be between {MIN_OFFSET_MINUTES} and {MAX_OFFSET_MINUTES}"
        )
    return dt.timezone(dt.timedelta(minutes=minutes))


def parse_request(account_id: str, request: tracker_pb2.GetReportRequest) -> ReportQuery:
    """Validate ``request``; raise InvalidArgument naming the first field that fails."""
    grouping = _grouping(request)
    start_day = _parse_date("start_date", request.start_date, request.HasField("start_date"))
    end_day = _parse_date("end_date", request.end_date, request.HasField("end_date"))
    if end_day < start_day:
        raise InvalidArgument("end_date", "must be on or after start_date")
    if (end_day - start_day).days + 1 > MAX_RANGE_DAYS:
        raise InvalidArgument("end_date", f"the range spans at most {MAX_RANGE_DAYS} days")
    offset = _offset(request.utc_offset_minutes)

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), tzinfo=offset).astimezone(dt.UTC)

    return ReportQuery(
        account_id=account_id,
        start=midnight(start_day),
        end=midnight(end_day + dt.timedelta(days=1)),
        offset=offset,
        grouping=grouping,
        skills=_filter("skills", request.skills),
        group_ids=_filter("group_ids", request.group_ids),
        agent_ids=_filter("agent_ids", request.agent_ids),
        goal_ids=_filter("goal_ids", request.goal_ids),
    )


def _money(sums: dict[str, int]) -> list[common_pb2.Money]:
    return [
        common_pb2.Money(currency_code=currency, amount=from_micros(micros))
        for currency, micros in sorted(sums.items())
    ]


def _metrics(figures: Metrics) -> tracker_pb2.ReportMetrics:
    return tracker_pb2.ReportMetrics(
        conversions=figures.conversions,
        transaction_values=_money(figures.transaction_micros),
        lead_values=_money(figures.lead_micros),
        agent_messages=figures.agent_messages,
        agent_responses=figures.agent_responses,
        time_assigned_seconds=figures.time_assigned_seconds,
    )


class ReportHandler:
    def __init__(self, reporter: Reporter) -> None:
        self._reporter = reporter

    async def report(self, request: tracker_pb2.GetReportRequest) -> tracker_pb2.GetReportResponse:
        began = time.perf_counter()
        query = parse_request(current_principal().require_account(), request)
        report = await self._reporter.report(query)
        log.info(
            "report_built", account_id=query.account_id, group_by=query.grouping,
            conversions=report.totals.conversions, rows=len(report.rows),
            ms=round((time.perf_counter() - began) * 1000, 1),
        )
        return tracker_pb2.GetReportResponse(
            rows=[tracker_pb2.ReportRow(key=line.key, label=line.label,
                                        metrics=_metrics(line.metrics))
                  for line in report.rows],
            totals=_metrics(report.totals),
        )
