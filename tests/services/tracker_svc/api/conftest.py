"""Fixtures of the tracker's API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.services.tracker_svc.feeds import Subscriptions


@pytest.fixture
async def subs() -> AsyncIterator[Subscriptions]:
    subscriptions = Subscriptions()
    try:
        yield subscriptions
    finally:
        await subscriptions.close()
