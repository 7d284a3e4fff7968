"""A CLICK SIMULATOR, for measurement only: simulated users that search over the real HTTP API and
click by a position-biased cascade model over a collection's judgments. Never a source of
training data in production; it exists to measure how well the service learns from clicks.

    python bench/click_simulator.py --url http://127.0.0.1:8000 \
        --dataset var/data/scifact-dev --split train --sessions 4000 --clients 4 --seed 13

Each session: a judged query of --split (cycled in a seeded order) is sent as POST /search
(top_k = --depth); the user then reads the hits from position 1 down (the cascade model of
Craswell et al., 2008, with noise and abandonment):

- at each position examined, a judged-relevant hit (grade > 0) is clicked with probability
  --click-relevant, any other hit with --click-noise (a misleading title, a curious user);
- after a click the user is satisfied and stops with probability --stop-after-click (relevant
  clicks) or keeps reading; after a noise click they always keep reading;
- without a click, the user reads on to the next position with probability --patience, and
  never beyond --depth.

The session's events go to POST /events: an ``impression`` per examined position and a
``click`` per click (UBI action names), in one request. The defaults (0.9 / 0.05 / 0.7 / 0.85
/ 10) model a careful user with a little noise; vary them to see how learning degrades.
Prints what was sent and clicked; the service's feedback log holds the rest.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from server import loopback  # bench/server.py


@dataclass(frozen=True)
class CascadeUser:
    """How a simulated user reads a ranked list (see the module docstring)."""

    click_relevant: float = 0.9
    click_noise: float = 0.05
    stop_after_click: float = 0.7
    patience: float = 0.85
    depth: int = 10

    def __post_init__(self) -> None:
        for name in ("click_relevant", "click_noise", "stop_after_click", "patience"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")

    def browse(self, ranked: Sequence[str], relevant: Mapping[str, int], rng: random.Random):
        """(examined positions, clicked positions), positions from 1, for one ranked list."""
        examined, clicked = [], []
        for position, doc_id in enumerate(ranked[: self.depth], start=1):
            examined.append(position)
            is_relevant = relevant.get(doc_id, 0) > 0
            if rng.random() < (self.click_relevant if is_relevant else self.click_noise):
                clicked.append(position)
                if is_relevant and rng.random() < self.stop_after_click:
                    break
                continue
            if rng.random() >= self.patience:
                break
        return examined, clicked


def simulate(url: str, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]], user: CascadeUser,
             *, sessions: int, clients: int = 4, seed: int = 13, timeout: float = 60.0) -> dict:  # fmt: skip
    """Run ``sessions`` simulated sessions against the service at ``url``; what happened, counted."""
    order = judged_order(queries, qrels, seed)
    counts = {"sessions": 0, "clicks": 0, "relevant_clicks": 0, "sessions_without_click": 0, "errors": 0}
    lock = threading.Lock()
    next_session = iter(range(sessions))

    def client(number: int) -> None:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            for n in iter(lambda: _take(next_session, lock), None):
                query_id = order[n % len(order)]
                rng = random.Random(f"{seed}/{n}")
                try:
                    session_id = f"sim-{number}-{n}"
                    outcome = _session(http, queries[query_id], qrels[query_id], user, rng, session_id)
                except httpx.HTTPError:
                    outcome = None
                with lock:
                    if outcome is None:
                        counts["errors"] += 1
                        continue
                    counts["sessions"] += 1
                    counts["clicks"] += outcome[0]
                    counts["relevant_clicks"] += outcome[1]
                    counts["sessions_without_click"] += outcome[0] == 0

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {**counts, "seconds": round(time.perf_counter() - started, 1), "user": asdict(user),
            "queries": len(order), "seed": seed}  # fmt: skip


def judged_order(query_ids: Iterable[str], qrels: Mapping[str, Mapping[str, int]], seed: int) -> list[str]:
    """The queries with a relevant judgment, in the seeded order that sessions cycle through."""
    judged = sorted(q for q in query_ids if any(g > 0 for g in qrels.get(q, {}).values()))
    if not judged:
        raise ValueError("no query has a relevant judgment: nothing to simulate")
    return random.Random(seed).sample(judged, len(judged))


def _take(numbers, lock: threading.Lock) -> int | None:
    with lock:
        return next(numbers, None)


def _session(http: httpx.Client, text: str, relevant: Mapping[str, int], user: CascadeUser,
             rng: random.Random, session_id: str) -> tuple[int, int]:  # fmt: skip
    answer = http.post("/search", json={"query": text, "top_k": user.depth})
    answer.raise_for_status()
    body = answer.json()
    ranked = [hit["id"] for hit in body["hits"]]
    examined, clicked = user.browse(ranked, relevant, rng)
    if body.get("query_id") is None:
        raise RuntimeError("the service logs no queries (BERTSEARCH_FEEDBACK_LOG=off): nothing to simulate")
    events = [
        {"query_id": body["query_id"], "action_name": action, "object_id": ranked[p - 1], "position": p,
         "session_id": session_id, "client_id": "click-simulator"}
        for action, positions in (("impression", examined), ("click", clicked)) for p in positions
    ]  # fmt: skip
    http.post("/events", json={"events": events}).raise_for_status()
    return len(clicked), sum(relevant.get(ranked[p - 1], 0) > 0 for p in clicked)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="the running service (loopback only)")
    parser.add_argument("--dataset", type=Path, required=True, help="BEIR folder: queries.jsonl, qrels/")
    parser.add_argument("--split", default="train", help="judged split whose queries the users ask")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent simulated users")
    parser.add_argument("--seed", type=int, default=13)
    defaults = CascadeUser()
    for name in ("click_relevant", "click_noise", "stop_after_click", "patience"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    parser.add_argument("--depth", type=int, default=defaults.depth, help="hits shown and read at most")
    parser.add_argument("--out", type=Path, default=None, help="write the counts as JSON here too")
    args = parser.parse_args()
    from bertsearch.jobs.datasets.beir import BeirDataset

    split = BeirDataset(args.dataset).load(args.split)
    user = CascadeUser(
        args.click_relevant, args.click_noise, args.stop_after_click, args.patience, args.depth
    )
    counts = simulate(loopback(args.url), split.queries, split.qrels, user, sessions=args.sessions,
                      clients=args.clients, seed=args.seed)  # fmt: skip
    print(json.dumps(counts, indent=2))
    if args.out:
        args.out.write_text(json.dumps(counts, indent=2) + "\n")


if __name__ == "__main__":
    main()
