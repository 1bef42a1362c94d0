"""The config service's typed model: a goal, its parts, its change feed and the active slots.

Frozen dataclasses, built by the API layer from requests and by the store from documents;
nothing here knows protobuf or MongoDB. Dates are calendar dates in the account's time zone
(stored as ISO strings); instants are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import unicodedata
from dataclasses import dataclass
from typing import TypeVar


class AttributionModel(enum.StrEnum):
    FIRST_TOUCH = "FIRST_TOUCH"
    LAST_TOUCH = "LAST_TOUCH"
    ALL_TOUCHES = "ALL_TOUCHES"


class GoalType(enum.StrEnum):
    SELL_PRODUCT_OR_SERVICE = "SELL_PRODUCT_OR_SERVICE"
    GENERATE_LEADS = "GENERATE_LEADS"
    SERVICE_ACTIVITY_COMPLETE = "SERVICE_ACTIVITY_COMPLETE"
    OTHER = "OTHER"


class Operator(enum.StrEnum):
    CONTAINS = "CONTAINS"
    IS = "IS"


class GoalStatus(enum.Enum):
    """Derived at read time (docs/rules.md §2), never stored."""

    INACTIVE = "INACTIVE"
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    ENDING = "ENDING"
    ENDED = "ENDED"


class ChangeKind(enum.Enum):
    UPSERTED = "UPSERTED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class Condition:
    """A URL condition (URL is the only category)."""

    operator: Operator
    value: str


@dataclass(frozen=True, slots=True)
class Money:
    """A transaction value: ISO 4217 code and a normalised decimal amount string."""

    currency_code: str
    amount: str


@dataclass(frozen=True, slots=True)
class Schedule:
    """What the date rules and the status look at."""

    active: bool
    start_date: dt.date | None
    end_date: dt.date | None


@dataclass(frozen=True, slots=True)
class GoalFields:
    """The writable fields of a goal, validated (what CreateGoal sends)."""

    name: str
    description: str
    start_date: dt.date | None
    end_date: dt.date | None
    agent_group_ids: tuple[str, ...]
    attribution_model: AttributionModel
    attribution_period_days: int
    transaction_value: Money | None
    goal_type: GoalType | None
    conditions: tuple[Condition, ...]


class Unset(enum.Enum):
    """A field a ``GoalPatch`` leaves as it is (None is a value: it clears a date)."""

    UNSET = "UNSET"


UNSET = Unset.UNSET
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GoalPatch:
    """What an update or (de)activation changes: validated values for some writable fields
    (or ``active``); ``UNSET`` ones stay as they are."""

    name: str | Unset = UNSET
    description: str | Unset = UNSET
    start_date: dt.date | Unset | None = UNSET
    end_date: dt.date | Unset | None = UNSET
    agent_group_ids: tuple[str, ...] | Unset = UNSET
    attribution_model: AttributionModel | Unset = UNSET
    attribution_period_days: int | Unset = UNSET
    transaction_value: Money | Unset | None = UNSET
    goal_type: GoalType | Unset | None = UNSET
    conditions: tuple[Condition, ...] | Unset = UNSET
    active: bool | Unset = UNSET


def _patched(value: T | Unset, current: T) -> T:
    return current if isinstance(value, Unset) else value


@dataclass(frozen=True, slots=True)
class Goal:
    id: str
    account_id: str
    name: str
    description: str
    start_date: dt.date | None
    end_date: dt.date | None
    agent_group_ids: tuple[str, ...]
    attribution_model: AttributionModel
    attribution_period_days: int
    transaction_value: Money | None
    goal_type: GoalType | None
    conditions: tuple[Condition, ...]
    active: bool
    create_time: dt.datetime
    update_time: dt.datetime
    revision: int

    @property
    def name_key(self) -> str:
        return name_key(self.name)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.active, self.start_date, self.end_date)

    def patched(self, patch: GoalPatch) -> Goal:
        """This goal with the fields ``patch`` sets replaced."""
        return dataclasses.replace(
            self,
            name=_patched(patch.name, self.name),
            description=_patched(patch.description, self.description),
            start_date=_patched(patch.start_date, self.start_date),
            end_date=_patched(patch.end_date, self.end_date),
            agent_group_ids=_patched(patch.agent_group_ids, self.agent_group_ids),
            attribution_model=_patched(patch.attribution_model, self.attribution_model),
            attribution_period_days=_patched(
                patch.attribution_period_days, self.attribution_period_days
            ),
            transaction_value=_patched(patch.transaction_value, self.transaction_value),
            goal_type=_patched(patch.goal_type, self.goal_type),
            conditions=_patched(patch.conditions, self.conditions),
            active=_patched(patch.active, self.active),
        )

    def stamped(self, now: dt.datetime) -> Goal:
        """The next revision of this goal, written at ``now``."""
        return dataclasses.replace(self, revision=self.revision + 1, update_time=now)


@dataclass(frozen=True, slots=True)
class GoalChange:
    """One entry of the watch feed. A deletion carries only the id, account and the
    revision after the last stored one."""

    kind: ChangeKind
    goal_id: str
    account_id: str
    revision: int
    goal: Goal | None = None


@dataclass(frozen=True, slots=True)
class Slot:
    """One of an account's active slots (``number`` 0..14), held by ``goal_id`` under the
    claim's ``token``."""

    account_id: str
    number: int
    goal_id: str
    token: str
    claimed_at: dt.datetime


def name_key(name: str) -> str:
    """Names are unique per account without regard to case."""
    return unicodedata.normalize("NFKC", name).casefold()
