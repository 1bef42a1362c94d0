"""Bad input, property-based: every TrackerService RPC gets random and adversarial field
values (empty, huge, control characters, RTL and emoji, unknown enum numbers, timestamps
before 2000, in year 9999 or with nanos out of range, malformed amounts, oversized batches
and messages). Each call gets a correct answer or a clear error naming the field (a
rejected event in the acknowledgement, or INVALID_ARGUMENT), the server keeps serving,
and nothing of a refused request or event is stored.

One real config + tracker stack per test function; hypothesis runs its examples on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from hypothesis import example, given
from hypothesis import strategies as st

from goalflow_common.auth import Role
from goalflow_common.client import make_channel
from goalflow_common.db import eq
from goalflow_common.money import ISO_4217
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2, tracker_pb2_grpc
from tests.services.adversarial import (
    EITHER,
    INVALID,
    MAX_TIMESTAMP_S,
    MIN_TIMESTAMP_S,
    VALID,
    adversarial_text,
    amount_verdict,
    amounts,
    assert_names_field,
    assert_serving,
    calendar_date,
    call,
    currencies,
    dates,
    enum_values,
    has_cc,
    page_tokens,
    property_settings,
    some_spoiled,
    text_verdict,
    timestamp_value,
    timestamps,
    ts,
    worst,
)
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    rated,
    visit,
)
from tests.services.tracker_svc.documents import T0, conversion_doc
from tracker_svc.domain.model import event_key

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)  # the `clock` fixture
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # README: events before 2000 are refused
SKEW = dt.timedelta(days=1)  # README: or more than a day ahead of the server clock
MINUTE = dt.timedelta(minutes=1)
_unique = itertools.count()


# -- events and their verdicts -----------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """How one event field is drawn and judged; ``path`` is the field as the
    acknowledgement names it (RejectedEvent.field)."""

    path: str
    values: st.SearchStrategy[Any]
    verdict: Callable[[Any], str]


def text(path: str, limit: int, required: bool = True) -> Spec:
    return Spec(path, adversarial_text(limit),
                lambda v: text_verdict(v, limit, required=required))


def enum(path: str, valid: range, required: bool = True) -> Spec:
    def verdict(value: int) -> str:
        if value == 0:
            return INVALID if required else VALID
        return VALID if value in valid else INVALID

    return Spec(path, enum_values(valid), verdict)


def absent(path: str, verdict: str) -> Spec:
    """The sub-message at ``path`` left out."""
    return Spec(path, st.none(), lambda _: verdict)


def occurred_verdict(stamp) -> str:
    if stamp is None:
        return INVALID
    when = timestamp_value(stamp)
    if when is None or not EARLIEST <= when <= NOW + SKEW:
        return INVALID
    return VALID


def money_verdict(money: common_pb2.Money) -> str:
    if money.currency_code not in ISO_4217:
        return INVALID
    return amount_verdict(money.amount)


# Proto field comments and the README's limits: ids 1-128, names 256, e-mail 254, URL
# 2048, rating 32, brand event id 256; enums required where the proto says "refused".
KIND_SPECS: dict[str, list[Spec]] = {
    "conversation_opened": [
        text("conversation_opened.conversation_id", 128),
        text("conversation_opened.end_user_id", 128),
        enum("conversation_opened.channel", range(1, 16)),
        text("conversation_opened.skill", 128, required=False),
    ],
    "agent_assigned": [
        text("agent_assigned.conversation_id", 128),
        absent("agent_assigned.agent", INVALID),
        text("agent_assigned.agent.id", 128),
        text("agent_assigned.agent.name", 256, required=False),
        text("agent_assigned.agent.email", 254, required=False),
        text("agent_assigned.agent.group_id", 128),
        text("agent_assigned.agent.skill", 128, required=False),
        enum("agent_assigned.agent.user_type", range(1, 4)),
        enum("agent_assigned.start_reason", range(1, 6), required=False),
    ],
    "agent_unassigned": [
        text("agent_unassigned.conversation_id", 128),
        text("agent_unassigned.agent_id", 128),
        enum("agent_unassigned.end_reason", range(1, 6), required=False),
    ],
    "message_sent": [
        text("message_sent.conversation_id", 128),
        enum("message_sent.author_type", range(1, 5)),
        text("message_sent.author_id", 128),
    ],
    "conversation_closed": [text("conversation_closed.conversation_id", 128)],
    "satisfaction_rated": [
        text("satisfaction_rated.conversation_id", 128),
        text("satisfaction_rated.rating", 32),
    ],
    "end_user_activity": [
        text("end_user_activity.end_user_id", 128),
        text("end_user_activity.url", 2048),
        text("end_user_activity.conversation_id", 128, required=False),
        absent("end_user_activity.transaction", VALID),
        absent("end_user_activity.transaction.value", INVALID),
        Spec("end_user_activity.transaction.value",
             st.builds(common_pb2.Money, currency_code=currencies(ISO_4217), amount=amounts()),
             money_verdict),
        text("end_user_activity.transaction.brand_event_id", 256, required=False),
        enum("end_user_activity.transaction.event_type", range(1, 5), required=False),
    ],
}
COMMON_SPECS = [
    text("event_id", 128),
    Spec("occurred_at", st.one_of(st.none(), timestamps(NOW)), occurred_verdict),
]


def base_event(kind: str, event_id: str, at: dt.datetime) -> tracker_pb2.Event:
    """A valid event of ``kind``: the builders' shape, with every optional part filled."""
    if kind == "conversation_opened":
        return opened("conv-1", at, event_id=event_id)
    if kind == "agent_assigned":
        return assigned("conv-1", at, agent("ag-1"), event_id=event_id)
    if kind == "end_user_activity":
        return visit("https://shop.example/checkout", at, conv="conv-1", amount="10.00",
                     event_id=event_id)
    event = tracker_pb2.Event(event_id=event_id, occurred_at=ts(at))
    if kind == "agent_unassigned":
        event.agent_unassigned.CopyFrom(tracker_pb2.AgentUnassigned(
            conversation_id="conv-1", agent_id="ag-1",
            end_reason=tracker_pb2.SEGMENT_END_REASON_CLOSED))
    elif kind == "message_sent":
        event.message_sent.CopyFrom(tracker_pb2.MessageSent(
            conversation_id="conv-1", author_type=tracker_pb2.AUTHOR_TYPE_AGENT,
            author_id="ag-1"))
    elif kind == "conversation_closed":
        event.conversation_closed.conversation_id = "conv-1"
    elif kind == "satisfaction_rated":
        event.satisfaction_rated.CopyFrom(tracker_pb2.SatisfactionRated(
            conversation_id="conv-1", rating="good"))
    return event


