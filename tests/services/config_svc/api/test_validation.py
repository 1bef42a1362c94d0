"""docs/rules.md §2, "every invalid request names the field and the rule that failed": one
table row per validation rule of CreateGoal and UpdateGoal, over real gRPC and the real
database. Each refusal is INVALID_ARGUMENT (ALREADY_EXISTS for a duplicate name, NOT_FOUND
for an unknown goal), its details start with the field path, and nothing is stored."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from goalflow_common.pb.goals.v1 import common_pb2, config_pb2
from tests.services.config_svc.helpers import date, goal_request, url_condition

DAY = dt.timedelta(days=1)
UNSPECIFIED = config_pb2.CONDITION_CATEGORY_UNSPECIFIED

# A row builds its request from today's date, so date rules follow the test clock.
Build = Callable[[dt.date], config_pb2.CreateGoalRequest]


def create(**overrides: Any) -> Build:
    return lambda today: goal_request(**overrides)


def create_dated(active: bool = False, **days: int) -> Build:
    """A request whose start/end dates are ``today + n days``."""

    def build(today: dt.date) -> config_pb2.CreateGoalRequest:
        fields = {name: date(today + n * DAY) for name, n in days.items()}
        return goal_request(**fields, active=active)

    return build


def without(field: str) -> Build:
    def build(today: dt.date) -> config_pb2.CreateGoalRequest:
        request = goal_request()
        request.ClearField(field)
        return request

    return build


def conditions(count: int) -> list[config_pb2.Condition]:
    return [url_condition(f"/page-{i}") for i in range(count)]


def condition(**fields: Any) -> list[config_pb2.Condition]:
    base = {
        "category": config_pb2.CONDITION_CATEGORY_URL,
        "operator": config_pb2.CONDITION_OPERATOR_IS,
        "value": "https://shop.example/thanks",
    }
    return [config_pb2.Condition(**{**base, **fields})]


def money(currency: str, amount: str) -> common_pb2.Money:
    return common_pb2.Money(currency_code=currency, amount=amount)


BAD_DATE = common_pb2.Date(year=2026, month=2, day=30)

CREATE_REFUSALS = [
    pytest.param(create(name=""), "name", id="name-missing"),
    pytest.param(create(name="   "), "name", id="name-blank"),
    pytest.param(create(name=" \t\n\u00a0\u3000 "), "name", id="name-whitespace-only"),
    pytest.param(create(name="n" * 101), "name", id="name-101-chars"),
    pytest.param(create(name=" " + "n" * 101 + " "), "name", id="name-101-after-trim"),
    pytest.param(create(name="Check\x00out"), "name", id="name-nul"),
    pytest.param(create(name="Check\nout"), "name", id="name-newline"),
    pytest.param(create(name="Check\tout"), "name", id="name-tab"),
    pytest.param(create(name="Check\u200bout"), "name", id="name-zero-width-space"),
    pytest.param(create(name="Check\u2028out"), "name", id="name-line-separator"),
    pytest.param(create(name="Check\u202eout"), "name", id="name-bidi-override"),
    pytest.param(create(description="d" * 1001), "description", id="description-1001"),
    pytest.param(create(start_date=BAD_DATE), "start_date", id="start-feb-30"),
    pytest.param(
        create(start_date=common_pb2.Date(year=2026, month=13, day=1)),
        "start_date",
        id="start-month-13",
    ),
    pytest.param(create(start_date=common_pb2.Date()), "start_date", id="start-all-zero"),
    pytest.param(
        lambda today: goal_request(start_date=date(today + DAY), end_date=BAD_DATE),
        "end_date",
        id="end-invalid-calendar-date",
    ),
    pytest.param(create_dated(start_date=2, end_date=1), "end_date", id="end-before-start"),
    # Its exclusive tracking end (the next midnight) would not be a representable instant.
    pytest.param(
        lambda today: goal_request(
            start_date=date(today), end_date=common_pb2.Date(year=9999, month=12, day=31)
        ),
        "end_date",
        id="end-last-day-of-9999",
    ),
    pytest.param(create_dated(end_date=3), "end_date", id="end-without-start"),
    pytest.param(create_dated(active=True), "start_date", id="active-without-start"),
    pytest.param(create_dated(start_date=-1), "start_date", id="start-yesterday-inactive"),
    pytest.param(
        create_dated(start_date=-1, active=True), "start_date", id="start-yesterday-active"
    ),
    pytest.param(create(agent_group_ids=[]), "agent_group_ids", id="groups-empty"),
    pytest.param(
        create(agent_group_ids=["sales", "support", "sales"]),
        "agent_group_ids[2]",
        id="groups-duplicate",
    ),
    pytest.param(
        create(agent_group_ids=["sales", " sales "]),
        "agent_group_ids[1]",
        id="groups-duplicate-after-trim",
    ),
    pytest.param(create(agent_group_ids=["sales", ""]), "agent_group_ids[1]", id="groups-empty-id"),
    pytest.param(create(agent_group_ids=["  "]), "agent_group_ids[0]", id="groups-blank-id"),
    pytest.param(create(agent_group_ids=["g" * 129]), "agent_group_ids[0]", id="groups-129-chars"),
    pytest.param(
        create(agent_group_ids=[f"g{i}" for i in range(101)]),
        "agent_group_ids",
        id="groups-101",
    ),
    pytest.param(
        create(attribution_model=config_pb2.ATTRIBUTION_MODEL_UNSPECIFIED),
        "attribution_model",
        id="model-unspecified",
    ),
    pytest.param(create(attribution_model=42), "attribution_model", id="model-unknown-number"),
    pytest.param(
        without("attribution_period_days"), "attribution_period_days", id="period-missing"
    ),
    pytest.param(
        create(attribution_period_days=-1), "attribution_period_days", id="period-negative"
    ),
    pytest.param(create(attribution_period_days=32), "attribution_period_days", id="period-32"),
    pytest.param(
        create(transaction_value=money("usd", "10")),
        "transaction_value.currency_code",
        id="value-lowercase-currency",
    ),
    pytest.param(
        create(transaction_value=money("XYZ", "10")),
        "transaction_value.currency_code",
        id="value-unknown-currency",
    ),
    pytest.param(
        create(transaction_value=money("", "10")),
        "transaction_value.currency_code",
        id="value-missing-currency",
    ),
    pytest.param(
        create(transaction_value=money("USD", "-0.01")),
        "transaction_value.amount",
        id="value-negative",
    ),
    pytest.param(
        create(transaction_value=money("USD", "ten")),
        "transaction_value.amount",
        id="value-not-decimal",
    ),
    pytest.param(
        create(transaction_value=money("USD", "1e3")),
        "transaction_value.amount",
        id="value-exponent",
    ),
    pytest.param(
        create(transaction_value=money("USD", "")),
        "transaction_value.amount",
        id="value-empty-amount",
    ),
    pytest.param(
        create(transaction_value=money("USD", "1.1234567")),
        "transaction_value.amount",
        id="value-7-decimals",
    ),
    pytest.param(create(goal_type=99), "goal_type", id="goal-type-unknown-number"),
    pytest.param(create(conditions=[]), "conditions", id="conditions-empty"),
    pytest.param(create(conditions=conditions(101)), "conditions", id="conditions-101"),
    pytest.param(
        create(conditions=[url_condition("/a"), *condition(category=UNSPECIFIED)]),
        "conditions[1].category",
        id="condition-category-unspecified",
    ),
    pytest.param(
        create(conditions=condition(category=7)),
        "conditions[0].category",
        id="condition-category-unknown",
    ),
    pytest.param(
        create(conditions=condition(operator=config_pb2.CONDITION_OPERATOR_UNSPECIFIED)),
        "conditions[0].operator",
        id="condition-operator-unspecified",
    ),
    pytest.param(
        create(conditions=condition(operator=9)),
        "conditions[0].operator",
        id="condition-operator-unknown",
    ),
    pytest.param(
        create(conditions=condition(value="")), "conditions[0].value", id="condition-value-empty"
    ),
    pytest.param(
        create(conditions=condition(value="  \t ")),
        "conditions[0].value",
        id="condition-value-blank",
    ),
    pytest.param(
        create(conditions=condition(value="/" + "a" * 2048)),
        "conditions[0].value",
        id="condition-value-2049",
    ),
]


async def refusal(call, code: grpc.StatusCode, field: str) -> str:
    """Await ``call``, expect ``code`` with details naming ``field`` and a rule; return them."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    details = err.value.details() or ""
    assert err.value.code() == code, details
    assert details.startswith(f"{field}: "), details
    assert len(details) > len(field) + 5, f"no rule stated: {details!r}"
    return details


