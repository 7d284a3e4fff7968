"""Training examples for the cross-encoder: groups of one positive and n hard negatives.

Negatives are mined from the pipeline's own candidates (BM25 + dense, fused, no rerank), so the
model learns to separate exactly the documents it will be asked to reorder. A document judged
relevant to a query, or to another query with the same text (collections repeat queries under
several ids), or, for a pseudo-query, the document it came from, is never a negative.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from bertsearch.indexer.documents import Document
from bertsearch.ranker.pipeline import SearchPipeline

log = logging.getLogger(__name__)

PassageView = Literal["body", "text"]
Sampling = Literal["random", "top"]
PositiveSource = Literal["all", "retrieved"]


@dataclass(frozen=True)
class Positive:
    """A relevant document; ``passage`` overrides the indexed text (a pseudo-query's cropped passage)."""

    doc_id: str
    passage: str | None = None


@dataclass(frozen=True)
class TrainingQuery:
    """A query with its positives. ``excluded`` documents are never sampled as negatives."""

    id: str
    text: str
    positives: tuple[Positive, ...]
    excluded: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"training query {self.id!r} has empty text")
        if not self.positives:
            raise ValueError(f"training query {self.id!r} has no positive document")

    @property
    def never_negative(self) -> frozenset[str]:
        return self.excluded | {p.doc_id for p in self.positives}


@dataclass(frozen=True)
class TrainingGroup:
    """One listwise example: ``passages[0]`` is the positive, the rest are negatives."""

    query_id: str
    query: str
    doc_ids: tuple[str, ...]
    passages: tuple[str, ...]
    teacher_scores: tuple[float, ...] | None = None  # a teacher's scores of the passages (distillation)

    def __post_init__(self) -> None:
        if len(self.doc_ids) != len(self.passages) or len(self.doc_ids) < 2:
            raise ValueError("a group needs one positive, at least one negative and one id per passage")
        if self.teacher_scores is not None and len(self.teacher_scores) != len(self.passages):
            raise ValueError("a group's teacher scores need one score per passage")

    @property
    def size(self) -> int:
        return len(self.passages)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping) -> TrainingGroup:
        return cls(
            query_id=str(record["query_id"]),
            query=str(record["query"]),
            doc_ids=tuple(record["doc_ids"]),
            passages=tuple(record["passages"]),
            teacher_scores=tuple(record["teacher_scores"]) if record.get("teacher_scores") else None,
        )


@dataclass(frozen=True)
class MiningConfig:
    """How negatives are drawn from the pipeline's candidates.

    ``depth``: fused candidates looked at per query; ``negatives``: negatives per group;
    ``sampling``: ``random`` (uniform over the pool, seeded per query) or ``top`` (the highest
    ranked); ``skip_top``: candidates ignored at the head of the list, where unjudged relevant
    documents (false negatives) are likeliest; ``passage``: what the model reads of a document,
    ``body`` (title + text, as served) or ``text`` (title-as-query training, where the title
    must not appear in any passage); ``positives``: ``all`` judged-relevant documents, or only
    those ``retrieved`` among the ``depth`` candidates, the documents a served rerank at that depth
    can see (on collections judged far beyond what retrieval finds, such as CISI, most positives
    are documents no candidate list holds).
    """

    depth: int = 50
    negatives: int = 7
    sampling: Sampling = "random"
    skip_top: int = 0
    seed: int = 13
    passage: PassageView = "body"
    positives: PositiveSource = "all"

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 1000:
            raise ValueError(f"mining depth must be between 1 and 1000, got {self.depth}")
        if self.negatives < 1:
            raise ValueError(f"negatives per group must be at least 1, got {self.negatives}")
        if self.sampling not in ("random", "top"):
            raise ValueError(f"sampling must be 'random' or 'top', not {self.sampling!r}")
        if not 0 <= self.skip_top < self.depth:
            raise ValueError(f"skip_top must be in [0, depth) = [0, {self.depth}), got {self.skip_top}")
        if self.passage not in ("body", "text"):
            raise ValueError(f"passage must be 'body' or 'text', not {self.passage!r}")
        if self.positives not in ("all", "retrieved"):
            raise ValueError(f"positives must be 'all' or 'retrieved', not {self.positives!r}")

    def describe(self) -> dict[str, object]:
        """The settings as recorded beside mined groups (``positives`` only when not the default,
        so groups mined before it existed still match their settings)."""
        settings = asdict(self)
        if self.positives == "all":
            del settings["positives"]
        return settings


@dataclass
class MiningReport:
    groups: list[TrainingGroup]
    queries: int
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (query id, reason)
    padded_groups: int = 0  # groups whose pool was smaller than ``negatives`` (sampled with repeats)
    positives_not_retrieved: int = 0  # positives left out under ``positives="retrieved"``


def passage_of(document: Document, view: PassageView) -> str:
    return document.body if view == "body" else document.text.strip()


