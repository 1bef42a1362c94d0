"""Export jobs as the API's ``Export`` messages."""

from __future__ import annotations

from export_svc.domain.model import ExportJob, ExportState
from goalflow_common.pb.goals.v1 import export_pb2
from goalflow_common.protoconv import date_message, timestamp

STATES = {
    ExportState.QUEUED: export_pb2.EXPORT_STATE_QUEUED,
    ExportState.BUILDING: export_pb2.EXPORT_STATE_BUILDING,
    ExportState.MAILED: export_pb2.EXPORT_STATE_MAILED,
    ExportState.FAILED: export_pb2.EXPORT_STATE_FAILED,
}


def export_to_proto(job: ExportJob) -> export_pb2.Export:
    out = export_pb2.Export(
        id=job.id, account_id=job.account_id, goal_id=job.goal_id,
        goal_name=job.goal_name, recipient_email=job.recipient_email,
        state=STATES[job.state], row_count=job.row_count, size_bytes=job.size_bytes,
        download_url=job.download_url,
        # A MAILED job may carry the error of an earlier failed try: not shown.
        error="" if job.state is ExportState.MAILED else job.error,
    )
    out.start_date.CopyFrom(date_message(job.start_date))
    out.end_date.CopyFrom(date_message(job.end_date))
    for field, when in (("link_expire_time", job.link_expire_time),
                        ("create_time", job.create_time), ("update_time", job.update_time),
                        ("mail_time", job.mail_time)):
        if when:
            getattr(out, field).CopyFrom(timestamp(when))
    return out
