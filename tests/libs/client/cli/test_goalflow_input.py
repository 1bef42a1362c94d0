"""``goalflow`` input handling as a subprocess against the real services: ``events send``
streaming (a FIFO whose writer waits for the tracker), bad lines, invalid UTF-8, Ctrl-C and
a tracker that is down; goal files with ISO dates, wrong enum values and broken YAML;
``conversions tail`` confirmation, ``conversions list`` saying more exist, ``export list``."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import os
import signal
from pathlib import Path

import pytest
from google.protobuf import json_format

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import tracker_pb2
from goalflow_dev.embedded_mongo import free_port
from tests.libs.client.cli.conftest import CliStack, finish
from tests.services.tracker_svc.builders import agent, assigned, message, opened, visit

LARGE_FILE_EVENTS = 100_000  # 21 MB: tens of seconds to send on the test machine


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _line(event: tracker_pb2.Event) -> str:
    return json_format.MessageToJson(event, indent=None) + "\n"


def _conversation(conv: str, agent_id: str, url: str) -> list[tracker_pb2.Event]:
    """Opened, assigned, an agent reply, then the end user at ``url``: one conversion."""
    now = _now()
    minute = dt.timedelta(minutes=1)
    return [
        opened(conv, now - 3 * minute, user=f"u-{conv}", event_id=f"{conv}-open"),
        assigned(conv, now - 2 * minute, agent(agent_id, "sales"), event_id=f"{conv}-assign"),
        message(conv, now - minute, agent_id, event_id=f"{conv}-reply"),
        visit(url, now, user=f"u-{conv}", conv=conv, event_id=f"{conv}-visit"),
    ]


async def _goal(cli_stack: CliStack, name: str, url: str) -> str:
    created = await cli_stack.run(
        "goals", "create", "--name", name, "--active", "--group", "sales",
        "--start-date", str(_now().date()), "--model", "last-touch", "--period-days", "1",
        "--url-contains", url,
    )
    assert created.code == 0, created.err
    return created.out.strip().splitlines()[-1]


async def _listed(cli_stack: CliStack, conv: str) -> list[dict]:
    listed = await cli_stack.run("conversions", "list", "--conversation", conv,
                                 "--format", "json")
    assert listed.code == 0, listed.err
    return json.loads(listed.out)["conversions"]


async def test_events_send_streams_a_pipe_before_its_writer_finishes(
    cli_stack: CliStack, tmp_path: Path
):
    """The writer sends one conversation, then waits until the tracker has recorded its
    conversion before it writes the rest and closes the pipe. A command that read the
    whole input first would wait for the end of a pipe that never ends: this test would
    time out."""
    await _goal(cli_stack, "Piped checkout", "/piped/checkout")
    pipe = tmp_path / "events.fifo"
    os.mkfifo(pipe)
    send = await cli_stack.start("events", "send", str(pipe), "--batch-size", "2",
                                 "--no-progress", key=Role.INGEST)
    first = _conversation("c-pipe", "agent-pipe", "https://shop.example/piped/checkout")
    later = opened("c-pipe-later", _now(), event_id="c-pipe-later-open")

    def open_writer():
        return pipe.open("w")  # blocks until the command opens the pipe for reading

    writer = await asyncio.to_thread(open_writer)
    try:
        writer.write("".join(_line(e) for e in first))
        writer.flush()
        found: list[dict] = []
        for _ in range(60):
            if found := await _listed(cli_stack, "c-pipe"):
                break
            await asyncio.sleep(0.5)
        assert found, "no conversion recorded while the pipe was still open"
        writer.write(_line(later))
    finally:
        writer.close()
    result = await finish(send, 30)
    assert result.code == 0, result.err
    assert result.out.splitlines() == ["accepted 5, duplicates 0, rejected 0, conversions 1"]


async def test_events_send_sends_the_good_lines_and_lists_the_bad_ones(
    cli_stack: CliStack, tmp_path: Path
):
    good = [opened(f"c-bad-{n}", _now(), event_id=f"e-bad-file-{n}") for n in range(3)]
    refused = opened("c-bad-x", _now(), user="", event_id="e-refused")
    lines = [_line(good[0]).encode()]
    lines += [b'{"eventId": "broken", \n'] * 24                     # lines 2..25
    lines += [b'{"eventId": "caf\xe9"}\n']                          # line 26: Latin-1
    lines += [_line(good[1]).encode(), b"\n", _line(refused).encode(),
              _line(good[2]).encode()]                              # 27, 28 blank, 29, 30
    path = tmp_path / "mixed.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))

    result = await cli_stack.run("events", "send", str(path), "--no-progress",
                                 key=Role.INGEST)
    assert result.code == 3, result.err
    # Everything else went out: three events stored, one refused by the tracker.
    assert result.out.splitlines() == ["accepted 3, duplicates 0, rejected 1, conversions 0"]
    err = result.err.strip().splitlines()
    assert err[0].startswith("rejected line 29 (event e-refused): conversation_opened.")
    not_sent = [line for line in err if " not sent: " in line]
    assert [line.split()[1] for line in not_sent] == [str(n) for n in range(2, 22)]
    assert all("\n" not in line for line in not_sent)
    assert "... and 5 more lines not sent" in err
    assert err[-1] == (f"error: 25 lines of {path} are not events (not sent); "
                       "1 of 4 events rejected")

    # The invalid UTF-8 is reported by its line number, among the first 20 when it is.
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(_line(good[0]).encode() + b'{"eventId": "caf\xe9"}\n')
    result = await cli_stack.run("events", "send", str(latin), "--no-progress",
                                 key=Role.INGEST)
    assert result.code == 3
    assert "line 2 not sent: invalid UTF-8 at byte 17 of the line" in result.err
    assert result.out.splitlines() == ["accepted 0, duplicates 1, rejected 0, conversions 0"]


@pytest.mark.parametrize("source", ["stalled-pipe", "large-file"])
async def test_ctrl_c_during_events_send_says_what_was_acknowledged(
    cli_stack: CliStack, tmp_path: Path, source: str
):
    """Ctrl-C once the first conversation is recorded, while the file goes on: from a pipe
    whose writer stalls (the reader thread waits for data), or from a file of 100,000 more
    events (the reader thread waits for room to put the next chunk). Either way the command
    ends at once with the count and the advice, and that line is all it prints: before, the
    file's reader thread printed a traceback of its cancelled put above it."""
    conv = f"c-stall-{source}"
    await _goal(cli_stack, f"Interrupted checkout {source}", f"/stalled/{source}")
    events = _conversation(conv, f"agent-{source}", f"https://shop.example/stalled/{source}")
    first = "".join(_line(e) for e in events)
    writer = None
    if source == "stalled-pipe":
        path = tmp_path / "stalled.fifo"
        os.mkfifo(path)
        total = len(events)
    else:
        path = tmp_path / "large.jsonl"
        total = len(events) + LARGE_FILE_EVENTS
        with path.open("w") as large:
            large.write(first)
            large.writelines(
                _line(message(conv, _now(), f"agent-{source}", event_id=f"{conv}-m{n}"))
                for n in range(LARGE_FILE_EVENTS))
    batch = "1" if source == "stalled-pipe" else "250"
    send = await cli_stack.start("events", "send", str(path), "--batch-size", batch,
                                 "--no-progress", key=Role.INGEST)
    try:
        if source == "stalled-pipe":
            writer = await asyncio.to_thread(path.open, "w")
            writer.write(first)
            writer.flush()
        for _ in range(60):
            if await _listed(cli_stack, conv):
                break
            await asyncio.sleep(0.5)
        assert send.returncode is None, "the command ended before it was interrupted"
        send.send_signal(signal.SIGINT)
        result = await finish(send, 20)
    finally:
        if writer is not None:
            writer.close()
    assert result.code == 130
    assert "Exception in thread" not in result.err
    line = result.error_line  # the only line: no traceback, no asyncio or grpc noise
    assert line.startswith("error: interrupted: ") and f" events of {path} " in line
    assert "sending the whole file again is safe" in line
    acknowledged = int(line.removeprefix("error: interrupted: ").split()[0])
    if source == "stalled-pipe":  # its acknowledgements are read while the pipe stalls
        assert 0 <= acknowledged <= total
    else:
        assert 0 <= acknowledged < total  # interrupted mid-file


