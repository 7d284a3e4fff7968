"""Self-supervised training queries for a corpus without judgments.

Two methods, each turning a document into a (query, passage) pair whose passage no longer holds
the query text, so the model cannot solve the task by string matching:

- ``title``: the title is the query and the text (with any verbatim copy of the title removed)
  is the passage. Negatives must then be shown without their titles too (MiningConfig
  ``passage="text"``), or "has no title" alone would give the positive away.
- ``crop`` (the inverse cloze task of Lee et al., ACL 2019): one sentence cut out of the text is
  the query and the title + remaining text is the passage. Text without sentence punctuation
  (e.g. Vaswani) gets a window of words cut out instead.

A label-free model has no judged queries to be checked on. ``dev`` makes some of the same kind
(``split_pseudo_queries``, written out by ``bertsearch.jobs.datasets.pseudo_dev``): for a seeded sample of the
training documents, a second crop, one that does not overlap the trained one, is a dev query,
and the document without it is what a dev index must hold. The dev documents are training
documents, as most documents a served query finds are when training covered most of the corpus
(holding documents out of training instead pits never-seen documents against ones the model was
trained to rank first). It measures the pseudo-query task; on judged sets the rerank weight it
favoured was too high (docs/training.md, label-free attempt 4).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from bertsearch.indexer.documents import Document
from bertsearch.ranker.training.examples import PassageView, Positive, TrainingQuery, passage_of

PseudoQueryMethod = Literal["title", "crop"]
METHODS: tuple[str, ...] = ("title", "crop")

# A sentence ends at . ! or ? followed by whitespace and an upper-case letter, digit or quote, or
# at a free-standing " . " (tokenised lower-case text such as MEDLINE's).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|(?<=\s[.!?])\s+")


@dataclass(frozen=True)
class PseudoQueryConfig:
    """``limit``: at most this many documents become queries (a seeded sample; None: all eligible).

    ``min_query_words``/``max_query_words`` bound a query's length, ``min_passage_words`` what
    must remain of the passage once the query is cut out; documents outside them are skipped.
    ``window_words``: the span cut out of text that has no sentence boundaries. ``dev``: this many
    training documents (a seeded sample) also give a second crop as a dev query (crop only).
    """

    method: PseudoQueryMethod
    limit: int | None = None
    seed: int = 13
    min_query_words: int = 2
    max_query_words: int = 40
    min_passage_words: int = 12
    window_words: tuple[int, int] = (8, 16)
    dev: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"pseudo-query method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or None for every document), got {self.limit}")
        if not 1 <= self.min_query_words <= self.max_query_words:
            raise ValueError("need 1 <= min_query_words <= max_query_words")
        low, high = self.window_words
        if not 1 <= low <= high:
            raise ValueError(f"window_words must be (low, high), 1 <= low <= high, got {self.window_words}")
        if self.dev < 0:
            raise ValueError(f"dev must be 0 or more, got {self.dev}")
        if self.dev and self.method != "crop":
            raise ValueError("a pseudo-query dev split needs crop queries: a document has one title, "
                             "and it is already a training query")

    @property
    def passage_view(self) -> PassageView:
        """How negatives must be shown so they look like this method's positives."""
        return "text" if self.method == "title" else "body"


@dataclass(frozen=True)
class PseudoDev:
    """Dev queries made from training documents, and those documents as a dev index must hold
    them: without the dev query's text (``documents``, by id)."""

    queries: list[TrainingQuery]
    documents: dict[str, Document]


def pseudo_queries(documents: Iterable[Document], config: PseudoQueryConfig) -> list[TrainingQuery]:
    """Training queries made from ``documents``; see ``split_pseudo_queries``."""
    return split_pseudo_queries(documents, config)[0]


