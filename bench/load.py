"""The query service under concurrent load: answers/s, latency percentiles, errors and rerank coverage.

    python bench/load.py --index-dir var/sample/index --reranker var/sample/reranker \
        --queries var/sample/queries.jsonl --clients 1,8,16 --budgets 0,400 --seconds 30
    python bench/load.py ... --serve-args "--ray-serve --replicas 2"     # the same on Ray Serve

Starts `bertsearch serve` on a free loopback port (or uses a running one: --url, loopback only),
then for every (budget, clients) pair sends POST /search with the queries in turn from that many
client threads for --seconds (at most --max-requests in all), and prints one row each: answers/s,
p50 / p95 / p99 latency, errors (5xx and transport), 503s (admission control, counted apart: the
client then waits Retry-After, as a well-behaved client does), the mean of scored/requested (and, in
the JSON, of cached/scored: the score cache)
over the answers. Budget 0 sends no budget (the service default);
budget B sends "stages": {"rerank_budget_ms": B}. --soak S also runs S seconds at --soak-clients
(8) and reports the server's RSS at its start and end. Every loop is bounded in count
and time and stops by itself; nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from server import loopback, start_server  # bench/server.py


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="a running service on a loopback address")
    parser.add_argument("--index-dir", type=Path, default=None, help="start `bertsearch serve` on this index")
    parser.add_argument("--reranker", default=None, help="with --index-dir: the reranker to serve")
    parser.add_argument("--queries", type=Path, required=True, help="queries.jsonl ({_id, text} per line)")
    parser.add_argument("--clients", default="1,8,16")
    parser.add_argument("--budgets", default="0,400", help="rerank budgets in ms; 0: the service default")
    parser.add_argument("--rerank-top-n", type=int, default=None, help="reranked (default: the model's own)")
    parser.add_argument("--seconds", type=float, default=30.0, help="per configuration")
    parser.add_argument("--max-requests", type=int, default=5000, help="per configuration, at most")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of soak after the table")
    parser.add_argument("--soak-clients", type=int, default=8)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the started server")
    parser.add_argument("--serve-args", default="", help="flags for `bertsearch serve`, e.g. '--ray-serve'")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here too")
    args = parser.parse_args()

    queries = [json.loads(line)["text"] for line in args.queries.read_text().splitlines() if line.strip()]
    server = None
    if args.url:
        url = loopback(args.url)
    elif args.index_dir:
        env = dict(e.split("=", 1) for e in args.env)
        server, url = start_server(args.index_dir, args.reranker, env, args.serve_args.split())
    else:
        parser.error("give --url or --index-dir")
    try:
        ready = httpx.get(f"{url}/readyz", timeout=10).json()
        print(f"service {url}: index {ready.get('index_version')}, {ready.get('documents')} documents, "
              f"reranker {ready.get('reranker')} (max_length {ready.get('reranker_max_length')}, "
              f"top_n {ready.get('rerank_top_n')}); {os.cpu_count()} CPUs")
        rows = []
        header = f"{'budget':>7} {'clients':>7} {'answers/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} " \
                 f"{'errors':>6} {'503s':>5} {'scored/req':>10} {'degraded':>8}"
        print(header)
        for budget in [float(b) for b in args.budgets.split(",")]:
            for clients in [int(c) for c in args.clients.split(",")]:
                row = run_load(
                    url, queries, clients, budget, args.rerank_top_n, args.seconds, args.max_requests
                )
                rows.append(row)
                print(_format(row), flush=True)
        if args.soak and server is not None:
            clients = args.soak_clients
            before = _rss_mb(server.pid)
            row = run_load(url, queries, clients, 0.0, args.rerank_top_n, args.soak, 10**9)
            after = _rss_mb(server.pid)
            row.update(soak_seconds=args.soak, rss_start_mb=before, rss_end_mb=after)
            rows.append(row)
            print(f"soak {args.soak:.0f} s at {clients} clients: " + _format(row).strip())
            print(f"server RSS {before:.0f} MB at the start, {after:.0f} MB at the end "
                  f"({after - before:+.0f} MB)")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(rows, indent=2) + "\n")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)


def run_load(url, queries, clients, budget, top_n, seconds, max_requests) -> dict:
    """``clients`` threads sending queries for ``seconds`` (``max_requests`` in all at most)."""
    stages = {
        **({"rerank_budget_ms": budget} if budget else {}),
        **({"rerank_top_n": top_n} if top_n else {}),
    }
    lock = threading.Lock()
    latencies: list[float] = []
    coverage: list[float] = []
    cached: list[float] = []
    counts = {"sent": 0, "errors": 0, "overloaded": 0, "degraded": 0}
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(timeout=60) as http:
            n = number
            while time.monotonic() < stop_at:
                with lock:
                    if counts["sent"] >= max_requests:
                        return
                    counts["sent"] += 1
                body = {"query": queries[n % len(queries)], "top_k": 10}
                if stages:
                    body["stages"] = stages
                n += clients
                started = time.perf_counter()
                try:
                    response = http.post(f"{url}/search", json=body)
                except httpx.TransportError:
                    with lock:
                        counts["errors"] += 1
                    continue
                elapsed = time.perf_counter() - started
                backoff = 0.0
                with lock:
                    if response.status_code == 503:
                        counts["overloaded"] += 1
                        backoff = float(response.headers.get("Retry-After", 1))
                    elif response.status_code >= 400:
                        counts["errors"] += 1
                    else:
                        latencies.append(elapsed)
                        answer = response.json()
                        rerank = answer.get("rerank")
                        if rerank and rerank["requested"]:
                            coverage.append(rerank["scored"] / rerank["requested"])
                        if rerank and rerank["scored"]:
                            cached.append(rerank.get("cached", 0) / rerank["scored"])
                        counts["degraded"] += bool(answer.get("degraded"))
                if backoff:  # a well-behaved client waits as told before it asks again
                    time.sleep(min(backoff, max(0.0, stop_at - time.monotonic())))

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - started
    ms = np.array(latencies) * 1000.0 if latencies else np.array([np.nan])
    return {
        "budget_ms": budget or None, "clients": clients, "answers": len(latencies),
        "answers_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
        "errors": counts["errors"], "overloaded_503": counts["overloaded"], "degraded": counts["degraded"],
        "mean_scored_fraction": float(np.mean(coverage)) if coverage else None, "seconds": wall,
        "mean_cached_fraction": float(np.mean(cached)) if cached else None,
    }  # fmt: skip


def _format(row: dict) -> str:
    budget = f"{row['budget_ms']:.0f}" if row["budget_ms"] else "default"
    scored = f"{row['mean_scored_fraction']:.3f}" if row["mean_scored_fraction"] is not None else "-"
    return (f"{budget:>7} {row['clients']:>7} {row['answers_per_s']:>9.2f} {row['p50_ms']:>8.0f} "
            f"{row['p95_ms']:>8.0f} {row['p99_ms']:>8.0f} {row['errors']:>6} {row['overloaded_503']:>5} "
            f"{scored:>10} {row['degraded']:>8}")  # fmt: skip


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


if __name__ == "__main__":
    main()
