"""Builds the export service: its gRPC server, the download HTTP server and the workers."""

from __future__ import annotations

from export_svc.adapters.goals import GoalNames
from export_svc.adapters.smtp import Mailer
from export_svc.adapters.tracker import TrackerConversions
from export_svc.api.http import create_app, start_http, stop_http
from export_svc.api.servicer import ExportServicer
from export_svc.domain.jobs import ExportJobs
from export_svc.domain.lifecycle import ExportWorker, WorkerDeps, WorkerSettings
from export_svc.domain.links import LinkSigner
from export_svc.settings import ExportSettings
from export_svc.store.files import MongoFileStore
from export_svc.store.jobs import MongoJobStore
from goalflow_common.auth import KeyStore
from goalflow_common.client import make_channel
from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import connect
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import (
    config_pb2_grpc,
    export_pb2,
    export_pb2_grpc,
    tracker_pb2_grpc,
)
from goalflow_common.server import GoalflowServer, Registration, build_server


async def create_server(
    settings: ExportSettings, *, clock: Clock | None = None, ttl_indexes: bool = True
) -> tuple[GoalflowServer, int]:
    """Connect, prepare indexes, start the download HTTP server and the workers, and return
    the (not yet started) gRPC server and its port. ``server.components["http_port"]`` is
    where downloads are served. ``ttl_indexes=False`` is for tests that move the clock (the
    database expires documents by its own wall clock)."""
    secret = settings.link_secret.get_secret_value().encode()
    if len(secret) < 32:
        raise ValueError("GOALFLOW_LINK_SECRET must be set to at least 32 bytes")
    clock = clock or SystemClock()
    client = await connect(
        settings.mongodb_uri, app_name="goalflow-export", attempts=settings.mongo_connect_attempts
    )
    db = client[settings.export_db_name]
    job_store = MongoJobStore(db)
    jobs = ExportJobs(job_store, clock)
    files = MongoFileStore(db, clock=clock)
    await job_store.ensure_indexes(ttl=ttl_indexes)
    if ttl_indexes:
        await files.ensure_indexes()
    keys = KeyStore(client[settings.auth_db_name], settings.key_cache_ttl_s)
    signer = LinkSigner(secret, settings.public_base_url, clock)
    lifecycle = Lifecycle()
    peer_tls = settings.grpc_channel_credentials()
    tracker_channel = make_channel(settings.tracker_address, settings.service_api_key,
                                   credentials=peer_tls)
    config_channel = make_channel(settings.config_address, settings.service_api_key,
                                  credentials=peer_tls)
    tracker = tracker_pb2_grpc.TrackerServiceStub(tracker_channel)
    worker = ExportWorker(
        WorkerDeps(
            jobs=jobs, files=files,
            conversions=TrackerConversions(tracker, settings.tracker_read_timeout_s),
            signer=signer,
            mailer=Mailer(settings.smtp_host, settings.smtp_port, settings.mail_from),
            accounts=keys, clock=clock, lifecycle=lifecycle,
        ),
        WorkerSettings(
            sender=settings.mail_from, lease_s=settings.lease_s, concurrency=settings.workers,
            retry_deadline_s=settings.export_retry_deadline_s,
        ),
    )
    # The download lookup is by id alone: a link signed for another account must get 403,
    # not 404.
    runner, http_port = await start_http(
        create_app(signer, files, job_store.get_by_id), settings.grpc_host, settings.http_port,
        ssl_context=settings.http_ssl_context(), header_timeout_s=settings.http_header_timeout_s,
        max_connections=settings.http_max_connections,
    )
    await worker.start()

    async def close() -> None:
        await worker.stop()
        await stop_http(runner)
        await tracker_channel.close()
        await config_channel.close()
        await client.close()

    server, port = build_server(
        settings,
        port=settings.grpc_port,
        keys=keys,
        registrations=[
            Registration(
                export_pb2_grpc.add_ExportServiceServicer_to_server,
                ExportServicer(jobs, worker, GoalNames(
                    config_pb2_grpc.ConfigServiceStub(config_channel), tracker)),
                export_pb2.DESCRIPTOR.services_by_name["ExportService"].full_name,
            )
        ],
        lifecycle=lifecycle,
        on_stop=[close],
    )
    server.components.update(jobs=jobs, files=files, worker=worker, http_port=http_port,
                             signer=signer)
    return server, port
