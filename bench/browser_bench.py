"""Browser benchmark: live-feed subscribers held by one edge in front of one tracker, the
feed's latency with them open, the edge's memory, and the extra hop a call through the edge
costs.

Starts the embedded database (unless ``MONGODB_URI`` is set), config, tracker and the edge
as processes of their own, creates one goal, then opens ``--subscribers`` Connect
server-streaming subscriptions over HTTP/1.1 (one connection each, as browser tabs do),
spread over ``--agents`` agent ids. Each round ingests one converting conversation for one
agent and times, for every subscriber of that agent, the batch being sent to the conversion
arriving. Each tab subscribes with its agent's token (the run sets ``GOALFLOW_TOKEN_KEYS``),
as a workspace does, so the edge and the tracker both verify tokens. Prints ``name value``
lines:

- ``browser_subscribers_held``: subscriptions that received their conversion and were still
  open at the end;
- ``browser_feed_p99_ms`` / ``browser_feed_p50_ms``: batch sent -> conversion received, over
  every delivery of every round;
- ``edge_rss_mb`` / ``tracker_rss_mb``: resident memory with the subscribers open;
- ``edge_hop_p50_ms``: GetGoal through the edge (gRPC over h2c) minus GetGoal straight to
  config, median of ``--calls`` calls each; ``edge_connect_json_p50_ms``: the same call as
  Connect JSON over HTTP/1.1 keep-alive, as a browser makes it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import secrets
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.harness import (
    HOST,
    BenchError,
    BenchRun,
    Service,
    bench_databases,
    bench_stack,
    date,
    log,
    percentile,
    rss_mb,
    run_with_services,
)
from goalflow_common.auth import KeyStore, Role
from goalflow_common.pb.goals.v1 import config_pb2, config_pb2_grpc, tracker_pb2, tracker_pb2_grpc
from goalflow_common.tokens import TokenAuthority, parse_token_keys
from goalflow_dev.embedded_mongo import free_port

SUBSCRIBE = "/goals.v1.TrackerService/SubscribeConversions"
TOKEN_TTL_S = 3600  # outlives any run
_CONVERSATION = re.compile(rb'"conversationId": "([^"]+)"')


@dataclass
class Subscriber:
    agent_id: str
    arrived: asyncio.Event
    """Shared by all subscribers: set whenever one of them receives something."""
    received: dict[str, float] = field(default_factory=dict)
    closed: bool = False
    task: asyncio.Task[None] | None = None


async def _all_received(subs: list[Subscriber], conversation: str, within_s: float) -> None:
    """Wait until each of ``subs`` has ``conversation``, or ``within_s`` has passed."""
    deadline = time.perf_counter() + within_s
    while not all(conversation in s.received for s in subs):
        remaining = deadline - time.perf_counter()
        if remaining <= 0 or not subs:
            return
        subs[0].arrived.clear()
        try:
            await asyncio.wait_for(subs[0].arrived.wait(), remaining)
        except TimeoutError:
            return


async def _subscribe(port: int, key: str, sub: Subscriber) -> None:
    """One browser tab: a Connect stream on its own HTTP/1.1 connection. The response is
    read as bytes and scanned for conversation ids; nothing is decoded, so the client costs
    the machine as little as it can."""
    body = json.dumps({"agentId": sub.agent_id}).encode()
    envelope = b"\x00" + len(body).to_bytes(4, "big") + body
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"POST {SUBSCRIBE} HTTP/1.1\r\nhost: edge\r\ncontent-type: application/connect+json\r\n"
        f"connect-protocol-version: 1\r\nauthorization: Bearer {key}\r\n"
        f"content-length: {len(envelope)}\r\n\r\n".encode() + envelope)
    try:
        tail = b""
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            data = tail + chunk
            for match in _CONVERSATION.finditer(data):
                sub.received.setdefault(match.group(1).decode(), now)
                sub.arrived.set()
            tail = data[-256:]
    finally:
        sub.closed = True
        writer.close()


async def _convert(tracker: Any, agent_id: str, conversation: str) -> float:
    """Ingest one conversation that converts for ``agent_id``; returns when it was sent."""
    now = dt.datetime.now(dt.UTC)

    def stamp(seconds: float) -> Any:
        from google.protobuf.timestamp_pb2 import Timestamp
        ts = Timestamp()
        ts.FromDatetime(now - dt.timedelta(seconds=seconds))
        return ts

    user = f"user-{conversation}"
    events = [
        tracker_pb2.Event(event_id=f"{conversation}-o", occurred_at=stamp(3),
                          conversation_opened=tracker_pb2.ConversationOpened(
                              conversation_id=conversation, end_user_id=user,
                              channel=tracker_pb2.CHANNEL_WEB_WIDGET)),
        tracker_pb2.Event(event_id=f"{conversation}-a", occurred_at=stamp(2),
                          agent_assigned=tracker_pb2.AgentAssigned(
                              conversation_id=conversation,
                              agent=tracker_pb2.Agent(id=agent_id, group_id="sales",
                                                      user_type=tracker_pb2.USER_TYPE_HUMAN))),
        tracker_pb2.Event(event_id=f"{conversation}-v", occurred_at=stamp(1),
                          end_user_activity=tracker_pb2.EndUserActivity(
                              end_user_id=user, conversation_id=conversation,
                              url="https://shop.example/checkout")),
    ]

    async def batch() -> Any:
        yield tracker_pb2.IngestEventsRequest(batch_id=conversation, events=events)

    sent = time.perf_counter()
    acks = [ack async for ack in tracker.IngestEvents(batch(), timeout=30)]
    if not acks or acks[0].conversions != 1:
        raise BenchError(f"the batch of {conversation} did not convert: {acks}")
    return sent


async def _hop(args: argparse.Namespace, bench: BenchRun, config_address: str,
               edge_address: str, key: str, goal_id: str) -> dict[str, str]:
    request = config_pb2.GetGoalRequest(goal_id=goal_id)

    async def timed(stub: Any) -> list[float]:
        for _ in range(50):
            await stub.GetGoal(request, timeout=10)
        out = []
        for _ in range(args.calls):
            start = time.perf_counter()
            await stub.GetGoal(request, timeout=10)
            out.append(time.perf_counter() - start)
        return out

    direct = await timed(config_pb2_grpc.ConfigServiceStub(bench.channel(config_address, key)))
    through = await timed(config_pb2_grpc.ConfigServiceStub(bench.channel(edge_address, key)))
    connect_json: list[float] = []
    async with aiohttp.ClientSession() as session:
        url = f"http://{edge_address}/goals.v1.ConfigService/GetGoal"
        headers = {"authorization": f"Bearer {key}"}
        for n in range(args.calls + 50):
            start = time.perf_counter()
            async with session.post(url, json={"goalId": goal_id}, headers=headers) as reply:
                await reply.read()
                if reply.status != 200:
                    raise BenchError(f"Connect JSON GetGoal: HTTP {reply.status}")
            if n >= 50:
                connect_json.append(time.perf_counter() - start)
    p50 = {name: percentile(values, 50) * 1000 for name, values in
           (("direct", direct), ("edge", through), ("json", connect_json))}
    log(f"GetGoal p50: direct {p50['direct']:.2f} ms, through the edge (gRPC) "
        f"{p50['edge']:.2f} ms, Connect JSON via the edge {p50['json']:.2f} ms")
    return {
        "config_direct_p50_ms": f"{p50['direct']:.2f}",
        "edge_hop_p50_ms": f"{p50['edge'] - p50['direct']:.2f}",
        "edge_connect_json_p50_ms": f"{p50['json']:.2f}",
    }


async def _run(bench: BenchRun, external_db: bool) -> dict[str, str]:
    args = bench.args
    run_id = uuid.uuid4().hex[:8]
    async with bench_databases(bench, external_db, run_id) as (client, names):
        keys = KeyStore(client[names["GOALFLOW_AUTH_DB_NAME"]])
        account = f"browser-{run_id}"
        await keys.create_account(account)
        admin = await keys.create_key(account, Role.ADMIN, label="bench")
        ingest_key = await keys.create_key(account, Role.INGEST, label="bench")
        stack = bench_stack(bench.workdir, bench.uri, names,
                            await keys.create_key(None, Role.SERVICE, label="bench"))
        # Tabs subscribe as browsers do: each with its agent's token, which the edge and
        # the tracker both verify.
        token_keys = f"bench:{secrets.token_urlsafe(32)}"
        for service in (stack.config, stack.tracker):
            service.env["GOALFLOW_TOKEN_KEYS"] = token_keys
        authority = TokenAuthority(parse_token_keys(token_keys), max_ttl_s=TOKEN_TTL_S)
        edge_port = free_port(HOST)
        edge = Service("edge_svc", {
            **stack.config.env, "GOALFLOW_HTTP_PORT": str(edge_port),
            "GOALFLOW_CONFIG_ADDRESS": stack.address["config"],
            "GOALFLOW_TRACKER_ADDRESS": stack.address["tracker"],
            "GOALFLOW_EXPORT_ADDRESS": stack.address["export"],
        }, bench.workdir / "edge.log")
        bench.services += [stack.config, stack.tracker, edge]
        stack.config.start()
        await stack.config.wait_serving(stack.address["config"])
        config = config_pb2_grpc.ConfigServiceStub(bench.channel(stack.address["config"], admin))
        goal = (await config.CreateGoal(config_pb2.CreateGoalRequest(
            name="Checkout", agent_group_ids=["sales"], active=True,
            start_date=date(dt.datetime.now(dt.UTC).date()),
            attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH,
            attribution_period_days=7, conditions=[config_pb2.Condition(
                category=config_pb2.CONDITION_CATEGORY_URL,
                operator=config_pb2.CONDITION_OPERATOR_CONTAINS, value="/checkout")]),
            timeout=30)).goal
        stack.tracker.start()
        edge.start()
        await stack.tracker.wait_serving(stack.address["tracker"])
        edge_address = f"{HOST}:{edge_port}"
        await edge.wait_serving(edge_address)
        figures = await _hop(args, bench, stack.address["config"], edge_address, admin, goal.id)

        agents = [f"agent-{n}" for n in range(args.agents)]
        tokens = {agent: authority.mint(account, Role.AGENT, agent, ttl_s=TOKEN_TTL_S).token
                  for agent in agents}
        arrived = asyncio.Event()
        subs = [Subscriber(agents[n % len(agents)], arrived) for n in range(args.subscribers)]
        opened = time.perf_counter()
        for n, sub in enumerate(subs):
            sub.task = asyncio.create_task(_subscribe(edge_port, tokens[sub.agent_id], sub))
            if n % 100 == 99:
                await asyncio.sleep(0.05)  # tabs open over time, not in one burst
        await asyncio.sleep(args.settle)
        log(f"{len(subs)} subscriptions opened in {time.perf_counter() - opened:.1f}s "
            f"(+{args.settle:.0f}s settle); edge RSS {rss_mb(edge.pid):.0f} MB, tracker RSS "
            f"{rss_mb(stack.tracker.pid):.0f} MB")
        tracker = tracker_pb2_grpc.TrackerServiceStub(
            bench.channel(stack.address["tracker"], ingest_key))
        latencies: list[float] = []
        for round_number in range(args.rounds):
            agent_id = agents[round_number % len(agents)]
            conversation = f"c-{run_id}-{round_number}"
            sent = await _convert(tracker, agent_id, conversation)
            mine = [s for s in subs if s.agent_id == agent_id]
            await _all_received(mine, conversation, args.wait)
            latencies += [s.received[conversation] - sent for s in mine
                          if conversation in s.received]
            edge.check_alive()
        # Held: still open, and received every conversion crediting its agent.
        wanted = {agent: {f"c-{run_id}-{n}" for n in range(args.rounds)
                          if agents[n % len(agents)] == agent} for agent in agents}
        held = sum(1 for s in subs if not s.closed and wanted[s.agent_id] <= set(s.received))
        edge_rss, tracker_rss = rss_mb(edge.pid), rss_mb(stack.tracker.pid)
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        await asyncio.gather(*(s.task for s in subs if s.task), return_exceptions=True)
        if not latencies:
            raise BenchError("no subscriber received a conversion")
        log(f"{held}/{len(subs)} held; {len(latencies)} deliveries over {args.rounds} rounds")
        figures.update({
            "browser_subscribers_held": str(held),
            "browser_feed_p50_ms": f"{percentile(latencies, 50) * 1000:.1f}",
            "browser_feed_p99_ms": f"{percentile(latencies, 99) * 1000:.1f}",
            "edge_rss_mb": f"{edge_rss:.0f}",
            "tracker_rss_mb": f"{tracker_rss:.0f}",
        })
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=2000)
    # 200 agents, 10 tabs each: every token stays under the edge's
    # GOALFLOW_MAX_SUBSCRIBERS_PER_CREDENTIAL (16); 400 rounds keep 4,000 deliveries.
    parser.add_argument("--agents", type=int, default=200,
                        help="agent ids the subscribers follow (each round converts for one)")
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds to wait after opening before the first round")
    parser.add_argument("--wait", type=float, default=5.0,
                        help="seconds a round waits for every delivery")
    parser.add_argument("--calls", type=int, default=500, help="calls per hop measurement")
    args = parser.parse_args(argv)
    if args.rounds < args.agents:
        parser.error("--rounds must be at least --agents (every subscriber is checked)")

    def make_run(ws: Any) -> BenchRun:
        return BenchRun(args, ws.workdir, ws.uri, ws.mongo_pid)

    return run_with_services("browser", make_run, _run)


if __name__ == "__main__":
    sys.exit(main())
