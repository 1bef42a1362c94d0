"""``goalflow`` failing as a subprocess: one line on stderr, the documented exit code, never a
traceback (the runner checks that on every run) — bad flags, keys, roles, unknown ids,
services down, broken input; and ``--help`` on every command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner
from google.protobuf import json_format

from goalflow_client.cli import main
from goalflow_common.auth import Role
from goalflow_dev.embedded_mongo import free_port
from tests.libs.client.cli.conftest import CliStack, finish
from tests.services.tracker_svc.builders import opened

UNKNOWN_KEY = "gf_0123456789abcdef_" + "A" * 43  # well-formed, never issued


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_the_installed_script_and_every_command_have_help():
    script = Path(sys.executable).with_name("goalflow")
    top = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=30)
    assert top.returncode == 0, top.stderr
    for group in ("goals", "events", "conversions", "report", "export"):
        assert f"  {group} " in top.stdout
    assert "GOALFLOW_KEY" in top.stdout and "Exit codes:" in top.stdout

    # Every command and group, walked from the command tree so none is forgotten.
    runner = CliRunner()
    commands = list(_commands(main))
    assert len(commands) >= 16
    for path, command in commands:
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert f"Usage: main {' '.join(path)}" in result.output
        assert command.get_short_help_str(), path  # the one-line description


async def test_usage_errors_exit_2_and_name_the_flag(cli_stack: CliStack):
    cases = {
        ("goals", "list", "--bogus"): "No such option '--bogus'",
        ("report", "--by", "nonsense"): "'--by'",
        ("report", "--utc-offset", "+25:99"): "'--utc-offset'",
        ("goals", "create", "--start-date", "June 1st"): "'--start-date'",
        ("goals", "create", "--name", "X", "--value", "1.00"): "--value and --currency",
        ("conversions", "tail"): "exactly one of --conversation or --agent",
    }
    results = await asyncio.gather(*(cli_stack.run(*args) for args in cases))
    for (args, expected), result in zip(cases.items(), results, strict=True):
        assert result.code == 2, (args, result)
        assert expected in result.err, (args, result.err)
        assert result.out == ""
        assert "Usage: goalflow " in result.err


async def test_key_problems_and_wrong_roles_exit_4(cli_stack: CliStack, tmp_path: Path):
    events = tmp_path / "one.jsonl"
    events.write_text(json_format.MessageToJson(opened("c-roles", _now()), indent=None) + "\n")
    create = ("goals", "create", "--name", "Not allowed", "--group", "sales",
              "--model", "last-touch", "--period-days", "1", "--url-contains", "/x")
    missing, malformed, unknown, agent_creates, ingest_lists, agent_sends = await asyncio.gather(
        cli_stack.run("goals", "list", key=None),
        cli_stack.run("--key", "not a key", "goals", "list", key=None),
        cli_stack.run("goals", "list", key=UNKNOWN_KEY),
        cli_stack.run(*create, key=Role.AGENT),
        cli_stack.run("goals", "list", key=Role.INGEST),
        cli_stack.run("events", "send", str(events), "--no-progress", key=Role.AGENT),
    )
    assert (missing.code, missing.error_line) == (
        4, "error: no API key: pass --key or set GOALFLOW_KEY"
    )
    assert malformed.code == 4
    assert malformed.error_line.startswith("error: malformed API key (--key / GOALFLOW_KEY)")
    config = cli_stack.env["GOALFLOW_CONFIG_ADDRESS"]
    assert unknown.code == 4
    assert unknown.error_line.startswith(f"error: ListGoals at {config}: UNAUTHENTICATED: ")
    assert agent_creates.code == 4
    assert agent_creates.error_line.startswith(
        f"error: CreateGoal at {config}: PERMISSION_DENIED: "
    )
    assert ingest_lists.code == 4 and "PERMISSION_DENIED" in ingest_lists.error_line
    tracker = cli_stack.env["GOALFLOW_TRACKER_ADDRESS"]
    assert agent_sends.code == 4
    assert agent_sends.error_line.startswith(f"error: IngestEvents at {tracker}: "
                                             "PERMISSION_DENIED: ")
    assert missing.out == malformed.out == unknown.out == agent_creates.out == ""

    # --key wins over GOALFLOW_KEY.
    admin = cli_stack.keys[Role.ADMIN]
    listed = await cli_stack.run("--key", admin, "goals", "list", key=Role.INGEST)
    assert listed.code == 0, listed.err


async def test_refused_requests_and_broken_goal_files_exit_3(cli_stack: CliStack,
                                                            tmp_path: Path):
    unknown_field = tmp_path / "goal.yaml"
    unknown_field.write_text("name: Checkout\ncolour: blue\n")
    not_yaml = tmp_path / "goal.json"
    not_yaml.write_text("{\"name\": ")
    sets_active = tmp_path / "active.json"
    sets_active.write_text(json.dumps({"active": True}))
    unknown_goal, bad_period, unknown_export, bad_field, bad_json, update_active = (
        await asyncio.gather(
            cli_stack.run("goals", "show", "no-such-goal"),
            cli_stack.run("goals", "create", "--name", "Too long a period", "--group", "sales",
                          "--model", "last-touch", "--period-days", "99",
                          "--url-contains", "/x"),
            cli_stack.run("export", "status", "no-such-export"),
            cli_stack.run("goals", "create", "--file", str(unknown_field)),
            cli_stack.run("goals", "create", "--file", str(not_yaml)),
            cli_stack.run("goals", "update", "no-such-goal", "--file", str(sets_active)),
        )
    )
    assert unknown_goal.code == 3 and ": NOT_FOUND: " in unknown_goal.error_line
    assert bad_period.code == 3
    assert ": INVALID_ARGUMENT: attribution_period_days" in bad_period.error_line
    export = cli_stack.env["GOALFLOW_EXPORT_ADDRESS"]
    assert unknown_export.code == 3
    assert unknown_export.error_line.startswith(f"error: GetExport at {export}: NOT_FOUND: ")
    assert bad_field.code == 3
    assert bad_field.error_line.startswith(f"error: {unknown_field}: unknown field 'colour'")
    assert bad_json.code == 3 and bad_json.error_line.startswith(f"error: {not_yaml}: ")
    assert update_active.code == 3 and "use goals activate" in update_active.error_line


async def test_a_service_that_is_down_exits_5(cli_stack: CliStack):
    nowhere = f"127.0.0.1:{free_port()}"
    config_down, tracker_down, export_down = await asyncio.gather(
        cli_stack.run("--config-address", nowhere, "goals", "list"),
        cli_stack.run("conversions", "list", GOALFLOW_TRACKER_ADDRESS=nowhere),
        cli_stack.run("--export-address", nowhere, "export", "status", "any"),
    )
    assert config_down.code == 5
    assert config_down.error_line.startswith(f"error: ListGoals at {nowhere}: UNAVAILABLE: ")
    assert tracker_down.code == 5
    assert tracker_down.error_line.startswith(
        f"error: ListConversions at {nowhere}: UNAVAILABLE: "
    )
    assert export_down.code == 5 and "UNAVAILABLE" in export_down.error_line


async def test_events_send_with_a_broken_line_sends_the_rest_and_lists_rejections(
    cli_stack: CliStack, tmp_path: Path
):
    good = json_format.MessageToJson(opened("c-lines", _now(), event_id="e-good"), indent=None)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(f"{good}\n{{\"eventId\": \"e-2\", \"occurredAt\": \n")
    result = await cli_stack.run("events", "send", str(broken), "--no-progress",
                                 key=Role.INGEST)
    assert result.code == 3
    # The broken line is named and not sent; the good one went out.
    assert result.out.splitlines() == ["accepted 1, duplicates 0, rejected 0, conversions 0"]
    not_sent, error = result.err.strip().splitlines()
    assert not_sent.startswith("line 2 not sent: ")
    assert error == f"error: 1 lines of {broken} are not events (not sent)"

    # The bad one (no end user) is listed by its line number, field and reason.
    bad = opened("c-lines-2", _now(), user="", event_id="e-bad")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(f"{good}\n\n{json_format.MessageToJson(bad, indent=None)}\n")
    result = await cli_stack.run("events", "send", str(mixed), "--no-progress",
                                 key=Role.INGEST)
    assert result.code == 1
    assert result.out.splitlines() == ["accepted 0, duplicates 1, rejected 1, conversions 0"]
    rejected, error = result.err.strip().splitlines()
    assert rejected.startswith("rejected line 3 (event e-bad): conversation_opened.end_user_id: ")
    assert error == "error: 1 of 2 events rejected"


async def test_ctrl_c_stops_a_tail_with_exit_130(cli_stack: CliStack):
    tail = await cli_stack.start("conversions", "tail", "--conversation", "c-quiet",
                                 key=Role.AGENT)
    line = await asyncio.wait_for(tail.stderr.readline(), 20)
    assert line.decode().startswith("following conversions of conversation c-quiet")
    tail.send_signal(signal.SIGINT)
    result = await finish(tail, 20)
    assert (result.code, result.error_line, result.out) == (130, "error: interrupted", "")