async def goals_of(stub) -> list[config_pb2.Goal]:
    return [row.goal for row in (await stub.ListGoals(config_pb2.ListGoalsRequest())).goals]


@pytest.mark.parametrize(("build", "field"), CREATE_REFUSALS)
async def test_create_refusal(config_stub, make_tenant, clock, build: Build, field: str):
    tenant = await make_tenant()
    stub = config_stub(tenant.admin)
    request = build(clock.now().date())
    await refusal(stub.CreateGoal(request), grpc.StatusCode.INVALID_ARGUMENT, field)
    assert await goals_of(stub) == []
    assert not (await stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest())).goals


# Boundary values that must be accepted, each with what the stored goal must show.
CREATE_ACCEPTED = [
    pytest.param(create(name="n" * 100), lambda g: g.name == "n" * 100, id="name-100"),
    pytest.param(
        create(name="  Checkout  "), lambda g: g.name == "Checkout", id="name-trimmed"
    ),
    pytest.param(
        create(name="\u00a0" + "n" * 100 + " "), lambda g: g.name == "n" * 100,
        id="name-100-after-trim",
    ),
    pytest.param(
        create(name="Café ☕ 注文"), lambda g: g.name == "Café ☕ 注文", id="name-unicode"
    ),
    # Zero-width (non-)joiners belong to Persian spelling and emoji sequences.
    pytest.param(
        create(name="\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \U0001f469\u200d\U0001f4bb"),
        lambda g: "\u200c" in g.name and "\u200d" in g.name,
        id="name-with-joiners",
    ),
    pytest.param(create(description=""), lambda g: g.description == "", id="description-empty"),
    pytest.param(
        create(description="d" * 1000), lambda g: len(g.description) == 1000,
        id="description-1000",
    ),
    pytest.param(
        create(description="line 1\nline 2"), lambda g: g.description == "line 1\nline 2",
        id="description-multiline",
    ),
    pytest.param(
        create_dated(start_date=0, end_date=0, active=True),
        lambda g: g.active and g.start_date == g.end_date,
        id="start-today-end-same-day-active",
    ),
    pytest.param(
        create_dated(start_date=3), lambda g: not g.active and g.HasField("start_date"),
        id="inactive-with-future-start",
    ),
    pytest.param(
        create(agent_group_ids=[f"g{i}" for i in range(100)]),
        lambda g: len(g.agent_group_ids) == 100, id="groups-100",
    ),
    pytest.param(
        create(agent_group_ids=["g" * 128, " sales "]),
        lambda g: list(g.agent_group_ids) == ["g" * 128, "sales"], id="groups-128-and-trimmed",
    ),
    pytest.param(
        create(attribution_period_days=0), lambda g: g.attribution_period_days == 0,
        id="period-0",
    ),
    pytest.param(
        create(attribution_period_days=31), lambda g: g.attribution_period_days == 31,
        id="period-31",
    ),
    pytest.param(
        create(attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES),
        lambda g: g.attribution_model == config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
        id="model-all-touches",
    ),
    pytest.param(
        create(transaction_value=money("EUR", "0")),
        lambda g: g.transaction_value == money("EUR", "0"), id="value-zero",
    ),
    pytest.param(
        create(transaction_value=money("USD", "149.99")),
        lambda g: g.transaction_value == money("USD", "149.99"), id="value-149.99",
    ),
    pytest.param(
        create(), lambda g: not g.HasField("transaction_value"), id="value-absent",
    ),
    pytest.param(
        create(goal_type=config_pb2.GOAL_TYPE_GENERATE_LEADS),
        lambda g: g.goal_type == config_pb2.GOAL_TYPE_GENERATE_LEADS, id="goal-type-leads",
    ),
    pytest.param(
        create(conditions=conditions(100)), lambda g: len(g.conditions) == 100,
        id="conditions-100",
    ),
    pytest.param(
        create(conditions=condition(value="/" + "a" * 2047)),
        lambda g: len(g.conditions[0].value) == 2048, id="condition-value-2048",
    ),
]