def put(event: tracker_pb2.Event, path: str, value: Any) -> None:
    """Set the field at dotted ``path`` of ``event``; None clears a sub-message."""
    *parents, name = path.split(".")
    target = event
    for part in parents:
        target = getattr(target, part)
    if value is None:
        target.ClearField(name)
    elif hasattr(value, "CopyFrom"):
        getattr(target, name).CopyFrom(value)
    else:
        setattr(target, name, value)


@dataclass
class EventCase:
    event: tracker_pb2.Event
    verdicts: dict[str, str] = field(default_factory=dict)  # mutated path -> verdict

    @property
    def verdict(self) -> str:
        return worst(VALID, *self.verdicts.values())

    def may_name(self, path: str) -> bool:
        """A rejection may name a mutated field that can fail, or a field inside it."""
        return any(path == p or path.startswith(p + ".")
                   for p, v in self.verdicts.items() if v != VALID)


@st.composite
def event_cases(draw, own_account: str) -> EventCase:
    kind = draw(st.sampled_from([*KIND_SPECS, "none"]))
    event = base_event(kind if kind != "none" else "conversation_closed",
                       f"ev-{next(_unique)}", NOW - dt.timedelta(hours=1))
    case = EventCase(event)
    if kind == "none":  # no kind at all
        event.ClearField("conversation_closed")
        case.verdicts["kind"] = INVALID
        kind_specs: list[Spec] = []
    else:
        kind_specs = KIND_SPECS[kind]
    specs = draw(st.lists(st.sampled_from(COMMON_SPECS + kind_specs), unique_by=lambda s: s.path,
                          max_size=2))
    for spec in specs:
        value = draw(spec.values)
        put(event, spec.path, value)
        case.verdicts[spec.path] = spec.verdict(value)
    if draw(st.integers(0, 9)) == 0:  # the event names an account
        named = draw(st.one_of(st.just(own_account), adversarial_text(64)))
        event.account_id = named
        case.verdicts["account_id"] = VALID if named in ("", own_account) else INVALID
    # A cleared parent makes the values drawn for its fields moot.
    for path in list(case.verdicts):
        if any(path.startswith(cleared + ".") for cleared, spec_value in case.verdicts.items()
               if _is_cleared(event, cleared)):
            del case.verdicts[path]
    # A transaction cleared and then given a field again is back without its required value.
    activity = event.end_user_activity
    if (event.HasField("end_user_activity") and activity.HasField("transaction")
            and not activity.transaction.HasField("value")):
        case.verdicts["end_user_activity.transaction.value"] = INVALID
    return case


