"""The console's goals page in Chromium, against the real services: a goal created through the
form is listed as Active; a refused form shows the server's message beside the field it
names and creates nothing; activate, deactivate and delete change the goal as config says;
the 15-active limit is shown before the server refuses (and its refusal shown if it does);
the 7-day column shows the tracker's count, or "unavailable" when the tracker is down; the
list reads at 1280 and 390 px; a supervisor sees it read-only."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio
from playwright.async_api import Locator, Page, expect

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, config_pb2_grpc
from goalflow_common.tokens import TokenAuthority
from tests.browser.console.conftest import PHONE, ConsolePages, ConsoleWorld, screenshot
from tests.browser.console.test_errors import SESSION_ENDED, admin_token, sign_in_form_says
from tests.services.config_svc.helpers import date, goal_request, url_condition
from tests.services.tracker_svc.builders import (
    agent,
    assigned,
    create_goal,
    ingest,
    opened,
    visit,
)

DAY = dt.timedelta(days=1)
REFUSED = r"status of 4\d\d"  # Chromium logs each refused call (the page shows it in words)


def today(world: ConsoleWorld) -> dt.date:
    """The services' today (the account's time zone is UTC)."""
    return world.clock.now().date()


def config(world: ConsoleWorld) -> config_pb2_grpc.ConfigServiceStub:
    """Config, natively, with the tenant's admin key."""
    return world.stack.config(world.admin_key)


async def add_goal(world: ConsoleWorld, name: str, *, active: bool = True,
                   start: dt.date | None = None, end: dt.date | None = None,
                   **fields: Any) -> config_pb2.Goal:
    """A goal created natively (start today when active and no start is given), whose one
    condition is its own page (no URL of another goal matches it)."""
    fields.setdefault("conditions", [url_condition("/" + name.lower().replace(" ", "-"))])
    if active and start is None:
        start = today(world)
    if start is not None:
        fields["start_date"] = date(start)
    if end is not None:
        fields["end_date"] = date(end)
    reply = await config(world).CreateGoal(goal_request(name, active=active, **fields))
    return reply.goal


async def listed(world: ConsoleWorld) -> list[config_pb2.GoalSummary]:
    return list((await config(world).ListGoals(config_pb2.ListGoalsRequest())).goals)


def row(page: Page, name: str) -> Locator:
    """The list's row of the goal named ``name``."""
    return page.locator("tbody tr").filter(has=page.get_by_role("link", name=name, exact=True))


async def described_by(page: Page, field: Locator) -> str:
    """The text of the elements ``field``'s aria-describedby names."""
    ids = (await field.get_attribute("aria-describedby") or "").split()
    texts = [await page.locator(f"#{i}").inner_text() for i in ids]
    return " ".join(texts)


async def is_focused(field: Locator) -> bool:
    result: bool = await field.evaluate("el => el === document.activeElement")
    return result


async def fill_required(page: Page, world: ConsoleWorld, name: str, start: dt.date) -> None:
    """The form's required fields, valid except for what the test changes next."""
    await page.get_by_label("Name", exact=True).fill(name)
    active = page.get_by_label("Active", exact=True)
    await active.check()
    await page.get_by_label("Start date").fill(start.isoformat())
    await page.get_by_label("Agent group 1", exact=True).fill("sales")
    await page.get_by_label("Attribution model").select_option(label="Last touch")
    await page.get_by_label("Attribution period (days)").fill("7")
    await page.get_by_label("Condition 1 value", exact=True).fill("/checkout")