@pytest.mark.parametrize(("build", "check"), CREATE_ACCEPTED)
async def test_create_accepts_boundary(config_stub, make_tenant, clock, build: Build, check):
    stub = config_stub((await make_tenant()).admin)
    created = (await stub.CreateGoal(build(clock.now().date()))).goal
    assert check(created)
    # What was returned is what was stored.
    assert (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=created.id))).goal == created
    assert [g.id for g in await goals_of(stub)] == [created.id]


# UpdateGoal rows: (base goal's create overrides as days from today, the new Goal values,
# update mask paths, field named in the refusal).
def goal(**fields: Any) -> Callable[[dt.date], config_pb2.Goal]:
    return lambda today: config_pb2.Goal(**fields)


def goal_dated(**days: int) -> Callable[[dt.date], config_pb2.Goal]:
    return lambda today: config_pb2.Goal(**{k: date(today + n * DAY) for k, n in days.items()})


INACTIVE = {"start_date": 1, "end_date": 10}  # inactive, starting tomorrow
ACTIVE = {"start_date": 1, "end_date": 10, "active": True}
NO_DATES: dict[str, Any] = {}

UPDATE_REFUSALS = [
    pytest.param(INACTIVE, goal(active=False), ["active"], "update_mask", id="mask-active"),
    pytest.param(INACTIVE, goal(name="x"), ["name", "bogus"], "update_mask", id="mask-unknown"),
    pytest.param(INACTIVE, goal(id="other"), ["id"], "update_mask", id="mask-id"),
    pytest.param(INACTIVE, goal(), ["status"], "update_mask", id="mask-status"),
    pytest.param(INACTIVE, goal(), ["revision"], "update_mask", id="mask-revision"),
    pytest.param(INACTIVE, goal(), [], "name", id="empty-mask-means-all-fields"),
    pytest.param(INACTIVE, goal(name=""), ["name"], "name", id="name-missing"),
    pytest.param(INACTIVE, goal(name=" \t "), ["name"], "name", id="name-whitespace-only"),
    pytest.param(INACTIVE, goal(name="n" * 101), ["name"], "name", id="name-101"),
    pytest.param(INACTIVE, goal(name="a\x07b"), ["name"], "name", id="name-control"),
    pytest.param(
        INACTIVE, goal(description="d" * 1001), ["description"], "description",
        id="description-1001",
    ),
    pytest.param(
        INACTIVE, goal(start_date=BAD_DATE), ["start_date"], "start_date", id="start-invalid"
    ),
    pytest.param(
        INACTIVE, goal(end_date=BAD_DATE), ["end_date"], "end_date", id="end-invalid"
    ),
    pytest.param(
        INACTIVE, goal_dated(start_date=-1), ["start_date"], "start_date",
        id="start-yesterday",
    ),
    pytest.param(
        INACTIVE, goal_dated(end_date=0), ["end_date"], "end_date", id="end-before-stored-start"
    ),
    pytest.param(
        INACTIVE, goal_dated(start_date=11), ["start_date"], "end_date",
        id="start-after-stored-end",
    ),
    pytest.param(
        NO_DATES, goal_dated(end_date=5), ["end_date"], "end_date", id="end-without-start"
    ),
    pytest.param(INACTIVE, goal(), ["start_date"], "end_date", id="clear-start-keeps-end"),
    pytest.param(
        ACTIVE, goal(), ["start_date", "end_date"], "start_date", id="clear-start-of-active"
    ),
    pytest.param(
        INACTIVE, goal(agent_group_ids=[]), ["agent_group_ids"], "agent_group_ids",
        id="groups-empty",
    ),
    pytest.param(
        INACTIVE, goal(agent_group_ids=["a", "a"]), ["agent_group_ids"], "agent_group_ids[1]",
        id="groups-duplicate",
    ),
    pytest.param(
        INACTIVE, goal(agent_group_ids=[" "]), ["agent_group_ids"], "agent_group_ids[0]",
        id="groups-blank",
    ),
    pytest.param(
        INACTIVE, goal(agent_group_ids=["g" * 129]), ["agent_group_ids"], "agent_group_ids[0]",
        id="groups-too-long",
    ),
    pytest.param(
        INACTIVE, goal(), ["attribution_model"], "attribution_model", id="model-unspecified"
    ),
    pytest.param(
        INACTIVE, goal(attribution_model=17), ["attribution_model"], "attribution_model",
        id="model-unknown",
    ),
    pytest.param(
        INACTIVE, goal(attribution_period_days=-1), ["attribution_period_days"],
        "attribution_period_days", id="period-negative",
    ),
    pytest.param(
        INACTIVE, goal(attribution_period_days=32), ["attribution_period_days"],
        "attribution_period_days", id="period-32",
    ),
    pytest.param(
        INACTIVE, goal(transaction_value=money("US", "1")), ["transaction_value"],
        "transaction_value.currency_code", id="value-bad-currency",
    ),
    pytest.param(
        INACTIVE, goal(transaction_value=money("USD", "-5")), ["transaction_value"],
        "transaction_value.amount", id="value-negative",
    ),
    pytest.param(
        INACTIVE, goal(transaction_value=money("USD", "1,50")), ["transaction_value"],
        "transaction_value.amount", id="value-not-decimal",
    ),
    pytest.param(INACTIVE, goal(goal_type=12), ["goal_type"], "goal_type", id="goal-type-unknown"),
    pytest.param(INACTIVE, goal(), ["conditions"], "conditions", id="conditions-empty"),
    pytest.param(
        INACTIVE, goal(conditions=conditions(101)), ["conditions"], "conditions",
        id="conditions-101",
    ),
    pytest.param(
        INACTIVE, goal(conditions=condition(category=UNSPECIFIED)), ["conditions"],
        "conditions[0].category", id="condition-category",
    ),
    pytest.param(
        INACTIVE, goal(conditions=condition(operator=0)), ["conditions"],
        "conditions[0].operator", id="condition-operator",
    ),
    pytest.param(
        INACTIVE, goal(conditions=[url_condition("/ok"), *condition(value=" ")]), ["conditions"],
        "conditions[1].value", id="condition-value-blank",
    ),
    pytest.param(
        INACTIVE, goal(conditions=condition(value="/" + "v" * 2048)), ["conditions"],
        "conditions[0].value", id="condition-value-2049",
    ),
]