def _is_cleared(event: tracker_pb2.Event, path: str) -> bool:
    *parents, name = path.split(".")
    target = event
    for part in parents:
        target = getattr(target, part)
    try:
        return not target.HasField(name)
    except ValueError:  # a scalar field: never "cleared"
        return False


# -- the tracker's stored state ----------------------------------------------------------------


class Tracker:
    def __init__(self, stack, tenant, db) -> None:
        self.stack = stack
        self.tenant = tenant
        self.db = db
        self.ingest_stub = stack.tracker(tenant.keys[Role.INGEST])
        self.admin = stack.tracker(tenant.admin)
        self.stored: dict[str, bytes] = {}  # event id -> the event stored under it

    async def counts(self) -> tuple[int, int, int]:
        """(events, opened records, conversions) stored for the account."""
        account = {"account_id": eq(self.tenant.account_id)}
        return (await self.db.events.count_documents(account),
                await self.db.opens.count_documents(account),
                await self.db.conversions.count_documents(account))

    async def assert_serving(self) -> None:
        await assert_serving(self.stack.tracker_address)


@pytest.fixture
async def tracker(stack, make_tenant, tracker_db) -> Tracker:
    return Tracker(stack, await make_tenant(), tracker_db)


# -- IngestEvents ------------------------------------------------------------------------------


@property_settings(50)
@given(data=st.data())
async def test_each_event_is_stored_or_rejected_naming_the_field(tracker: Tracker, data):
    account = tracker.tenant.account_id
    cases = data.draw(st.lists(event_cases(account), min_size=1, max_size=12))
    for case in cases:
        # An id stored before comes back as a resend of that very event (a retry). The same
        # id with other content is covered by test_resent_id_with_other_content_changes_nothing.
        if case.event.event_id in tracker.stored:
            case.event = tracker_pb2.Event.FromString(tracker.stored[case.event.event_id])
            case.verdicts = {}
    before = await tracker.counts()

    [ack] = await ingest(tracker.ingest_stub, [c.event for c in cases])

    rejected = {r.index: r for r in ack.rejected}
    assert set(rejected) <= set(range(len(cases)))
    new_ids, new_opens = [], 0
    batch_ids: set[str] = set()
    for index, case in enumerate(cases):
        if index in rejected:
            assert case.verdict != VALID, (rejected[index], case.event)
            assert case.may_name(rejected[index].field), (rejected[index], case.verdicts)
            assert rejected[index].reason
            continue
        assert case.verdict != INVALID, (index, case.verdicts, case.event)
        event_id = case.event.event_id
        if event_id in tracker.stored or event_id in batch_ids:
            continue  # a duplicate: acknowledged, changes nothing
        batch_ids.add(event_id)
        new_ids.append(event_id)
        new_opens += case.event.WhichOneof("kind") == "conversation_opened"
        tracker.stored[event_id] = case.event.SerializeToString()
    assert ack.accepted == len(new_ids)
    assert ack.duplicates == len(cases) - len(rejected) - len(new_ids)
    # Exactly the accepted events are stored, verbatim; refused ones leave nothing.
    assert await tracker.counts() == (before[0] + len(new_ids), before[1] + new_opens, 0)
    for event_id in new_ids:
        doc = await tracker.db.events.find_one({"_id": event_key(account, event_id)})
        assert doc is not None and doc["event_id"] == event_id
    await tracker.assert_serving()


async def test_resent_id_with_other_content_changes_nothing(tracker: Tracker):
    """docs/rules.md §3: an event id is unique within its account; an event under an id already
    stored is a duplicate and changes nothing, whatever it now carries."""
    at = NOW - dt.timedelta(hours=1)
    first = [rated("c1", at, "good", event_id="dup-rating"),
             message("c1", at, "ag-1", event_id="dup-open")]
    [ack] = await ingest(tracker.ingest_stub, first)
    assert ack.accepted == 2
    before = await tracker.counts()
    again = [rated("c1", at + MINUTE, "bad", event_id="dup-rating"),
             opened("c2", at, user="u9", event_id="dup-open")]
    [ack] = await ingest(tracker.ingest_stub, again)
    assert (ack.accepted, ack.duplicates) == (0, 2)
    assert await tracker.counts() == before
    rating = await tracker.db.ratings.find_one({"account_id": tracker.tenant.account_id})
    assert rating["rating"] == "good"


def _activity(n: int, url: str, at: dt.datetime = NOW - MINUTE) -> tracker_pb2.Event:
    return visit(url, at, user=f"u{n}", event_id=f"big-{next(_unique)}")