async def test_a_goal_created_through_the_form_is_listed_as_active(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    page = await console_pages.signed_in(world, page="goals")
    await expect(page.get_by_text("No goals yet")).to_be_visible()
    await page.get_by_role("link", name="New goal").click()
    await expect(page.get_by_role("heading", name="New goal")).to_be_visible()
    # A new goal starts out active from today while a slot is free (the browser's today
    # here: with no goal listed yet the page does not know the account's time zone).
    await expect(page.get_by_label("Active", exact=True)).to_be_checked()
    browser_today = await page.evaluate("new Date().toLocaleDateString('en-CA')")
    await expect(page.get_by_label("Start date")).to_have_value(browser_today)

    await fill_required(page, world, "Checkout", today(world))
    await page.get_by_label("Description (optional)").fill("Reach the order confirmation")
    await page.get_by_label("End date (optional)").fill((today(world) + 30 * DAY).isoformat())
    await page.get_by_role("button", name="Add a group").click()
    await page.get_by_label("Agent group 2", exact=True).fill("support")
    await page.get_by_label("Value per conversion (optional)").fill("149.99")
    await page.get_by_label("Currency").fill("USD")
    await page.get_by_label("Goal type (optional)").select_option(
        label="Sell a product or service")
    await page.get_by_role("button", name="Add a condition").click()
    await page.get_by_label("Condition 2 operator", exact=True).select_option(label="is")
    await page.get_by_label("Condition 2 value", exact=True).fill("https://shop.example/thanks")
    await page.get_by_role("button", name="Create goal").click()

    await expect(page.get_by_role("status").filter(has_text="created")).to_contain_text(
        "“Checkout” created.")
    checkout = row(page, "Checkout")
    await expect(checkout.locator(".badge")).to_have_text("Active")
    await expect(checkout).to_contain_text("Last touch")
    await expect(checkout).to_contain_text("sales, support")
    await expect(checkout).to_contain_text("149.99 USD")
    await expect(checkout.get_by_test_id("seven-day")).to_have_text("0")
    await expect(page.get_by_test_id("goal-slots")).to_contain_text("1 of 15")

    [summary] = await listed(world)
    goal = summary.goal
    assert goal.status == config_pb2.GOAL_STATUS_ACTIVE
    assert (goal.name, goal.description) == ("Checkout", "Reach the order confirmation")
    assert goal.start_date == date(today(world))
    assert goal.end_date == date(today(world) + 30 * DAY)
    assert list(goal.agent_group_ids) == ["sales", "support"]
    assert goal.attribution_model == config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH
    assert goal.attribution_period_days == 7
    assert goal.transaction_value == common_pb2.Money(currency_code="USD", amount="149.99")
    assert goal.goal_type == config_pb2.GOAL_TYPE_SELL_PRODUCT_OR_SERVICE
    assert list(goal.conditions) == [
        url_condition("/checkout"),
        url_condition("https://shop.example/thanks", config_pb2.CONDITION_OPERATOR_IS),
    ]


async def test_a_refused_form_shows_the_servers_message_beside_the_field(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    console_pages.console.expect(REFUSED)
    page = await console_pages.signed_in(world, page="goals/new")
    await fill_required(page, world, "Too early", today(world) - DAY)
    await page.get_by_role("button", name="Create goal").click()

    start = page.get_by_label("Start date")
    await expect(start).to_have_attribute("aria-invalid", "true")
    beside = await described_by(page, start)
    assert "start_date: cannot be set retroactively" in beside
    assert today(world).isoformat() in beside  # the server's words, its today
    assert await is_focused(start)
    await expect(page.get_by_role("alert")).to_have_text(
        "Not saved: see the message beside Start date.")
    await screenshot(page, "goals-refused-start-date")

    # 101 conditions (the first and 100 pasted): sent as typed; the page counts them, the
    # server refuses them.
    await start.fill(today(world).isoformat())
    await page.get_by_text("Paste many").click()
    urls = "\n".join(f"/checkout/step-{n}" for n in range(100))
    await page.get_by_label("Conditions to add, one URL or fragment per line").fill(urls)
    await page.get_by_role("button", name="Add these conditions").click()
    await expect(page.get_by_test_id("goal-condition-count")).to_have_text("101 / 100")
    await page.get_by_role("button", name="Create goal").click()

    conditions = page.get_by_role("group", name="Conditions")
    message = conditions.locator(".field-error").first
    await expect(message).to_have_text("conditions: at most 100 conditions per goal (got 101)")
    first = page.get_by_label("Condition 1 value", exact=True)
    assert "at most 100 conditions" in await described_by(page, first)
    assert await is_focused(first)
    await expect(start).not_to_have_attribute("aria-invalid", "true")

    assert await listed(world) == []


async def test_activate_deactivate_and_delete_from_the_list(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    goal = await add_goal(world, "Refunds", active=False, start=today(world))
    page = await console_pages.signed_in(world, page="goals")
    refunds = row(page, "Refunds")
    await expect(refunds.locator(".badge")).to_have_text("Inactive")

    await page.get_by_role("button", name="Activate Refunds").click()
    await expect(refunds.locator(".badge")).to_have_text("Active")
    await expect(page.get_by_role("status").first).to_have_text("“Refunds” activated.")
    got = (await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))).goal
    assert (got.active, got.status) == (True, config_pb2.GOAL_STATUS_ACTIVE)

    await page.get_by_role("button", name="Deactivate Refunds").click()
    await expect(refunds.locator(".badge")).to_have_text("Inactive")
    got = (await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))).goal
    assert (got.active, got.status) == (False, config_pb2.GOAL_STATUS_INACTIVE)

    # Delete asks inside the page first; keeping it changes nothing.
    await page.get_by_role("button", name="Delete Refunds").click()
    confirm = page.get_by_role("alertdialog", name="Delete “Refunds”?")
    await expect(confirm).to_contain_text("permanent")
    await expect(confirm.get_by_role("button", name="Keep it")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(confirm).to_have_count(0)
    await expect(page.get_by_role("button", name="Delete Refunds")).to_be_focused()
    await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))

    await page.get_by_role("button", name="Delete Refunds").click()
    await confirm.get_by_role("button", name="Yes, delete “Refunds”").click()
    await expect(refunds).to_have_count(0)
    await expect(page.get_by_text("No goals yet")).to_be_visible()
    with pytest.raises(aio.AioRpcError) as gone:
        await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_activation_the_server_refuses_is_shown_in_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    console_pages.console.expect(REFUSED)
    await add_goal(world, "Last week", active=False, start=today(world))
    world.clock.advance(2 * DAY)  # its start date has passed: activating it is refused
    page = await console_pages.signed_in(world, page="goals")
    await page.get_by_role("button", name="Activate Last week").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Could not activate “Last week”: start_date:")
    await expect(row(page, "Last week").locator(".badge")).to_have_text("Inactive")


