"""The console's reports page, over events ingested natively: the trend, the weekday x hour
heat map and the per-agent bars are drawn (their SVG holds the marks), counts and each
currency in charts of their own, agents shown with their ids; many agents draw the top 20
and say so; the totals shown are GetReport's; the CSV holds the table (formula-like cells
prefixed by the export service's own rule, money in a column per currency); the heat map is
not fetched again when only the grouping changed; the server's refusal of a range is shown
beside the date field, and a phone-width screen does not scroll sideways."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from decimal import Decimal

from playwright.async_api import Page, expect

from export_svc.domain.csv_rows import neutralize
from goalflow_common.pb.goals.v1 import common_pb2, config_pb2, tracker_pb2
from tests.browser.console.conftest import PHONE, ConsolePages, ConsoleWorld, screenshot
from tests.services.tracker_svc.builders import (
    assigned,
    create_goal,
    ingest,
    message,
    opened,
    visit,
)

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
CHECKOUT = "https://shop.example/checkout"
TOTALS_LABEL = "Total (each conversion once)"

# Rendered marks of a chart: filled shapes ECharts drew with a size (axis lines and ticks
# are strokes without fill; text is <text>).
MARKS_JS = """(element) => [...element.querySelectorAll('svg path, svg rect')].filter((shape) => {
  const fill = shape.getAttribute('fill');
  if (!fill || fill === 'none' || fill === 'transparent') return false;
  const box = shape.getBBox();
  return box.width > 0 && box.height > 0;
}).length"""


def person(agent_id: str, name: str, group: str) -> tracker_pb2.Agent:
    return tracker_pb2.Agent(id=agent_id, name=name, email=f"{agent_id}@x.io", group_id=group,
                             skill="billing", user_type=tracker_pb2.USER_TYPE_HUMAN)


ANN = person("agent-ann", "Ann", "sales")
BOB = person("agent-bob", 'Bob "B", Jr.', "support")  # quoted in CSV (RFC 4180)
CMD = person("agent-cmd", "=cmd", "sales")  # a name a spreadsheet would run as a formula
ODD = person(" =1+1", " =1", "sales")  # a formula behind a space, in the id and the name
HID = person("agent-hid", "\u200b@SUM(1)", "support")  # behind a zero-width space


@dataclass(frozen=True)
class Conversation:
    id: str
    opened_before: dt.timedelta  # before the clock's now
    skill: str
    agents: tuple[tracker_pb2.Agent, ...]
    value: tuple[str, str] | None  # (amount, currency) on the checkout hit


CONVERSATIONS = (
    Conversation("c1", DAY + 3 * HOUR, "billing", (ANN, BOB), ("12.50", "USD")),
    Conversation("c2", 2 * DAY + 7 * HOUR, "sales", (CMD,), ("3.00", "EUR")),
    Conversation("c3", 5 * HOUR, "billing", (ANN,), None),
    Conversation("c4", 3 * DAY + HOUR, "support", (BOB,), ("40.00", "USD")),
    Conversation("c5", 4 * DAY + 10 * HOUR, "billing", (ANN, CMD), ("7.25", "USD")),
    Conversation("c6", 5 * DAY + 2 * HOUR, "sales", (ODD, HID), None),
)
AGENTS = 5


async def ingest_conversations(world: ConsoleWorld) -> None:
    """A goal tracked from today (ALL_TOUCHES, the agents' groups) and conversations opened
    over the last days at several hours; each reaches the checkout now, while still open,
    so every one converts and is reported under its opening day and hour."""
    now = world.clock.now()
    await create_goal(world.stack, world.tenant, "Checkout",
                      model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES,
                      groups=("sales", "support"), start=now.date())
    producer = world.producer()
    history: list[tracker_pb2.Event] = []
    hits: list[tracker_pb2.Event] = []
    for conv in CONVERSATIONS:
        at = now - conv.opened_before
        user = f"user-{conv.id}"
        history.append(opened(conv.id, at, user=user, skill=conv.skill))
        history.append(message(conv.id, at + dt.timedelta(seconds=5), user,
                               tracker_pb2.AUTHOR_TYPE_END_USER))
        for n, who in enumerate(conv.agents):
            history.append(assigned(conv.id, at + (n + 1) * dt.timedelta(minutes=2), who))
            history.append(message(conv.id, at + (n + 1) * dt.timedelta(minutes=3), who.id))
        amount, currency = conv.value or (None, "USD")
        hits.append(visit(CHECKOUT, now, user=user, conv=conv.id, amount=amount,
                          currency=currency))
    acks = await ingest(producer, history, hits)
    assert acks[1].conversions == len(CONVERSATIONS), acks[1]


def request(world: ConsoleWorld, grouping: int, days: int = 7) -> tracker_pb2.GetReportRequest:
    today = world.clock.now().date()
    start = today - dt.timedelta(days=days - 1)
    return tracker_pb2.GetReportRequest(
        start_date=common_pb2.Date(year=start.year, month=start.month, day=start.day),
        end_date=common_pb2.Date(year=today.year, month=today.month, day=today.day),
        utc_offset_minutes=0, group_by=grouping,
    )


async def native_report(world: ConsoleWorld, grouping: int) -> tracker_pb2.GetReportResponse:
    return await world.stack.tracker(world.admin_key).GetReport(request(world, grouping))


def money(values) -> str:
    return "; ".join(f"{m.amount} {m.currency_code}" for m in values)


def seconds(total: int) -> str:
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def cells(label: str, metrics: tracker_pb2.ReportMetrics, *ids: str) -> list[str]:
    """A table row as the page shows it (cells trimmed): its label, its id when the
    grouping has one, its figures."""
    return [label.strip(), *(key.strip() for key in ids), str(metrics.conversions),
            money(metrics.transaction_values), money(metrics.lead_values),
            str(metrics.agent_messages), str(metrics.agent_responses),
            seconds(metrics.time_assigned_seconds)]


async def show(page: Page, world: ConsoleWorld, grouping: str, column: str,
               days: int = 7) -> None:
    """Sets the range (the last ``days`` days, UTC) and the grouping, asks, and waits for
    the table of that report (its heading names the range, its first column the grouping)."""
    today = world.clock.now().date()
    start = today - dt.timedelta(days=days - 1)
    await page.get_by_label("From", exact=True).fill(str(start))
    await page.get_by_label("To", exact=True).fill(str(today))
    await page.get_by_label("UTC offset").select_option(label="UTC+00:00")
    await page.get_by_label("Group rows by").select_option(label=grouping)
    await page.get_by_role("button", name="Show report").click()
    await expect(page.locator("[aria-busy]")).to_have_attribute("aria-busy", "false")
    await page.get_by_role("heading", name=f"Figures, {start} to {today} (UTC+00:00)").wait_for()
    await expect(page.locator("table thead th").first).to_have_text(column)


async def table(page: Page) -> list[list[str]]:
    """The report table's body and totals rows, cell by cell, as shown."""
    return await page.eval_on_selector_all(
        "table tbody tr, table tfoot tr",
        "(rows) => rows.map((row) => [...row.cells].map((cell) => cell.innerText.trim()))",
    )


async def marks(page: Page, test_id: str, at_least: int) -> int:
    """The marks drawn in the chart ``test_id`` once there are ``at_least`` (the chart
    draws after the table it sits above)."""
    chart = await page.get_by_test_id(test_id).element_handle()
    assert chart is not None
    await page.wait_for_function(f"([element, n]) => ({MARKS_JS})(element) >= n",
                                 arg=[chart, at_least])
    return int(await chart.evaluate(MARKS_JS))


async def texts(page: Page, test_id: str) -> list[str]:
    """The texts the chart ``test_id`` drew (axis labels, axis name, legend), trimmed."""
    return await page.get_by_test_id(test_id).evaluate(
        "(element) => [...element.querySelectorAll('svg text')]"
        ".map((text) => text.textContent.trim())")


async def axis_numbers(page: Page, test_id: str) -> list[Decimal]:
    """The numbers on the value axis of the chart ``test_id``."""
    found = []
    for text in await texts(page, test_id):
        try:
            found.append(Decimal(text.replace(",", "")))
        except ArithmeticError:
            continue
    return found


async def chart_ids(page: Page) -> set[str]:
    return set(await page.eval_on_selector_all(
        "[data-testid^='chart-']", "(charts) => charts.map((chart) => chart.dataset.testid)"))


async def test_the_reports_page_draws_the_report_and_its_totals_are_get_reports(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    await ingest_conversations(world)
    page = await console_pages.signed_in(world, page="reports")
    await show(page, world, "Day", "Day")

    by_day = await native_report(world, tracker_pb2.REPORT_GROUPING_DAY)
    heat = await native_report(world, tracker_pb2.REPORT_GROUPING_DAY_OF_WEEK_HOUR)
    assert len(by_day.rows) >= 2 and len(heat.rows) == len(CONVERSATIONS)
    totals = page.get_by_test_id("report-totals")
    assert await totals.evaluate(
        "(row) => [...row.cells].map((cell) => cell.innerText.trim())"
    ) == cells(TOTALS_LABEL, by_day.totals)
    assert by_day.totals.conversions == len(CONVERSATIONS)
    assert money(by_day.totals.transaction_values) == "3.00 EUR; 59.75 USD"
    assert await table(page) == [
        *(cells(row.label, row.metrics) for row in by_day.rows),
        cells(TOTALS_LABEL, by_day.totals),
    ]
    rule = page.get_by_text("Totals count each conversion once and its value once")
    assert await rule.is_visible()

    # The trend: a bar per day with conversions (and the legend) in the chart of counts;
    # the money in a chart per currency, each on its own scale (EUR's 3.00 is not drawn
    # flat under USD's 40.00).
    assert await marks(page, "chart-trend-count", len(by_day.rows)) >= len(by_day.rows)
    await marks(page, "chart-trend-money-EUR", 1)
    await marks(page, "chart-trend-money-USD", 1)
    assert await chart_ids(page) == {"chart-trend-count", "chart-trend-money-EUR",
                                     "chart-trend-money-USD", "chart-heatmap"}
    eur = await axis_numbers(page, "chart-trend-money-EUR")
    usd = await axis_numbers(page, "chart-trend-money-USD")
    assert Decimal(3) <= max(eur) < Decimal(10) and max(usd) >= Decimal(40), (eur, usd)
    assert "EUR" in await texts(page, "chart-trend-money-EUR")
    label = await page.get_by_test_id("chart-trend-money-EUR").get_attribute("aria-label")
    assert (label or "").startswith("Trend of transaction value in EUR by day, ")
    # The heat map: one filled cell per (weekday, hour) with conversions, nothing else.
    assert await marks(page, "chart-heatmap", len(heat.rows)) == len(heat.rows)
    assert "Heat map of conversions" in (
        await page.get_by_test_id("chart-heatmap").get_attribute("aria-label") or "")
    await screenshot(page, "reports")

    # Per agent: bars, each agent named with its id (table, axis labels and tooltip), and
    # rows that add up to more than the totals (shared conversions).
    await show(page, world, "Agent", "Agent")
    by_agent = await native_report(world, tracker_pb2.REPORT_GROUPING_AGENT)
    assert len(by_agent.rows) == AGENTS
    assert await marks(page, "chart-bars-count", AGENTS) >= AGENTS
    assert await chart_ids(page) == {"chart-bars-count", "chart-bars-money-EUR",
                                     "chart-bars-money-USD", "chart-heatmap"}
    assert await page.locator("table thead th").all_inner_texts() == [
        "Agent", "Agent id", "Conversions", "Transaction value", "Lead value",
        "Agent messages", "Agent responses", "Time assigned (h:mm:ss)"]
    shown = await table(page)
    assert shown == [*(cells(row.label, row.metrics, row.key) for row in by_agent.rows),
                     cells(TOTALS_LABEL, by_agent.totals, "")]
    assert ["=1", "=1+1"] in [row[:2] for row in shown]  # " =1" and " =1+1", trimmed
    assert sum(int(row[2]) for row in shown[:-1]) > by_agent.totals.conversions
    drawn = await texts(page, "chart-bars-count")
    for row in by_agent.rows:
        assert row.label.strip() in drawn and row.key.strip() in drawn, (row, drawn)
    chart = page.get_by_test_id("chart-bars-count")
    box = await chart.bounding_box()
    assert box is not None
    first = by_agent.rows[0]  # drawn first: up to 20 rows keep the report's order
    await expect(chart).not_to_contain_text(f"{first.label} ({first.key})")  # no tooltip yet
    await page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 56)
    await expect(chart).to_contain_text(f"{first.label} ({first.key})")


async def test_many_agents_draw_the_top_20_and_the_table_lists_them_all(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """24 agents: 01 to 04 converted once, the others twice (and 1.00 USD each time), so the
    bars are of 05 to 24 (the 20 with most conversions) and say so; the table has all 24."""
    world = console_world
    now = world.clock.now()
    await create_goal(world.stack, world.tenant, "Checkout",
                      model=config_pb2.ATTRIBUTION_MODEL_ALL_TOUCHES, groups=("crowd",),
                      start=now.date())
    crowd = [person(f"agent-{n:02d}", f"Crowd {n:02d}", "crowd") for n in range(1, 25)]
    history: list[tracker_pb2.Event] = []
    hits: list[tracker_pb2.Event] = []
    for n, who in enumerate(crowd, start=1):
        for k in range(1 if n <= 4 else 2):
            conv, user = f"m{n}-{k}", f"user-m{n}-{k}"
            at = now - (k + 1) * HOUR - n * dt.timedelta(minutes=1)
            history += [opened(conv, at, user=user),
                        message(conv, at + dt.timedelta(seconds=5), user,
                                tracker_pb2.AUTHOR_TYPE_END_USER),
                        assigned(conv, at + dt.timedelta(minutes=1), who),
                        message(conv, at + dt.timedelta(seconds=90), who.id)]
            hits.append(visit(CHECKOUT, now, user=user, conv=conv, amount="1.00"))
    acks = await ingest(world.producer(), history, hits)
    assert acks[1].conversions == 4 + 20 * 2, acks[1]

    page = await console_pages.signed_in(world, page="reports")
    await show(page, world, "Agent", "Agent")
    note = "Top 20 of 24 agents by conversions; all are in the table below."
    await expect(page.get_by_text(note, exact=True)).to_have_count(2)  # counts and USD
    assert await chart_ids(page) == {"chart-bars-count", "chart-bars-money-USD",
                                     "chart-heatmap"}
    assert await marks(page, "chart-bars-count", 20) >= 20
    drawn = set(await texts(page, "chart-bars-count"))
    assert {f"Crowd {n:02d}" for n in range(1, 25)} & drawn == {
        f"Crowd {n:02d}" for n in range(5, 25)}
    assert {f"agent-{n:02d}" for n in range(1, 25)} & drawn == {
        f"agent-{n:02d}" for n in range(5, 25)}
    label = await page.get_by_test_id("chart-bars-count").get_attribute("aria-label") or ""
    assert "the top 20 of 24 agents by conversions" in label, label
    shown = await table(page)
    assert [row[1] for row in shown] == [who.id for who in crowd] + [""]
    await screenshot(page, "reports-many-agents")


async def test_the_csv_holds_the_table_with_money_per_currency_and_formula_cells_prefixed(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    await ingest_conversations(world)
    page = await console_pages.signed_in(world, page="reports")
    await show(page, world, "Agent", "Agent")
    await page.get_by_test_id("report-totals").wait_for()
    shown = await table(page)
    assert ["=cmd"] == [row[0] for row in shown if "cmd" in row[0]]

    async with page.expect_download() as waiting:
        await page.get_by_role("button", name="Download CSV").click()
    download = await waiting.value
    assert download.suggested_filename.endswith(".csv")
    raw = (await download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark
    assert b"\r\n" in raw
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert lines[0] == ["Agent", "Agent id", "Conversions", "Transaction value EUR",
                        "Transaction value USD", "Lead value", "Agent messages",
                        "Agent responses", "Time assigned (h:mm:ss)"]

    def as_csv(label: str, key: str, metrics: tracker_pb2.ReportMetrics) -> list[str]:
        """A line as expected: every cell through the export service's own rule."""
        values = {value.currency_code: value.amount for value in metrics.transaction_values}
        return [neutralize(cell) for cell in (
            label, key, str(metrics.conversions), values.get("EUR", ""),
            values.get("USD", ""), "", str(metrics.agent_messages),
            str(metrics.agent_responses), seconds(metrics.time_assigned_seconds))]

    by_agent = await native_report(world, tracker_pb2.REPORT_GROUPING_AGENT)
    assert lines[1:] == [*(as_csv(row.label, row.key, row.metrics) for row in by_agent.rows),
                         as_csv(TOTALS_LABEL, "", by_agent.totals)]
    assert ["'=cmd", "agent-cmd"] in [line[:2] for line in lines]
    assert ["' =1", "' =1+1"] in [line[:2] for line in lines]  # behind a space
    assert ["'\u200b@SUM(1)", "agent-hid"] in [line[:2] for line in lines]  # zero-width
    assert b'\r\n"Bob ""B"", Jr.",agent-bob,' in raw
    assert lines[-1][:5] == [TOTALS_LABEL, "", "6", "3.00", "59.75"]
    # Plain amounts a spreadsheet can sum.
    for line in lines[1:]:
        for amount in line[3:5]:
            assert amount == "" or Decimal(amount) >= 0, line


async def test_changing_only_the_grouping_asks_for_one_report(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """The heat map does not depend on the grouping: it is fetched again only when the range,
    offset or filters changed, or the same report is asked for again (a refresh)."""
    world = console_world
    await ingest_conversations(world)
    page = await console_pages.signed_in(world, page="reports")
    await page.get_by_test_id("report-totals").wait_for()  # the first report, both calls
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url)
            if request.url.endswith("/goals.v1.TrackerService/GetReport") else None)

    async def calls(grouping: str, column: str, days: int = 7) -> int:
        """How many GetReport calls showing this report made."""
        asked.clear()
        async with page.expect_response(
                lambda response: response.url.endswith("/goals.v1.TrackerService/GetReport")):
            await show(page, world, grouping, column, days)
        await expect(page.locator("[aria-busy]")).to_have_attribute("aria-busy", "false")
        return len(asked)

    assert await calls("Day", "Day") == 2  # range and offset changed: the heat map too
    assert await calls("Agent", "Agent") == 1
    assert await marks(page, "chart-heatmap", len(CONVERSATIONS)) == len(CONVERSATIONS)
    assert await calls("Day of the week and hour", "Day of the week and hour") == 1
    assert await page.get_by_test_id("chart-heatmap").count() == 1
    assert await calls("Skill", "Skill") == 1
    assert await calls("Skill", "Skill") == 2  # the same again: a refresh of both
    assert await calls("Skill", "Skill", days=6) == 2  # the range changed

    await page.get_by_label("Agent ids (comma-separated)").fill("agent-ann")
    assert await calls("Skill", "Skill", days=6) == 2  # a filter changed
    ann = sum(ANN in conv.agents for conv in CONVERSATIONS)
    await page.wait_for_function(f"([element, n]) => ({MARKS_JS})(element) === n",
                                 arg=[await page.get_by_test_id("chart-heatmap").element_handle(),
                                      ann])
    assert await calls("Goal", "Goal", days=6) == 1


async def test_a_refused_range_is_shown_beside_the_date_field(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    console_pages.console.expect("400")  # Chromium logs the refused request itself
    world = console_world
    page = await console_pages.signed_in(world, page="reports")
    today = world.clock.now().date()
    end_field = page.get_by_label("To", exact=True)

    await page.get_by_label("From", exact=True).fill(str(today))
    await end_field.fill(str(today - DAY))
    await page.get_by_role("button", name="Show report").click()
    error = page.locator("#end_date-error")
    await error.wait_for()
    assert await error.inner_text() == "end_date: must be on or after start_date"
    assert await end_field.get_attribute("aria-invalid") == "true"
    assert "end_date-error" in (await end_field.get_attribute("aria-describedby") or "")

    await page.get_by_label("From", exact=True).fill(str(today - dt.timedelta(days=400)))
    await end_field.fill(str(today))
    await page.get_by_role("button", name="Show report").click()
    await page.get_by_text("the range spans at most 366 days").wait_for()
    assert await error.inner_text() == "end_date: the range spans at most 366 days"


async def test_the_empty_range_says_so_and_a_phone_screen_does_not_scroll_sideways(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    world = console_world
    page = await console_pages.signed_in(world, page="reports")
    await page.get_by_text("No conversions in this range").wait_for()
    assert await page.get_by_test_id("chart-heatmap").count() == 0

    await ingest_conversations(world)
    phone = await console_pages.signed_in(world, page="reports", viewport=PHONE)
    await show(phone, world, "Day", "Day")
    await phone.get_by_test_id("report-totals").wait_for()
    assert await marks(phone, "chart-heatmap", len(CONVERSATIONS)) == len(CONVERSATIONS)
    overflow = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    assert await phone.evaluate(overflow) <= 0
    assert await phone.evaluate("() => document.body.scrollWidth <= window.innerWidth")
    # Per agent (names with ids under them, an id column): still no sideways scrolling.
    await show(phone, world, "Agent", "Agent")
    assert await marks(phone, "chart-bars-count", AGENTS) >= AGENTS
    assert await phone.evaluate(overflow) <= 0
    assert await phone.evaluate("() => document.body.scrollWidth <= window.innerWidth")
    await screenshot(phone, "reports-agent-phone")