async def test_oversized_batches_and_messages_are_refused_whole(tracker: Tracker):
    before = await tracker.counts()
    # More than 1,000 events: the batch is refused as a whole, naming `events`.
    [ack] = await ingest(tracker.ingest_stub, [_activity(n, "/p") for n in range(1001)])
    assert ack.accepted == 0 and [(r.index, r.field) for r in ack.rejected] == [(0, "events")]
    # Near the 8 MiB message limit (1,000 URLs of 8,000 characters): it arrives and each
    # event is refused for its URL.
    [ack] = await ingest(tracker.ingest_stub, [_activity(n, "/" + "u" * 7999)
                                               for n in range(1000)])
    assert ack.accepted == 0 and len(ack.rejected) == 1000
    assert {r.field for r in ack.rejected} == {"end_user_activity.url"}
    assert await tracker.counts() == before
    # Over the limit: gRPC refuses the message itself; the stream ends RESOURCE_EXHAUSTED
    # and the tracker carries on.
    channel = make_channel(tracker.stack.tracker_address, tracker.tenant.keys[Role.INGEST],
                           max_message_bytes=32 * 1024 * 1024)
    try:
        big = tracker_pb2_grpc.TrackerServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as refused:
            await ingest(big, [_activity(0, "/" + "u" * (9 * 1024 * 1024))])
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await channel.close()
    assert await tracker.counts() == before
    await tracker.assert_serving()
    # Exactly 1,000 valid events, each with a 2,048-character URL: all stored.
    events = [_activity(n, "/" + "v" * 2047) for n in range(1000)]
    [ack] = await ingest(tracker.ingest_stub, events)
    assert (ack.accepted, list(ack.rejected)) == (1000, [])
    assert await tracker.counts() == (before[0] + 1000, before[1], before[2])


async def test_replies_near_the_message_limit_are_split_not_refused(tracker: Tracker):
    """Conversions with a thousand long-named credited agents each (ALL_TOUCHES): a page
    or a stream chunk of them would pass 8 MiB. Every one is still delivered, in replies
    under the limit."""
    account = tracker.tenant.account_id
    docs = []
    for n in range(14):  # about 0.7 MB each
        doc = conversion_doc(account, "goal-big", f"conv-{n}", T0 + n * dt.timedelta(seconds=1),
                             agents=tuple(f"{n}-{k:04d}-" + "a" * 120 for k in range(1000)))
        for credit in doc["credits"]:
            credit["agent"].update(name="N" * 256, email="e" * 242 + "@example.com")
        docs.append(doc)
    await tracker.db.conversions.insert_many(docs)
    limit = 8 * 1024 * 1024

    pages = [await tracker.admin.ListConversions(tracker_pb2.ListConversionsRequest())]
    while pages[-1].next_page_token:
        pages.append(await tracker.admin.ListConversions(tracker_pb2.ListConversionsRequest(
            page_token=pages[-1].next_page_token)))
    assert len(pages) > 1 and all(page.ByteSize() < limit for page in pages)
    listed = [c.conversation_id for page in pages for c in page.conversions]
    assert listed == [f"conv-{n}" for n in reversed(range(14))]

    chunks = [chunk async for chunk in tracker.admin.StreamConversions(
        tracker_pb2.StreamConversionsRequest(goal_id="goal-big", start_time=ts(T0),
                                             end_time=ts(T0 + dt.timedelta(hours=1))))]
    assert len(chunks) > 1 and all(chunk.ByteSize() < limit for chunk in chunks)
    streamed = [c.conversation_id for chunk in chunks for c in chunk.conversions]
    assert streamed == [f"conv-{n}" for n in range(14)]
    assert all(len(c.credits) == 1000 for chunk in chunks for c in chunk.conversions)


# -- reads over a small known history ----------------------------------------------------------

OPENED = [dt.datetime(2026, 5, 31, 22, 0, tzinfo=dt.UTC),
          dt.datetime(2026, 6, 1, 1, 0, tzinfo=dt.UTC),
          dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)]
CONVERTED = [dt.datetime(2026, 6, 1, 10, 0, tzinfo=dt.UTC),
             dt.datetime(2026, 6, 1, 10, 30, 15, tzinfo=dt.UTC),
             dt.datetime(2026, 6, 1, 11, 0, 40, tzinfo=dt.UTC)]
AGENTS = [("A0", "sales"), ("A1", "support"), ("A0", "sales")]


@dataclass(frozen=True)
class Known:
    """One recorded conversion, as the test made it happen."""

    conversation_id: str
    goal_id: str
    agent_id: str
    group_id: str
    opened: dt.datetime
    converted: dt.datetime