async def test_the_15_active_limit_is_shown_before_the_server_refuses(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    console_pages.console.expect(REFUSED)
    for n in range(14):
        await add_goal(world, f"Goal {n:02}")
    await add_goal(world, "Spare", active=False, start=today(world))
    await add_goal(world, "Waiting", active=False, start=today(world))
    page = await console_pages.signed_in(world, page="goals")
    await expect(page.get_by_test_id("goal-slots")).to_contain_text("14 of 15")
    spare = page.get_by_role("button", name="Activate Spare")
    await expect(spare).to_be_enabled()

    # Another admin takes the last slot meanwhile: the server's refusal is shown.
    await add_goal(world, "Goal 14")
    await spare.click()
    await expect(page.get_by_role("alert")).to_contain_text(
        "Could not activate “Spare”: active: the account already has 15 active goals")

    await page.reload()
    await expect(page.get_by_test_id("goal-slots")).to_contain_text("15 of 15")
    await expect(page.get_by_role("button", name="Activate Spare")).to_be_disabled()
    waiting = page.get_by_role("button", name="Activate Waiting")
    await expect(waiting).to_be_disabled()
    assert "All 15 active slots are used" in await described_by(page, waiting)

    await page.get_by_role("link", name="New goal").click()
    active = page.get_by_label("Active", exact=True)
    await expect(active).to_be_disabled()
    await expect(active).not_to_be_checked()
    assert "All 15 active slots are used" in await described_by(page, active)
    assert sum(s.goal.active for s in await listed(world)) == 15


async def convert(world: ConsoleWorld, conversation_id: str) -> None:
    """One conversion of the "Checkout" goal (group sales, /checkout), now."""
    at = world.clock.now()
    user = f"user-{conversation_id}"
    second = dt.timedelta(seconds=1)
    [ack] = await ingest(world.producer(), [
        opened(conversation_id, at - 2 * second, user=user),
        assigned(conversation_id, at - second, agent("agent-a")),
        visit("https://shop.example/checkout", at, user=user, conv=conversation_id),
    ])
    assert ack.conversions == 1, ack


async def test_seven_day_conversions_come_from_the_tracker_or_say_unavailable(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    await create_goal(world.stack, world.tenant, "Checkout", start=today(world),
                      model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH)
    await add_goal(world, "Quiet")
    await convert(world, f"conv-{uuid.uuid4().hex[:6]}")
    await convert(world, f"conv-{uuid.uuid4().hex[:6]}")
    page = await console_pages.signed_in(world, page="goals")
    await expect(row(page, "Checkout").get_by_test_id("seven-day")).to_have_text("2")
    await expect(row(page, "Quiet").get_by_test_id("seven-day")).to_have_text("0")

    assert world.stack.tracker_server is not None
    await world.stack.tracker_server.stop(0.5)
    await page.reload()
    cell = row(page, "Checkout").get_by_test_id("seven-day")
    await expect(cell).to_have_text("unavailable")
    assert "tracker could not answer" in (await cell.locator("span").get_attribute("title") or "")
    await expect(page.get_by_role("status").filter(has_text="7-day conversions unavailable")
                 ).to_be_visible()
    await expect(row(page, "Checkout").locator(".badge")).to_have_text("Active")


async def test_the_list_reads_at_desktop_and_phone_width(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    now = today(world)
    world.clock.set(world.clock.now() - 5 * DAY)  # created when this one started and ended
    await add_goal(world, "Spring sale", start=now - 5 * DAY, end=now - 2 * DAY,
                   attribution_model=config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH)
    world.clock.set(world.clock.now() + 5 * DAY)
    await create_goal(world.stack, world.tenant, "Checkout", start=now,
                      model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH, groups=("sales", "vip"),
                      value=("USD", "149.99"))
    await add_goal(world, "Holiday leads", end=now + 2 * DAY,
                   goal_type=config_pb2.GOAL_TYPE_GENERATE_LEADS,
                   attribution_model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES)
    await add_goal(world, "New year", start=now + 30 * DAY,
                   transaction_value=common_pb2.Money(currency_code="EUR", amount="25"))
    await add_goal(world, "Support survey", active=False, agent_group_ids=["support"])
    await convert(world, f"conv-{uuid.uuid4().hex[:6]}")

    page = await console_pages.signed_in(world, page="goals")
    expected = {"Spring sale": "Ended", "Checkout": "Active",
                "Holiday leads": "Ending — 3 days left", "New year": "Scheduled",
                "Support survey": "Inactive"}
    for name, status in expected.items():
        await expect(row(page, name).locator(".badge")).to_have_text(status)
    await expect(page.get_by_test_id("goal-slots")).to_contain_text("4 of 15")
    await expect(row(page, "Checkout").get_by_test_id("seven-day")).to_have_text("1")
    # At 1280 px every column, the row actions included, shows without scrolling the table.
    assert await page.locator(".table-wrap").evaluate("el => el.scrollWidth <= el.clientWidth")
    await screenshot(page, "goals")

    phone = await console_pages.signed_in(world, page="goals", viewport=PHONE)
    await expect(row(phone, "Checkout").locator(".badge")).to_have_text("Active")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(phone, "goals-phone")
    await phone.get_by_role("link", name="Checkout", exact=True).click()
    await expect(phone.get_by_label("Name", exact=True)).to_have_value("Checkout")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(phone, "goals-edit-phone")


async def test_editing_sends_the_changed_fields_and_the_revision(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    console_pages.console.expect(REFUSED)
    goal = await add_goal(world, "Checkout", description="Old words")
    page = await console_pages.signed_in(world, page=f"goals/{goal.id}")
    await expect(page.get_by_label("Description (optional)")).to_have_value("Old words")
    await page.get_by_label("Description (optional)").fill("New words")
    await page.get_by_label("Currency").fill("usd")
    await page.get_by_label("Value per conversion (optional)").fill("10")
    await page.get_by_role("button", name="Save changes").click()
    currency = page.get_by_label("Currency")
    await expect(currency).to_have_attribute("aria-invalid", "true")
    assert "transaction_value.currency_code:" in await described_by(page, currency)

    await currency.fill("USD")
    # Someone else changes the goal meanwhile: the stale revision is refused in words.
    await config(world).UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=goal.id, goal=config_pb2.Goal(name="Checkout!"),
        update_mask={"paths": ["name"]}))
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("alert")).to_contain_text("goal changed")

    await page.reload()
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Checkout!")
    await page.get_by_label("Description (optional)").fill("New words")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status").first).to_have_text("“Checkout!” saved.")
    got = (await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))).goal
    assert (got.name, got.description, got.revision) == ("Checkout!", "New words", 3)
    assert got.start_date == goal.start_date and got.active