@pytest.mark.parametrize(("base", "new", "paths", "field"), UPDATE_REFUSALS)
async def test_update_refusal(config_stub, make_tenant, clock, base, new, paths, field):
    stub = config_stub((await make_tenant()).admin)
    today = clock.now().date()
    created = (await stub.CreateGoal(create_dated(**base)(today))).goal
    request = config_pb2.UpdateGoalRequest(
        goal_id=created.id, goal=new(today), update_mask=FieldMask(paths=paths)
    )
    await refusal(stub.UpdateGoal(request), grpc.StatusCode.INVALID_ARGUMENT, field)
    # Unchanged, revision included.
    assert (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=created.id))).goal == created


async def test_update_masked_fields_only(config_stub, make_tenant):
    """Fields outside the mask are ignored, even when their new values would be invalid."""
    stub = config_stub((await make_tenant()).admin)
    created = (await stub.CreateGoal(goal_request("Checkout"))).goal
    updated = (
        await stub.UpdateGoal(
            config_pb2.UpdateGoalRequest(
                goal_id=created.id,
                goal=config_pb2.Goal(name="", attribution_period_days=99, description="new"),
                update_mask=FieldMask(paths=["description"]),
            )
        )
    ).goal
    assert updated.description == "new"
    assert updated.name == "Checkout" and updated.attribution_period_days == 7
    assert updated.revision == created.revision + 1