@pytest.fixture
async def history(tracker: Tracker) -> list[Known]:
    """Three conversions of one ALL_TOUCHES goal, recorded through the real ingest path."""
    goal = await create_goal(tracker.stack, tracker.tenant, "Checkout", groups=("sales", "support"),
                             model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES)
    events = []
    for n, (agent_id, group) in enumerate(AGENTS):
        events += [opened(f"c{n}", OPENED[n], user=f"u{n}"),
                   assigned(f"c{n}", OPENED[n] + MINUTE, agent(agent_id, group)),
                   visit("https://shop.example/checkout", CONVERTED[n], user=f"u{n}")]
    [ack] = await ingest(tracker.ingest_stub, events)
    assert ack.conversions == 3
    return [Known(f"c{n}", goal.id, a, g, OPENED[n], CONVERTED[n])
            for n, (a, g) in enumerate(AGENTS)]


def ids_from(*known: str) -> st.SearchStrategy[str]:
    """An id filter: empty, one of ``known``, or adversarial."""
    return st.one_of(st.just(""), *(st.just(k) for k in known), adversarial_text(128))


def optional_time() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), timestamps(NOW - dt.timedelta(hours=1)))


# Window edges: the calendar's first and last second, the epoch, around the history.
_EDGES = [MIN_TIMESTAMP_S, -1, 0, int(OPENED[0].timestamp()), int(CONVERTED[1].timestamp()),
          int(NOW.timestamp()), MAX_TIMESTAMP_S]


def windows() -> st.SearchStrategy[tuple[Any, Any]]:
    """(start, end) Timestamps or None: independent adversarial values, or ordered pairs of
    edges (wide windows up to the whole calendar)."""
    edge_pairs = st.lists(st.sampled_from(_EDGES), min_size=2, max_size=2, unique=True).map(
        lambda pair: tuple(Timestamp(seconds=s, nanos=0) for s in sorted(pair)))
    return st.one_of(st.tuples(optional_time(), optional_time()), edge_pairs)


def within(known: list[Known], start, end, attribute: str = "converted"):
    """(certainly in the window, maybe in it): a time in the same second as an edge is
    'maybe', since nx-27017 compares dates to the second."""
    sure, maybe = [], []
    for k in known:
        when = getattr(k, attribute)
        edges = [t for t in (start, end) if t is not None]
        if any(when.replace(microsecond=0) == t.replace(microsecond=0) for t in edges):
            maybe.append(k)
        elif (start is None or when >= start) and (end is None or when < end):
            sure.append(k)
    return sure, maybe


def time_verdicts(request, *names: str, required: bool = False) -> dict[str, str]:
    verdicts = {}
    for name in names:
        if not request.HasField(name):
            verdicts[name] = INVALID if required else VALID
        else:
            verdicts[name] = VALID if timestamp_value(getattr(request, name)) else INVALID
    return verdicts


def bounds(request, start: str, end: str):
    first = timestamp_value(getattr(request, start)) if request.HasField(start) else None
    last = timestamp_value(getattr(request, end)) if request.HasField(end) else None
    return first, last


def assert_subset(got: list[str], sure: list[Known], maybe: list[Known]) -> None:
    ids = {k.conversation_id for k in sure}
    assert ids <= set(got) <= ids | {k.conversation_id for k in maybe}, (got, sure, maybe)


def plausible_window() -> st.SearchStrategy[tuple[Any, Any]]:
    """(start, end) around the history, either side possibly open."""
    moment = st.integers(-3 * 3600, 3 * 3600).map(
        lambda s: ts(CONVERTED[1] + dt.timedelta(seconds=s)))
    return st.tuples(st.one_of(st.none(), moment), st.one_of(st.none(), moment)).map(
        lambda w: w if None in w or w[0].seconds < w[1].seconds else (w[1], w[0]))


LIST_GOOD = {
    "conversation_id": st.sampled_from(["", "c0", "c1", "c2", "c9"]),
    "goal_id": st.sampled_from(["", "real", "goal-x"]),
    "agent_id": st.sampled_from(["", "A0", "A1", "A9"]),
    "page_size": st.integers(0, 4),
    "page_token": st.just(""),
    "window": plausible_window(),
}
LIST_BAD = {
    "conversation_id": adversarial_text(128),
    "goal_id": adversarial_text(128),
    "agent_id": adversarial_text(128),
    "page_size": st.integers(-(2**31), 2**31 - 1),
    "page_token": st.one_of(adversarial_text(64), page_tokens()),
    "window": windows(),
}