async def test_a_supervisor_sees_goals_read_only(
    console_world: ConsoleWorld, console_pages: ConsolePages, tokens: TokenAuthority,
) -> None:
    world = console_world
    await add_goal(world, "Checkout")
    await add_goal(world, "Spare", active=False, start=today(world))
    token = tokens.mint(world.tenant.account_id, Role.SUPERVISOR).token
    page = await console_pages.signed_in(world, credential=token, page="goals")
    await expect(row(page, "Checkout").locator(".badge")).to_have_text("Active")
    for name in ("New goal",):
        await expect(page.get_by_role("link", name=name)).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("Activate|Deactivate|Delete"))
                 ).to_have_count(0)
    await page.get_by_role("link", name="Checkout", exact=True).click()
    await expect(page.get_by_label("Name", exact=True)).to_be_disabled()
    await expect(page.get_by_role("button", name="Save changes")).to_have_count(0)
    # Supervisors may not count the active slots (ListActiveGoals), and need not: a
    # read-only page says nothing of them, least of all that they "could not be counted".
    await expect(page.get_by_text("An active goal is tracked from")).to_be_visible()
    await expect(page.get_by_text("active slots")).to_have_count(0)
    await page.goto(world.url + "#/goals/new")
    await expect(page.get_by_text("Only an admin can create goals.")).to_be_visible()


