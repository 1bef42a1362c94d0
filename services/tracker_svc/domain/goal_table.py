"""The goal table: every known goal with revision ordering, and each account's URL
matcher (docs/rules.md §3). Pure and synchronous; ``tracker_svc.adapters.goal_feed`` feeds it
from config's WatchGoals.

- A change is applied only if its revision is higher than the one known for that goal id.
  Deleted goals leave a tombstone with their revision, so a late, stale ``UPSERTED``
  cannot bring a deleted goal back.
- A snapshot (``replace_all``) drops goals missing from it: they were deleted while the
  tracker was away.
- Each account's active goals are compiled into one :class:`UrlMatcher`, lazily, and only
  again after that account's goals changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from tracker_svc.domain.matching import Condition, UrlMatcher
from tracker_svc.domain.model import TrackedGoal


class GoalSource(Protocol):
    """The goals as ingest sees them (``adapters.goal_feed.GoalCache``)."""

    async def wait_synced(self) -> None:
        """Return once the goals are loaded (the caller bounds the wait)."""
        ...

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]: ...


@dataclass(frozen=True, slots=True)
class KnownGoal:
    """A goal as the tracker holds it: what attribution needs, and its URL conditions."""

    goal: TrackedGoal
    conditions: tuple[Condition, ...]

    @property
    def matchable(self) -> bool:
        # A goal without a model this build understands is kept, but never hit.
        return self.goal.active and self.goal.model is not None and bool(self.conditions)


@dataclass(frozen=True, slots=True)
class _AccountIndex:
    """One account's active goals, precompiled."""

    goals: dict[str, TrackedGoal]
    matcher: UrlMatcher


class GoalTable:
    """Every known goal with revision ordering, and the per-account matchers. Synchronous:
    each method runs without yielding to the event loop, so readers never see half a
    change."""

    def __init__(self) -> None:
        self._goals: dict[str, KnownGoal] = {}
        self._deleted: dict[str, int] = {}  # goal id -> revision of its deletion
        self._by_account: dict[str, set[str]] = {}
        self._indexes: dict[str, _AccountIndex] = {}

    def __len__(self) -> int:
        return len(self._goals)

    def known_revision(self, goal_id: str) -> int | None:
        if goal_id in self._goals:
            return self._goals[goal_id].goal.revision
        return self._deleted.get(goal_id)

    def _is_newer(self, goal_id: str, revision: int) -> bool:
        known = self.known_revision(goal_id)
        return known is None or revision > known

    def goal(self, goal_id: str) -> TrackedGoal | None:
        known = self._goals.get(goal_id)
        return known.goal if known else None

    def upsert(self, known: KnownGoal) -> bool:
        """Store ``known`` unless a revision at least as high is known. True if applied."""
        goal = known.goal
        if not self._is_newer(goal.id, goal.revision):
            return False
        self._deleted.pop(goal.id, None)
        self._put(known)
        return True

    def delete(self, goal_id: str, revision: int) -> bool:
        """Forget a goal deleted at ``revision`` unless a revision at least as high is
        known. True if applied."""
        if not self._is_newer(goal_id, revision):
            return False
        self._drop(goal_id)
        self._deleted[goal_id] = revision
        return True

    def replace_all(self, snapshot: Iterable[KnownGoal]) -> None:
        """Make ``snapshot`` (every goal that exists) the table's content. A goal known at a
        revision at least as high as the snapshot's (or deleted at one) stays as known."""
        incoming = {known.goal.id: known for known in snapshot}
        for goal_id in [g for g in self._goals if g not in incoming]:
            # Deleted while we were not watching; its known revision becomes the tombstone,
            # so only a genuinely newer revision could bring it back.
            self._deleted[goal_id] = self._goals[goal_id].goal.revision
            self._drop(goal_id)
        for known in incoming.values():
            self.upsert(known)

    def _put(self, known: KnownGoal) -> None:
        old = self._goals.get(known.goal.id)
        if old is not None and old.goal.account_id != known.goal.account_id:
            self._drop(known.goal.id)  # never happens in config; keeps the indexes honest
        self._goals[known.goal.id] = known
        self._by_account.setdefault(known.goal.account_id, set()).add(known.goal.id)
        self._invalidate(known.goal.account_id)

    def _drop(self, goal_id: str) -> None:
        old = self._goals.pop(goal_id, None)
        if old is None:
            return
        account_id = old.goal.account_id
        ids = self._by_account.get(account_id)
        if ids is not None:
            ids.discard(goal_id)
            if not ids:
                del self._by_account[account_id]
        self._invalidate(account_id)

    def _invalidate(self, account_id: str) -> None:
        self._indexes.pop(account_id, None)

    def _index(self, account_id: str) -> _AccountIndex | None:
        index = self._indexes.get(account_id)
        if index is None:
            ids = self._by_account.get(account_id)
            if not ids:
                return None
            active = [self._goals[g] for g in sorted(ids) if self._goals[g].matchable]
            index = _AccountIndex(
                {k.goal.id: k.goal for k in active},
                UrlMatcher((k.goal.id, k.conditions) for k in active),
            )
            self._indexes[account_id] = index
        return index

    def matching(self, account_id: str, url: str) -> list[TrackedGoal]:
        """The account's active goals with a condition matching ``url``, ordered by id."""
        index = self._index(account_id)
        if index is None or not index.goals:
            return []
        return [index.goals[goal_id] for goal_id in sorted(index.matcher.match(url))]


