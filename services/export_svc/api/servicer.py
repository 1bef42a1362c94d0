"""The ExportService servicer: check a request, record or read jobs, map them to messages.

A goal is looked up by ``GoalNames`` (adapters/goals.py): config's goal, or a deleted goal
the tracker still holds conversions of."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from export_svc.adapters.goals import GoalNames
from export_svc.api.convert import export_to_proto
from export_svc.domain.jobs import ExportJobs, ExportRequest
from export_svc.domain.lifecycle import ExportWorker
from export_svc.store.protocols import BadPageToken
from goalflow_common.auth import current_principal
from goalflow_common.errors import InvalidArgument, NotFound
from goalflow_common.limits import check_id
from goalflow_common.pb.goals.v1 import export_pb2, export_pb2_grpc
from goalflow_common.protoconv import date_between

MAX_RANGE_DAYS = 366
MAX_EMAIL = 254
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DEFAULT_PAGE, MAX_PAGE = 50, 200


class ExportServicer(export_pb2_grpc.ExportServiceServicer):
    def __init__(self, jobs: ExportJobs, worker: ExportWorker, goals: GoalNames) -> None:
        self._jobs = jobs
        self._worker = worker
        self._goals = goals

    async def RequestExport(
        self, request: export_pb2.RequestExportRequest, context: Any
    ) -> export_pb2.RequestExportResponse:
        account_id = current_principal().require_account()
        check_id("goal_id", request.goal_id)
        start = _date("start_date", request)
        end = _date("end_date", request)
        if end < start:
            raise InvalidArgument("end_date", "must not be before start_date")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise InvalidArgument("end_date", f"the range may span at most {MAX_RANGE_DAYS} days")
        email = request.recipient_email.strip()
        if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
            raise InvalidArgument("recipient_email", "must be a valid e-mail address")
        check_id("request_id", request.request_id, required=False)
        goal_name = await self._goals.name(account_id, request.goal_id)
        job = await self._jobs.create(ExportRequest(
            account_id=account_id, goal_id=request.goal_id, goal_name=goal_name,
            start_date=start, end_date=end, recipient_email=email,
            request_id=request.request_id,
        ))
        self._worker.wake()
        return export_pb2.RequestExportResponse(export=export_to_proto(job))

    async def GetExport(
        self, request: export_pb2.GetExportRequest, context: Any
    ) -> export_pb2.GetExportResponse:
        account_id = current_principal().require_account()
        # An empty or over-long id is refused by name: no job has one, and a long id echoed
        # in the NOT_FOUND details could overflow the client's 8 KB metadata limit.
        check_id("export_id", request.export_id)
        job = await self._jobs.get(account_id, request.export_id)
        if job is None:
            raise NotFound(f"export {request.export_id!r} not found")
        return export_pb2.GetExportResponse(export=export_to_proto(job))

    async def ListExports(
        self, request: export_pb2.ListExportsRequest, context: Any
    ) -> export_pb2.ListExportsResponse:
        account_id = current_principal().require_account()
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        try:
            jobs, token = await self._jobs.list(account_id, size, request.page_token)
        except BadPageToken:
            raise InvalidArgument("page_token", "not a token from a previous response") from None
        return export_pb2.ListExportsResponse(
            exports=[export_to_proto(job) for job in jobs], next_page_token=token or ""
        )


def _date(field: str, request: export_pb2.RequestExportRequest) -> dt.date:
    if not request.HasField(field):
        raise InvalidArgument(field, "required")
    # The worker reads [start 00:00, the day after the end 00:00) in the account's time
    # zone: the calendar's first and last days have no such bounds (the job used to be
    # accepted and then fail in the worker with OverflowError).
    return date_between(field, getattr(request, field))
