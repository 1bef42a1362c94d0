"""Money at the API's limits (18 integer digits, 6 decimals) through the real config and
tracker servers: stored, recorded on conversions, listed and summed in reports exactly.

These amounts are far beyond int64 micros (2^63 micros is about 9.2 trillion units), which
once failed the whole IngestEvents stream and lost the batch's other events."""

from __future__ import annotations

import datetime as dt

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import config_pb2, tracker_pb2
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    visit,
)

LAST = config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
T0 = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
MIN = dt.timedelta(minutes=1)
URL = "https://shop.example/checkout"
MAX = "999999999999999999.999999"  # the largest amount the API accepts
JUNE_1 = {"year": 2026, "month": 6, "day": 1}


def conversation(conv: str, user: str, at: dt.datetime) -> list[tracker_pb2.Event]:
    """Opened at ``at``, agent A assigned and writing: a later hit credits A."""
    return [opened(conv, at, user=user), assigned(conv, at + MIN, agent("A")),
            message(conv, at + 2 * MIN, "A")]


async def report_totals(stack, tenant) -> tracker_pb2.ReportMetrics:
    reply = await stack.tracker(tenant.admin).GetReport(tracker_pb2.GetReportRequest(
        start_date=JUNE_1, end_date=JUNE_1, group_by=tracker_pb2.REPORT_GROUPING_AGENT))
    [row] = reply.rows
    assert row.metrics == reply.totals  # one agent: its row is the totals
    return reply.totals


async def test_max_amount_hit_and_plain_event_in_one_batch_are_both_stored(
    stack, make_tenant, clock
):
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    clock.set(T0 + 10 * MIN)
    plain = message("c1", T0 + 3 * MIN, "A")
    hit = visit(URL, T0 + 4 * MIN, user="u1", amount=MAX)
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]),
                        conversation("c1", "u1", T0), [plain, hit])
    assert [(a.accepted, a.rejected) for a in acks] == [(3, []), (2, [])]
    assert acks[1].conversions == 1

    store = stack.tracker_server.components["db"]
    stored = {doc["event_id"]: doc for doc in await store.events.find(
        {"account_id": tenant.account_id, "event_id": {"$in": [plain.event_id, hit.event_id]}}
    ).to_list()}
    assert set(stored) == {plain.event_id, hit.event_id}
    assert stored[hit.event_id]["transaction"]["amount"] == MAX

    [listed] = (await stack.tracker(tenant.admin).ListConversions(
        tracker_pb2.ListConversionsRequest())).conversions
    assert (listed.transaction_value.currency_code, listed.transaction_value.amount) == (
        "USD", MAX)


async def test_report_sums_max_amounts_exactly(stack, make_tenant, clock):
    """Three max-size purchases and one lead: sums need 25 digits (about 1.7e11 times int64
    micros), and the lead is summed on its own."""
    tenant = await make_tenant()
    await create_goal(stack, tenant, "Checkout", model=LAST)
    clock.set(T0 + 30 * MIN)
    events, hits = [], []
    for n in range(4):
        conv, user = f"c{n}", f"u{n}"
        events += conversation(conv, user, T0 + n * MIN)
        kind = (tracker_pb2.TRANSACTION_EVENT_TYPE_LEAD if n == 3
                else tracker_pb2.TRANSACTION_EVENT_TYPE_PURCHASE)
        hits.append(visit(URL, T0 + (10 + n) * MIN, user=user, amount=MAX, event_type=kind))
    hits.append(visit(URL, T0 + 20 * MIN, user="u0", amount="1.000001"))  # c0 converted once
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == 4 and not acks[1].rejected

    totals = await report_totals(stack, tenant)
    assert totals.conversions == 4
    assert [(m.currency_code, m.amount) for m in totals.transaction_values] == [
        ("USD", "2999999999999999999.999997")]
    assert [(m.currency_code, m.amount) for m in totals.lead_values] == [("USD", MAX)]


async def test_goal_with_max_value_records_it_on_every_hit(stack, make_tenant, clock):
    tenant = await make_tenant()
    goal = await create_goal(stack, tenant, "Checkout", model=LAST, value=("IDR", MAX))
    read = (await stack.config(tenant.admin).GetGoal(
        config_pb2.GetGoalRequest(goal_id=goal.id))).goal
    assert (read.transaction_value.currency_code, read.transaction_value.amount) == ("IDR", MAX)
    clock.set(T0 + 30 * MIN)
    events = conversation("c1", "u1", T0) + conversation("c2", "u2", T0 + MIN)
    hits = [visit(URL, T0 + 10 * MIN, user="u1"), visit(URL, T0 + 11 * MIN, user="u2")]
    acks = await ingest(stack.tracker(tenant.keys[Role.INGEST]), events, hits)
    assert acks[1].conversions == 2 and not acks[1].rejected

    listed = (await stack.tracker(tenant.admin).ListConversions(
        tracker_pb2.ListConversionsRequest())).conversions
    assert [(c.transaction_value.currency_code, c.transaction_value.amount) for c in listed] == [
        ("IDR", MAX), ("IDR", MAX)]
    totals = await report_totals(stack, tenant)
    assert [(m.currency_code, m.amount) for m in totals.transaction_values] == [
        ("IDR", "1999999999999999999.999998")]
