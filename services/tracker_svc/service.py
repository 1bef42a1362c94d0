"""The TrackerService servicer: a thin layer over the components that do the work."""

from __future__ import annotations

from goalflow_common.pb.goals.v1 import tracker_pb2_grpc
from tracker_svc.feed import ConversionFeed
from tracker_svc.ingest import Ingestor
from tracker_svc.queries import ConversionQueries
from tracker_svc.reports import Reporter


class TrackerServicer(tracker_pb2_grpc.TrackerServiceServicer):
    def __init__(
        self, ingest: Ingestor, feed: ConversionFeed, queries: ConversionQueries,
        reports: Reporter,
    ) -> None:
        self._ingest = ingest
        self._feed = feed
        self._queries = queries
        self._reports = reports

    async def IngestEvents(self, request_iterator, context):
        async for ack in self._ingest.stream(request_iterator, context):
            yield ack

    async def SubscribeConversions(self, request, context):
        async for item in self._feed.subscribe(request, context):
            yield item

    async def ListConversions(self, request, context):
        return await self._queries.list(request)

    async def StreamConversions(self, request, context):
        async for chunk in self._queries.stream(request):
            yield chunk

    async def CountConversions(self, request, context):
        return await self._queries.count(request)

    async def GetReport(self, request, context):
        return await self._reports.report(request)
