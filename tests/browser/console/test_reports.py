"""The console's reports page, over events ingested natively: the trend, the weekday x hour
heat map and the per-agent bars are drawn (their SVG holds the marks), the totals shown are
GetReport's, the CSV holds the table as shown (formula-like cells prefixed), the server's
refusal of a range is shown beside the date field, and a phone-width screen does not
scroll sideways."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from playwright.async_api import Page, expect

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
)


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


def cells(label: str, metrics: tracker_pb2.ReportMetrics) -> list[str]:
    """A table row as the page shows it."""
    return [label, str(metrics.conversions), money(metrics.transaction_values),
            money(metrics.lead_values), str(metrics.agent_messages),
            str(metrics.agent_responses), seconds(metrics.time_assigned_seconds)]


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

    # The trend: a bar per day with conversions (and the value lines' points, the legend).
    assert await marks(page, "chart-trend", len(by_day.rows)) >= len(by_day.rows)
    # The heat map: one filled cell per (weekday, hour) with conversions, nothing else.
    assert await marks(page, "chart-heatmap", len(heat.rows)) == len(heat.rows)
    assert "Heat map of conversions" in (
        await page.get_by_test_id("chart-heatmap").get_attribute("aria-label") or "")
    await screenshot(page, "reports")

    # Per agent: bars, and rows that add up to more than the totals (shared conversions).
    await show(page, world, "Agent", "Agent")
    by_agent = await native_report(world, tracker_pb2.REPORT_GROUPING_AGENT)
    await page.get_by_test_id("chart-bars").wait_for()
    assert len(by_agent.rows) == 3
    assert await marks(page, "chart-bars", 3) >= 3
    assert await page.get_by_test_id("chart-trend").count() == 0
    shown = await table(page)
    assert shown[-1] == cells(TOTALS_LABEL, by_agent.totals)
    assert sum(int(row[1]) for row in shown[:-1]) > by_agent.totals.conversions


async def test_the_csv_holds_the_table_as_shown_with_formula_cells_prefixed(
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
    assert lines[0] == ["Agent", "Conversions", "Transaction value", "Lead value",
                        "Agent messages", "Agent responses", "Time assigned (h:mm:ss)"]

    def as_csv(cell: str) -> str:
        return "'" + cell if cell[:1] in ("=", "+", "-", "@") else cell

    assert lines[1:] == [[as_csv(cell) for cell in row] for row in shown]
    assert ["'=cmd"] == [line[0] for line in lines if "cmd" in line[0]]
    assert b'\r\n"Bob ""B"", Jr.",' in raw
    assert lines[-1][0] == TOTALS_LABEL
    by_agent = await native_report(world, tracker_pb2.REPORT_GROUPING_AGENT)
    assert lines[-1] == cells(TOTALS_LABEL, by_agent.totals)


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
    overflow = await phone.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    assert await phone.evaluate("() => document.body.scrollWidth <= window.innerWidth")
