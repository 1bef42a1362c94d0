"""Which of its account's conversions a caller may see (docs/rules.md §7 D22).

API keys, and supervisor and admin tokens, see the whole account. An agent token
(``Principal.agent_id`` set) sees only the conversions **crediting** its agent: a conversion
names the agents it credits (``ConversionRecord.credited_agent_ids``), and one crediting
several agents is seen whole by each of them. This is the tracker's rule, applied where the
request is read: the auth interceptor only checks the role.

- ``ListConversions``: an empty ``agent_id`` becomes the token's agent; another agent's id
  is refused (PERMISSION_DENIED), so that the answer is never "nothing" for a reason the
  caller cannot see.
- ``SubscribeConversions`` by ``agent_id``: the same rule. By ``conversation_id``: the
  conversation's conversions that credit the token's agent (the feed filters them as it
  dispatches; see ``feed.ConversionFeed``).
"""

from __future__ import annotations

from goalflow_common.errors import PermissionDenied


def scoped_agent(own_agent: str | None, requested: str) -> str:
    """The credited agent a read is limited to ("" for none): ``requested`` for a caller
    without an agent scope (``own_agent`` None), else ``own_agent``, refusing another one."""
    if own_agent is None:
        return requested
    if requested and requested != own_agent:
        raise PermissionDenied(
            "agent_id: an agent token sees only the conversions crediting its own agent"
        )
    return own_agent
