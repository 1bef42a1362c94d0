"""Builds the config service's gRPC server."""

from __future__ import annotations

import datetime as dt

import structlog

from config_svc.adapters.counts import TrackerCounts
from config_svc.adapters.replays import TrackerReplays
from config_svc.api.accounts import AccountServicer
from config_svc.api.servicer import ConfigServicer
from config_svc.domain import rules
from config_svc.settings import ConfigSettings
from config_svc.store.mongo import MongoGoalStore
from goalflow_common.auth import KeyStore
from goalflow_common.client import make_channel
from goalflow_common.clock import Clock, SystemClock
from goalflow_common.db import connect
from goalflow_common.lifecycle import Lifecycle
from goalflow_common.pb.goals.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    config_pb2,
    config_pb2_grpc,
    tracker_pb2_grpc,
)
from goalflow_common.request_guard import KIB, RequestBudget, text_bytes
from goalflow_common.server import GoalflowServer, Registration, build_server

log = structlog.get_logger(__name__)


def request_budgets() -> dict[str, RequestBudget]:
    """What a goal-writing request may hold before it is parsed, from the documented limits
    (README "Limits"); other methods carry a few ids and get the default budget."""
    condition = text_bytes(rules.MAX_CONDITION_VALUE) + 16  # + category and operator
    # Name, description, 100 groups of 128 characters, 100 conditions of 2,048: ~880 KB;
    # 8 KiB more for dates, money, enums, and an update's mask and read-only goal fields.
    goal_bytes = (text_bytes(rules.MAX_NAME) + text_bytes(rules.MAX_DESCRIPTION)
                  + rules.MAX_GROUPS * text_bytes(rules.MAX_GROUP_ID)
                  + rules.MAX_CONDITIONS * condition + 8 * KIB)
    lists = {"agent_group_ids": rules.MAX_GROUPS, "conditions": rules.MAX_CONDITIONS}
    create = {f"goals.v1.CreateGoalRequest.{name}": n for name, n in lists.items()}
    update = {f"goals.v1.Goal.{name}": n for name, n in lists.items()}
    update["google.protobuf.FieldMask.paths"] = len(rules.UPDATABLE)
    # UpdateGoal names the goal's fields as the update mask does.
    names = {f"goals.v1.Goal.{name}": name for name in lists}
    names["google.protobuf.FieldMask.paths"] = "update_mask"
    # SimulateGoal: a definition or overrides (one goal's fields), a mask and two dates.
    simulate = {f"goals.v1.CreateGoalRequest.{name}": n for name, n in lists.items()}
    simulate["google.protobuf.FieldMask.paths"] = len(rules.UPDATABLE)
    return {"CreateGoal": RequestBudget(goal_bytes, create),
            "UpdateGoal": RequestBudget(goal_bytes, update, names),
            "SimulateGoal": RequestBudget(goal_bytes, simulate,
                                          {"google.protobuf.FieldMask.paths": "override_mask"})}


async def create_server(
    settings: ConfigSettings, *, clock: Clock | None = None
) -> tuple[GoalflowServer, int]:
    """Connect to MongoDB, prepare indexes and return the (not yet started) server and the
    port it is bound to."""
    client = await connect(
        settings.mongodb_uri, app_name="goalflow-config", attempts=settings.mongo_connect_attempts
    )
    store = MongoGoalStore(client[settings.config_db_name])
    await store.ensure_indexes()
    keys = KeyStore(client[settings.auth_db_name], settings.key_cache_ttl_s)
    channel = None
    stub = None
    if settings.tracker_address:
        channel = make_channel(settings.tracker_address, settings.service_api_key,
                               credentials=settings.grpc_channel_credentials())
        stub = tracker_pb2_grpc.TrackerServiceStub(channel)
    if clock is None:
        offset = settings.clock_offset(dt.datetime.now(dt.UTC))
        if offset and settings.clock_start is not None:
            # Loud on purpose: a shifted "today" changes which start dates are accepted.
            log.warning(
                "clock_shifted", clock_start=settings.clock_start.isoformat(),
                offset_s=round(offset.total_seconds()),
            )
        clock = SystemClock(offset)
    lifecycle = Lifecycle()
    servicer = ConfigServicer(
        store,
        keys,
        clock,
        TrackerCounts(stub, settings.tracker_timeout_s),
        lifecycle,
        page_bytes=settings.max_message_bytes // 2,
        replays=TrackerReplays(stub),
        simulation_max_days=settings.simulation_max_days,
    )

    async def close() -> None:
        if channel is not None:
            await channel.close()
        await client.close()

    return build_server(
        settings,
        port=settings.grpc_port,
        keys=keys,
        registrations=[
            Registration(
                config_pb2_grpc.add_ConfigServiceServicer_to_server,
                servicer,
                config_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name,
                request_budgets(),
            ),
            # Accounts and keys live in the auth database every service reads; config's
            # process serves their API (docs: README "Accounts and keys over the API").
            Registration(
                accounts_pb2_grpc.add_AccountServiceServicer_to_server,
                AccountServicer(keys, settings.token_authority()),
                accounts_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
            ),
        ],
        lifecycle=lifecycle,
        on_stop=[close],
    )
