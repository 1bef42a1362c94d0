"""The console's exports page (issue 13): an admin requests a goal's export from the form,
follows it to "Mailed", and the mail reaches the SMTP sink addressed to the e-mail typed; a
refused request shows the server's message beside the field it names; the page lists the
account's exports, which fit at 1280 px even with a long goal name; at phone width nothing
overflows.

A double click on "Request export" makes one job, not two (the page's idempotency key and
its guard on a submission in flight)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from email.message import EmailMessage

from playwright.async_api import Page, expect

from goalflow_common.pb.goals.v1 import config_pb2, export_pb2
from tests.browser.console.conftest import PHONE, ConsolePages, ConsoleWorld, screenshot
from tests.services.config_svc.helpers import date
from tests.services.export_svc.conftest import read_outbox
from tests.services.tracker_svc.builders import agent, assigned, create_goal, ingest, opened, visit

RECIPIENT = "lead@example.com"
MAIL_WAIT_S = 10.0  # how long the test waits for the sink's file before calling it lost


async def goal_with_a_conversion(world: ConsoleWorld, name: str = "Checkout") -> str:
    """A goal tracked from today (the services' clock) and one conversion of it now, so the
    export's CSV has a row. Its id."""
    now = world.clock.now()
    goal = await create_goal(world.stack, world.tenant, name,
                             model=config_pb2.ATTRIBUTION_MODEL_LAST_TOUCH, start=now.date(),
                             value=("USD", "149.99"))
    [ack] = await ingest(world.producer(), [
        opened("conv-x", now, user="user-x"),
        assigned("conv-x", now, agent("agent-a")),
        visit("https://shop.example/checkout", now + dt.timedelta(seconds=1), user="user-x",
              conv="conv-x"),
    ])
    assert ack.conversions == 1, ack
    return str(goal.id)


async def fill_request(page: Page, *, goal: str, start: dt.date, end: dt.date,
                       email: str) -> None:
    await page.get_by_label("Goal", exact=True).select_option(label=goal)
    await page.get_by_label("First day").fill(start.isoformat())
    await page.get_by_label("Last day").fill(end.isoformat())
    await page.get_by_label("Recipient e-mail").fill(email)


async def mails_to(world: ConsoleWorld, recipient: str) -> list[EmailMessage]:
    """The sink's messages to ``recipient``, once there is one (the state says "Mailed" once
    the SMTP server accepted it; the sink writes its file as it accepts)."""
    deadline = time.monotonic() + MAIL_WAIT_S
    while True:
        found = [m for m in read_outbox(world.outbox) if m["To"] == recipient]
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


async def all_exports(world: ConsoleWorld) -> list[export_pb2.Export]:
    reply = await world.exports().ListExports(export_pb2.ListExportsRequest(page_size=200))
    return list(reply.exports)


async def test_an_export_requested_from_the_page_is_followed_to_mailed_and_reaches_the_sink(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    await goal_with_a_conversion(console_world)
    today = console_world.clock.now().date()
    page = await console_pages.signed_in(console_world, page="exports")
    await fill_request(page, goal="Checkout", start=today, end=today, email=RECIPIENT)
    # Twice, as an impatient admin does: one submission, one job.
    await page.get_by_role("button", name="Request export").dblclick()

    job = page.get_by_role("region", name="Your export")
    await expect(job.get_by_role("status")).to_contain_text("Mailed")
    facts = await job.inner_text()
    assert "Checkout" in facts and RECIPIENT in facts
    assert "Rows\n1\n" in facts, facts

    [mail] = await mails_to(console_world, RECIPIENT)
    assert "Checkout" in str(mail["Subject"]) + mail.get_body().get_content()  # type: ignore[union-attr]

    [stored] = await all_exports(console_world)
    assert (stored.recipient_email, stored.state, stored.row_count) == (
        RECIPIENT, export_pb2.EXPORT_STATE_MAILED, 1)

    # The list of past exports has it, with its state.
    past = page.get_by_role("region", name="Past exports")
    row = past.locator(f'tr[data-export-id="{stored.id}"]')
    await expect(row.locator(".badge")).to_have_text("Mailed")
    assert RECIPIENT in await row.inner_text()
    await screenshot(page, "exports")


async def test_a_refused_request_shows_the_servers_message_beside_the_field(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    await goal_with_a_conversion(console_world)
    today = console_world.clock.now().date()
    page = await console_pages.signed_in(console_world, page="exports")
    console_pages.console.expect("400")  # Chromium logs the refused request itself

    await fill_request(page, goal="Checkout", start=today, end=today - dt.timedelta(days=1),
                       email=RECIPIENT)
    await page.get_by_role("button", name="Request export").click()
    end = page.get_by_label("Last day")
    await page.locator('#export-end[aria-invalid="true"]').wait_for()
    beside = page.locator(f"#{await end.get_attribute('aria-describedby')}")
    assert await beside.inner_text() == "end_date: must not be before start_date"

    await page.get_by_label("Last day").fill(today.isoformat())
    await page.get_by_label("Recipient e-mail").fill("not an address")
    await page.get_by_role("button", name="Request export").click()
    await page.locator('#export-email[aria-invalid="true"]').wait_for()
    email = page.get_by_label("Recipient e-mail")
    beside = page.locator(f"#{await email.get_attribute('aria-describedby')}")
    assert await beside.inner_text() == "recipient_email: must be a valid e-mail address"
    assert await end.get_attribute("aria-invalid") is None  # the earlier message is gone
    await screenshot(page, "exports-refused")

    assert await all_exports(console_world) == []
    assert read_outbox(console_world.outbox) == []


async def test_the_list_pages_past_exports_newest_first(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    goal_id = await goal_with_a_conversion(console_world)
    today = console_world.clock.now().date()
    stub = console_world.exports()
    for n in range(22):  # more than one page of the page's 20
        # Each a little later than the one before (the services' clock is frozen).
        console_world.clock.advance(dt.timedelta(milliseconds=10))
        await stub.RequestExport(export_pb2.RequestExportRequest(
            goal_id=goal_id, start_date=date(today), end_date=date(today),
            recipient_email=f"r{n}@example.com"))
    page = await console_pages.signed_in(console_world, page="exports")
    past = page.get_by_role("region", name="Past exports")
    rows = past.locator("tbody tr")
    await rows.nth(19).wait_for()
    assert await rows.count() == 20
    # Newest first: the last requested heads the list.
    assert "r21@example.com" in await rows.nth(0).inner_text()
    await past.get_by_role("button", name="Load more").click()
    await rows.nth(21).wait_for()
    assert "r0@example.com" in await rows.nth(21).inner_text()
    assert await past.get_by_role("button", name="Load more").count() == 0


async def test_at_phone_width_the_page_does_not_overflow(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    await goal_with_a_conversion(console_world)
    today = console_world.clock.now().date()
    page = await console_pages.signed_in(console_world, page="exports", viewport=PHONE)
    await fill_request(page, goal="Checkout", start=today, end=today, email=RECIPIENT)
    await page.get_by_role("button", name="Request export").click()
    await expect(page.get_by_role("region", name="Your export").get_by_role("status")
                 ).to_contain_text("Mailed")
    await page.get_by_role("region", name="Past exports").locator("tbody tr").first.wait_for()
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    await screenshot(page, "exports-phone")



async def test_past_exports_fit_at_1280_px_with_a_long_goal_name(
    console_world: ConsoleWorld, console_pages: ConsolePages,
) -> None:
    """Every column, the link included, shows without scrolling the table: the goal and
    recipient cells wrap; the numbers do not."""
    long_name = ("Spring campaign for returning customers of the north-west region, "
                 "checkout through the partner shops")
    assert len(long_name) == 100
    recipient = "regional.marketing.lead.north-west@partner-shop.example.com"
    await goal_with_a_conversion(console_world, long_name)
    today = console_world.clock.now().date()
    page = await console_pages.signed_in(console_world, page="exports")
    await fill_request(page, goal=long_name, start=today, end=today, email=recipient)
    await page.get_by_role("button", name="Request export").click()
    await expect(page.get_by_role("region", name="Your export").get_by_role("status")
                 ).to_contain_text("Mailed")
    past = page.get_by_role("region", name="Past exports")
    first = past.locator("tbody tr").first
    await expect(first.locator(".badge")).to_have_text("Mailed")
    await expect(first.get_by_role("link", name="Download")).to_be_visible()

    wrap = past.locator(".table-wrap")
    sizes = await wrap.evaluate("(el) => [el.scrollWidth, el.clientWidth]")
    assert sizes[0] <= sizes[1], sizes
    assert long_name in await first.inner_text()
    # The numbers stay on one line each (a wrapped "1" or "1.2 kB" would be taller).
    for cell in await first.locator("td.num").all():
        assert await cell.evaluate("(td) => getComputedStyle(td).whiteSpace") == "nowrap"
    link = await first.get_by_role("link", name="Download").bounding_box()
    assert link is not None and link["x"] + link["width"] <= 1280
    await screenshot(page, "exports-long-name")
