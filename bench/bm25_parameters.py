"""Where does our BM25 differ from a reference BM25? Analyzer vs k1/b vs repeated query terms.

    python bench/bm25_parameters.py ../shared/data/cisi [--split test] \
        [--dense-run var/eval/cisi/runs/dense.trec]

Scores every judged query with textbook BM25 (Lucene's idf, exact document lengths) over the
tokens our tantivy English analyzer makes, at tantivy's fixed k1 = 1.2, b = 0.75 and at the
reference's k1 = 0.9, b = 0.4, counting repeated query terms once per occurrence (as tantivy's
boolean query of one clause per term does, and Lucene's bag of words) or once per term. The
1.2 / 0.75 / repeated row should match `bertsearch eval --configs bm25` up to tantivy's one-byte
length norms; the gap between rows is what each setting is worth on that collection. Metrics
by ranx, top 1000. With ``--dense-run`` (a TREC run of `bertsearch eval`'s dense configuration)
each BM25 variant's top 100 is also fused with the dense top 100 by the pipeline's own
ReciprocalRankFusion (k = 60), which shows what the BM25 variant does to hybrid.
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bertsearch.indexer.corpus import CorpusReader  # noqa: E402
from bertsearch.indexer.documents import Hit  # noqa: E402
from bertsearch.indexer.tantivy_index import english_analyzer  # noqa: E402
from bertsearch.jobs.datasets.beir import BeirDataset  # noqa: E402
from bertsearch.ranker.fusion import ReciprocalRankFusion  # noqa: E402

SETTINGS = [(1.2, 0.75, False), (1.2, 0.75, True), (0.9, 0.4, False), (0.9, 0.4, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--dense-run", default=None, help="TREC run of the dense configuration to fuse with")
    parser.add_argument("--fusion-depth", type=int, default=100, help="hits of each list fused (default 100)")
    args = parser.parse_args()

    from ranx import Qrels, Run, evaluate

    dataset = BeirDataset(args.dataset)
    judged = dataset.load(args.split)
    analyzer = english_analyzer()
    docs = list(CorpusReader(dataset.root))
    ids = [doc.id for doc in docs]
    tokens = [analyzer.analyze(doc.body) for doc in docs]
    lengths = np.array([len(t) for t in tokens], dtype=np.float64)
    postings: dict[str, list[tuple[int, int]]] = {}
    for i, doc_tokens in enumerate(tokens):
        for term, tf in Counter(doc_tokens).items():
            postings.setdefault(term, []).append((i, tf))
    qrels = Qrels(judged.qrels)
    dense = read_trec(args.dense_run) if args.dense_run else None
    fusion = ReciprocalRankFusion(60)
    print(f"{dataset.name} {args.split}: {len(docs)} documents, {len(judged)} queries")
    for k1, b, unique in SETTINGS:
        norms = k1 * (1 - b + b * lengths / lengths.mean())
        run = {}
        for query_id, text in judged.queries.items():
            terms = analyzer.analyze(text)
            if unique:
                terms = list(dict.fromkeys(terms))
            scores = np.zeros(len(docs))
            for term in terms:
                posting = postings.get(term, [])
                idf = math.log(1 + (len(docs) - len(posting) + 0.5) / (len(posting) + 0.5))
                for i, tf in posting:
                    scores[i] += idf * tf / (tf + norms[i])
            top = [i for i in np.argsort(-scores, kind="stable")[: args.depth] if scores[i] > 0]
            run[query_id] = {ids[i]: float(len(top) - rank) for rank, i in enumerate(top)}
        metrics = evaluate(qrels, Run(run).make_comparable(qrels), ["ndcg@10", "mrr@10", "recall@100"])
        line = f"  k1={k1} b={b} {'unique terms' if unique else 'repeated terms':<15} " + "  ".join(
            f"{name} {value:.4f}" for name, value in metrics.items()
        )
        if dense is not None:
            fused = {}
            for query_id in judged.queries:
                lists = [
                    [Hit(d, 0.0) for d in ranked[: args.fusion_depth]]
                    for ranked in (
                        sorted(run[query_id], key=lambda d: -run[query_id][d]),
                        dense.get(query_id, []),
                    )
                ]
                hits = fusion.fuse(lists, top_k=args.fusion_depth)
                fused[query_id] = {hit.id: float(len(hits) - rank) for rank, hit in enumerate(hits)}
            line += f"  | hybrid ndcg@10 {evaluate(qrels, Run(fused).make_comparable(qrels), 'ndcg@10'):.4f}"
        print(line)


def read_trec(path: str) -> dict[str, list[str]]:
    """Document ids by query, in rank order, from a TREC run file."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            query_id, _, doc_id, rank, *_ = line.split()
            ranked.setdefault(query_id, []).append((int(rank), doc_id))
    return {q: [d for _, d in sorted(pairs)] for q, pairs in ranked.items()}


if __name__ == "__main__":
    main()