def queries_from_qrels(
    queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]
) -> list[TrainingQuery]:
    """One TrainingQuery per judged query with at least one relevant (grade > 0) document.

    Every judged-relevant document is a positive and therefore never a negative; so is every
    document judged relevant to another query of the same normalised text (SciFact's train
    queries 89 and 90 are one question under two ids). Documents judged non-relevant
    (grade <= 0) stay eligible as negatives.
    """
    relevant = {
        query_id: sorted(doc for doc, grade in judged.items() if grade > 0)
        for query_id, judged in qrels.items()
    }
    by_text = relevant_by_text(queries, qrels)
    out = []
    for query_id in sorted(qrels):
        docs = relevant[query_id]
        if not docs or query_id not in queries or not queries[query_id].strip():
            continue
        text = queries[query_id]
        out.append(
            TrainingQuery(
                query_id,
                text,
                tuple(Positive(d) for d in docs),
                excluded=frozenset(by_text[normalised_query(text)] - set(docs)),
            )
        )
    return out


def relevant_by_text(
    queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, set[str]]:
    """The judged-relevant (grade > 0) documents of each normalised query text: queries asked
    in the same words under several ids are one question, as the click rule groups them."""
    by_text: dict[str, set[str]] = defaultdict(set)
    for query_id, judged in qrels.items():
        if query_id in queries:
            by_text[normalised_query(queries[query_id])].update(d for d, grade in judged.items() if grade > 0)
    return by_text


def normalised_query(text: str) -> str:
    """Query text compared case- and whitespace-insensitively."""
    return " ".join(text.casefold().split())


def mine_groups(
    pipeline: SearchPipeline,
    queries: Sequence[TrainingQuery],
    config: MiningConfig,
    *,
    batch_size: int = 64,
) -> MiningReport:
    """One group per (query, positive): the positive and ``config.negatives`` mined negatives.

    Candidates come from ``pipeline.search_many`` with rerank off, so they are the documents a
    served rerank would see. A query whose pool (candidates minus ``never_negative``) is empty is
    skipped and reported; a smaller pool than ``negatives`` is sampled with repeats.
    """
    search_config = pipeline.config.with_overrides(
        rerank=False,
        lexical_k=max(pipeline.config.lexical_k, config.depth),
        dense_k=max(pipeline.config.dense_k, config.depth),
    )
    report = MiningReport(groups=[], queries=len(queries))
    for start in range(0, len(queries), batch_size):
        chunk = queries[start : start + batch_size]
        results = pipeline.search_many([q.text for q in chunk], top_k=config.depth, config=search_config)
        for query, result in zip(chunk, results, strict=True):
            _groups_for(pipeline, query, result.hits, result.documents, config, report)
        log.info("mined negatives for %d/%d queries", min(start + batch_size, len(queries)), len(queries))
    return report


def _groups_for(pipeline, query, hits, documents, config, report) -> None:
    banned = query.never_negative
    pool = [
        (hit.id, passage_of(documents[hit.id], config.passage))
        for hit in hits[config.skip_top :]
        if hit.id not in banned and hit.id in documents
    ]
    pool = [(doc_id, text) for doc_id, text in pool if text]
    positives = query.positives
    if config.positives == "retrieved":
        candidates = {hit.id for hit in hits}
        positives = tuple(p for p in positives if p.doc_id in candidates)
        report.positives_not_retrieved += len(query.positives) - len(positives)
        if not positives:
            report.skipped.append((query.id, f"no positive among the top {config.depth} candidates"))
            return
    if not pool:
        report.skipped.append((query.id, f"no negative among the top {config.depth} candidates"))
        return
    missing = [p.doc_id for p in positives if p.passage is None]
    stored = pipeline.lexical.get(missing) if missing else {}
    for positive in positives:
        if positive.passage is not None:
            text = positive.passage
        elif positive.doc_id in stored:
            text = passage_of(stored[positive.doc_id], config.passage)
        else:
            report.skipped.append((query.id, f"positive {positive.doc_id!r} is not in the index"))
            continue
        if not text:
            report.skipped.append((query.id, f"positive {positive.doc_id!r} has an empty passage"))
            continue
        negatives = _sample(pool, config, random.Random(f"{config.seed}/{query.id}/{positive.doc_id}"))
        if len(pool) < config.negatives:
            report.padded_groups += 1
        report.groups.append(
            TrainingGroup(
                query_id=query.id,
                query=query.text,
                doc_ids=(positive.doc_id, *(d for d, _ in negatives)),
                passages=(text, *(t for _, t in negatives)),
            )
        )


def _sample(pool: list[tuple[str, str]], config: MiningConfig, rng: random.Random) -> list[tuple[str, str]]:
    n = config.negatives
    if len(pool) < n:
        return pool + [rng.choice(pool) for _ in range(n - len(pool))]
    if config.sampling == "top":
        return pool[:n]
    return rng.sample(pool, n)
