"""``make demo`` (goalflow_dev.demo) as a person runs it, on a smaller slice of the
shipped data set: a real stack of subprocesses, the real ``goalflow`` CLI, real SMTP and
download link. What it prints must agree with what the tracker recorded."""

from __future__ import annotations

import asyncio
import collections
import csv
import datetime as dt
import email
import email.policy
import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from demo.generate import CONVERSATIONS, DAYS
from goalflow_common.client import make_channel
from goalflow_common.pb.goals.v1 import tracker_pb2, tracker_pb2_grpc
from goalflow_dev.demo import DEFAULT_EVENTS, DEFAULT_GOALS, prepare_replay
from goalflow_dev.devstack import read_env_file
from goalflow_dev.embedded_mongo import EmbeddedMongo, free_port
from tests.libs.devtools.test_devstack import _started_by
from tracker_svc.server import create_server as create_tracker
from tracker_svc.settings import TrackerSettings

REPO = Path(__file__).resolve().parents[3]
SLICE = 40  # conversations: a few seconds of replay, about 20 conversions


def _records(path: Path) -> list[dict]:
    with path.open() as lines:
        return [json.loads(line) for line in lines]


def _time(record: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(record["occurredAt"])


# -- the data set and its replay ---------------------------------------------------------


def test_the_shipped_data_set_has_what_the_demo_promises(tmp_path):
    events = REPO / DEFAULT_EVENTS
    assert events.stat().st_size <= 3_000_000
    now = dt.datetime.now(dt.UTC)
    goals = list(yaml.safe_load_all((REPO / DEFAULT_GOALS).read_text()))
    replay = prepare_replay(events, tmp_path / "all.jsonl", conversations=None, now=now,
                            goals=goals)
    assert replay.conversations == CONVERSATIONS
    assert (replay.last_day - replay.first_day).days >= DAYS
    records = _records(replay.path)
    assert len(records) == replay.events
    opened = [r["conversationOpened"] for r in records if "conversationOpened" in r]
    assigned = [r["agentAssigned"] for r in records if "agentAssigned" in r]
    views = [r["endUserActivity"] for r in records if "endUserActivity" in r]
    assert len({o["channel"] for o in opened}) >= 8
    assert {"CHANNEL_THIRD_PARTY_BOT", "CHANNEL_UNITY_SDK"} <= {o["channel"] for o in opened}
    assert len({o["skill"] for o in opened}) >= 4
    assert len({a["agent"]["groupId"] for a in assigned}) >= 6
    assert any(a["agent"].get("surveyBot") for a in assigned)
    assert any(a["agent"]["userType"] == "USER_TYPE_BOT" for a in assigned)
    assert any(a.get("startReason") == "SEGMENT_START_REASON_AGENT_TRANSFER" for a in assigned)
    assert any("satisfactionRated" in r for r in records)
    purchases = [v for v in views
                 if v.get("transaction", {}).get("eventType") == "TRANSACTION_EVENT_TYPE_PURCHASE"]
    assert purchases and all(p["transaction"]["value"]["amount"] for p in purchases)
    # Every goal of the demo has (CONTAINS) conditions that the data's page views hit.
    for goal in goals:
        values = [c["value"].lower() for c in goal["conditions"]]
        assert any(value in v["url"].lower() for v in views for value in values), goal["name"]


def test_a_slice_is_shifted_by_whole_days_to_end_just_before_now(tmp_path):
    source = REPO / DEFAULT_EVENTS
    now = dt.datetime(2031, 7, 15, 9, 30, tzinfo=dt.UTC)
    goals = [{"agentGroupIds": ["support-t1", "support-t2"], "conditions": [
        {"operator": "CONDITION_OPERATOR_CONTAINS", "value": "/"}]}]  # every page
    replay = prepare_replay(source, tmp_path / "slice.jsonl", conversations=5, now=now,
                            goals=goals)
    records = _records(replay.path)
    opened = {r["conversationOpened"]["conversationId"]: r["conversationOpened"]["endUserId"]
              for r in records if "conversationOpened" in r}
    assert replay.conversations == len(opened) == 5
    for record in records:
        body = next(iter(v for k, v in record.items() if isinstance(v, dict)))
        if body.get("conversationId"):
            assert body["conversationId"] in opened
        else:
            assert body["endUserId"] in opened.values()
    last = max(_time(r) for r in records)
    assert now - dt.timedelta(days=1, minutes=1) < last <= now - dt.timedelta(minutes=1)
    assert replay.first_day == min(_time(r) for r in records).date()
    assert replay.last_day == last.date()

    # The same events as in the data set, each moved by the same whole number of days.
    original = {}
    for line in gzip.open(source, "rt"):
        record = json.loads(line)
        original[record["eventId"]] = _time(record)
    moves = {_time(r) - original[r["eventId"]] for r in records}
    assert moves == {dt.timedelta(days=replay.shift_days)}
    assert replay.followed_agent.startswith("agent-support-")


# -- the demo end to end ---------------------------------------------------------------


def _report(out: str, by: str) -> tuple[dict[str, int], int]:
    """({row key: conversions}, total conversions) of a printed ``goalflow report`` table."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"Conversions by {by},"))
    header = next(line for line in lines[start:] if "CONVERSIONS" in line)
    column = header.index("CONVERSIONS")
    rows: dict[str, int] = {}
    for line in lines[lines.index(header, start) + 2:]:
        if not line.strip():
            continue
        key, conversions = line.split()[0], int(line[column:].split()[0])
        if key == "total":
            return rows, conversions
        rows[key] = conversions
    raise AssertionError(f"no total row in the {by} report")


async def _recorded(workdir: Path) -> list[tracker_pb2.Conversion]:
    """Every conversion in the demo's database, read through a tracker on its data."""
    database = EmbeddedMongo(workdir / "mongo")
    database.start()
    try:
        settings = TrackerSettings(
            mongodb_uri=database.uri, auth_db_name="goalflow_auth",
            tracker_db_name="goalflow_tracker", grpc_port=0, shutdown_grace_s=0.5,
            config_address=f"127.0.0.1:{free_port()}",  # not needed to list conversions
        )
        tracker, port = await create_tracker(settings)
        await tracker.start()
        try:
            key = read_env_file(workdir / "dev-keys.env")["GOALFLOW_ADMIN_KEY"]
            async with make_channel(f"127.0.0.1:{port}", key) as channel:
                stub = tracker_pb2_grpc.TrackerServiceStub(channel)
                request = tracker_pb2.ListConversionsRequest(page_size=500)
                found: list[tracker_pb2.Conversion] = []
                while True:
                    page = await stub.ListConversions(request)
                    found.extend(page.conversions)
                    if not page.next_page_token:
                        return found
                    request.page_token = page.next_page_token
        finally:
            await tracker.stop(0.5)
    finally:
        database.stop()


def _agents(conversion: tracker_pb2.Conversion) -> set[str]:
    return {credit.agent.id for credit in conversion.credits}


# 17 s on a quiet 2-core machine: five servers and nine CLI commands start as processes.
# A shared machine at load 9 took 43 s, too close to the 60 s default, hence the margin.
@pytest.mark.timeout(120)
async def test_demo_prints_reports_and_mails_a_csv_that_agree_with_the_conversions(tmp_path):
    """Run as ``make demo KEEP=1``: it ends by printing the web console's address and the
    admin key, keeps everything up (the console answers, the key signs in) until Ctrl-C,
    then stops it all."""
    workdir = tmp_path / "demo"
    # Nothing of the caller's setup leaks in; GOALFLOW_DEV_DIR marks every process started.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOALFLOW_")}
    env.pop("MONGODB_URI", None)
    env["GOALFLOW_DEV_DIR"] = str(workdir)
    demo = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "goalflow_dev.demo", "--conversations", str(SLICE),
         "--live", "2", "--workdir", str(workdir), "--keep-running"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        shown = await asyncio.wait_for(asyncio.to_thread(_until_kept, demo), 100)
        console, key = _console(shown)
        page = await asyncio.to_thread(_get, console)
        assert '<div id="console">' in page
        assert demo.poll() is None  # still up
        await asyncio.to_thread(_mint_through, console, key)
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        rest, err = await asyncio.to_thread(demo.communicate, timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    out = shown + rest
    assert demo.returncode == 0, f"{out}\n{err}"
    assert _started_by(env) == []  # the stack and every command are gone
    assert out.rstrip().endswith("# Stopped; nothing is left running.")

    conversions = await _recorded(workdir)
    assert conversions
    _check_transcript(out, workdir, conversions)


def _until_kept(demo: subprocess.Popen[str]) -> str:
    """What the demo printed up to its "stays up" line."""
    assert demo.stdout is not None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if "Ctrl-C stops it" in line:
            return "".join(lines)
    raise AssertionError("the demo ended without staying up:\n" + "".join(lines))


def _console(out: str) -> tuple[str, str]:
    """The console address and admin key the demo printed."""
    match = re.search(r"# Open (http://\S+/) and sign in with the admin key.*\n\s+(gf_\S+)",
                      out)
    assert match, out[-2000:]
    return match.group(1), match.group(2)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def _mint_through(console: str, key: str) -> None:
    """The console's sign-in call (MintToken through the edge) with the printed key."""
    request = urllib.request.Request(
        console + "goals.v1.AccountService/MintToken", method="POST",
        data=json.dumps({"role": "ROLE_ADMIN"}).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert json.loads(reply.read())["token"].count(".") == 2


def _check_transcript(out: str, workdir: Path, conversions: list[tracker_pb2.Conversion]) -> None:
    per_agent = collections.Counter(a for c in conversions for a in _agents(c))

    # The replay's own summary, then both reports.
    assert f"rejected 0, conversions {len(conversions)}" in out
    by_agent, total = _report(out, "agent")
    assert total == len(conversions)
    assert by_agent == dict(per_agent)
    by_weekday, total = _report(out, "day-of-week")
    assert total == len(conversions)
    weekday = collections.Counter(
        str((c.conversation_open_time.ToDatetime().weekday() + 1) % 7) for c in conversions
    )
    assert by_weekday == dict(weekday)

    # What the live subscription printed are recorded conversions of the agent it followed.
    followed = re.search(r"conversions tail --agent (\S+)", out).group(1)
    live = [line.split("live | ", 1)[1].split("  ") for line in out.splitlines()
            if re.match(r"\s*live \| \d{4}-", line)]
    assert live
    credited = {(c.goal_id, c.conversation_id) for c in conversions if followed in _agents(c)}
    for fields in live:
        goal_id, conversation_id = fields[1], fields[3]
        assert (goal_id, conversation_id) in credited

    # The mail in the outbox holds the link the demo printed and downloaded from.
    mail_path = Path(re.search(r"wrote the mail to (\S+):", out).group(1))
    message = email.message_from_bytes(mail_path.read_bytes(), policy=email.policy.default)
    link = re.search(r"https?://\S+", message.get_body(("plain",)).get_content()).group(0)
    assert f"# The link in it: {link}" in out
    assert message["To"] == "you@example.com"

    # The CSV from that link: one row per credit of the exported goal's conversions.
    [download] = (workdir / "downloads").glob("*.zip")
    with zipfile.ZipFile(download) as archive:
        [entry] = archive.namelist()
        text = archive.read(entry).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    [goal_id] = {row["Goal ID"] for row in rows}
    exported = [c for c in conversions if c.goal_id == goal_id]
    assert {row["Goal name"] for row in rows} == {exported[0].goal_name}
    assert len(rows) == sum(len(c.credits) for c in exported)
    assert collections.Counter((r["Ticket ID"], r["Agent ID"]) for r in rows) == (
        collections.Counter((c.conversation_id, a.agent.id) for c in exported for a in c.credits)
    )
    # The first lines printed are the file's own.
    assert "\n".join(text.splitlines()[:3]) in out
