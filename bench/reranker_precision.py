"""Does bf16 autocast keep the cross-encoder's rankings? Throughput and agreement, fp32 vs bf16.

    python bench/reranker_precision.py --index-dir var/scifact-index \
        --queries ../shared/data/scifact/queries.jsonl [--model MODEL_DIR] [--n 30] [--depth 30]

For each query, the BM25 top-``depth`` documents are scored by the cross-encoder in fp32 and in
bf16 autocast. Prints pairs/s for each, the mean Kendall tau between the two rankings, the mean
overlap of their top 10, and the largest score difference. Without --model it uses the packaged
MiniLM with an untrained head: that measures numerical agreement only; pass a trained reranker
for the figure that matters.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import kendalltau

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertsearch.indexer.snapshot import IndexSnapshot  # noqa: E402
from bertsearch.ranker.cross_encoder import CrossEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--model", default=None, help="trained cross-encoder folder")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    snapshot = IndexSnapshot.open(args.index_dir)
    with open(args.queries, encoding="utf-8") as handle:
        queries = [json.loads(line)["text"] for line in handle if line.strip()][: args.n]
    candidates = []
    for query in queries:
        hits = snapshot.lexical.search(query, args.depth)
        docs = snapshot.lexical.get([h.id for h in hits])
        candidates.append([docs[h.id].body for h in hits])

    scores, speed = {}, {}
    for precision in ("fp32", "bf16"):
        model = CrossEncoder(
            args.model,
            max_length=args.max_length,
            precision=precision,
            allow_untrained_head=args.model is None,
        ).load()
        model.score(queries[0], candidates[0][:4])  # warm-up
        start = time.perf_counter()
        scores[precision] = [model.score(q, texts) for q, texts in zip(queries, candidates, strict=True)]
        pairs = sum(len(c) for c in candidates)
        speed[precision] = pairs / (time.perf_counter() - start)

    taus, overlaps, diffs = [], [], []
    for a, b in zip(scores["fp32"], scores["bf16"], strict=True):
        taus.append(kendalltau(a, b).statistic)
        overlaps.append(len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / min(10, len(a)))
        diffs.append(float(np.max(np.abs(a - b))))
    print(f"model: {args.model or 'packaged MiniLM, untrained head (numerical agreement only)'}")
    print(f"{len(queries)} queries x {args.depth} BM25 candidates, max_length {args.max_length}")
    print(f"fp32: {speed['fp32']:.1f} pairs/s   bf16 autocast: {speed['bf16']:.1f} pairs/s")
    print(f"kendall tau fp32 vs bf16: mean {np.mean(taus):.4f}, min {np.min(taus):.4f}")
    print(f"top-10 overlap: mean {np.mean(overlaps):.4f}; max |score difference| {np.max(diffs):.4g}")
    print(f"score spread (fp32 std within a query, mean): {np.mean([np.std(s) for s in scores['fp32']]):.4g}")


if __name__ == "__main__":
    main()