# "CHECKOUT" in full-width letters: the same name once NFKC-normalised.
FULLWIDTH_CHECKOUT = "CHECKOUT".translate({c: c + 0xFEE0 for c in range(ord("A"), ord("Z") + 1)})


@pytest.mark.parametrize(
    "second", ["Checkout", "checkout", "  CHECKOUT ", FULLWIDTH_CHECKOUT],
    ids=["same", "lower", "upper-padded", "fullwidth"],
)
async def test_duplicate_name_on_create(config_stub, make_tenant, clock, second: str):
    stub = config_stub((await make_tenant()).admin)
    first = (await stub.CreateGoal(goal_request("Checkout"))).goal
    today = clock.now().date()
    # Active, so a refused create must also give its claimed slot back (checked below).
    duplicate = goal_request(second, active=True, start_date=date(today))
    await refusal(stub.CreateGoal(duplicate), grpc.StatusCode.ALREADY_EXISTS, "name")
    assert [g.id for g in await goals_of(stub)] == [first.id]
    assert not (await stub.ListActiveGoals(config_pb2.ListActiveGoalsRequest())).goals


async def test_duplicate_name_on_rename(config_stub, make_tenant):
    stub = config_stub((await make_tenant()).admin)
    await stub.CreateGoal(goal_request("Checkout"))
    other = (await stub.CreateGoal(goal_request("Signup"))).goal
    rename = config_pb2.UpdateGoalRequest(
        goal_id=other.id, goal=config_pb2.Goal(name=" CHECKOUT"),
        update_mask=FieldMask(paths=["name"]),
    )
    await refusal(stub.UpdateGoal(rename), grpc.StatusCode.ALREADY_EXISTS, "name")
    assert (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=other.id))).goal == other