async def test_events_send_to_a_tracker_that_is_down_is_one_line(
    cli_stack: CliStack, tmp_path: Path
):
    path = tmp_path / "one.jsonl"
    path.write_text(_line(opened("c-down", _now())))
    nowhere = f"127.0.0.1:{free_port()}"
    result = await cli_stack.run("events", "send", str(path), "--no-progress",
                                 key=Role.INGEST, GOALFLOW_TRACKER_ADDRESS=nowhere)
    assert result.code == 5
    # The failure is one line, and the only one: grpc.aio's "Task was destroyed" lines for
    # the stream's request task used to come above it.
    last = result.error_line
    assert last.startswith(f"error: IngestEvents at {nowhere}: ") and "UNAVAILABLE" in last
    assert "AioRpcError" not in result.err and "debug_error_string" not in result.err


async def test_goal_files_take_iso_dates_and_list_valid_enum_values(
    cli_stack: CliStack, tmp_path: Path
):
    today = _now().date()
    as_json = tmp_path / "goal.json"
    as_json.write_text(json.dumps({
        "name": "JSON dates", "startDate": str(today + dt.timedelta(days=1)),
        "end_date": str(today + dt.timedelta(days=30)), "agentGroupIds": ["sales"],
        "attributionModel": "first-touch", "attributionPeriodDays": 2,
        "conditions": [{"category": "CONDITION_CATEGORY_URL", "operator": "is",
                        "value": "https://shop.example/json"}],
    }))
    created = await cli_stack.run("goals", "create", "--file", str(as_json), "--format", "json")
    assert created.code == 0, created.err
    goal = json.loads(created.out)
    tomorrow = today + dt.timedelta(days=1)
    assert goal["startDate"] == {"year": tomorrow.year, "month": tomorrow.month,
                                 "day": tomorrow.day}
    assert goal["attributionModel"] == "ATTRIBUTION_MODEL_FIRST_TOUCH"
    assert goal["conditions"][0]["operator"] == "CONDITION_OPERATOR_IS"

    bad_model = tmp_path / "model.yaml"
    bad_model.write_text("name: X\nattributionModel: LAST\n")
    bad_operator = tmp_path / "operator.json"
    bad_operator.write_text(json.dumps({"conditions": [{"operator": "starts-with"}]}))
    bad_date = tmp_path / "date.json"
    bad_date.write_text(json.dumps({"startDate": "10/12/2026"}))
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("name: X\n  groups: [\n")
    model, operator, date, yaml_error, flag = await asyncio.gather(
        cli_stack.run("goals", "create", "--file", str(bad_model)),
        cli_stack.run("goals", "create", "--file", str(bad_operator)),
        cli_stack.run("goals", "create", "--file", str(bad_date)),
        cli_stack.run("goals", "create", "--file", str(broken_yaml)),
        cli_stack.run("goals", "create", "--name", "X", "--model", "latest"),
    )
    assert model.code == 3
    assert model.error_line == (
        f"error: {bad_model}: attributionModel: 'LAST' is not one of "
        "ATTRIBUTION_MODEL_FIRST_TOUCH, ATTRIBUTION_MODEL_LAST_TOUCH, "
        "ATTRIBUTION_MODEL_ALL_TOUCHES"
    )
    assert operator.code == 3
    assert operator.error_line == (
        f"error: {bad_operator}: conditions[0].operator: 'starts-with' is not one of "
        "CONDITION_OPERATOR_CONTAINS, CONDITION_OPERATOR_IS"
    )
    assert date.code == 3
    assert date.error_line == f"error: {bad_date}: startDate: '10/12/2026' is not a date " \
                              "(YYYY-MM-DD)"
    assert yaml_error.code == 3
    assert yaml_error.error_line == (
        f"error: {broken_yaml}: line 2, column 9: mapping values are not allowed here"
    )
    assert flag.code == 2
    assert "'latest' is not one of 'first-touch', 'last-touch', 'all-touches'" in flag.err


