"""Judgments from clicks: which served documents users found relevant, corrected for position.

A user does not look at every hit: a document shown at position 8 and not clicked says little,
one skipped at position 2 above a click at position 5 says much. The rule here is the cascade
view of examination used by the DCM click model (Guo et al., 2009): in one served ranking the
user examined every position down to the last click, and nothing below it. Over all the
sessions of a query (same normalised text), each document's *examined click rate* is

    clicks / examinations          (examinations: sessions where it sat at or above the last click)

so the higher positions' extra attention is not mistaken for relevance: a document clicked
whenever it was seen counts fully whether it was seen at position 1 or 9. A document is a
positive when it was clicked at least ``min_clicks`` times and at that rate or more; a clicked
document below the rate is *excluded* (never sampled as a negative: clicks say it is not clearly
irrelevant either). A session without a click teaches nothing here: it is counted, not used.

A fixed ``min_clicks`` fits one traffic level only: the more often a query is asked, the more
noise clicks a document below the page collects from the few sessions that examined it
(docs/feedback.md §9 measures it). With ``confidence`` set, the rule scales with the evidence
instead: a positive needs the Wilson lower bound of its examined click rate, at that one-sided
confidence, to reach ``min_rate`` — two clicks in two examinations are not enough at 0.95, nine
in ten are.

"At or above the last click" undercounts the examinations of a document shown low: a user who
read past it and stopped without another click examined it, but the rule cannot tell. So a
document below the usual clicks is counted examined mostly in the sessions that clicked it, and
its rate is inflated; with enough traffic even a noise click rate passes a confidence bound
(docs/feedback.md §11 measures it). Where the client reports what users actually saw (UBI
``impression`` events, sent for the hits a user scrolled to, not for every rendered one),
``examined_by="impressions"`` counts those too: examinations are then the impressed hits plus
everything at or above the last click.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

from bertsearch.ranker.training.examples import Positive, TrainingQuery, normalised_query


@dataclass(frozen=True)
class Session:
    """One served ranking and what its user clicked: ``shown`` in served order (position 1 first);
    ``impressed``: the shown documents the client reported seen (``impression`` events; empty
    when it reports none)."""

    query_id: str
    query: str
    shown: tuple[str, ...]
    clicked: frozenset[str]
    impressed: frozenset[str] = frozenset()


ExaminedBy = Literal["last-click", "impressions"]
EXAMINED_BY: tuple[ExaminedBy, ...] = ("last-click", "impressions")


@dataclass(frozen=True)
class ClickRule:
    """When clicks make a positive: ``min_clicks`` clicks at an examined click rate ≥ ``min_rate``
    (with ``confidence``: the rate's Wilson lower bound at that one-sided confidence ≥ ``min_rate``).
    ``examined_by``: what counts as examined, the hits at or above the last click, or those and
    the impressed ones (see the module docstring)."""

    min_clicks: int = 2  # one click is too often noise (docs/feedback.md measures it)
    min_rate: float = 0.5
    confidence: float | None = None
    examined_by: ExaminedBy = "last-click"

    def __post_init__(self) -> None:
        if self.min_clicks < 1:
            raise ValueError(f"min_clicks must be at least 1, got {self.min_clicks}")
        if not 0.0 < self.min_rate <= 1.0:
            raise ValueError(f"min_rate must be in (0, 1], got {self.min_rate}")
        if self.confidence is not None and not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.examined_by not in EXAMINED_BY:
            raise ValueError(f"examined_by must be one of {', '.join(EXAMINED_BY)}, not {self.examined_by!r}")

    def to_dict(self) -> dict[str, int | float | str]:
        """The rule as a model's data record holds it; the options left at their defaults are left
        out, as before they existed, so the mined groups of earlier runs still match and resume."""
        record: dict[str, int | float | str] = {"min_clicks": self.min_clicks, "min_rate": self.min_rate}
        if self.confidence is not None:
            record["confidence"] = self.confidence
        if self.examined_by != "last-click":
            record["examined_by"] = self.examined_by
        return record

    def accepts(self, clicks: int, examinations: int) -> bool:
        """Whether a document clicked ``clicks`` times in ``examinations`` is a positive."""
        if clicks < self.min_clicks or examinations < 1:
            return False
        if self.confidence is None:
            return clicks / examinations >= self.min_rate
        return wilson_lower_bound(clicks, examinations, self.confidence) >= self.min_rate


def wilson_lower_bound(successes: int, trials: int, confidence: float) -> float:
    """The lower end of the Wilson score interval of a rate, at a one-sided ``confidence``."""
    z = NormalDist().inv_cdf(confidence)
    rate, shrink = successes / trials, z * z / trials
    centre = rate + shrink / 2
    margin = z * math.sqrt(rate * (1 - rate) / trials + shrink / (4 * trials))
    return (centre - margin) / (1 + shrink)


@dataclass
class ClickJudgments:
    """What the sessions yielded, and how many of them taught nothing."""

    queries: list[TrainingQuery]
    sessions: int = 0
    sessions_without_click: int = 0
    clicks_not_shown: int = 0  # clicks on documents the logged ranking did not hold (ignored)
    sessions_with_impressions: int = 0  # not in summary(): the data record stays as it was
    queries_without_positive: int = 0
    rates: dict[str, dict[str, float]] = field(default_factory=dict)  # query text -> doc -> rate

    def summary(self) -> dict[str, int]:
        return {
            "sessions": self.sessions,
            "sessions_without_click": self.sessions_without_click,
            "clicks_not_shown": self.clicks_not_shown,
            "queries": len(self.queries),
            "queries_without_positive": self.queries_without_positive,
            "positives": sum(len(q.positives) for q in self.queries),
        }


def judgments_from_clicks(sessions: Iterable[Session], rule: ClickRule = ClickRule()) -> ClickJudgments:
    """Training queries (positives and exclusions) from click sessions, one per distinct query text."""
    clicks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    first: dict[str, tuple[str, str]] = {}  # normalised text -> (query id, text) of its first session
    out = ClickJudgments(queries=[])
    for session in sessions:
        out.sessions += 1
        out.sessions_with_impressions += bool(session.impressed)
        positions = {doc: n for n, doc in enumerate(session.shown)}
        clicked = [d for d in session.clicked if d in positions]
        out.clicks_not_shown += len(session.clicked) - len(clicked)
        if not clicked:
            out.sessions_without_click += 1
            continue
        key = normalised_query(session.query)
        first.setdefault(key, (session.query_id, session.query))
        last = max(positions[d] for d in clicked)
        examined = set(session.shown[: last + 1])
        if rule.examined_by == "impressions":
            examined |= session.impressed & positions.keys()
        for doc in examined:
            seen[key][doc] += 1
        for doc in clicked:
            clicks[key][doc] += 1
    if rule.examined_by == "impressions" and out.sessions and not out.sessions_with_impressions:
        raise ValueError(
            f"examined_by impressions, but none of the {out.sessions} sessions has an `impression` event: "
            "the client sends none (use last-click), or the log's window holds none"
        )
    for key in sorted(first):
        query_id, text = first[key]
        rates = {doc: clicks[key][doc] / seen[key][doc] for doc in clicks[key]}
        out.rates[text] = rates
        positives = sorted(d for d in rates if rule.accepts(clicks[key][d], seen[key][d]))
        if not positives:
            out.queries_without_positive += 1
            continue
        out.queries.append(TrainingQuery(
            query_id, text, tuple(Positive(d) for d in positives),
            excluded=frozenset(rates) - frozenset(positives),
        ))  # fmt: skip
    return out


def shuffled(sessions: Sequence[Session], seed: int = 13) -> list[Session]:
    """The same sessions with each click moved to a random shown document: clicks that carry no
    relevance (what a promotion gate must refuse to learn from)."""
    rng = random.Random(seed)
    return [
        Session(s.query_id, s.query, s.shown, frozenset(rng.sample(s.shown, len(s.clicked & set(s.shown)))),
                s.impressed)
        for s in sessions
    ]  # fmt: skip
