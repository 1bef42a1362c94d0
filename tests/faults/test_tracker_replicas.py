"""Two tracker processes on one database fed interleaved batches of the same
conversations record what one tracker records: nothing twice, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.conftest import chunks, stored_event_count, workload

EVENTS = 2000
BATCH = 50


@pytest.mark.parametrize("feed", ["both-get-everything", "alternate-batches"])
async def test_two_replicas_record_what_one_records(fault_stack, feed):
    stack = fault_stack
    load = workload(EVENTS, seed=23)
    await stack.create_goals(load.goals)
    reference = stack.tracker("reference", db="reference")
    replicas = [stack.tracker("replica-a"), stack.tracker("replica-b")]  # one database
    await asyncio.gather(reference.serve(), *(r.serve() for r in replicas))
    expected = await stack.undisturbed(reference, load.events, batch_size=BATCH)

    producers = [stack.producer(r, batch_size=BATCH) for r in replicas]
    try:
        if feed == "both-get-everything":
            # Every event through both at once: each replica races the other on every
            # batch, and whichever comes second finds the events and conversions there.
            summaries = await asyncio.gather(*(p.send(load.events) for p in producers))
            assert [s.accepted + s.duplicates for s in summaries] == [EVENTS, EVENTS]
            assert sum(s.accepted for s in summaries) == EVENTS
            assert sum(s.conversions for s in summaries) == len(expected.conversions)
        else:
            # One source spread over the replicas batch by batch, as a load balancer does;
            # each batch is acknowledged before the next leaves, so the order holds.
            accepted = conversions = 0
            for n, batch in enumerate(chunks(load.events, BATCH)):
                summary = await producers[n % 2].send(batch)
                accepted += summary.accepted
                conversions += summary.conversions
            assert (accepted, conversions) == (EVENTS, len(expected.conversions))
    finally:
        for producer in producers:
            await producer.close()

    for replica in replicas:
        replica.check_alive()
    assert await stored_event_count(stack) == EVENTS
    # Either replica answers for the shared database, with the single tracker's result.
    for replica in replicas:
        got = await stack.outcome(replica)
        assert got.conversions == expected.conversions, (got.summary(), expected.summary())
        assert got.report == expected.report