def split_pseudo_queries(
    documents: Iterable[Document], config: PseudoQueryConfig
) -> tuple[list[TrainingQuery], PseudoDev]:
    """Training queries made from ``documents``, each excluding its source document from
    negatives, and ``config.dev`` dev queries: other crops of training documents.

    The training queries do not depend on ``config.dev``. Deterministic for a given corpus and
    config: documents are visited in id order and every random choice is seeded by the config
    seed (and the document id).
    """
    docs = sorted(documents, key=lambda d: d.id)
    same_title: dict[str, set[str]] = {}
    if config.method == "title":
        for doc in docs:
            same_title.setdefault(_normalise(doc.title), set()).add(doc.id)
    made: list[TrainingQuery] = []
    by_id: dict[str, tuple[Document, frozenset[int]]] = {}
    for doc in docs:
        rng = random.Random(f"{config.seed}/{doc.id}")
        cut = _title_query(doc, config) if config.method == "title" else _crop_query(doc, config, rng)
        if cut is None:
            continue
        query, remaining, used = cut
        # Another document with the very same title is as good an answer to it: not a negative.
        excluded = frozenset(same_title.get(_normalise(doc.title), ()))
        made.append(
            TrainingQuery(
                id=f"{config.method}:{doc.id}",
                text=query,
                positives=(Positive(doc.id, passage_of(remaining, config.passage_view)),),
                excluded=excluded | {doc.id},
            )
        )
        by_id[doc.id] = (doc, used)
    if config.limit is not None and len(made) > config.limit:
        made = sorted(random.Random(config.seed).sample(made, config.limit), key=lambda q: q.id)
    return made, _dev_queries(made, by_id, config)


def _dev_queries(
    training: list[TrainingQuery],
    by_id: dict[str, tuple[Document, frozenset[int]]],
    config: PseudoQueryConfig,
) -> PseudoDev:
    """A second crop of ``config.dev`` training documents, never overlapping the trained one."""
    if not config.dev:
        return PseudoDev(queries=[], documents={})
    candidates = []
    for query in training:
        doc, used = by_id[query.positives[0].doc_id]
        cut = _crop_query(doc, config, random.Random(f"{config.seed}/dev/{doc.id}"), avoid=used)
        if cut is not None:
            candidates.append((f"dev:{doc.id}", cut[0], cut[1]))
    if len(candidates) < config.dev:
        raise ValueError(
            f"asked for {config.dev} dev queries, but only {len(candidates)} training documents have a "
            "second sentence (or word window) to cut out"
        )
    chosen = sorted(random.Random(f"{config.seed}/dev").sample(candidates, config.dev), key=lambda c: c[0])
    queries = [TrainingQuery(qid, text, positives=(Positive(doc.id, doc.body),)) for qid, text, doc in chosen]
    return PseudoDev(queries=queries, documents={doc.id: doc for _, _, doc in chosen})


def _title_query(doc: Document, config: PseudoQueryConfig) -> tuple[str, Document, frozenset[int]] | None:
    title = " ".join(doc.title.split())
    if not _words_between(title, config.min_query_words, config.max_query_words):
        return None
    passage = re.sub(re.escape(title), " ", " ".join(doc.text.split()), flags=re.IGNORECASE)
    passage = " ".join(passage.split())
    if len(passage.split()) < config.min_passage_words:
        return None
    return title, replace(doc, title="", text=passage), frozenset()


def _crop_query(
    doc: Document, config: PseudoQueryConfig, rng: random.Random, avoid: frozenset[int] = frozenset()
) -> tuple[str, Document, frozenset[int]] | None:
    """(query, the document without it, what was cut: sentence or word positions) or None.

    ``avoid``: positions an earlier crop of this document took; this one takes none of them.
    """
    text = " ".join(doc.text.split())
    sentences = split_sentences(text)
    if len(sentences) >= 2:
        low, high = config.min_query_words, config.max_query_words
        choices = [i for i, s in enumerate(sentences) if _words_between(s, low, high) and i not in avoid]
        if not choices:
            return None
        pick = rng.choice(choices)
        query = sentences[pick]
        rest = " ".join(s for i, s in enumerate(sentences) if i != pick)
        used = frozenset({pick})
    else:
        words = text.split()
        low, high = config.window_words
        span = rng.randint(low, high)
        if len(words) < span + config.min_passage_words:
            return None
        if avoid:
            starts = [i for i in range(len(words) - span + 1) if avoid.isdisjoint(range(i, i + span))]
            if not starts:
                return None
            start = rng.choice(starts)
        else:
            start = rng.randint(0, len(words) - span)
        query = " ".join(words[start : start + span])
        rest = " ".join(words[:start] + words[start + span :])
        used = frozenset(range(start, start + span))
    if len(rest.split()) < config.min_passage_words:
        return None
    return query, replace(doc, title=doc.title.strip(), text=rest), used


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after . ! ? when the next word looks like a sentence start, and
    after a free-standing . ! ? (tokenised text)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _words_between(text: str, low: int, high: int) -> bool:
    return low <= len(text.split()) <= high


def _normalise(title: str) -> str:
    return " ".join(title.lower().split())