async def test_tail_says_following_only_for_a_live_subscription(cli_stack: CliStack):
    nowhere = f"127.0.0.1:{free_port()}"
    refused, down = await asyncio.gather(
        cli_stack.run("conversions", "tail", "--agent", "a", key=Role.INGEST),
        cli_stack.run("conversions", "tail", "--agent", "a", GOALFLOW_TRACKER_ADDRESS=nowhere),
    )
    assert refused.code == 4 and ": PERMISSION_DENIED: " in refused.error_line
    assert down.code == 5 and ": UNAVAILABLE: " in down.error_line
    assert "following" not in refused.err + down.err


async def test_conversions_list_says_more_exist_and_export_list_shows_jobs(
    cli_stack: CliStack, tmp_path: Path
):
    goal_id = await _goal(cli_stack, "Listed checkout", "/listed/checkout")
    events = [e for n in range(3) for e in _conversation(
        f"c-list-{n}", "agent-list", "https://shop.example/listed/checkout")]
    path = tmp_path / "three.jsonl"
    path.write_text("".join(_line(e) for e in events))
    sent = await cli_stack.run("events", "send", str(path), "--no-progress", key=Role.INGEST)
    assert sent.code == 0 and sent.out.strip().endswith("conversions 3"), sent.err

    two, every = await asyncio.gather(
        cli_stack.run("conversions", "list", "--goal", goal_id, "--limit", "2",
                      "--format", "json"),
        cli_stack.run("conversions", "list", "--goal", goal_id, "--limit", "0"),
    )
    assert two.code == every.code == 0, two.err + every.err
    listed = json.loads(two.out)
    assert len(listed["conversions"]) == 2 and listed["nextPageToken"]
    assert two.error_line == ("showing the newest 2; more conversions match "
                              "(--limit N for more, --limit 0 for all)")
    assert every.err == "" and every.out.count(" c-list-") == 3

    today = str(_now().date())
    requested = await cli_stack.run("export", "request", "--goal", goal_id, "--from", today,
                                    "--to", today, "--email", "list@example.com")
    assert requested.code == 0, requested.err
    export_id = requested.out.strip()
    table, as_json = await asyncio.gather(
        cli_stack.run("export", "list"), cli_stack.run("export", "list", "--format", "json")
    )
    assert table.code == as_json.code == 0, table.err + as_json.err
    [row] = [line for line in table.out.splitlines() if line.startswith(export_id)]
    assert "Listed checkout" in row and "list@example.com" in row
    assert export_id in [job["id"] for job in json.loads(as_json.out)["exports"]]
