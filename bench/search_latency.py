"""Search latency per pipeline configuration, one query at a time as the API serves them.

    python bench/search_latency.py --index-dir var/scifact-index \
        --queries ../shared/data/scifact/queries.jsonl --n 200

Prints mean / p50 / p95 / p99 wall time per query and the per-stage means, for bm25, dense and
hybrid (and hybrid+rerank when --reranker is given).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertsearch.ranker.factory import open_pipeline  # noqa: E402
from bertsearch.ranker.pipeline import PipelineConfig  # noqa: E402

CONFIGS = {
    "bm25": PipelineConfig(dense=False, rerank=False),
    "dense": PipelineConfig(lexical=False, rerank=False),
    "hybrid": PipelineConfig(rerank=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", required=True)
    parser.add_argument("--queries", required=True, help="queries.jsonl ({_id, text} per line)")
    parser.add_argument("--n", type=int, default=200, help="queries to time per configuration")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--reranker", default=None)
    parser.add_argument("--rerank-top-n", type=int, default=50)
    args = parser.parse_args()

    with open(args.queries, encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for line in handle if line.strip()][: args.n]
    configs = dict(CONFIGS)
    if args.reranker:
        configs["hybrid+rerank"] = PipelineConfig(rerank_top_n=args.rerank_top_n)
    pipeline = open_pipeline(args.index_dir, reranker=args.reranker)
    print(f"{len(queries)} queries, top_k {args.top_k}, threads {os.cpu_count()} cpu")
    print(f"{'config':<15}{'mean ms':>9}{'p50':>9}{'p95':>9}{'p99':>9}{'qps':>8}  stage means (ms)")
    for name, config in configs.items():
        for query in queries[:5]:  # warm-up: first calls pay for lazy initialisation
            pipeline.search(query, top_k=args.top_k, config=config)
        walls, stages = [], {}
        for query in queries:
            start = time.perf_counter()
            result = pipeline.search(query, top_k=args.top_k, config=config)
            walls.append((time.perf_counter() - start) * 1000)
            for stage, ms in result.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
        w = np.array(walls)
        stage_text = " ".join(f"{s}={np.mean(v):.1f}" for s, v in stages.items() if s != "total")
        print(
            f"{name:<15}{w.mean():>9.1f}{np.percentile(w, 50):>9.1f}{np.percentile(w, 95):>9.1f}"
            f"{np.percentile(w, 99):>9.1f}{1000 / w.mean():>8.1f}  {stage_text}"
        )
    pipeline.close()


if __name__ == "__main__":
    main()
