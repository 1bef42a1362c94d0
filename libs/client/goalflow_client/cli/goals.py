"""``goalflow goals ...``: the config service's goals."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from google.protobuf import field_mask_pb2, json_format

from goalflow_client.cli.errors import EXIT_REFUSED, CliError
from goalflow_client.cli.output import (
    echo_fields,
    echo_json,
    echo_records,
    format_option,
    note,
)
from goalflow_client.cli.session import Session, with_session
from goalflow_client.cli.values import (
    DateType,
    EnumChoice,
    date_json,
    enum_label,
    show_date,
    show_money,
    show_time,
)
from goalflow_common.pb.goals.v1 import config_pb2
from goalflow_common.protoconv import date_message

LIST_PAGE = 200  # the largest page ListGoals gives


@click.group()
def goals() -> None:
    """Create, list, change and delete goals (config service)."""


# -- reading ------------------------------------------------------------------------------


def _status(goal: config_pb2.Goal) -> str:
    status = enum_label(config_pb2.GoalStatus, goal.status)
    if goal.status == config_pb2.GOAL_STATUS_ENDING:
        return f"{status} ({goal.days_remaining}d left)"
    return status


def _condition(condition: config_pb2.Condition) -> str:
    category = enum_label(config_pb2.ConditionCategory, condition.category)
    operator = enum_label(config_pb2.ConditionOperator, condition.operator)
    return f"{category} {operator} {condition.value}"


def _show_goal(goal: config_pb2.Goal, fmt: str) -> None:
    if fmt == "json":
        echo_json(goal)
        return
    echo_fields([
        ("id", goal.id),
        ("name", goal.name),
        ("description", goal.description),
        ("status", _status(goal)),
        ("active", "yes" if goal.active else "no"),
        ("start date", show_date(goal.start_date)),
        ("end date", show_date(goal.end_date)),
        ("time zone", goal.time_zone),
        ("groups", ", ".join(goal.agent_group_ids)),
        ("model", enum_label(config_pb2.AttributionModel, goal.attribution_model)),
        ("period", f"{goal.attribution_period_days} days"),
        ("value", show_money(goal.transaction_value)),
        ("type", enum_label(config_pb2.GoalType, goal.goal_type)),
        ("conditions", "\n".join(_condition(c) for c in goal.conditions)),
        ("tracking from", show_time(goal.tracking_start_time)),
        ("tracking until", show_time(goal.tracking_end_time)),
        ("created", show_time(goal.create_time)),
        ("updated", show_time(goal.update_time)),
        ("revision", goal.revision),
    ])


@goals.command("list")
@format_option("table", "json")
@with_session
async def list_goals(session: Session, fmt: str) -> None:
    """List the account's goals with status and 7-day conversions."""
    config = session.config()
    listing = config_pb2.ListGoalsResponse(seven_day_conversions_available=True)
    token = ""
    while True:
        page = await config.ListGoals(
            config_pb2.ListGoalsRequest(page_size=LIST_PAGE, page_token=token)
        )
        listing.goals.extend(page.goals)
        listing.seven_day_conversions_available &= page.seven_day_conversions_available
        token = page.next_page_token
        if not token:
            break
    if fmt == "table" and not listing.seven_day_conversions_available:
        note("7-day conversions unavailable: the tracker did not answer the config service")
    columns = ("id", "name", "status", "model", "period", "groups", "start_date", "end_date",
               "conversions_7d")
    rows = [
        (
            g.goal.id, g.goal.name, _status(g.goal),
            enum_label(config_pb2.AttributionModel, g.goal.attribution_model),
            f"{g.goal.attribution_period_days}d", ", ".join(g.goal.agent_group_ids),
            show_date(g.goal.start_date), show_date(g.goal.end_date),
            g.seven_day_conversions if g.HasField("seven_day_conversions") else "-",
        )
        for g in listing.goals
    ]
    echo_records(fmt, columns, rows, lambda: listing)


@goals.command("show")
@click.argument("goal_id")
@format_option("table", "json")
@with_session
async def show_goal(session: Session, goal_id: str, fmt: str) -> None:
    """Show one goal in full."""
    reply = await session.config().GetGoal(config_pb2.GetGoalRequest(goal_id=goal_id))
    _show_goal(reply.goal, fmt)


# -- writing ------------------------------------------------------------------------------

_REQUEST = config_pb2.CreateGoalRequest.DESCRIPTOR