@property_settings(50)
@given(fields=some_spoiled(LIST_GOOD, LIST_BAD))
async def test_list_conversions_answers_or_names_the_field(tracker: Tracker, history, fields):
    request = tracker_pb2.ListConversionsRequest(
        conversation_id=fields["conversation_id"],
        goal_id=history[0].goal_id if fields["goal_id"] == "real" else fields["goal_id"],
        agent_id=fields["agent_id"], page_size=fields["page_size"],
        page_token=fields["page_token"],
    )
    for name, value in zip(("start_time", "end_time"), fields["window"], strict=True):
        if value is not None:
            getattr(request, name).CopyFrom(value)
    verdicts = time_verdicts(request, "start_time", "end_time")
    verdicts["page_size"] = INVALID if request.page_size < 0 else VALID
    for name in ("conversation_id", "goal_id", "agent_id"):
        verdicts[name] = INVALID if len(getattr(request, name)) > 128 else VALID
    start, end = bounds(request, "start_time", "end_time")
    if start and end and end <= start:
        verdicts["end_time"] = INVALID
    if request.page_token:
        verdicts["page_token"] = EITHER  # made-up tokens are refused, or read as a position

    reply, error = await call(tracker.admin.ListConversions(request))

    if error is not None:
        assert worst(*verdicts.values()) != VALID
        assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
    else:
        assert worst(*verdicts.values()) != INVALID, verdicts
        if not request.page_token:  # page through with the tokens the server hands out
            pages = [reply]
            while pages[-1].next_page_token and len(pages) < 10:
                request.page_token = pages[-1].next_page_token
                pages.append(await tracker.admin.ListConversions(request))
            assert not pages[-1].next_page_token
            assert all(len(p.conversions) <= min(request.page_size or 50, 500) for p in pages)
            got = [c for p in pages for c in p.conversions]
            times = [c.conversion_time.ToDatetime(dt.UTC) for c in got]
            assert times == sorted(times, reverse=True)  # newest first
            chosen = [k for k in history
                      if request.conversation_id in ("", k.conversation_id)
                      and request.goal_id in ("", k.goal_id)
                      and request.agent_id in ("", k.agent_id)]
            assert_subset([c.conversation_id for c in got], *within(chosen, start, end))
    await tracker.assert_serving()


ACCOUNTS = st.one_of(st.just(""), st.just("own"), st.sampled_from(["other", "\x00", "o" * 300]))


def account_of(tracker: Tracker, name: str) -> tuple[str, bool]:
    """The account id to send for ``name`` and whether it is another account's."""
    own = tracker.tenant.account_id
    account_id = own if name == "own" else name
    return account_id, account_id not in ("", own)


def whole_calendar(start: int, end: int) -> tuple[Timestamp, Timestamp]:
    return Timestamp(seconds=start), Timestamp(seconds=end)


@property_settings(40)
@example(account="", goal="real", window=whole_calendar(MIN_TIMESTAMP_S, MAX_TIMESTAMP_S))
@example(account="", goal="real", window=whole_calendar(0, MAX_TIMESTAMP_S))
@given(account=ACCOUNTS,
       goal=st.one_of(st.just("real"), st.just("real"), ids_from()),
       window=windows())
async def test_stream_conversions_answers_or_names_the_field(tracker: Tracker, history,
                                                             account, goal, window):
    account_id, foreign = account_of(tracker, account)
    goal_id = history[0].goal_id if goal == "real" else goal
    request = tracker_pb2.StreamConversionsRequest(account_id=account_id, goal_id=goal_id)
    for name, value in zip(("start_time", "end_time"), window, strict=True):
        if value is not None:
            getattr(request, name).CopyFrom(value)
    verdicts = time_verdicts(request, "start_time", "end_time", required=True)
    verdicts["goal_id"] = VALID if 1 <= len(request.goal_id) <= 128 else INVALID
    start, end = bounds(request, "start_time", "end_time")
    if start and end and end <= start:
        verdicts["end_time"] = INVALID
    try:
        chunks = [chunk async for chunk in tracker.admin.StreamConversions(request)]
        error = None
    except aio.AioRpcError as exc:
        chunks, error = [], exc
    if foreign:
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    elif error is not None:
        assert worst(*verdicts.values()) != VALID, error.details()
        assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
    else:
        assert worst(*verdicts.values()) == VALID, verdicts
        got = [c for chunk in chunks for c in chunk.conversions]
        times = [c.conversion_time.ToDatetime(dt.UTC) for c in got]
        assert times == sorted(times)  # oldest first
        chosen = [k for k in history if k.goal_id == request.goal_id]
        assert_subset([c.conversation_id for c in got], *within(chosen, start, end))
    await tracker.assert_serving()


