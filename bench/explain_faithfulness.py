"""Are the reranker's word attributions faithful? Delete the k most-attributed document words of
(query, top hit) pairs and see whether the cross-encoder's score drops more than when k random
words are deleted (the deletion test of DeYoung et al., 2020, "comprehensiveness").

    python bench/explain_faithfulness.py --reranker var/models/scifact-judged \
        --dataset var/data/scifact-dev --split test --index-dir var/index/scifact --pairs 200 --k 10

For each of --pairs queries (seeded sample of the split), the pair is the query and its top hit
as the pipeline ranks it with this reranker. Prints the mean score drop for the top-k and the
random-k deletions, their ratio, the mean of the per-pair gap with a 95% bootstrap interval, the
share of pairs where the top-k deletion hurt more, and the attribution time per pair.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

import numpy as np

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.ranker.attributions import attribute
from bertsearch.ranker.factory import open_pipeline


def without(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with the character spans removed and the spaces they leave collapsed."""
    kept, last = [], 0
    for start, end in sorted(spans):
        kept.append(text[last:start])
        last = end
    kept.append(text[last:])
    return re.sub(r"\s{2,}", " ", "".join(kept)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reranker", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--k", type=int, default=10, help="words deleted")
    parser.add_argument("--steps", type=int, default=16, help="integrated-gradients steps")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    queries = BeirDataset(args.dataset).load(args.split).queries
    chosen = random.Random(args.seed).sample(sorted(queries), min(args.pairs, len(queries)))
    pipeline = open_pipeline(args.index_dir, reranker=args.reranker)
    encoder = pipeline.reranker
    drops_top, drops_random, seconds = [], [], []
    for n, query_id in enumerate(chosen, start=1):
        query = queries[query_id]
        result = pipeline.search(query, top_k=1)
        passage = result.documents[result.hits[0].id].body
        explained = attribute(encoder, query, passage, steps=args.steps)
        seconds.append(explained.seconds)
        words = [w for w in explained.document if w.word.strip()]
        if len(words) <= 2 * args.k:
            continue  # too short to delete k words and keep a document
        top = sorted(words, key=lambda w: -w.score)[: args.k]
        rng = random.Random(f"{args.seed}/{query_id}")
        chance = rng.sample(words, args.k)
        original, cut_top, cut_random = encoder.score_pairs([
            (query, passage),
            (query, without(passage, [(w.start, w.end) for w in top])),
            (query, without(passage, [(w.start, w.end) for w in chance])),
        ])  # fmt: skip
        drops_top.append(float(original - cut_top))
        drops_random.append(float(original - cut_random))
        if n % 25 == 0:
            print(f"{n}/{len(chosen)} pairs: mean drop top-{args.k} {np.mean(drops_top):.3f}, "
                  f"random {np.mean(drops_random):.3f}", flush=True)  # fmt: skip
    pipeline.close()
    top, chance = np.array(drops_top), np.array(drops_random)
    gaps = top - chance
    rng = np.random.default_rng(args.seed)
    boot = [rng.choice(gaps, len(gaps)).mean() for _ in range(10_000)]
    report = {
        "pairs": len(gaps), "k": args.k, "steps": args.steps, "reranker": str(args.reranker),
        "dataset": f"{args.dataset} / {args.split}",
        "mean_drop_top_k": round(float(top.mean()), 4), "mean_drop_random_k": round(float(chance.mean()), 4),
        "ratio": round(float(top.mean() / chance.mean()), 2) if chance.mean() > 0 else None,
        "mean_gap": round(float(gaps.mean()), 4),
        "gap_ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
        "share_top_hurts_more": round(float((gaps > 0).mean()), 3),
        "attribution_ms_median": round(1000 * float(np.median(seconds)), 1),
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
