"""A judged dev split for a corpus that has none, made of pseudo-queries and written as a BEIR folder.

For a seeded sample of the documents a label-free crop run trains on, a second crop (a sentence,
or a word window, other than the one trained on) is a dev query whose only relevant document is
the one it came from (``ranker.training.pseudo_queries.split_pseudo_queries``). The folder holds
a copy of the corpus in which those documents have lost that text, so that BM25 cannot find
them by the copied words. ``bertsearch pseudo-dev`` writes it; ``tune-rerank-weight`` and
``eval`` read it like any dataset. It measures the pseudo-query task, not real queries: it
tells whether a label-free model has learned its task, and the rerank weight it favours was
higher than judged queries favour on every set it was checked against (docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from indexer.corpus import CorpusReader
from indexer.documents import Document
from jobs.beir import BeirDataset, write_qrels
from ranker.training.pseudo_queries import PseudoDev, PseudoQueryConfig, split_pseudo_queries

SPLIT = "dev"


def write_pseudo_dev(corpus: Path, dev: PseudoDev, out: Path) -> BeirDataset:
    """Write ``out``/{corpus.jsonl, queries.jsonl, qrels/dev.tsv} and return it as a dataset.

    The corpus is ``corpus`` with every dev document replaced by its version without the dev
    query's text; everything else is copied as it is, in the same order. Rewriting an unchanged
    folder gives the same bytes, so its index (keyed by the corpus digest) is reused.
    """
    if not dev.queries:
        raise ValueError("no pseudo-queries to write a dev split from")
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as lines:
        for doc in CorpusReader(corpus):
            lines.write(json.dumps(_record(dev.documents.get(doc.id, doc)), ensure_ascii=False) + "\n")
    with open(out / "queries.jsonl", "w", encoding="utf-8") as lines:
        for query in dev.queries:
            lines.write(json.dumps({"_id": query.id, "text": query.text}, ensure_ascii=False) + "\n")
    write_qrels(out / "qrels" / f"{SPLIT}.tsv", {q.id: {q.positives[0].doc_id: 1} for q in dev.queries})
    return BeirDataset(out)


def _record(doc: Document) -> dict:
    record = {"_id": doc.id, "title": doc.title, "text": doc.text}
    if doc.metadata:
        record["metadata"] = dict(doc.metadata)
    return record


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-dev",
        help="write a pseudo-judged dev split of a corpus for a label-free reranker",
        description="For N of the documents `bertsearch train --pseudo-queries crop` trains on (same "
        "--pseudo-limit and --seed), cut out a second sentence as a dev query and write a BEIR folder: "
        "the corpus with those sentences removed, the queries, qrels/dev.tsv. Then run "
        "`bertsearch tune-rerank-weight OUT --split dev --index-dir OUT/index --reranker MODEL_DIR`.",
    )
    p.add_argument("dataset", type=Path, help="BEIR folder (or a folder holding corpus.jsonl[.gz])")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--queries", type=int, default=200, help="dev queries to make (default 200)")
    p.add_argument("--pseudo-limit", type=int, default=None, help="as given to `train` (default: none)")
    p.add_argument("--seed", type=int, default=13, help="as given to `train` (default 13)")
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError

    try:
        corpus = BeirDataset(args.dataset).corpus_path
        config = PseudoQueryConfig("crop", limit=args.pseudo_limit, seed=args.seed, dev=args.queries)
        _, dev = split_pseudo_queries(CorpusReader(corpus), config)
        write_pseudo_dev(corpus, dev, args.out)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    print(f"{len(dev.queries)} dev queries from {corpus} -> {args.out} (split {SPLIT!r})")
    return 0