async def test_name_reuse_that_is_allowed(config_stub, make_tenant):
    """Renaming a goal to another spelling of its own name, reusing a deleted goal's name,
    and the same name in another account are not duplicates."""
    tenant, neighbour = await make_tenant(), await make_tenant()
    stub = config_stub(tenant.admin)
    own = (await stub.CreateGoal(goal_request("Checkout"))).goal
    recased = (
        await stub.UpdateGoal(
            config_pb2.UpdateGoalRequest(
                goal_id=own.id, goal=config_pb2.Goal(name="CheckOut"),
                update_mask=FieldMask(paths=["name"]),
            )
        )
    ).goal
    assert recased.name == "CheckOut"
    await stub.DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=own.id))
    reused = (await stub.CreateGoal(goal_request("checkout"))).goal
    assert reused.id != own.id
    elsewhere = (await config_stub(neighbour.admin).CreateGoal(goal_request("CHECKOUT"))).goal
    assert elsewhere.account_id == neighbour.account_id


def _call(rpc: str, goal_id: str):
    """(stub method name, request) for each RPC that takes a goal id."""
    valid_update = config_pb2.Goal(description="x")
    return {
        "GetGoal": config_pb2.GetGoalRequest(goal_id=goal_id),
        "UpdateGoal": config_pb2.UpdateGoalRequest(
            goal_id=goal_id, goal=valid_update, update_mask=FieldMask(paths=["description"])
        ),
        "ActivateGoal": config_pb2.ActivateGoalRequest(goal_id=goal_id),
        "DeactivateGoal": config_pb2.DeactivateGoalRequest(goal_id=goal_id),
        "DeleteGoal": config_pb2.DeleteGoalRequest(goal_id=goal_id),
    }[rpc]


GOAL_ID_RPCS = ["GetGoal", "UpdateGoal", "ActivateGoal", "DeactivateGoal", "DeleteGoal"]


@pytest.mark.parametrize("rpc", GOAL_ID_RPCS)
async def test_unknown_goal_is_not_found(config_stub, make_tenant, rpc: str):
    stub = config_stub((await make_tenant()).admin)
    kept = (await stub.CreateGoal(goal_request("Kept"))).goal
    missing = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, rpc)(_call(rpc, missing))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing in (err.value.details() or "")
    assert await goals_of(stub) == [kept]


@pytest.mark.parametrize("rpc", GOAL_ID_RPCS)
async def test_deleted_goal_is_not_found(config_stub, make_tenant, rpc: str):
    stub = config_stub((await make_tenant()).admin)
    gone = (await stub.CreateGoal(goal_request("Gone"))).goal
    await stub.DeleteGoal(config_pb2.DeleteGoalRequest(goal_id=gone.id))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, rpc)(_call(rpc, gone.id))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert await goals_of(stub) == []


@pytest.mark.parametrize("rpc", GOAL_ID_RPCS)
async def test_empty_goal_id_is_invalid(config_stub, make_tenant, rpc: str):
    stub = config_stub((await make_tenant()).admin)
    await refusal(getattr(stub, rpc)(_call(rpc, "")), grpc.StatusCode.INVALID_ARGUMENT, "goal_id")


@pytest.mark.parametrize(
    ("dates", "field"),
    [
        pytest.param({}, "start_date", id="no-start-date"),
        pytest.param({"start_date": BAD_DATE}, "start_date", id="invalid-start"),
        pytest.param({"end_date": BAD_DATE}, "end_date", id="invalid-end"),
    ],
)
async def test_activate_refusal(config_stub, make_tenant, dates, field: str):
    stub = config_stub((await make_tenant()).admin)
    created = (await stub.CreateGoal(goal_request())).goal
    request = config_pb2.ActivateGoalRequest(goal_id=created.id, **dates)
    await refusal(stub.ActivateGoal(request), grpc.StatusCode.INVALID_ARGUMENT, field)
    assert (await stub.GetGoal(config_pb2.GetGoalRequest(goal_id=created.id))).goal == created