class ConditionType(click.ParamType):
    """``CATEGORY:OPERATOR:VALUE``, e.g. ``url:contains:/checkout``, as a Condition in JSON."""

    name = "CATEGORY:OPERATOR:VALUE"
    _categories = EnumChoice(config_pb2.ConditionCategory)
    _operators = EnumChoice(config_pb2.ConditionOperator)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, dict):
            return value
        parts = value.split(":", 2)
        if len(parts) != 3:
            self.fail(f"{value!r} is not CATEGORY:OPERATOR:VALUE", param, ctx)
        category, operator, text = parts
        return {
            "category": self._categories.convert(category.lower(), param, ctx),
            "operator": self._operators.convert(operator.lower(), param, ctx),
            "value": text,
        }


def goal_field_options(*, create: bool) -> Callable:
    """The writable goal fields as flags; ``create`` adds ``--active/--inactive`` (updates
    use ``goals activate|deactivate``)."""
    options = [
        click.option("--file", "file", type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path),
                     help="CreateGoalRequest in proto3 JSON form, as .json or .yaml; flags "
                          "given as well override its fields."),
        click.option("--name", help="Goal name, unique in the account."),
        click.option("--description", help="Free text, at most 1000 characters."),
        click.option("--start-date", type=DateType(), help="First day of tracking."),
        click.option("--end-date", type=DateType(), help="Last day of tracking."),
        click.option("--group", "groups", multiple=True,
                     help="Agent group whose agents earn credit (repeatable)."),
        click.option("--model", type=EnumChoice(config_pb2.AttributionModel),
                     help="Who gets credit."),
        click.option("--period-days", type=int, help="Attribution period in days (0-31)."),
        click.option("--value", help="Value of one conversion, a decimal such as 49.90."),
        click.option("--currency", help="ISO-4217 code of --value, such as USD."),
        click.option("--type", "goal_type", type=EnumChoice(config_pb2.GoalType),
                     help="Business type of the goal."),
        click.option("--url-contains", multiple=True,
                     help="Condition: the URL contains this text (repeatable)."),
        click.option("--condition", "conditions", multiple=True, type=ConditionType(),
                     help="Condition as CATEGORY:OPERATOR:VALUE, e.g. url:is:https://x.io/"
                          "done (repeatable)."),
    ]
    if create:
        options.insert(2, click.option("--active/--inactive", default=None,
                                       help="Activate on creation (default: inactive)."))

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _enum_value(value: str, enum: Any, where: str) -> str:
    """An enum value by its full name or the flag's label (``last-touch``); anything else
    is refused with the valid names."""
    names = [v.name for v in enum.values if v.number != 0]
    prefix = enum.values[0].name.removesuffix("UNSPECIFIED")
    for name in (value, prefix + value.upper().replace("-", "_")):
        if name in names:
            return name
    raise CliError(f"{where}: {value!r} is not one of {', '.join(names)}", EXIT_REFUSED)


def _date_value(value: Any, where: str) -> Any:
    """A goals.v1.Date given as a YAML date or an ISO string, in its proto3 JSON form (an
    object); an object is left for protobuf to check."""
    if isinstance(value, str):
        try:
            value = dt.date.fromisoformat(value)
        except ValueError:
            raise CliError(f"{where}: {value!r} is not a date (YYYY-MM-DD)",
                           EXIT_REFUSED) from None
    return date_json(value) if isinstance(value, dt.date) else value


def _field_value(value: Any, field: Any, where: str) -> Any:
    """A file's value for ``field`` made proto3 JSON: dates from ISO strings, enums named
    and checked here so that a wrong one lists the valid ones, and the same inside nested
    messages (conditions)."""
    if field.is_repeated and isinstance(value, list):
        return [_single_value(v, field, f"{where}[{n}]") for n, v in enumerate(value)]
    return _single_value(value, field, where)


def _single_value(value: Any, field: Any, where: str) -> Any:
    if field.enum_type is not None and isinstance(value, str):
        return _enum_value(value, field.enum_type, where)
    message = field.message_type
    if message is None:
        return value
    if message.full_name == "goals.v1.Date":
        return _date_value(value, where)
    if not isinstance(value, dict):
        return value
    fields = {}
    for key, item in value.items():
        inner = message.fields_by_name.get(key) or message.fields_by_camelcase_name.get(key)
        fields[key] = item if inner is None else _field_value(item, inner, f"{where}.{key}")
    return fields


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    import yaml  # only when a YAML file is given: a slow import

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:  # its text spans lines, with a drawn pointer
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ValueError(f"{where}{exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(" ".join(str(exc).split())) from None


def _read_file(path: Path) -> dict[str, Any]:
    """The file's fields, keyed by proto field name (the file may use either JSON name)."""
    try:
        data = _load(path)
    except (OSError, ValueError) as exc:  # JSON or YAML syntax, not UTF-8, unreadable
        raise CliError(f"{path}: {exc}", EXIT_REFUSED) from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected an object of CreateGoalRequest fields",
                       EXIT_REFUSED)
    fields = {}
    for key, value in data.items():
        field = _REQUEST.fields_by_name.get(key) or _REQUEST.fields_by_camelcase_name.get(key)
        if field is None:
            known = ", ".join(f.name for f in _REQUEST.fields)
            raise CliError(f"{path}: unknown field {key!r}; CreateGoalRequest has: {known}",
                           EXIT_REFUSED)
        fields[field.name] = _field_value(value, field, f"{path}: {key}")
    return fields


