"""The goal form's What if panel, over events ingested natively before any goal exists:
the page's per-model conversions, values and top agents are a native SimulateGoal call's
final result (first touch and last touch credit different agents), its progress was shown
as the stream came, and nothing was created; a refusal of the goal is shown beside the
form's field and one of the range beside the panel's date (the server's message); on a
saved goal the form's unsaved change is simulated as an override; a tracker that is down
is said in words; a new run and leaving the form cancel the replay on the tracker;
supervisors see no panel."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from playwright.async_api import Page, expect

from goalflow_common.auth import Role
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from goalflow_common.tokens import TokenAuthority
from tests.browser.console.conftest import (
    PHONE,
    UI_WAIT_MS,
    ConsolePages,
    ConsoleWorld,
    screenshot,
)
from tests.services.config_svc.helpers import date, url_condition
from tests.services.tracker_svc.builders import agent, assigned, ingest, opened, visit

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CHECKOUT = "https://shop.example/checkout"
ANN = agent("agent-ann", "sales")
BOB = agent("agent-bob", "sales")
CAT = agent("agent-cat", "sales")
MODELS = ("First touch", "Last touch", "All touches")

# (conversation, days before now, agents in the order assigned, value on the checkout hit)
CONVERSATIONS = (
    ("c1", 1, (ANN, BOB), ("12.50", "USD")),
    ("c2", 2, (BOB, ANN), ("3.00", "EUR")),
    ("c3", 3, (ANN,), None),
    ("c4", 4, (CAT, BOB), ("40.00", "USD")),
    ("c5", 6, (ANN, CAT), None),
)

# Records every state of the progress line and bar the page shows (a MutationObserver: the
# stream's progress may be replaced by the result within one network read).
WATCH_PROGRESS_JS = """() => {
  window.seenProgress = [];
  const record = () => {
    const text = document.querySelector('[data-testid=whatif-progress-text]');
    const bar = document.getElementById('whatif-progress-bar');
    if (text) window.seenProgress.push([text.textContent, bar ? bar.value : null,
                                        bar ? bar.max : null]);
  };
  new MutationObserver(record).observe(document.body,
    { subtree: true, childList: true, characterData: true, attributes: true });
}"""


async def ingest_conversations(world: ConsoleWorld) -> None:
    """Conversations opened over the last days, each reaching the checkout an hour after
    its last assignment; no goal exists, so none converts live."""
    now = world.clock.now()
    history: list[tracker_pb2.Event] = []
    hits: list[tracker_pb2.Event] = []
    for conv, days, agents, value in CONVERSATIONS:
        at = now - days * DAY
        user = f"user-{conv}"
        history.append(opened(conv, at, user=user))
        for n, who in enumerate(agents):
            history.append(assigned(conv, at + (n + 1) * dt.timedelta(minutes=2), who))
        amount, currency = value or (None, "USD")
        hits.append(visit(CHECKOUT, at + HOUR, user=user, conv=conv, amount=amount,
                          currency=currency))
    acks = await ingest(world.producer(), history, hits)
    assert acks[1].conversions == 0, acks[1]


@pytest.fixture
async def world_with_events(console_world: ConsoleWorld) -> ConsoleWorld:
    await ingest_conversations(console_world)
    return console_world


def last_30_days(world: ConsoleWorld) -> config_pb2.SimulateGoalRequest:
    today = world.clock.now().date()
    request = config_pb2.SimulateGoalRequest()
    request.start_date.CopyFrom(date(today - 29 * DAY))
    request.end_date.CopyFrom(date(today))
    return request


async def native_result(world: ConsoleWorld, request: config_pb2.SimulateGoalRequest
                        ) -> config_pb2.SimulationResult:
    updates = [u async for u in world.stack.config(world.admin_key).SimulateGoal(request)]
    assert updates and updates[-1].HasField("result")
    return updates[-1].result


def money(values: Iterable[common_pb2.Money]) -> str:
    return "; ".join(f"{m.amount} {m.currency_code}" for m in values) or "none"


def agent_cell(row: config_pb2.SimulationRow) -> str:
    return f"{row.label} {row.key}" if row.label and row.label != row.key else row.key


async def assert_shows(page: Page, result: config_pb2.SimulationResult) -> None:
    """The page's three models are ``result``'s: conversions, values, the top 5 agents."""
    assert len(result.models) == 3
    for title, model in zip(MODELS, result.models, strict=True):
        card = page.get_by_role("region", name=title, exact=True)
        await expect(card.get_by_test_id("whatif-conversions")).to_have_text(
            str(model.conversions))
        await expect(card.get_by_test_id("whatif-transaction-values")).to_have_text(
            money(model.transaction_values))
        await expect(card.get_by_test_id("whatif-lead-values")).to_have_text(
            money(model.lead_values))
        rows = card.locator("tbody tr")
        expected = [[agent_cell(row), str(row.conversions)] for row in model.agents[:5]]
        await expect(rows).to_have_count(len(expected))
        shown = [[" ".join((await rows.nth(n).locator("th").inner_text()).split()),
                  (await rows.nth(n).locator("td").inner_text()).strip()]
                 for n in range(len(expected))]
        assert shown == expected, title


async def fill_form(page: Page) -> None:
    """The new goal's form: last touch, the sales group, URLs containing /checkout."""
    await page.get_by_label("Name", exact=True).fill("Checkout")
    await page.get_by_label("Agent group 1", exact=True).fill("sales")
    await page.get_by_label("Attribution model").select_option(label="Last touch")
    await page.get_by_label("Attribution period (days)").fill("7")
    await page.get_by_label("Condition 1 value", exact=True).fill("/checkout")


