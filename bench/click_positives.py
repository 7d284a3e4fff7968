"""What a feedback log's clicks would teach, measured against the judgments the users clicked by.

    python bench/click_positives.py var/loop/scifact/feedback.sqlite3 \
        --dataset var/data/scifact-dev --split train

For a log written while simulated users (bench/click_simulator.py) asked the judged queries of
--split, applies the click rule of `bertsearch train --from-feedback` (ranker/training/clicks.py)
at each --min-clicks, and at each --confidence (the Wilson-bound rule of `--click-confidence`),
and prints, per rule, as JSON: the positives it yields, how many of them are
judged relevant (precision) and what share of the judged-relevant documents they recover (recall);
and, for a log written with exploration on (BERTSEARCH_EXPLORE_RATE), the positives whose document
was shown only by exploration (never at its own rank), and how many of those are judged relevant.
Measurement only: judgments never reach training.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from bertsearch.api.feedback.sqlite_log import SQLiteLog
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.datasets.feedback import sessions_of
from bertsearch.ranker.training.clicks import EXAMINED_BY, ClickRule, judgments_from_clicks
from bertsearch.ranker.training.examples import normalised_query, relevant_by_text


def rule_parser(doc: str, *, examined_by: str = "last-click") -> argparse.ArgumentParser:
    """The flags of the click-rule benches: the judged dataset, and the rules to measure."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, required=True, help="the judged BEIR folder users asked")
    parser.add_argument("--split", default="train")
    parser.add_argument("--min-clicks", default="1,2", help="click-rule thresholds to measure (default 1,2)")
    parser.add_argument("--confidence", default="",
                        help="Wilson-bound confidences to measure too (e.g. 0.9,0.95)")
    parser.add_argument("--examined-by", default=examined_by, choices=(*EXAMINED_BY, "both"),
                        help=f"what counts as examined (the rule's --examined-by; default {examined_by}); "
                        "both: each rule twice")  # fmt: skip
    return parser


def rules_of(args: argparse.Namespace) -> list[ClickRule]:
    """The rules ``rule_parser``'s flags ask for: each count, then each confidence, per way."""
    ways = EXAMINED_BY if args.examined_by == "both" else (args.examined_by,)
    counts = [int(n) for n in args.min_clicks.split(",") if n]
    rules = [ClickRule(min_clicks=n, examined_by=way) for way in ways for n in counts]
    return rules + [ClickRule(min_clicks=1, confidence=float(c), examined_by=way)
                    for way in ways for c in args.confidence.split(",") if c]  # fmt: skip


def main() -> None:
    parser = rule_parser(__doc__)
    parser.add_argument("log", type=Path, help="the service's SQLite feedback log")
    args = parser.parse_args()
    if not args.log.is_file():
        parser.error(f"{args.log}: no feedback log there (opening it would create an empty one)")

    split = BeirDataset(args.dataset).load(args.split)
    relevant = relevant_by_text(split.queries, split.qrels)
    log = SQLiteLog(args.log)
    try:
        queries, events = list(log.queries()), list(log.events())
    finally:
        log.close()
    ranked: dict[str, set[str]] = defaultdict(set)  # documents shown at their own rank, per query text
    for record in queries:
        ranked[normalised_query(record.query)] |= {h.object_id for h in record.hits if not h.explored}
    sessions = sessions_of(queries, events)
    judged_total = sum(len(docs) for docs in relevant.values())
    print(json.dumps({
        "sessions": len(sessions), "explored_hits": sum(h.explored for q in queries for h in q.hits),
        "judged_relevant": judged_total,
        "judged_relevant_never_shown_at_rank": sum(len(d - ranked[k]) for k, d in relevant.items()),
    }))  # fmt: skip
    for rule in rules_of(args):
        try:
            made = judgments_from_clicks(sessions, rule)
        except ValueError as refused:  # impressions asked of a log that has none
            print(json.dumps({"examined_by": rule.examined_by, "refused": str(refused)}))
            continue
        positives = [(normalised_query(q.text), p.doc_id) for q in made.queries for p in q.positives]
        correct = sum(doc in relevant[key] for key, doc in positives)
        explored_only = [(key, doc) for key, doc in positives if doc not in ranked[key]]
        print(json.dumps({
            "min_clicks": rule.min_clicks, "confidence": rule.confidence, "examined_by": rule.examined_by,
            "positives": len(positives), "judged_relevant": correct,
            "precision": round(correct / max(len(positives), 1), 3),
            "recall": round(correct / max(judged_total, 1), 3),
            "shown_only_by_exploration": len(explored_only),
            "of_those_judged_relevant": sum(doc in relevant[key] for key, doc in explored_only),
            "queries_with_a_positive": len(made.queries),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
