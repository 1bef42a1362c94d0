"""SimulateGoal (docs/rules.md §7): which goal is simulated, over which range.

Config owns goal definitions and the account's time zone; the tracker owns the events and
replays them (its ReplayGoal). This module decides what config sends it:

- **the goal**: a definition, validated as CreateGoal validates it (the API layer reads it
  with the same ``convert.goal_fields``), but nothing is created, so the name need not be
  unique, and the active flag, the dates and the 15-active-goal limit do not apply; or an
  existing goal of the account with ``overrides`` merged as UpdateGoal merges its update
  (``Goal.patched``), not saved.
- **the range**: days in the account's time zone, both included, not after today and at
  most ``max_days`` of them (the setting GOALFLOW_SIMULATION_MAX_DAYS); sent as the UTC
  instants [start of the first day, start of the day after the last).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from config_svc.domain.goals import Goals
from config_svc.domain.model import Goal, GoalFields, GoalPatch
from goalflow_common.clock import start_of_day
from goalflow_common.errors import InvalidArgument

# The id a simulated definition carries (it was never created, so it has none).
UNSAVED_ID = "simulated"


@dataclass(frozen=True, slots=True)
class SimulationRange:
    first_day: dt.date
    last_day: dt.date
    start: dt.datetime  # UTC, inclusive
    end: dt.datetime  # UTC, exclusive


def simulation_range(
    first_day: dt.date, last_day: dt.date, today: dt.date, time_zone: str, max_days: int
) -> SimulationRange:
    """The validated range; InvalidArgument naming the field that breaks a rule."""
    if last_day < first_day:
        raise InvalidArgument("end_date", f"must not be before start_date ({first_day})")
    if last_day > today:
        raise InvalidArgument("end_date", f"must not be after today ({today})")
    days = (last_day - first_day).days + 1
    if days > max_days:
        raise InvalidArgument(
            "end_date", f"the range spans at most {max_days} days "
            f"(GOALFLOW_SIMULATION_MAX_DAYS); this one spans {days}")
    return SimulationRange(
        first_day, last_day, start_of_day(first_day, time_zone),
        start_of_day(last_day + dt.timedelta(days=1), time_zone))


def definition_goal(account_id: str, fields: GoalFields, now: dt.datetime) -> Goal:
    """A goal that was never created, from a validated definition: inactive and undated
    (the simulated range stands in for its dates)."""
    return Goal(
        id=UNSAVED_ID, account_id=account_id, name=fields.name,
        description=fields.description, start_date=None, end_date=None,
        agent_group_ids=fields.agent_group_ids, attribution_model=fields.attribution_model,
        attribution_period_days=fields.attribution_period_days,
        transaction_value=fields.transaction_value, goal_type=fields.goal_type,
        conditions=fields.conditions, active=False, create_time=now, update_time=now,
        revision=0,
    )


async def existing_goal(
    goals: Goals, account_id: str, goal_id: str, overrides: GoalPatch
) -> Goal:
    """The account's goal ``goal_id`` with ``overrides`` applied, as UpdateGoal would apply
    them, without saving (NotFound for a goal of another account, as for a goal of
    nobody)."""
    stored = await goals.get(account_id, goal_id)
    return stored.patched(overrides)
