"""``python -m demo.generate`` (from the repository root) writes the demo's data set,
``demo/events.jsonl.gz``: one ``goals.v1.Event`` per line in proto3 JSON, gzipped.

The traffic is bench/datagen.py's (:class:`bench.datagen.TrafficGenerator`): 2,000
conversations over 30 days on a dozen channels (third-party bot and Unity SDK ones
included, which never convert), four skills and six human groups, triage bots, transfers,
back-to-queue, a survey bot, reopens, ratings, and page views with purchases and leads.
What this script adds is the arrival pattern (conversations spread over the 30 days,
busier in the daytime, UTC, than at night) and what the platform does to a conversation
the generator leaves open: it closes it after an hour without activity, as messaging
platforms do, so no agent stays assigned for weeks.

Everything follows from the seed, so running it again writes the same bytes (the gzip
header carries no time). Times are stored as they were generated, from ``FIRST_DAY``; the
demo shifts them all by the same whole number of days so the last event lands just before
the moment it runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from google.protobuf import json_format

from bench.datagen import Session, TrafficGenerator
from goalflow_common.pb.goals.v1 import tracker_pb2

SEED = 2026
CONVERSATIONS = 2000
DAYS = 30
FIRST_DAY = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
OUT = Path(__file__).with_name("events.jsonl.gz")

# Relative chance of a conversation opening in each hour of the day (UTC).
HOURLY = (1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 11, 10, 8, 7, 6, 5, 4, 3, 2)
_HOUR_MS = 3_600_000
IDLE_CLOSE_MS = _HOUR_MS


def demo_traffic(
    conversations: int = CONVERSATIONS,
    days: int = DAYS,
    *,
    seed: int = SEED,
    first_day: dt.datetime = FIRST_DAY,
) -> list[tracker_pb2.Event]:
    """Every event of ``conversations`` sessions opening over ``days`` days from
    ``first_day``, in time order."""
    gen = TrafficGenerator(seed, first_day)
    rng = gen.rng
    hours = range(24)
    arrivals = sorted(
        gen.start_ms
        + rng.randrange(days) * 24 * _HOUR_MS
        + rng.choices(hours, HOURLY)[0] * _HOUR_MS
        + rng.randrange(_HOUR_MS)
        for _ in range(conversations)
    )
    sessions = [gen.session(number, arrival) for number, arrival in enumerate(arrivals)]
    for session in sessions:
        _close_when_idle(gen, session)
    # (occurred_at ms, sequence, event): ties keep the order the events were generated in.
    timeline = sorted((item for s in sessions for item in s.events), key=lambda i: i[:2])
    return [event for _, _, event in timeline]


def _close_when_idle(gen: TrafficGenerator, session: Session) -> None:
    """Close the session's conversation an hour after its last event if it is still open."""
    still_open, last_ms = False, 0
    for t_ms, _, event in session.events:
        kind = event.WhichOneof("kind")
        if kind != "end_user_activity":
            last_ms = t_ms
        if kind in ("conversation_opened", "conversation_closed"):
            still_open = kind == "conversation_opened"
    if still_open:
        close = tracker_pb2.Event(
            event_id=gen.next_event_id(),
            conversation_closed=tracker_pb2.ConversationClosed(
                conversation_id=session.conversation_id),
        )
        close.occurred_at.FromMilliseconds(last_ms + IDLE_CLOSE_MS)
        session.events.append((last_ms + IDLE_CLOSE_MS, gen.next_sequence(), close))


def write_jsonl_gz(events: Iterable[tracker_pb2.Event], path: Path) -> int:
    """Write the events as gzipped proto3 JSON lines, reproducibly; returns how many."""
    count = 0
    with path.open("wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as out:
        for event in events:
            line = json.dumps(json_format.MessageToDict(event), separators=(",", ":"))
            out.write(line.encode() + b"\n")
            count += 1
    return count


def describe(events: list[tracker_pb2.Event]) -> str:
    """A few lines on what the data set holds."""
    kinds = Counter(event.WhichOneof("kind") for event in events)
    channels = Counter(
        tracker_pb2.Channel.Name(e.conversation_opened.channel)
        for e in events
        if e.WhichOneof("kind") == "conversation_opened"
    )
    conversations = {e.conversation_opened.conversation_id for e in events
                     if e.WhichOneof("kind") == "conversation_opened"}
    purchases = sum(
        1 for e in events
        if e.end_user_activity.transaction.event_type == tracker_pb2.TRANSACTION_EVENT_TYPE_PURCHASE
    )
    first, last = events[0].occurred_at.ToDatetime(), events[-1].occurred_at.ToDatetime()
    lines = [
        f"{len(events)} events, {len(conversations)} conversations, "
        f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC",
        "kinds: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()),
        "openings by channel: " + ", ".join(
            f"{name.removeprefix('CHANNEL_').lower()} {n}" for name, n in channels.most_common()
        ),
        f"page views with a purchase: {purchases}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where to write (.jsonl.gz)")
    parser.add_argument("--conversations", type=int, default=CONVERSATIONS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    events = demo_traffic(args.conversations, args.days, seed=args.seed)
    write_jsonl_gz(events, args.out)
    # A script's report for the person who ran it.
    print(describe(events))  # noqa: T201
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")  # noqa: T201


if __name__ == "__main__":
    main()
