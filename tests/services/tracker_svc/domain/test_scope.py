"""The agent scope rule (docs/rules.md §7 D22) on its own."""

from __future__ import annotations

import pytest

from goalflow_common.errors import PermissionDenied
from tracker_svc.domain.scope import scoped_agent


@pytest.mark.parametrize("requested", ["", "a1", "someone"])
def test_a_caller_without_an_agent_scope_reads_what_it_asks_for(requested):
    assert scoped_agent(None, requested) == requested


@pytest.mark.parametrize("requested", ["", "a1"])
def test_an_agent_token_reads_its_own_agent(requested):
    assert scoped_agent("a1", requested) == "a1"


@pytest.mark.parametrize("requested", ["a2", "A1", "a1 "])
def test_an_agent_token_naming_another_agent_is_refused(requested):
    with pytest.raises(PermissionDenied, match=r"^agent_id: an agent token sees only"):
        scoped_agent("a1", requested)