COUNT_GOOD = {
    "account": st.sampled_from(["", "own"]),
    "goal_ids": st.lists(st.sampled_from(["real", "goal-x"]), max_size=2),
    "since": st.integers(-4 * 3600, 3600).map(lambda s: ts(CONVERTED[1] + dt.timedelta(
        seconds=s))),
}
COUNT_BAD = {
    "account": ACCOUNTS,
    "goal_ids": st.one_of(
        st.lists(st.one_of(st.just("real"), ids_from()), max_size=3),
        st.integers(990, 1500).map(lambda n: [f"goal-{i}" for i in range(n)]),
        st.integers(2, 2000).map(lambda n: ["real"] * n),  # repeats count once
    ),
    "since": optional_time(),
}


@property_settings(40)
@given(fields=some_spoiled(COUNT_GOOD, COUNT_BAD))
async def test_count_conversions_answers_or_names_the_field(tracker: Tracker, history, fields):
    account, goal_ids, since = fields["account"], fields["goal_ids"], fields["since"]
    account_id, foreign = account_of(tracker, account)
    goal_id = history[0].goal_id
    goal_ids = [goal_id if g == "real" else g for g in goal_ids]
    request = tracker_pb2.CountConversionsRequest(account_id=account_id, goal_ids=goal_ids)
    if since is not None:
        request.since.CopyFrom(since)
    distinct = list(dict.fromkeys(goal_ids))
    verdicts = time_verdicts(request, "since", required=True)
    verdicts["goal_ids"] = worst(
        INVALID if len(distinct) > 1000 else VALID,
        *(VALID if 1 <= len(g) <= 128 else INVALID for g in distinct),
    )
    reply, error = await call(tracker.admin.CountConversions(request))
    if foreign:
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
    elif error is not None:
        assert worst(*verdicts.values()) != VALID, error.details()
        assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
    else:
        assert worst(*verdicts.values()) == VALID, verdicts
        counts = {c.goal_id: c.count for c in reply.counts}
        assert set(counts) <= {goal_id} and all(n > 0 for n in counts.values())
        sure, maybe = within(history, timestamp_value(request.since), None)
        if not distinct or goal_id in distinct:
            assert len(sure) <= counts.get(goal_id, 0) <= len(sure) + len(maybe)
        else:
            assert counts == {}
    await tracker.assert_serving()


LAST_REPORT_DAY, FIRST_REPORT_DAY = dt.date(9999, 12, 30), dt.date(1, 1, 2)


def report_date_verdict(request, name: str) -> str:
    if not request.HasField(name):
        return INVALID
    day = calendar_date(getattr(request, name))
    if day is None:
        return INVALID
    # The edge days of the calendar: the day after (or before) them is not representable.
    return VALID if FIRST_REPORT_DAY <= day <= LAST_REPORT_DAY else EITHER


def filter_lists(*known: str) -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.lists(st.one_of(st.sampled_from(known), adversarial_text(128)), max_size=3),
        st.integers(99, 300).map(lambda n: [f"x{i}" for i in range(n)]),
    )


def report_dates() -> st.SearchStrategy[tuple[Any, Any]]:
    """(start, end) days around the history's open times, at most a few weeks apart."""
    first = st.integers(-10, 3).map(lambda n: dt.date(2026, 6, 1) + dt.timedelta(days=n))
    return st.tuples(first, st.integers(0, 20)).map(
        lambda p: (p[0], p[0] + dt.timedelta(days=p[1])))


def as_date(day: dt.date) -> common_pb2.Date:
    return common_pb2.Date(year=day.year, month=day.month, day=day.day)


REPORT_GOOD = {
    "dates": report_dates().map(lambda p: (as_date(p[0]), as_date(p[1]))),
    "utc_offset_minutes": st.integers(-720, 840),
    "group_by": st.integers(1, 8),
    "skills": st.lists(st.sampled_from(["billing", "sales", ""]), max_size=2),
    "group_ids": st.lists(st.sampled_from(["sales", "support", "other"]), max_size=2),
    "agent_ids": st.lists(st.sampled_from(["A0", "A1", "A9"]), max_size=2),
    "goal_ids": st.lists(st.sampled_from(["real", "goal-x"]), max_size=2),
}
REPORT_BAD = {
    "dates": st.tuples(st.one_of(st.none(), dates(dt.date(2026, 5, 30))),
                       st.one_of(st.none(), dates(dt.date(2026, 5, 30)))),
    "utc_offset_minutes": st.one_of(st.integers(-721, 841), st.integers(-(2**31), 2**31 - 1)),
    "group_by": enum_values(range(1, 9)),
    "skills": filter_lists("billing", ""),
    "group_ids": filter_lists("sales", "support"),
    "agent_ids": filter_lists("A0", "A1"),
    "goal_ids": filter_lists("real"),
}


