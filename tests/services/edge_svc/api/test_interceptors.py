"""The edge's call log line: a call with an agent token names the token (``key_id``), its
account and its agent, as the README says."""

from __future__ import annotations

import contextlib

import structlog
from connectrpc.errors import ConnectError
from structlog.testing import capture_logs

from edge_svc.api.endpoints import method_info
from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2
from tests.services.edge_svc.helpers import bearer, client

LIST_GOALS = "/goals.v1.ConfigService/ListGoals"


async def test_an_agent_token_call_logs_its_agent(edge):
    minted = edge.tokens.mint(edge.tenant.account_id, Role.AGENT, "agent-7", ttl_s=300)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        # The edge fixture signs with its own key, which config does not know: the edge
        # verifies the token and logs the call, config refuses it; the log line is the point.
        with contextlib.suppress(ConnectError):
            await client(edge.url).execute_unary(
                request=config_pb2.ListGoalsRequest(),
                method=method_info(LIST_GOALS, safe=True), headers=bearer(minted.token))
    # config's own line (it refused the token) names no key; the edge's does.
    [line] = [entry for entry in logs if entry["event"] == "rpc" and "key_id" in entry]
    assert (line["agent_id"], line["account_id"]) == ("agent-7", edge.tenant.account_id)
    assert line["key_id"].startswith("token:")
