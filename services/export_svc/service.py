"""The ExportService servicer: record jobs, report their state.

A goal is looked up in config; a goal config no longer has (deleted) can still be exported
when the tracker holds conversions of it for the account, since conversions recorded for a
deleted goal stay in reports and exports (docs/rules.md §2); each CSV row carries the goal
name stored with its conversion. Otherwise the answer is NOT_FOUND, the same as for an id
that never existed or belongs to another account."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import grpc

from export_svc.jobs import BadPageToken, JobStore
from export_svc.worker import ExportWorker
from goalflow_common.auth import current_principal
from goalflow_common.errors import InvalidArgument, NotFound, Unavailable
from goalflow_common.pb.goals.v1 import (
    config_pb2,
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2,
    tracker_pb2_grpc,
)
from goalflow_common.protoconv import MAX_ID, date_between, date_message, timestamp

MAX_RANGE_DAYS = 366
MAX_EMAIL = 254
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
DEFAULT_PAGE, MAX_PAGE = 50, 200
# The tracker stores no event before 2000-01-01 nor more than a day ahead, so this span
# holds every conversion a deleted goal can have.
CONVERSIONS_FROM = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
CONVERSIONS_TO = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
DEPENDENCY_TIMEOUT_S = 5.0
STATES = {
    "QUEUED": export_pb2.EXPORT_STATE_QUEUED,
    "BUILDING": export_pb2.EXPORT_STATE_BUILDING,
    "MAILED": export_pb2.EXPORT_STATE_MAILED,
    "FAILED": export_pb2.EXPORT_STATE_FAILED,
}


class ExportServicer(export_pb2_grpc.ExportServiceServicer):
    def __init__(
        self,
        jobs: JobStore,
        worker: ExportWorker,
        config: config_pb2_grpc.ConfigServiceStub,
        tracker: tracker_pb2_grpc.TrackerServiceStub,
    ) -> None:
        self._jobs = jobs
        self._worker = worker
        self._config = config
        self._tracker = tracker

    async def RequestExport(self, request, context):
        account_id = current_principal().require_account()
        if not request.goal_id or len(request.goal_id) > 128:
            raise InvalidArgument("goal_id", "required, at most 128 characters")
        start = _date("start_date", request)
        end = _date("end_date", request)
        if end < start:
            raise InvalidArgument("end_date", "must not be before start_date")
        if (end - start).days >= MAX_RANGE_DAYS:
            raise InvalidArgument("end_date", f"the range may span at most {MAX_RANGE_DAYS} days")
        email = request.recipient_email.strip()
        if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
            raise InvalidArgument("recipient_email", "must be a valid e-mail address")
        if len(request.request_id) > 128:
            raise InvalidArgument("request_id", "at most 128 characters")
        goal_name = await self._goal_name(account_id, request.goal_id)
        job = await self._jobs.create(
            account_id=account_id, goal_id=request.goal_id, goal_name=goal_name,
            start_date=start.isoformat(), end_date=end.isoformat(), recipient_email=email,
            request_id=request.request_id,
        )
        self._worker.wake()
        return export_pb2.RequestExportResponse(export=export_to_proto(job))

    async def GetExport(self, request, context):
        account_id = current_principal().require_account()
        # An empty or over-long id is refused by name: no job has one, and a long id echoed
        # in the NOT_FOUND details could overflow the client's 8 KB metadata limit.
        if not 1 <= len(request.export_id) <= MAX_ID:
            raise InvalidArgument("export_id", f"required, at most {MAX_ID} characters")
        job = await self._jobs.get(account_id, request.export_id)
        if job is None:
            raise NotFound(f"export {request.export_id!r} not found")
        return export_pb2.GetExportResponse(export=export_to_proto(job))

    async def ListExports(self, request, context):
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

    async def _goal_name(self, account_id: str, goal_id: str) -> str:
        """The goal's name for the job and the e-mail: as config has it now, or for a
        deleted goal the name stored with its first conversion."""
        try:
            reply = await self._config.GetGoal(
                config_pb2.GetGoalRequest(goal_id=goal_id, account_id=account_id),
                timeout=DEPENDENCY_TIMEOUT_S,
            )
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise Unavailable("the config service cannot be reached; retry") from None
        else:
            return reply.goal.name
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
                    return chunk.conversions[0].goal_name
        except grpc.RpcError:
            raise Unavailable("the tracker service cannot be reached; retry") from None
        finally:
            call.cancel()
        return None


def _date(field: str, request: Any) -> dt.date:
    if not request.HasField(field):
        raise InvalidArgument(field, "required")
    # The worker reads [start 00:00, the day after the end 00:00) in the account's time
    # zone: the calendar's first and last days have no such bounds (the job used to be
    # accepted and then fail in the worker with OverflowError).
    return date_between(field, getattr(request, field))


def export_to_proto(job: dict[str, Any]) -> export_pb2.Export:
    out = export_pb2.Export(
        id=job["_id"], account_id=job["account_id"], goal_id=job["goal_id"],
        goal_name=job["goal_name"], recipient_email=job["recipient_email"],
        state=STATES[job["state"]], row_count=job.get("row_count") or 0,
        size_bytes=job.get("size_bytes") or 0, download_url=job.get("download_url") or "",
        error="" if job["state"] == "MAILED" else job.get("error") or "",
    )
    for name in ("start_date", "end_date"):
        getattr(out, name).CopyFrom(date_message(dt.date.fromisoformat(job[name])))
    for field, key in (("link_expire_time", "link_expire_time"), ("create_time", "create_time"),
                       ("update_time", "update_time"), ("mail_time", "mail_time")):
        if job.get(key):
            getattr(out, field).CopyFrom(timestamp(job[key]))
    return out