@property_settings(50)
@given(fields=some_spoiled(REPORT_GOOD, REPORT_BAD))
async def test_get_report_answers_or_names_the_field(tracker: Tracker, history, fields):
    goal_ids = [history[0].goal_id if g == "real" else g for g in fields["goal_ids"]]
    request = tracker_pb2.GetReportRequest(
        utc_offset_minutes=fields["utc_offset_minutes"], group_by=fields["group_by"],
        skills=fields["skills"], group_ids=fields["group_ids"], agent_ids=fields["agent_ids"],
        goal_ids=goal_ids,
    )
    for name, value in zip(("start_date", "end_date"), fields["dates"], strict=True):
        if value is not None:
            getattr(request, name).CopyFrom(value)
    verdicts = {name: report_date_verdict(request, name) for name in ("start_date", "end_date")}
    first, last = calendar_date(request.start_date), calendar_date(request.end_date)
    if verdicts["start_date"] == verdicts["end_date"] == VALID and (
        last < first or (last - first).days + 1 > 366
    ):
        verdicts["end_date"] = INVALID
    verdicts["group_by"] = VALID if 1 <= request.group_by <= 8 else INVALID
    verdicts["utc_offset_minutes"] = VALID if -720 <= request.utc_offset_minutes <= 840 \
        else INVALID
    for name in ("skills", "group_ids", "agent_ids", "goal_ids"):
        verdicts[name] = INVALID if len(getattr(request, name)) > 100 else VALID

    reply, error = await call(tracker.admin.GetReport(request))

    if error is not None:
        assert worst(*verdicts.values()) != VALID, (error.details(), verdicts)
        assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
    else:
        assert worst(*verdicts.values()) != INVALID, verdicts
        offset = dt.timezone(dt.timedelta(minutes=request.utc_offset_minutes))
        start = dt.datetime.combine(first, dt.time(), offset)
        end = dt.datetime.combine(last, dt.time(), offset) + dt.timedelta(days=1)
        agents, groups = set(request.agent_ids), set(request.group_ids)
        expected = [
            k for k in history
            if start <= k.opened < end
            and (not request.skills or "billing" in request.skills)
            and (not request.goal_ids or k.goal_id in request.goal_ids)
            and (not agents or k.agent_id in agents)
            and (not groups or k.group_id in groups)
        ]
        assert reply.totals.conversions == len(expected), (expected, request)
        assert all(row.metrics.conversions > 0 for row in reply.rows)
    await tracker.assert_serving()


# -- SubscribeConversions ------------------------------------------------------------------


@property_settings(30)
@given(target=st.one_of(
    st.none(),
    st.tuples(st.sampled_from(["conversation_id", "agent_id"]), adversarial_text(128)),
))
async def test_subscribe_answers_or_names_the_field(tracker: Tracker, target):
    request = tracker_pb2.SubscribeConversionsRequest()
    if target is None:
        verdicts = {"target": INVALID}
    else:
        setattr(request, target[0], target[1])
        value = target[1]
        verdicts = {target[0]: INVALID if not 1 <= len(value) <= 128
                    else EITHER if has_cc(value) else VALID}
    feed = tracker.stack.tracker_server.components["feed"]
    # A plain channel: make_channel's interceptor would leave a response pump behind on
    # cancel (see test_feed.py).
    async with aio.insecure_channel(tracker.stack.tracker_address) as channel:
        stub = tracker_pb2_grpc.TrackerServiceStub(channel)
        subscription = stub.SubscribeConversions(
            request, metadata=(("authorization", f"Bearer {tracker.tenant.admin}"),))
        _, error = await call(asyncio.wait_for(subscription.initial_metadata(), 5))
        code = await subscription.code() if subscription.done() else None
        if code is not None and code != grpc.StatusCode.OK:
            _, error = await call(subscription.read())
        if error is not None:
            assert worst(*verdicts.values()) != VALID
            assert_names_field(error, {f for f, v in verdicts.items() if v != VALID})
        else:
            # Live: the server sent its initial metadata and holds the stream open.
            assert worst(*verdicts.values()) != INVALID, verdicts
            assert feed.subscriber_count == 1
            subscription.cancel()
    for _ in range(100):  # a cancelled subscription leaves nothing behind
        if feed.subscriber_count == 0:
            break
        await asyncio.sleep(0.01)
    assert feed.subscriber_count == 0
    await tracker.assert_serving()