def _given_fields(file: Path | None, **flags: Any) -> dict[str, Any]:
    """The fields to write, in proto3 JSON form keyed by field name: the file's, then the
    flags that were given on top."""
    fields = _read_file(file) if file else {}
    value, currency = flags.pop("value"), flags.pop("currency")
    if (value is None) != (currency is None):
        raise click.UsageError("--value and --currency go together")
    if value is not None:
        fields["transaction_value"] = {"amount": value, "currency_code": currency}
    conditions = [
        {"category": "CONDITION_CATEGORY_URL", "operator": "CONDITION_OPERATOR_CONTAINS",
         "value": text}
        for text in flags.pop("url_contains")
    ] + list(flags.pop("conditions"))
    if conditions:
        fields["conditions"] = conditions
    groups = flags.pop("groups")
    if groups:
        fields["agent_group_ids"] = list(groups)
    renamed = {"model": "attribution_model", "period_days": "attribution_period_days"}
    for flag, given in flags.items():
        if given is None:
            continue
        if isinstance(given, dt.date):
            given = date_json(given)
        fields[renamed.get(flag, flag)] = given
    return fields


def _parse(fields: dict[str, Any], message: Any, source: str) -> Any:
    try:
        return json_format.ParseDict(fields, message)
    except json_format.ParseError as exc:
        raise CliError(f"{source}: {exc}", EXIT_REFUSED) from None


@goals.command("create")
@goal_field_options(create=True)
@format_option("table", "json")
@with_session
async def create_goal(session: Session, fmt: str, file: Path | None, **flags: Any) -> None:
    """Create a goal from flags or a JSON/YAML file; prints its id."""
    fields = _given_fields(file, **flags)
    request = _parse(fields, config_pb2.CreateGoalRequest(), str(file or "goal"))
    goal = (await session.config().CreateGoal(request)).goal
    if fmt == "json":
        echo_json(goal)
        return
    note(f"created goal {goal.name!r} ({_status(goal)})")
    click.echo(goal.id)


@goals.command("update")
@click.argument("goal_id")
@goal_field_options(create=False)
@format_option("table", "json")
@with_session
async def update_goal(
    session: Session, goal_id: str, fmt: str, file: Path | None, **flags: Any
) -> None:
    """Change a goal: only the fields given (flags or file) change."""
    fields = _given_fields(file, **flags)
    if "active" in fields:
        raise CliError(f"{file}: 'active' cannot be updated; use goals activate or "
                       "goals deactivate", EXIT_REFUSED)
    if not fields:
        raise click.UsageError("nothing to change: give --file or at least one field flag")
    goal = _parse(fields, config_pb2.Goal(), str(file or "goal"))
    reply = await session.config().UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=goal_id, goal=goal, update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
    ))
    if fmt == "table":
        note(f"updated goal {goal_id} (revision {reply.goal.revision})")
    _show_goal(reply.goal, fmt)


@goals.command("activate")
@click.argument("goal_id")
@click.option("--start-date", type=DateType(), help="Start date to set while activating.")
@click.option("--end-date", type=DateType(), help="End date to set while activating.")
@with_session
async def activate_goal(
    session: Session, goal_id: str, start_date: dt.date | None, end_date: dt.date | None
) -> None:
    """Turn a goal on (at most 15 active goals per account)."""
    request = config_pb2.ActivateGoalRequest(goal_id=goal_id)
    if start_date:
        request.start_date.CopyFrom(date_message(start_date))
    if end_date:
        request.end_date.CopyFrom(date_message(end_date))
    goal = (await session.config().ActivateGoal(request)).goal
    click.echo(f"goal {goal.id} activated: {_status(goal)}")


@goals.command("deactivate")
@click.argument("goal_id")
@with_session
async def deactivate_goal(session: Session, goal_id: str) -> None:
    """Turn a goal off, freeing its active slot."""
    request = config_pb2.DeactivateGoalRequest(goal_id=goal_id)
    goal = (await session.config().DeactivateGoal(request)).goal
    click.echo(f"goal {goal.id} deactivated: {_status(goal)}")


@goals.command("delete")
@click.argument("goal_id")
@with_session
async def delete_goal(session: Session, goal_id: str) -> None:
    """Delete a goal for good (its recorded conversions stay)."""
    await session.config().DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=goal_id))
    click.echo(f"goal {goal_id} deleted")