async def refusal(world: ConsoleWorld, request: config_pb2.SimulateGoalRequest) -> str:
    """The server's message refusing ``request`` (INVALID_ARGUMENT)."""
    try:
        await native_result(world, request)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
        return exc.details() or ""
    raise AssertionError("not refused")


async def simulate(page: Page) -> None:
    await page.evaluate(WATCH_PROGRESS_JS)
    await page.get_by_role("button", name="Simulate", exact=True).click()
    await expect(page.get_by_test_id("whatif-progress-text")).to_contain_text("Done:")


async def test_a_new_goal_is_simulated_and_nothing_is_created(
    world_with_events: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = world_with_events
    page = await console_pages.signed_in(world, page="goals/new")
    await fill_form(page)
    today = world.clock.now().date()
    await expect(page.get_by_label("What-if from")).to_have_value(str(today - 29 * DAY))
    await expect(page.get_by_label("What-if to")).to_have_value(str(today))
    await expect(page.get_by_role("region", name="What if")).to_contain_text(
        "writes nothing and does not count against the 15 active goals")

    await simulate(page)
    request = last_30_days(world)
    request.definition.CopyFrom(config_pb2.CreateGoalRequest(
        name="Checkout", agent_group_ids=["sales"],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH, attribution_period_days=7,
        conditions=[url_condition("/checkout")]))
    result = await native_result(world, request)
    first, last, every = ([(row.key, row.conversions) for row in m.agents]
                          for m in result.models)
    # The events make the models differ: first and last touch credit other agents.
    assert result.models[0].conversions == len(CONVERSATIONS) and first != last != every
    await assert_shows(page, result)

    seen = await page.evaluate("window.seenProgress")
    streamed = [s for s in seen if re.match(r"^\d+ of \d+ events scanned", s[0])]
    assert streamed, seen  # a progress message shown before the result
    assert all(int(s[2]) == result.events_scanned for s in streamed), seen
    await expect(page.get_by_test_id("whatif-progress-text")).to_contain_text(
        f"Done: {result.events_scanned} of {result.events_scanned} events scanned.")
    await expect(page.get_by_test_id("whatif-summary")).to_have_text(
        f"{today - 29 * DAY} to {today}: {result.events_scanned} events read, "
        f"{result.hits} matching the conditions.")
    await screenshot(page, "whatif")

    listed = await world.stack.config(world.admin_key).ListGoals(config_pb2.ListGoalsRequest())
    assert list(listed.goals) == []

    await page.set_viewport_size(PHONE)
    await screenshot(page, "whatif-phone")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


async def test_refusals_are_shown_beside_the_field(
    world_with_events: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = world_with_events
    page = await console_pages.signed_in(world, page="goals/new")
    today = world.clock.now().date()
    # An empty form: the definition's field is named beside the form's input.
    await page.get_by_role("button", name="Simulate", exact=True).click()
    request = last_30_days(world)
    request.definition.CopyFrom(config_pb2.CreateGoalRequest(
        agent_group_ids=[""], conditions=[url_condition("")]))
    message = await refusal(world, request)
    assert message.startswith("definition.name: ")
    await expect(page.locator("#goal-name-error")).to_have_text(
        message.removeprefix("definition."))
    await expect(page.get_by_role("region", name="What if").get_by_role("alert")).to_have_text(
        "Not simulated: see the message beside Name in the form above.")
    await expect(page.get_by_label("Name", exact=True)).to_be_focused()

    # A range ending before it starts: the server's message beside the last day.
    await fill_form(page)
    await page.get_by_label("What-if from").fill(str(today))
    await page.get_by_label("What-if to").fill(str(today - 5 * DAY))
    await page.get_by_role("button", name="Simulate", exact=True).click()
    request.definition.CopyFrom(config_pb2.CreateGoalRequest(
        name="Checkout", agent_group_ids=["sales"],
        attribution_model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH, attribution_period_days=7,
        conditions=[url_condition("/checkout")]))
    request.start_date.CopyFrom(date(today))
    request.end_date.CopyFrom(date(today - 5 * DAY))
    message = await refusal(world, request)
    assert message.startswith("end_date: ")
    await expect(page.locator("#whatif-end-error")).to_have_text(message)
    await expect(page.get_by_label("What-if to")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#goal-name-error")).to_have_count(0)  # the earlier one gone

    # Over the limit of days (GOALFLOW_SIMULATION_MAX_DAYS, 92 by default): named too.
    await page.get_by_label("What-if from").fill(str(today - 100 * DAY))
    await page.get_by_label("What-if to").fill(str(today))
    await page.get_by_role("button", name="Simulate", exact=True).click()
    request.start_date.CopyFrom(date(today - 100 * DAY))
    request.end_date.CopyFrom(date(today))
    message = await refusal(world, request)
    assert "GOALFLOW_SIMULATION_MAX_DAYS" in message
    await expect(page.locator("#whatif-end-error")).to_have_text(message)


async def test_a_saved_goal_simulates_the_forms_unsaved_change(
    world_with_events: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = world_with_events
    admin = world.stack.config(world.admin_key)
    stored = (await admin.CreateGoal(config_pb2.CreateGoalRequest(
        name="Support checkout", agent_group_ids=["support"], active=False,
        attribution_model=config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH, attribution_period_days=7,
        conditions=[url_condition("/checkout")]))).goal
    page = await console_pages.signed_in(world, page=f"goals/{stored.id}")
    group = page.get_by_label("Agent group 1", exact=True)
    await expect(group).to_have_value("support")
    await group.fill("sales")  # changed, not saved

    await simulate(page)
    request = last_30_days(world)
    request.goal_id = stored.id
    request.overrides.CopyFrom(config_pb2.CreateGoalRequest(agent_group_ids=["sales"]))
    request.override_mask.CopyFrom(FieldMask(paths=["agent_group_ids"]))
    result = await native_result(world, request)
    as_saved = last_30_days(world)
    as_saved.goal_id = stored.id
    assert [m.conversions for m in (await native_result(world, as_saved)).models] == [0, 0, 0]
    assert result.models[0].conversions == len(CONVERSATIONS)
    await assert_shows(page, result)

    # Changed again, the shown result is said to be of the goal as it was.
    await group.fill("support")
    await expect(page.get_by_role("region", name="What if")).to_contain_text(
        "The goal has changed in the form since this simulation")
    after = (await admin.GetGoal(config_pb2.GetGoalRequest(goal_id=stored.id))).goal
    assert after.revision == stored.revision and list(after.agent_group_ids) == ["support"]


async def test_a_tracker_down_is_said_in_words(
    world_with_events: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = world_with_events
    page = await console_pages.signed_in(world, page="goals/new")
    await fill_form(page)
    assert world.stack.tracker_server is not None
    await world.stack.tracker_server.stop(0.5)
    await page.get_by_role("button", name="Simulate", exact=True).click()
    banner = page.get_by_role("region", name="What if").get_by_role("alert")
    await expect(banner).to_have_attribute("data-problem", "unavailable")
    await expect(banner).to_contain_text("goalflow cannot be reached right now")
    await expect(page.get_by_test_id("whatif-progress-text")).to_have_count(0)
    await expect(page.get_by_role("button", name="Simulate", exact=True)).to_be_enabled()


async def test_a_supervisor_sees_no_what_if(
    world_with_events: ConsoleWorld, console_pages: ConsolePages, tokens: TokenAuthority,
) -> None:
    world = world_with_events
    admin = world.stack.config(world.admin_key)
    stored = (await admin.CreateGoal(config_pb2.CreateGoalRequest(
        name="Checkout", agent_group_ids=["sales"], active=False,
        attribution_model=config_pb2.ATTRIBUTION_MODEL_FIRST_TOUCH, attribution_period_days=7,
        conditions=[url_condition("/checkout")]))).goal
    token = tokens.mint(world.tenant.account_id, Role.SUPERVISOR).token
    page = await console_pages.signed_in(world, credential=token, page=f"goals/{stored.id}")
    await expect(page.get_by_label("Name", exact=True)).to_have_value("Checkout")
    await expect(page.get_by_role("heading", name="What if")).to_have_count(0)
    await expect(page.get_by_role("button", name="Simulate")).to_have_count(0)


class Gate:
    """Holds the tracker's replays before their first window of events (the real store's
    ``events_between``, entered only once ``open`` is set) and counts the replays begun
    and the ones cancelled while held: a run the page stopped."""

    def __init__(self, inner: Callable[..., AsyncIterator[Any]]) -> None:
        self.open = asyncio.Event()
        self.begun = 0
        self.cancelled = 0
        self._inner = inner

    def events_between(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async def gated() -> AsyncIterator[Any]:
            self.begun += 1
            try:
                await self.open.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            async for chunk in self._inner(*args, **kwargs):
                yield chunk
        return gated()

    async def until(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + UI_WAIT_MS / 1000
        while not done():
            assert time.monotonic() < deadline, (
                f"{what}: {self.begun} begun, {self.cancelled} cancelled")
            await asyncio.sleep(0.01)


@pytest.fixture
def gate(world_with_events: ConsoleWorld, monkeypatch: pytest.MonkeyPatch) -> Gate:
    server = world_with_events.stack.tracker_server
    assert server is not None
    store = server.components["store"]
    held = Gate(store.events_between)
    monkeypatch.setattr(store, "events_between", held.events_between)
    return held


async def test_a_new_run_or_leaving_the_form_stops_the_stream(
    world_with_events: ConsoleWorld, console_pages: ConsolePages, gate: Gate,
) -> None:
    world = world_with_events
    page = await console_pages.signed_in(world, page="goals/new")
    await fill_form(page)
    button = page.get_by_role("button", name="Simulate", exact=True)
    await button.click()
    await gate.until("first run held", lambda: gate.begun == 1)
    progress = page.get_by_test_id("whatif-progress-text")
    await expect(progress).to_have_text(re.compile(r"^0 of \d+ events scanned"))
    await expect(page.get_by_role("button", name="Stop")).to_be_visible()

    # A second run stops the first (its replay is cancelled) and is the one shown.
    await button.click()
    await gate.until("first run cancelled", lambda: gate.begun == 2 and gate.cancelled == 1)
    gate.open.set()
    await expect(progress).to_contain_text("Done:")
    await expect(page.get_by_role("button", name="Stop")).to_have_count(0)

    # Leaving the form while a run is held stops it too.
    gate.open.clear()
    await button.click()
    await gate.until("third run held", lambda: gate.begun == 3)
    await page.get_by_role("link", name="← All goals").click()
    await page.get_by_role("link", name="New goal").wait_for()
    await gate.until("third run cancelled", lambda: gate.cancelled == 2)
    gate.open.set()
