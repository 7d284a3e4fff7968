"""Judgments from clicks: the cascade examination rule, thresholds, what is counted and not used."""

from __future__ import annotations

import pytest

from bertsearch.ranker.training.clicks import (
    ClickRule,
    Session,
    judgments_from_clicks,
    shuffled,
    wilson_lower_bound,
)

pytestmark = pytest.mark.unit

SHOWN = ("a", "b", "c", "d", "e")


def session(n: int, clicked: set[str], query: str = "cheap flights", shown=SHOWN) -> Session:
    return Session(f"s{n}", query, shown, frozenset(clicked))


def test_a_document_clicked_whenever_it_was_examined_is_a_positive_wherever_it_sat():
    # "d" was clicked in both sessions that reached it; "a" was examined three times, clicked once
    sessions = [session(1, {"d"}), session(2, {"a"}), session(3, {"d", "a"}, shown=("d", "a", "b", "c", "e"))]
    judged = judgments_from_clicks(sessions)
    (query,) = judged.queries
    rates = judged.rates["cheap flights"]
    assert rates["d"] == pytest.approx(2 / 2)  # session 2 stopped at "a": "d" was never examined there
    assert rates["a"] == pytest.approx(2 / 3)
    assert {p.doc_id for p in query.positives} == {"a", "d"}


def test_below_the_rate_a_clicked_document_is_neither_positive_nor_negative():
    sessions = [session(1, {"b"}), session(2, {"c"}), session(3, {"c"}), session(4, {"c"})]
    (query,) = judgments_from_clicks(sessions, ClickRule(min_clicks=1, min_rate=0.5)).queries
    assert [p.doc_id for p in query.positives] == ["c"]  # 3 of 4 examinations
    assert query.excluded == frozenset({"b"})  # 1 of 4: not sure enough to be either


def test_min_clicks_drops_single_noise_clicks():
    sessions = [session(1, {"e"}), session(2, {"b"}), session(3, {"b"})]
    (query,) = judgments_from_clicks(sessions, ClickRule(min_clicks=2, min_rate=0.5)).queries
    assert [p.doc_id for p in query.positives] == ["b"] and "e" in query.excluded


def test_the_wilson_bound_matches_the_textbook_interval():
    # 8 of 10 at 95 % two-sided (z = 1.96, one-sided 0.975): Wilson's interval is 0.490-0.943
    assert wilson_lower_bound(8, 10, 0.975) == pytest.approx(0.4902, abs=1e-4)
    assert wilson_lower_bound(10, 10, 0.975) == pytest.approx(0.7225, abs=1e-4)


def test_with_a_confidence_the_rule_asks_more_clicks_of_a_document_examined_less():
    # "b": 2 clicks in 2 examinations (the fixed rule takes it); "a": 9 clicks in 11
    sessions = [session(n, {"a"}) for n in range(9)] + [session(9, {"b"}), session(10, {"b"})]
    fixed = judgments_from_clicks(sessions, ClickRule(min_clicks=2, min_rate=0.5))
    (query,) = fixed.queries
    assert {p.doc_id for p in query.positives} == {"a", "b"}
    scaled = judgments_from_clicks(sessions, ClickRule(min_clicks=1, min_rate=0.5, confidence=0.95))
    (query,) = scaled.queries
    assert [p.doc_id for p in query.positives] == ["a"]  # 9/11 examined: bound 0.57; "b" 2/2: 0.43
    assert query.excluded == frozenset({"b"})  # clicked, too little evidence: neither side


def test_the_rule_record_names_a_confidence_only_when_one_is_set():
    # without one, the record is what runs made before the option wrote: their mined groups resume
    assert ClickRule().to_dict() == {"min_clicks": 2, "min_rate": 0.5}
    assert ClickRule(confidence=0.95).to_dict() == {"min_clicks": 2, "min_rate": 0.5, "confidence": 0.95}
    assert ClickRule(examined_by="impressions").to_dict()["examined_by"] == "impressions"


def test_impressions_count_the_examinations_below_the_last_click_that_the_cascade_rule_misses():
    # "e" sits last; users who clicked "a" read on to "e" (impressions say so) and left it. Below
    # the last click the cascade rule cannot see that: it counts "e" examined only where clicked
    read_past = [Session(f"s{n}", "q", SHOWN, frozenset({"a"}), frozenset(SHOWN)) for n in range(10)]
    clicked_e = [Session(f"t{n}", "q", SHOWN, frozenset({"e"}), frozenset(SHOWN)) for n in range(3)]
    sessions = read_past + clicked_e
    cascade = judgments_from_clicks(sessions, ClickRule(min_clicks=1, confidence=0.95))
    assert cascade.rates["q"]["e"] == 1.0  # 3 of 3 "examinations": a noise document made a positive
    assert {p.doc_id for p in cascade.queries[0].positives} == {"a", "e"}
    rule = ClickRule(min_clicks=1, confidence=0.95, examined_by="impressions")
    seen = judgments_from_clicks(sessions, rule)
    assert seen.rates["q"]["e"] == pytest.approx(3 / 13)
    assert [p.doc_id for p in seen.queries[0].positives] == ["a"] and "e" in seen.queries[0].excluded
    # a log without impressions is refused, not silently read as last-click
    with pytest.raises(ValueError, match="none of the 2 sessions has an `impression` event"):
        judgments_from_clicks([session(1, {"a"}), session(2, {"b"})], rule)


def test_sessions_without_clicks_are_counted_and_teach_nothing():
    sessions = [session(1, set()), session(2, set(), query="other"), session(3, {"zz"}), session(4, {"a"})]
    judged = judgments_from_clicks(sessions, ClickRule(min_clicks=1))
    summary = judged.summary()
    assert summary["sessions"] == 4 and summary["sessions_without_click"] == 3
    assert summary["clicks_not_shown"] == 1  # "zz" was never served in that ranking
    assert [q.text for q in judged.queries] == ["cheap flights"]


def test_sessions_of_one_query_text_pool_across_case_and_spacing():
    sessions = [session(1, {"a"}), session(2, {"b"}, query="  Cheap   FLIGHTS ")]
    judged = judgments_from_clicks(sessions, ClickRule(min_clicks=1))
    (query,) = judged.queries
    assert query.id == "s1" and {p.doc_id for p in query.positives} == {"a", "b"}


def test_shuffled_clicks_keep_their_number_and_stay_on_shown_documents():
    sessions = [session(n, {"a", "b"} if n % 2 else {"c"}) for n in range(40)]
    moved = shuffled(sessions, seed=1)
    assert [len(s.clicked) for s in moved] == [len(s.clicked) for s in sessions]
    assert all(s.clicked <= set(s.shown) for s in moved)
    assert sum(s.clicked != o.clicked for s, o in zip(moved, sessions, strict=True)) > 20


def test_a_rule_outside_its_range_is_refused():
    with pytest.raises(ValueError, match="min_rate"):
        ClickRule(min_rate=0.0)
    with pytest.raises(ValueError, match="min_clicks"):
        ClickRule(min_clicks=0)
    with pytest.raises(ValueError, match="examined_by must be one of last-click, impressions"):
        ClickRule(examined_by="viewport")
    with pytest.raises(ValueError, match="confidence"):
        ClickRule(confidence=1.0)
