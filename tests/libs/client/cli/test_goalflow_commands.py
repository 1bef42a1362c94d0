"""``goalflow`` run as a subprocess against the real services (subprocesses too): every
command's output, from goals through events, live and listed conversions and reports to a
mailed export."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf import json_format

from goalflow_client.cli.values import EnumChoice
from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import tracker_pb2
from tests.libs.client.cli.conftest import CliStack, Run, finish
from tests.services.export_svc.conftest import read_outbox
from tests.services.tracker_svc.builders import agent, assigned, message, opened, visit


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _fields(text: str) -> dict[str, str]:
    """``name  value`` lines (goals show, export status) as a dict."""
    pairs = (line.split("  ", 1) for line in text.splitlines() if "  " in line)
    return {name.strip(): value.strip() for name, value in pairs}


async def test_goals_create_show_list_update_activate_and_delete(
    cli_stack: CliStack, tmp_path: Path
):
    run = cli_stack.run
    created = await run(
        "goals", "create", "--name", "Checkout", "--description", "Reach the checkout",
        "--group", "sales", "--group", "support", "--model", "first-touch",
        "--period-days", "7", "--value", "49.90", "--currency", "USD",
        "--type", "sell-product-or-service", "--url-contains", "/checkout",
        "--condition", "url:is:https://shop.example/thanks",
    )
    assert created.code == 0, created.err
    checkout_id = created.out.strip().splitlines()[-1]
    assert "created goal 'Checkout' (inactive)" in created.err

    shown = await run("goals", "show", checkout_id, "--format", "json")
    goal = json.loads(shown.out)
    assert goal["id"] == checkout_id
    assert goal["accountId"] == cli_stack.account_id
    assert (goal["name"], goal["description"]) == ("Checkout", "Reach the checkout")
    assert goal["agentGroupIds"] == ["sales", "support"]
    assert goal["attributionModel"] == "ATTRIBUTION_MODEL_FIRST_TOUCH"
    assert goal["attributionPeriodDays"] == 7
    assert goal["transactionValue"] == {"currencyCode": "USD", "amount": "49.90"}
    assert goal["goalType"] == "GOAL_TYPE_SELL_PRODUCT_OR_SERVICE"
    assert goal["conditions"] == [
        {"category": "CONDITION_CATEGORY_URL", "operator": "CONDITION_OPERATOR_CONTAINS",
         "value": "/checkout"},
        {"category": "CONDITION_CATEGORY_URL", "operator": "CONDITION_OPERATOR_IS",
         "value": "https://shop.example/thanks"},
    ]
    assert (goal["active"], goal["status"]) == (False, "GOAL_STATUS_INACTIVE")

    # From a YAML file: proto3 JSON field names (either spelling), a YAML date, active.
    today = _today()
    end = today + dt.timedelta(days=30)
    lead_file = tmp_path / "lead.yaml"
    lead_file.write_text(
        "name: Lead form\n"
        "active: true\n"
        f"startDate: {today.isoformat()}\n"
        f"end_date: {{year: {end.year}, month: {end.month}, day: {end.day}}}\n"
        "agent_group_ids: [sales]\n"
        "attributionModel: ATTRIBUTION_MODEL_ALL_TOUCHES\n"
        "attribution_period_days: 0\n"
        "conditions:\n"
        "  - {category: CONDITION_CATEGORY_URL, operator: CONDITION_OPERATOR_IS,"
        " value: 'https://shop.example/lead'}\n"
    )
    lead = await run("goals", "create", "--file", str(lead_file), "--format", "json")
    assert lead.code == 0, lead.err
    lead_goal = json.loads(lead.out)
    assert lead_goal["status"] == "GOAL_STATUS_ACTIVE"
    assert lead_goal["startDate"] == {"year": today.year, "month": today.month,
                                      "day": today.day}
    assert lead_goal["attributionModel"] == "ATTRIBUTION_MODEL_ALL_TOUCHES"

    table, listed = await asyncio.gather(
        run("goals", "list"), run("goals", "list", "--format", "json")
    )
    assert table.code == listed.code == 0, table.err + listed.err
    rows = {line.split()[0]: line for line in table.out.splitlines() if line.strip()}
    assert "Checkout" in rows[checkout_id] and "inactive" in rows[checkout_id]
    assert "first-touch" in rows[checkout_id] and "sales, support" in rows[checkout_id]
    assert "Lead form" in rows[lead_goal["id"]] and "active" in rows[lead_goal["id"]]
    assert str(end) in rows[lead_goal["id"]]
    listing = json.loads(listed.out)
    assert [g["goal"]["name"] for g in listing["goals"]] == ["Checkout", "Lead form"]
    assert listing["sevenDayConversionsAvailable"] is True
    assert [g["sevenDayConversions"] for g in listing["goals"]] == ["0", "0"]

    # Flags change only what they name.
    renamed = await run("goals", "update", checkout_id, "--name", "Checkout v2",
                        "--period-days", "3", "--format", "json")
    assert renamed.code == 0, renamed.err
    goal = json.loads(renamed.out)
    assert (goal["name"], goal["attributionPeriodDays"]) == ("Checkout v2", 3)
    assert goal["description"] == "Reach the checkout"
    assert goal["agentGroupIds"] == ["sales", "support"]
    assert len(goal["conditions"]) == 2

    # So does a file: only the fields it holds.
    patch = tmp_path / "patch.json"
    patch.write_text(json.dumps({"description": "From a file", "agentGroupIds": ["emea"]}))
    patched = await run("goals", "update", checkout_id, "--file", str(patch))
    assert patched.code == 0, patched.err
    fields = _fields(patched.out)
    assert fields["name"] == "Checkout v2"
    assert fields["description"] == "From a file"
    assert fields["groups"] == "emea"
    assert fields["period"] == "3 days"
    assert fields["value"] == "49.90 USD"
    assert f"updated goal {checkout_id}" in patched.err

    activated = await run("goals", "activate", checkout_id, "--start-date", str(_today()))
    assert activated.code == 0, activated.err
    assert activated.out.strip() == f"goal {checkout_id} activated: active"
    deactivated = await run("goals", "deactivate", checkout_id)
    assert deactivated.out.strip() == f"goal {checkout_id} deactivated: inactive"

    deleted = await run("goals", "delete", checkout_id)
    assert deleted.code == 0, deleted.err
    assert deleted.out.strip() == f"goal {checkout_id} deleted"
    gone, listed = await asyncio.gather(
        run("goals", "show", checkout_id), run("goals", "list", "--format", "json")
    )
    assert gone.code == 3
    config = cli_stack.env["GOALFLOW_CONFIG_ADDRESS"]
    assert gone.error_line.startswith(f"error: GetGoal at {config}: NOT_FOUND: ")
    assert [g["goal"]["id"] for g in json.loads(listed.out)["goals"]] == [lead_goal["id"]]


def _write_jsonl(path: Path, events: list[tracker_pb2.Event | None]) -> Path:
    """One event per line; None leaves a blank line (skipped, but it keeps its number)."""
    path.write_text("".join(
        (json_format.MessageToJson(event, indent=None) if event else "") + "\n"
        for event in events
    ))
    return path


async def _wait_for_line(stream: asyncio.StreamReader, text: str) -> str:
    while line := (await asyncio.wait_for(stream.readline(), 20)).decode():
        if text in line:
            return line
    raise AssertionError(f"the stream ended before {text!r}")


@dataclass
class Purchase:
    """One conversion made through the CLI: the goal, the conversation's open time, and
    what ``events send`` (twice) and ``conversions tail`` printed."""

    goal_id: str
    today: dt.date
    opened_at: dt.datetime
    sent: Run
    sent_again: Run
    tailed: Run
    events_bytes: int

    @property
    def dates(self) -> tuple[str, ...]:
        """A report range holding the conversation whatever the time of day."""
        return ("--from", str(self.today - dt.timedelta(days=1)),
                "--to", str(self.today + dt.timedelta(days=1)))


@pytest.fixture(scope="module")
async def purchase(cli_stack: CliStack, tmp_path_factory: pytest.TempPathFactory) -> Purchase:
    """An active last-touch goal created with ``goals create``; ``conversions tail`` started;
    then a conversation in which agent-a is assigned and writes and the end user buys,
    sent with ``events send`` (and sent once more)."""
    today = _today()
    created = await cli_stack.run(
        "goals", "create", "--name", "Purchase", "--active", "--start-date", str(today),
        "--group", "sales", "--model", "last-touch", "--period-days", "7",
        "--url-contains", "/checkout/confirm", "--value", "10.00", "--currency", "USD",
    )
    assert created.code == 0, created.err
    tail = await cli_stack.start("conversions", "tail", "--agent", "agent-a", "--count", "1",
                                 "--format", "json", key=Role.AGENT)
    # The subscription is live once it says so; the conversion comes after.
    await _wait_for_line(tail.stderr, "following conversions of agent agent-a")

    now = dt.datetime.now(dt.UTC)
    opened_at = now - dt.timedelta(minutes=10)
    minute = dt.timedelta(minutes=1)
    events = _write_jsonl(tmp_path_factory.mktemp("events") / "events.jsonl", [
        opened("c-1", opened_at, user="u-1", event_id="e-open"),
        assigned("c-1", opened_at + minute, agent("agent-a", "sales"), event_id="e-assign"),
        message("c-1", opened_at + 2 * minute, "u-1",
                author_type=tracker_pb2.AUTHOR_TYPE_END_USER, event_id="e-user-says"),
        None,
        message("c-1", opened_at + 3 * minute, "agent-a", event_id="e-agent-says"),
        visit("https://shop.example/checkout/confirm?o=1", now, user="u-1", conv="c-1",
              amount="49.90", event_id="e-buy"),
    ])
    sent = await cli_stack.run("events", "send", str(events), "--batch-size", "2",
                               "--no-progress", key=Role.INGEST)
    tailed = await finish(tail, 20)
    # Again, with the progress bar this time.
    sent_again = await cli_stack.run("events", "send", str(events), key=Role.INGEST)
    return Purchase(created.out.strip().splitlines()[-1], today, opened_at, sent, sent_again,
                    tailed, events.stat().st_size)


async def test_events_send_summarises_and_tail_receives_the_conversion(purchase: Purchase):
    assert purchase.sent.code == 0, purchase.sent.err
    assert purchase.sent.out.splitlines() == [
        "accepted 5, duplicates 0, rejected 0, conversions 1"
    ]
    # Every event of the second send is a duplicate, and nothing converts twice.
    assert purchase.sent_again.code == 0, purchase.sent_again.err
    assert purchase.sent_again.out.splitlines() == [
        "accepted 0, duplicates 5, rejected 0, conversions 0"
    ]
    # The progress bar's last state: the whole file read, every event acknowledged.
    size = purchase.events_bytes
    assert "5 events acknowledged" in purchase.sent_again.err
    assert f"{size / 1000:.1f}/{size / 1000:.1f} kB" in purchase.sent_again.err

    assert purchase.tailed.code == 0, purchase.tailed.err
    [line] = purchase.tailed.out.splitlines()
    live = json.loads(line)
    assert (live["goalId"], live["conversationId"]) == (purchase.goal_id, "c-1")
    assert [c["agent"]["id"] for c in live["credits"]] == ["agent-a"]
    # The purchase's own value, not the goal's default.
    assert live["transactionValue"] == {"currencyCode": "USD", "amount": "49.90"}


async def test_conversions_list_in_every_format_and_filtered(
    cli_stack: CliStack, purchase: Purchase
):
    run = cli_stack.run
    yesterday, today = purchase.today - dt.timedelta(days=1), purchase.today
    results = await asyncio.gather(
        run("conversions", "list", "--goal", purchase.goal_id, key=Role.AGENT),
        run("conversions", "list", "--agent", "agent-a", "--from", str(yesterday),
            "--to", str(today), "--format", "json"),
        run("conversions", "list", "--conversation", "c-1", "--format", "csv"),
    )
    assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
    table, as_json, as_csv = (r.out for r in results)
    [conversion] = json.loads(as_json)["conversions"]
    assert (conversion["goalId"], conversion["conversationId"]) == (purchase.goal_id, "c-1")
    [row] = [line for line in table.splitlines() if "c-1" in line]
    assert row.split() == [
        conversion["conversionTime"], purchase.goal_id, "Purchase", "c-1", "u-1", "agent-a",
        "49.90", "USD", "web-widget", "billing", "https://shop.example/checkout/confirm?o=1",
    ]
    [record] = csv.DictReader(io.StringIO(as_csv))
    assert record == {
        "time": conversion["conversionTime"], "goal_id": purchase.goal_id, "goal": "Purchase",
        "conversation": "c-1", "end_user": "u-1", "agents": "agent-a", "value": "49.90 USD",
        "channel": "web-widget", "skill": "billing",
        "url": "https://shop.example/checkout/confirm?o=1",
    }

    # Filters reach the server: another conversation has none; a time with an offset is
    # that instant (read as UTC, this bound would lie two hours after the conversion).
    just_before = dt.datetime.fromisoformat(conversion["conversionTime"].replace("Z", "+00:00"))
    just_before -= dt.timedelta(minutes=1)
    local = just_before.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    other, since = await asyncio.gather(
        run("conversions", "list", "--conversation", "c-other", "--format", "json"),
        run("conversions", "list", "--from", local, "--format", "json"),
    )
    assert json.loads(other.out)["conversions"] == []
    assert [c["id"] for c in json.loads(since.out)["conversions"]] == [conversion["id"]]


async def test_report_by_agent_in_table_csv_and_json(cli_stack: CliStack, purchase: Purchase):
    results = await asyncio.gather(*(
        cli_stack.run("report", "--by", "agent", *purchase.dates, "--format", fmt)
        for fmt in ("table", "csv", "json")
    ))
    assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
    table, as_csv, as_json = (r.out for r in results)

    lines = table.splitlines()
    assert lines[0].startswith(
        f"Conversions by agent, {purchase.dates[1]} to {purchase.dates[3]} (UTC+00:00)"
    )
    [row] = [line.split() for line in lines if "agent-a" in line]
    # agent, label, conversions, value, agent messages, responses, time assigned (h:mm:ss)
    assert row[:8] == ["agent-a", "Agent", "agent-a", "1", "49.90", "USD", "1", "1"]
    hours, minutes, _ = (int(part) for part in row[8].split(":"))
    assert (hours, minutes) >= (0, 9)  # assigned 9 minutes before the purchase, still open
    [total] = [line.split() for line in lines if line.strip().startswith("total")]
    assert total[:4] == ["total", "1", "49.90", "USD"]

    [record] = csv.DictReader(io.StringIO(as_csv))
    assert {k: v for k, v in record.items() if k != "time_assigned"} == {
        "agent": "agent-a", "label": "Agent agent-a", "conversions": "1",
        "transaction_values": "49.90 USD", "lead_values": "", "agent_messages": "1",
        "agent_responses": "1",
    }
    assert int(record["time_assigned"]) >= 9 * 60  # seconds in CSV

    report = json.loads(as_json)
    assert [(r["key"], r["label"], r["metrics"]["conversions"]) for r in report["rows"]] == [
        ("agent-a", "Agent agent-a", "1")
    ]
    assert report["totals"]["conversions"] == "1"
    assert report["totals"]["transactionValues"] == [{"currencyCode": "USD", "amount": "49.90"}]


def test_every_report_grouping_of_the_rpc_is_offered():
    """``--by`` comes from the proto enum: each choice names one ReportGrouping value."""
    choice = EnumChoice(tracker_pb2.ReportGrouping)
    offered = {choice.convert(label, None, None) for label in choice.choices}
    assert offered == {name for name in tracker_pb2.ReportGrouping.keys()
                       if not name.endswith("UNSPECIFIED")}


async def test_report_buckets_follow_the_utc_offset(cli_stack: CliStack, purchase: Purchase):
    local_open = purchase.opened_at + dt.timedelta(hours=-5, minutes=-30)
    expected = {
        "hour": str(local_open.hour),
        "day-of-week": str(local_open.isoweekday() % 7),  # 0 = Sunday
        "week": str(local_open.date() - dt.timedelta(days=local_open.isoweekday() % 7)),
        "day-of-week-hour": f"{local_open.isoweekday() % 7}-{local_open.hour}",
    }
    results = await asyncio.gather(*(
        cli_stack.run("report", "--by", grouping, *purchase.dates, "--utc-offset=-05:30",
                      "--format", "json")
        for grouping in expected
    ))
    for (grouping, key), result in zip(expected.items(), results, strict=True):
        assert result.code == 0, result.err
        rows = json.loads(result.out)["rows"]
        assert [(r["key"], r["metrics"]["conversions"]) for r in rows] == [(key, "1")], grouping


async def test_export_request_waits_for_the_mail_and_status_shows_it(
    cli_stack: CliStack, purchase: Purchase
):
    requested = await cli_stack.run(
        "export", "request", "--goal", purchase.goal_id,
        "--from", str(purchase.today - dt.timedelta(days=1)), "--to", str(purchase.today),
        "--email", "ops@example.com", "--wait",
    )
    assert requested.code == 0, requested.err
    export_id = requested.out.splitlines()[0]
    job = _fields(requested.out)
    assert (job["id"], job["state"], job["rows"]) == (export_id, "MAILED", "1")
    assert job["goal"] == f"Purchase ({purchase.goal_id})"
    assert job["link"].startswith("http://127.0.0.1:")
    assert f"/exports/{export_id}/download?" in job["link"]
    assert job["expires"].endswith("Z") and int(job["size"].split()[0]) > 0
    [mail] = read_outbox(cli_stack.outbox)
    assert mail["To"] == "ops@example.com"
    assert job["link"] in mail.get_body(("plain",)).get_content()

    status = await cli_stack.run("export", "status", export_id, "--format", "json")
    assert status.code == 0, status.err
    shown = json.loads(status.out)
    assert (shown["id"], shown["state"], shown["rowCount"], shown["downloadUrl"]) == (
        export_id, "EXPORT_STATE_MAILED", "1", job["link"]
    )


async def test_goals_simulate_a_definition_and_an_existing_goal(
    cli_stack: CliStack, purchase: Purchase, tmp_path: Path
):
    """The purchase's conversation replayed under a definition never created (YAML), and
    under the purchase goal itself, unchanged and with its groups overridden."""
    definition = tmp_path / "what-if.yaml"
    definition.write_text(
        "name: Purchase\n"  # an existing goal's name: nothing is created, so that is fine
        "agent_group_ids: [sales]\n"
        "attribution_model: first-touch\n"
        "attribution_period_days: 7\n"
        "conditions:\n"
        "  - {category: url, operator: contains, value: /checkout/confirm}\n")
    span = ("--from", str(purchase.today - dt.timedelta(days=1)), "--to", str(purchase.today))
    table, as_json = await asyncio.gather(
        cli_stack.run("goals", "simulate", *span, "--file", str(definition)),
        cli_stack.run("goals", "simulate", *span, "--goal", purchase.goal_id,
                      "--format", "json", "--no-progress"),
    )
    assert (table.code, as_json.code) == (0, 0), (table.err, as_json.err)
    lines = table.out.splitlines()
    assert lines[0].startswith(f"Simulated conversions, {span[1]} to {span[3]}")
    header = lines[1].split()
    assert header == ["FIRST-TOUCH", "LAST-TOUCH", "ALL-TOUCHES"]
    assert [line.split() for line in lines if line.strip().startswith(
        ("conversions", "transaction", "agent #1"))] == [
        ["conversions", "1", "1", "1"],
        ["transaction", "values", "49.90", "USD", "49.90", "USD", "49.90", "USD"],
        ["agent", "#1", "Agent", "agent-a", "(1)", "Agent", "agent-a", "(1)", "Agent",
         "agent-a", "(1)"],
    ]
    # The bar's last state on stderr: every event of the range read.
    assert "simulating" in table.err and "goal hits" in table.err
    result = json.loads(as_json.out)
    assert [m["attributionModel"] for m in result["models"]] == [
        "ATTRIBUTION_MODEL_FIRST_TOUCH", "ATTRIBUTION_MODEL_LAST_TOUCH",
        "ATTRIBUTION_MODEL_ALL_TOUCHES"]
    assert [m["conversions"] for m in result["models"]] == ["1", "1", "1"]
    assert result["models"][1]["agents"][0]["key"] == "agent-a"
    assert result["eventsScanned"] == "5"  # the send's five events, sent twice, stored once

    overrides = tmp_path / "support-only.json"
    overrides.write_text(json.dumps({"agent_group_ids": ["support"]}))
    changed = await cli_stack.run("goals", "simulate", *span, "--goal", purchase.goal_id,
                                  "--file", str(overrides), "--format", "json")
    assert changed.code == 0, changed.err
    assert [m["conversions"] for m in json.loads(changed.out)["models"]] == ["0", "0", "0"]
    shown = await cli_stack.run("goals", "show", purchase.goal_id)
    assert _fields(shown.out)["groups"] == "sales"  # overrides are never saved


async def test_goals_simulate_refusals(cli_stack: CliStack, purchase: Purchase):
    tomorrow = str(purchase.today + dt.timedelta(days=1))
    future, neither, agent_key = await asyncio.gather(
        cli_stack.run("goals", "simulate", "--from", str(purchase.today), "--to", tomorrow,
                      "--goal", purchase.goal_id),
        cli_stack.run("goals", "simulate", "--from", str(purchase.today), "--to",
                      str(purchase.today)),
        cli_stack.run("goals", "simulate", "--from", str(purchase.today), "--to",
                      str(purchase.today), "--goal", purchase.goal_id, key=Role.AGENT),
    )
    assert future.code == 3 and "end_date: must not be after today" in future.error_line
    assert neither.code == 2 and "--file" in neither.err
    assert agent_key.code == 4, agent_key.err
