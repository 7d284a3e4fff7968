"""How a click rule's positives change with the traffic, in seconds: the click simulator's users
(bench/click_simulator.py, same cascade model and defaults) and the service's exploration
(api/exploration.py) replayed against a fixed ranking, without the service. For MEASUREMENT only.

    bertsearch eval var/data/scifact-dev --split train --index-dir var/index/scifact-dev \
        --configs hybrid --depth 50 --out var/bench/hybrid-train
    python bench/click_traffic.py var/bench/hybrid-train/runs/hybrid.trec --dataset var/data/scifact-dev \
        --sessions 6600,33000,100000 --explore-rate 0.2 --min-clicks 2,3 --confidence 0.95

The ranking is what the service served before any reranker (one TREC run, the same for every
session), so the replay stands for the loop's first log: docs/feedback.md §11 checks it against
the logs the real service wrote. For each session count and rule it prints the positives, how
many are judged relevant (precision, recall of the judged ones) and how many of the judged
documents that the ranking keeps below the page (positions top_k+1 .. depth) became positives.
Every session reports its examined hits as impressions, as the simulator does, so both
``examined_by`` ways of the rule are measured (by default; ``--examined-by`` picks one).
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from click_positives import rule_parser, rules_of  # bench/click_positives.py
from click_simulator import CascadeUser, judged_order  # bench/click_simulator.py

from bertsearch.api.exploration import Exploration
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.training.clicks import ClickRule, Session, judgments_from_clicks


def read_run(path: Path) -> dict[str, list[str]]:
    """Query id -> document ids in rank order, from a TREC run file."""
    ranked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            query_id, _, doc_id, rank, *_ = line.split()
            ranked[query_id].append((int(rank), doc_id))
    return {q: [d for _, d in sorted(docs)] for q, docs in ranked.items()}


def replay(ranked, relevant, user: CascadeUser, exploration: Exploration | None, *, sessions: int,
           seed: int) -> list[Session]:  # fmt: skip
    """``sessions`` sessions over the judged queries (cycled in a seeded order, as the simulator)."""
    order = judged_order(ranked, relevant, seed)
    rng = random.Random(seed + 1)
    out = []
    for n in range(sessions):
        query = order[n % len(order)]
        served = ranked[query]
        shown = exploration.page(served, user.depth, rng)[0] if exploration else served[: user.depth]
        examined, clicked = user.browse(shown, relevant[query], rng)
        out.append(Session(query, query, tuple(shown), frozenset(shown[p - 1] for p in clicked),
                           frozenset(shown[p - 1] for p in examined)))  # fmt: skip
    return out


def measure(sessions: list[Session], rule: ClickRule, relevant, below: set[tuple[str, str]]) -> dict:
    made = judgments_from_clicks(sessions, rule)
    positives = {(q.id, p.doc_id) for q in made.queries for p in q.positives}
    judged = {(q, d) for q, docs in relevant.items() for d, grade in docs.items() if grade > 0}
    hits = positives & judged
    return {
        "min_clicks": rule.min_clicks, "confidence": rule.confidence, "examined_by": rule.examined_by,
        "positives": len(positives), "judged_relevant": len(hits),
        "precision": round(len(hits) / max(len(positives), 1), 3),
        "recall": round(len(hits) / max(len(judged), 1), 3),
        "below_the_page_found": len(positives & below), "below_the_page": len(below),
    }  # fmt: skip


def main() -> None:
    parser = rule_parser(__doc__, examined_by="both")
    parser.add_argument("run", type=Path, help="TREC run of the served ranking (`bertsearch eval`'s runs/)")
    parser.add_argument("--sessions", default="6600,33000", help="session counts to replay")
    parser.add_argument("--explore-rate", type=float, default=0.0, help="BERTSEARCH_EXPLORE_RATE (default 0)")
    parser.add_argument("--explore-depth", type=int, default=50, help="BERTSEARCH_EXPLORE_DEPTH (default 50)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    relevant = {q: {d: g for d, g in docs.items() if g > 0}
                for q, docs in BeirDataset(args.dataset).load(args.split).qrels.items()}  # fmt: skip
    ranked = read_run(args.run)
    user = CascadeUser()
    exploration = Exploration(args.explore_rate, args.explore_depth) if args.explore_rate > 0 else None
    below = {(q, d) for q, docs in relevant.items() for d in docs
             if d in ranked.get(q, [])[user.depth : args.explore_depth]}  # fmt: skip
    rules = rules_of(args)
    for count in (int(n) for n in args.sessions.split(",")):
        sessions = replay(ranked, relevant, user, exploration, sessions=count, seed=args.seed)
        for rule in rules:
            print(json.dumps({"sessions": count, "explore_rate": args.explore_rate,
                              **measure(sessions, rule, relevant, below)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
