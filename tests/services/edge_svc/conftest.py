"""The edge in front of real services: config + tracker (the tracker tests' stack), an
export server and the SMTP sink, all on loopback ports, and the edge on its own port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from edge_svc.server import EdgeServer
from edge_svc.settings import EdgeSettings
from goalflow_common.server import GoalflowServer
from goalflow_common.tokens import TokenAuthority
from tests.conftest import Tenant
from tests.services.export_svc.conftest import sink, start_export_beside  # noqa: F401
from tests.services.tracker_svc.conftest import Stack, stack  # noqa: F401

ORIGIN = "https://console.example"
OTHER_ORIGIN = "https://evil.example"
TOKEN_KEYS = "k1:" + "s" * 40


@dataclass
class Edge:
    server: EdgeServer
    stack: Stack
    export: GoalflowServer
    export_address: str
    tenant: Tenant
    other: Tenant

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def tokens(self) -> TokenAuthority:
        return self.server.settings.token_authority()


def edge_settings(services: Stack, export_address: str, **overrides: object) -> EdgeSettings:
    return EdgeSettings(
        http_port=0, config_address=services.config_address,
        tracker_address=services.tracker_address, export_address=export_address,
        cors_allowed_origins=f"{ORIGIN},http://localhost:5173", token_keys=TOKEN_KEYS,
        shutdown_grace_s=1.0, **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
async def export_server(stack, sink, mongo_uri, db_prefix, clock, platform_key  # noqa: F811
                        ) -> AsyncIterator[tuple[GoalflowServer, str]]:
    smtp_port, _ = sink
    export, address = await start_export_beside(
        stack, mongo_uri=mongo_uri, db_prefix=db_prefix, smtp_port=smtp_port,
        platform_key=platform_key, clock=clock)
    try:
        yield export, address
    finally:
        await export.stop(0.5)


@pytest.fixture
async def edge(stack, export_server, make_tenant) -> AsyncIterator[Edge]:  # noqa: F811
    export, export_address = export_server
    server = EdgeServer(edge_settings(stack, export_address))
    await server.start()
    try:
        yield Edge(server, stack, export, export_address, await make_tenant(),
                   await make_tenant())
    finally:
        await server.stop()