async def test_config_down_is_said_in_words_with_a_way_to_retry(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    console_pages.console.expect(r"status of 503")
    page = await console_pages.signed_in(world, page="goals")
    await expect(page.get_by_text("No goals yet")).to_be_visible()
    config_server = world.stack.servers[-1]  # [tracker, config]
    await config_server.stop(0.5)
    await page.get_by_role("link", name="New goal").click()
    await expect(page.get_by_text("The active slots could not be counted")).to_be_visible()
    await fill_required(page, world, "Checkout", today(world))
    await page.get_by_role("button", name="Create goal").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("goalflow cannot be reached right now")
    await expect(alert).to_contain_text("Your changes were not saved")
    await page.get_by_role("link", name="← All goals").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("cannot be reached")
    await expect(alert.get_by_role("button", name="Try again")).to_be_visible()


# -- a form that survives the session, the delete question, order and words ---------------

RESTORED = "Restored the unsaved changes from before you signed in again."
DRAFT_KEYS_JS = "Object.keys(sessionStorage).filter((k) => k.startsWith('goalflow.goal-draft'))"


async def let_the_session_end(page: Page, expires_at: float) -> None:
    """Waits out the token's last seconds: the console signs out and says why."""
    await asyncio.sleep(max(expires_at - time.time(), 0) + 0.2)
    await sign_in_form_says(page, SESSION_ENDED)


async def sign_in_again(page: Page, world: ConsoleWorld) -> None:
    await page.get_by_label("API key or token").fill(world.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Sign out").wait_for()


async def test_a_new_goal_being_typed_survives_a_session_that_ends(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    token, expires_at = admin_token(world, life_s=6)
    page = await console_pages.signed_in(world, credential=token, page="goals/new")
    name = page.get_by_label("Name", exact=True)
    await name.fill("Half-typed goal")
    await page.get_by_label("Condition 1 value", exact=True).fill("/thanks")
    await let_the_session_end(page, expires_at)

    await sign_in_again(page, world)
    assert await page.evaluate("location.hash") == "#/goals/new"
    await expect(name).to_have_value("Half-typed goal")
    await expect(page.get_by_label("Condition 1 value", exact=True)).to_have_value("/thanks")
    await expect(page.get_by_role("status").filter(has_text="Restored")).to_have_text(RESTORED)

    # Cancel forgets it: the form opened again starts empty, with nothing restored.
    await page.get_by_role("link", name="Cancel").click()
    await page.get_by_role("link", name="New goal").click()
    await expect(page.get_by_label("Condition 1 value", exact=True)).to_have_value("")
    await expect(name).to_have_value("")
    await expect(page.get_by_text(RESTORED)).to_have_count(0)
    assert await page.evaluate(DRAFT_KEYS_JS) == []
    assert await listed(world) == []


async def test_a_goal_being_edited_survives_a_session_that_ends_and_then_saves(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    goal = await add_goal(world, "Checkout", description="Old words")
    token, expires_at = admin_token(world, life_s=6)
    page = await console_pages.signed_in(world, credential=token, page=f"goals/{goal.id}")
    description = page.get_by_label("Description (optional)")
    await expect(description).to_have_value("Old words")
    await description.fill("New words")
    await let_the_session_end(page, expires_at)

    await sign_in_again(page, world)
    await expect(description).to_have_value("New words")
    await expect(page.get_by_text(RESTORED)).to_be_visible()
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status").first).to_have_text("“Checkout” saved.")
    got = (await config(world).GetGoal(config_pb2.GetGoalRequest(goal_id=goal.id))).goal
    assert (got.name, got.description, got.revision) == ("Checkout", "New words", 2)
    assert await page.evaluate(DRAFT_KEYS_JS) == []

    # Within one session a reload starts from the server, as before (nothing to restore).
    await page.get_by_role("link", name="Checkout", exact=True).click()
    await description.fill("Not kept")
    await page.reload()
    await expect(description).to_have_value("New words")
    await expect(page.get_by_text(RESTORED)).to_have_count(0)


async def test_a_draft_of_a_goal_changed_meanwhile_is_not_given_back(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """Changes made against revision 1 are dropped once another admin made revision 2: a
    restored edit that only flipped Active would go through ActivateGoal, which checks no
    revision. The page says so and shows the goal as it is now."""
    world = console_world
    goal = await add_goal(world, "Checkout", description="Old words")
    token, expires_at = admin_token(world, life_s=6)
    page = await console_pages.signed_in(world, credential=token, page=f"goals/{goal.id}")
    description = page.get_by_label("Description (optional)")
    await expect(description).to_have_value("Old words")
    await description.fill("Mine")
    await config(world).UpdateGoal(config_pb2.UpdateGoalRequest(
        goal_id=goal.id, goal=config_pb2.Goal(description="Theirs"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"])))
    await let_the_session_end(page, expires_at)

    await sign_in_again(page, world)
    await expect(page.get_by_text("were not restored")).to_be_visible()
    await expect(description).to_have_value("Theirs")
    await expect(page.get_by_text(RESTORED)).to_have_count(0)


async def test_signing_out_by_hand_leaves_no_draft_for_the_next_person(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    page = await console_pages.signed_in(world, page="goals/new")
    name = page.get_by_label("Name", exact=True)
    await name.fill("Private plans")
    await page.get_by_role("button", name="Sign out").click()
    assert await page.evaluate(DRAFT_KEYS_JS) == []
    await sign_in_again(page, world)
    await page.evaluate("location.hash = '#/goals/new'")
    await expect(name).to_have_value("")
    await expect(page.get_by_text(RESTORED)).to_have_count(0)


async def test_the_delete_question_is_below_its_row_and_escape_closes_it(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    for name in ("Alpha", "Beta", "Gamma"):
        await add_goal(world, name)
    page = await console_pages.signed_in(world, page="goals")
    delete = page.get_by_role("button", name="Delete Beta")
    await delete.focus()
    await page.keyboard.press("Enter")
    confirm = page.get_by_role("alertdialog", name="Delete “Beta”?")
    keep = confirm.get_by_role("button", name="Keep it")
    await expect(keep).to_be_focused()
    # In the table, in the row right below Beta's, and drawn right under it.
    above = await confirm.evaluate(
        "(el) => el.closest('tr').previousElementSibling.dataset.goalId")
    assert above == next(s.goal.id for s in await listed(world) if s.goal.name == "Beta")
    beta = await row(page, "Beta").bounding_box()
    asked = await confirm.bounding_box()
    assert beta is not None and asked is not None
    assert 0 <= asked["y"] - (beta["y"] + beta["height"]) < 16, (beta, asked)
    await screenshot(page, "goals-delete-question")

    await page.keyboard.press("Escape")
    await expect(confirm).to_have_count(0)
    await expect(delete).to_be_focused()

    # Escape from its other button too; then a delete by the keyboard alone.
    await page.keyboard.press("Enter")
    await expect(keep).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(confirm.get_by_role("button", name="Yes, delete “Beta”")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(confirm).to_have_count(0)
    await expect(delete).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(keep).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status").first).to_have_text("“Beta” deleted.")
    await expect(row(page, "Beta")).to_have_count(0)
    assert sorted(s.goal.name for s in await listed(world)) == ["Alpha", "Gamma"]

    # At phone width the question fits below its goal too.
    phone = await console_pages.signed_in(world, page="goals", viewport=PHONE)
    await phone.get_by_role("button", name="Delete Alpha").click()
    await expect(phone.get_by_role("alertdialog", name="Delete “Alpha”?")
                 .get_by_role("button", name="Keep it")).to_be_focused()
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    await screenshot(phone, "goals-delete-question-phone")


async def test_goals_sort_by_name_naturally_with_money_and_the_last_day_in_plain_words(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    await add_goal(world, "G10",
                   transaction_value=common_pb2.Money(currency_code="USD", amount="59.9"))
    await add_goal(world, "G2", end=today(world),
                   transaction_value=common_pb2.Money(currency_code="EUR", amount="25"))
    await add_goal(world, "g1",
                   transaction_value=common_pb2.Money(currency_code="JPY", amount="1500"))
    await add_goal(world, "G3", end=today(world) + DAY)
    page = await console_pages.signed_in(world, page="goals")
    names = page.locator("tbody th.name a")
    await expect(names).to_have_text(["g1", "G2", "G3", "G10"])
    values = page.locator("tbody td[data-label='Value']")
    await expect(values).to_have_text(["1500 JPY", "25.00 EUR", "—", "59.90 USD"])
    await expect(row(page, "G2").locator(".badge")).to_have_text("Ends today")
    await expect(row(page, "G3").locator(".badge")).to_have_text("Ending — 2 days left")
