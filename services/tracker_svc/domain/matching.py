"""URL condition matching, precompiled per account.

An account has at most 15 active goals of up to 100 conditions. Instead of testing up to
1,500 conditions one by one per URL, every CONTAINS value of the account goes into one
Aho-Corasick automaton (one pass over the URL finds them all) and every IS value into a
dict keyed by the normalised URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import ahocorasick_rs


def normalize_for_is(url: str) -> str:
    """The form IS compares: scheme and host lower-cased, the rest exact, one trailing
    slash dropped."""
    scheme, sep, rest = url.partition("://")
    if sep:
        end = len(rest)
        for stop in "/?#":
            pos = rest.find(stop)
            if pos != -1:
                end = min(end, pos)
        authority, tail = rest[:end], rest[end:]
        userinfo, at, hostport = authority.rpartition("@")
        url = f"{scheme.lower()}://{userinfo}{at}{hostport.lower()}{tail}"
    return url[:-1] if url.endswith("/") else url


@dataclass(frozen=True, slots=True)
class Condition:
    """One URL condition of a goal: operator "CONTAINS" or "IS", and its value."""

    operator: str
    value: str


class UrlMatcher:
    """Which of an account's goals match a URL (a goal matches when any condition does)."""

    def __init__(self, goals: Iterable[tuple[str, Iterable[Condition]]]) -> None:
        patterns: dict[str, set[str]] = {}
        self._exact: dict[str, set[str]] = {}
        for goal_id, conditions in goals:
            for cond in conditions:
                if cond.operator == "IS":
                    self._exact.setdefault(normalize_for_is(cond.value), set()).add(goal_id)
                else:
                    patterns.setdefault(cond.value.casefold(), set()).add(goal_id)
        self._pattern_goals = list(patterns.values())
        self._automaton = (
            ahocorasick_rs.AhoCorasick(
                list(patterns), matchkind=ahocorasick_rs.MatchKind.Standard
            )
            if patterns
            else None
        )

    def match(self, url: str) -> set[str]:
        """Ids of the goals with a condition that matches ``url``."""
        found: set[str] = set(self._exact.get(normalize_for_is(url), ()))
        if self._automaton is not None:
            for index, _start, _end in self._automaton.find_matches_as_indexes(
                url.casefold(), overlapping=True
            ):
                found |= self._pattern_goals[index]
        return found
