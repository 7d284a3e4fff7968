"""The learning loop in one command: simulate users, log, train from their clicks, gate, promote,
serve. Simulated users (bench/click_simulator.py, measurement only) ask a judged collection's
training queries over HTTP; no judgment of the training split reaches the model.

    python bench/feedback_loop.py --dataset var/data/scifact-dev --index-dir var/index/scifact \
        --work var/loop/scifact --sessions 6600 --train-args "--epochs 1 --max-length 256"

Steps, each timed and printed, all through the real commands:
1. `bertsearch serve` (hybrid: the registry WORK/rerankers is empty; the feedback log is
   WORK/feedback.sqlite3) on a free loopback port;
2. the click simulator: --sessions sessions of --split queries (default train); with
   --explore-rate the service explores below the page (api/exploration.py) while they click;
3. `bertsearch train --from-feedback WORK/feedback.sqlite3` into WORK/candidate;
4. `bertsearch tune-rerank-weight` on --dev-split: the candidate's depth and weight;
5. `bertsearch reranker promote` through the gate on --dev-split against what is served (hybrid);
6. the running service takes the promoted version up by itself: waits until /readyz says so and
   answers one query with it. The service is stopped at the end.
The gate's dev figure is optimistic (the weight was tuned on the same dev queries); evaluate the
promoted model on the test split with `bertsearch eval` for a held-out figure.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click_simulator import CascadeUser, simulate  # bench/click_simulator.py
from server import start_server  # bench/server.py

from bertsearch.jobs.datasets.beir import BeirDataset


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, required=True, help="judged BEIR folder (train, dev)")
    parser.add_argument("--index-dir", type=Path, required=True, help="index of its corpus")
    parser.add_argument("--work", type=Path, required=True, help="folder for the log, candidate and registry")
    parser.add_argument("--split", default="train", help="the queries simulated users ask")
    parser.add_argument("--dev-split", default="dev", help="tunes the operating point and gates")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--min-clicks", type=int, default=2)
    parser.add_argument("--explore-rate", type=float, default=0.0,
                        help="the service's BERTSEARCH_EXPLORE_RATE while users click (default 0: off)")
    parser.add_argument("--explore-depth", type=int, default=50)
    parser.add_argument("--train-args", default="--epochs 1", help="further `bertsearch train` flags")
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "rerankers").mkdir(exist_ok=True)
    log, candidate, registry = work / "feedback.sqlite3", work / "candidate", work / "rerankers"
    timings: dict[str, float] = {}
    started = time.perf_counter()
    env = {"BERTSEARCH_FEEDBACK_DB": str(log), "BERTSEARCH_RELOAD_SECONDS": "1",
           "BERTSEARCH_EXPLORE_RATE": str(args.explore_rate),
           "BERTSEARCH_EXPLORE_DEPTH": str(args.explore_depth)}
    server, url = start_server(args.index_dir, str(registry), env, [])
    timings["serve"] = time.perf_counter() - started
    try:
        split = BeirDataset(args.dataset).load(args.split)
        step = time.perf_counter()
        counts = simulate(url, split.queries, split.qrels, CascadeUser(), sessions=args.sessions,
                          clients=args.clients, seed=args.seed)  # fmt: skip
        timings["simulate"] = time.perf_counter() - step
        print(json.dumps({"simulated": counts}), flush=True)
        bertsearch = str(Path(sys.executable).with_name("bertsearch"))
        steps = {
            "train": ["train", "--from-feedback", str(log), "--min-clicks", str(args.min_clicks),
                      "--index-dir", str(args.index_dir), "--out", str(candidate), "--fresh",
                      *shlex.split(args.train_args)],
            "tune": ["tune-rerank-weight", str(args.dataset), "--split", args.dev_split, "--reranker",
                     str(candidate), "--index-dir", str(args.index_dir), "--rerank-top-n", "10,20,30,40,50",
                     "--no-progress"],
            "gate": ["reranker", "promote", str(candidate), "--registry", str(registry), "--dataset",
                     str(args.dataset), "--split", args.dev_split, "--index-dir", str(args.index_dir)],
        }  # fmt: skip
        for name, argv in steps.items():
            step = time.perf_counter()
            code = subprocess.run([bertsearch, *argv]).returncode
            timings[name] = time.perf_counter() - step
            if code != 0:
                print(f"`bertsearch {' '.join(argv[:2])}` ended with status {code}: the loop stops here")
                break
        else:
            step = time.perf_counter()
            ready = _wait_for_reranker(url)
            timings["take_up"] = time.perf_counter() - step
            answer = httpx.post(f"{url}/search", json={"query": next(iter(split.queries.values()))}).json()
            print(json.dumps({"serving": ready, "rerank": answer["rerank"]}))
    finally:
        server.terminate()
        server.wait(timeout=60)
    timings["total"] = time.perf_counter() - started
    print(json.dumps({"seconds": {k: round(v, 1) for k, v in timings.items()}}))


def _wait_for_reranker(url: str, seconds: float = 300) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        if ready.get("reranker_version"):
            return ready
        time.sleep(1)
    raise SystemExit(f"the service did not take the promoted reranker up within {seconds:.0f} s")


if __name__ == "__main__":
    main()
