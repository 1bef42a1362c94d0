"""docs/rules.md §2 condition semantics, as the tracker's precompiled matcher applies them."""

from __future__ import annotations

import pytest

from tracker_svc.domain.matching import Condition, UrlMatcher, normalize_for_is


@pytest.mark.parametrize(
    ("condition", "url", "matches"),
    [
        (Condition("CONTAINS", "/checkout"), "https://shop.example/checkout?step=2", True),
        (Condition("CONTAINS", "/CheckOut"), "https://shop.example/checkout", True),
        (Condition("CONTAINS", "/checkout"), "https://shop.example/CHECKOUT", True),
        (Condition("CONTAINS", "/checkout"), "https://shop.example/cart", False),
        (Condition("IS", "https://Shop.Example/thanks"), "HTTPS://shop.example/thanks", True),
        (Condition("IS", "https://shop.example/thanks"), "https://shop.example/thanks/", True),
        (Condition("IS", "https://shop.example/thanks/"), "https://shop.example/thanks", True),
        (Condition("IS", "https://shop.example/Thanks"), "https://shop.example/thanks", False),
        (Condition("IS", "https://shop.example/thanks"), "https://shop.example/thanks//", False),
        (Condition("IS", "https://shop.example/thanks"), "https://shop.example/thanks?x=1", False),
        (Condition("IS", "https://shop.example"), "https://SHOP.example/", True),
        (Condition("IS", "https://shop.example/a?Q=1"), "https://shop.example/a?q=1", False),
    ],
)
def test_condition_semantics(condition: Condition, url: str, matches: bool) -> None:
    assert bool(UrlMatcher([("g", [condition])]).match(url)) is matches


def test_any_condition_matches_and_goals_share_patterns() -> None:
    matcher = UrlMatcher(
        [
            ("a", [Condition("CONTAINS", "/cart"), Condition("CONTAINS", "/checkout")]),
            ("b", [Condition("CONTAINS", "checkout"), Condition("IS", "https://x.io/done")]),
            ("c", [Condition("CONTAINS", "/cart")]),
        ]
    )
    assert matcher.match("https://x.io/checkout") == {"a", "b"}
    assert matcher.match("https://x.io/cart") == {"a", "c"}
    assert matcher.match("https://X.io/done/") == {"b"}
    assert matcher.match("https://x.io/home") == set()


def test_overlapping_patterns_all_found() -> None:
    matcher = UrlMatcher([(f"g{i}", [Condition("CONTAINS", p)]) for i, p in
                          enumerate(["abc", "bc", "c", "abcd"])])
    assert matcher.match("xxabcx") == {"g0", "g1", "g2"}


def test_normalize_keeps_userinfo_and_path_case() -> None:
    assert normalize_for_is("HTTP://User@Host.IO:8080/A/") == "http://User@host.io:8080/A"
    assert normalize_for_is("/relative/") == "/relative"
