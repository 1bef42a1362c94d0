"""A third-party client, ``buf curl``, reaches the edge with each browser protocol; it reads
the schema from ``protos/`` (the edge serves no reflection: see the README)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
BUF = ROOT / "node_modules" / ".bin" / "buf"


async def buf_curl(url: str, key: str, body: dict, *protocol: str) -> tuple[int, dict]:
    assert BUF.exists(), f"{BUF} is missing: `make lint-protos` installs it"
    process = await asyncio.create_subprocess_exec(
        str(BUF), "curl", "--schema", str(ROOT / "protos"), *protocol,
        "-H", f"authorization: Bearer {key}", "--data", json.dumps(body), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, json.loads(out or err)


@pytest.mark.parametrize("protocol", [
    ("--protocol", "grpcweb"), ("--protocol", "connect"),
    ("--protocol", "grpcweb", "--http2-prior-knowledge"),
    ("--protocol", "grpc", "--http2-prior-knowledge"),
])
async def test_buf_curl_with_each_protocol(edge, protocol):
    url = f"{edge.url}/goals.v1.ConfigService/GetGoal"
    code, error = await buf_curl(url, edge.tenant.admin, {"goalId": "nope"}, *protocol)
    assert code != 0 and error["code"] == "not_found", error
    code, listed = await buf_curl(f"{edge.url}/goals.v1.ConfigService/ListGoals",
                                  edge.tenant.admin, {}, *protocol)
    assert code == 0 and listed == {"sevenDayConversionsAvailable": True}, listed
