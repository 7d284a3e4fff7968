"""Reranker throughput in one process, on the same weights and the same pairs: pairs/s and the
ranking agreement with the fp32 reference, for sentence-transformers' `CrossEncoder.predict`
(its defaults) and bertsearch's `CrossEncoder.score_pairs` in fp32 and bf16 at several lengths.

    python bench/rerank_throughput.py --reranker var/models/scifact-judged \
        --dataset var/data/scifact-dev --split test --index-dir var/index/scifact --queries 50 --depth 20

Pairs: --queries queries of the split (seeded sample) with their BM25 top --depth documents.
Each scorer runs once to warm up on 32 pairs, then scores every pair --repeats times; the best
run counts. Kendall's tau is computed per query against bertsearch fp32 at the model's length,
then averaged. Run it on a quiet machine: it measures the CPU.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.factory import open_pipeline


def timed(score, pairs, repeats: int) -> tuple[np.ndarray, float]:
    score(pairs[:32])
    best, scores = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        scores = np.asarray(score(pairs), dtype=np.float64)
        best = min(best, time.perf_counter() - started)
    return scores, len(pairs) / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--lengths", default="128,192,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    queries = BeirDataset(args.dataset).load(args.split).queries
    chosen = random.Random(args.seed).sample(sorted(queries), min(args.queries, len(queries)))
    pipeline = open_pipeline(args.index_dir)
    pairs, groups = [], []
    for query_id in chosen:
        hits = pipeline.lexical.search(queries[query_id], args.depth)
        documents = pipeline.lexical.get([h.id for h in hits])
        found = [(queries[query_id], documents[h.id].body) for h in hits if h.id in documents]
        groups.append(range(len(pairs), len(pairs) + len(found)))
        pairs += found
    pipeline.close()

    reference_length = CrossEncoder(args.reranker).max_length
    scorers = {}
    from sentence_transformers import CrossEncoder as SentenceTransformersCrossEncoder

    st = SentenceTransformersCrossEncoder(str(args.reranker))
    scorers["sentence-transformers predict (defaults)"] = lambda p: st.predict(p, show_progress_bar=False)
    scorers[f"bertsearch fp32, {reference_length} tokens"] = (
        CrossEncoder(args.reranker, precision="fp32", max_length=reference_length).load().score_pairs
    )
    for length in (int(x) for x in args.lengths.split(",")):
        scorers[f"bertsearch bf16, {length} tokens"] = (
            CrossEncoder(args.reranker, precision="bf16", max_length=length).load().score_pairs
        )
    rows, reference = [], None
    for name, score in scorers.items():
        scores, per_second = timed(score, pairs, args.repeats)
        if name.startswith("bertsearch fp32"):
            reference = scores
        rows.append({"scorer": name, "pairs_per_s": round(per_second, 1), "scores": scores})
    base = rows[0]["pairs_per_s"]
    for row in rows:
        scores = row.pop("scores")
        taus = [kendalltau(reference[list(g)], scores[list(g)]).statistic for g in groups if len(g) > 1]
        row["kendall_tau_vs_fp32"] = round(float(np.nanmean(taus)), 4)
        row["x_sentence_transformers"] = round(row["pairs_per_s"] / base, 2)
        speedup, tau = row["x_sentence_transformers"], row["kendall_tau_vs_fp32"]
        print(f"{row['scorer']:<45} {row['pairs_per_s']:>7.1f} pairs/s {speedup:>5.2f}x tau {tau:.4f}")
    report = {"pairs": len(pairs), "queries": len(chosen), "depth": args.depth,
              "reranker": str(args.reranker), "rows": rows}  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
