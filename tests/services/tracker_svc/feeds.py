"""Live-feed subscriptions over real gRPC channels, shared by the tracker's API tests."""

from __future__ import annotations

import asyncio

from grpc import aio

from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc

MAX_LATENCY_S = 1.0  # docs/rules.md: a workspace sees each new conversion as it happens


class Subscriptions:
    """SubscribeConversions calls on plain channels: make_channel's interceptor pumps every
    response into a client-side queue at once, so a client that stops reading would never
    push back on the server (and its pending pump task is left behind on cancel)."""

    def __init__(self) -> None:
        self.channels: list[aio.Channel] = []

    async def open(self, address: str, key: str, **target: str) -> aio.UnaryStreamCall:
        """Start a subscription and wait until the server has registered it (it sends its
        initial metadata then), so whatever is inserted afterwards must be delivered."""
        # No BDP probing: the flow-control window stays small, as for a stalled client.
        channel = aio.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)])
        self.channels.append(channel)
        call = tracker_pb2_grpc.TrackerServiceStub(channel).SubscribeConversions(
            tracker_pb2.SubscribeConversionsRequest(**target),
            metadata=(("authorization", f"Bearer {key}"),),
        )
        await asyncio.wait_for(call.initial_metadata(), 5.0)
        return call

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


async def receive(call, within_s: float = MAX_LATENCY_S) -> tracker_pb2.Conversion:
    message = await asyncio.wait_for(call.read(), within_s)
    assert message is not aio.EOF, "the stream ended"
    return message.conversion
