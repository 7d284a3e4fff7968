"""Self-supervised training queries for a corpus without judgments.

Two methods, each turning a document into a (query, passage) pair whose passage no longer holds
the query text, so the model cannot solve the task by string matching:

- ``title``: the title is the query and the text (with any verbatim copy of the title removed)
  is the passage. Negatives must then be shown without their titles too (MiningConfig
  ``passage="text"``), or "has no title" alone would give the positive away.
- ``crop`` (the inverse cloze task of Lee et al., ACL 2019): one sentence cut out of the text is
  the query and the title + remaining text is the passage. Text without sentence punctuation
  (e.g. Vaswani) gets a window of words cut out instead.

A label-free run has no judged queries to choose its epoch and rerank weight with. ``holdout``
keeps some pseudo-queries out of training, with their documents (``split_pseudo_queries``): a
dev set of the same kind, judged by construction, whose documents are indexed without the
query text so that retrieval cannot find them by the copied words either.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Literal

from indexer.documents import Document
from ranker.training.examples import PassageView, Positive, TrainingQuery, passage_of

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
    ``window_words``: the span cut out of text that has no sentence boundaries. ``holdout``: this
    many queries (a seeded sample, drawn before ``limit``) are kept out of training as a dev set.
    """

    method: PseudoQueryMethod
    limit: int | None = None
    seed: int = 13
    min_query_words: int = 2
    max_query_words: int = 40
    min_passage_words: int = 12
    window_words: tuple[int, int] = (8, 16)
    holdout: int = 0

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
        if self.holdout < 0:
            raise ValueError(f"holdout must be 0 or more, got {self.holdout}")

    @property
    def passage_view(self) -> PassageView:
        """How negatives must be shown so they look like this method's positives."""
        return "text" if self.method == "title" else "body"


@dataclass(frozen=True)
class HeldOut:
    """Pseudo-queries kept out of training, and their documents as a dev index must hold them:
    without the query text (``documents``, by id)."""

    queries: list[TrainingQuery]
    documents: dict[str, Document]


def pseudo_queries(documents: Iterable[Document], config: PseudoQueryConfig) -> list[TrainingQuery]:
    """Training queries made from ``documents`` (less any ``holdout``); see ``split_pseudo_queries``."""
    return split_pseudo_queries(documents, config)[0]


def split_pseudo_queries(
    documents: Iterable[Document], config: PseudoQueryConfig
) -> tuple[list[TrainingQuery], HeldOut]:
    """Training queries made from ``documents``, each excluding its source document from
    negatives, and the ``config.holdout`` queries kept out of them.

    A held-out document is never a training positive, nor a negative: the dev set stays unseen.
    Deterministic for a given corpus and config: documents are visited in id order and every
    random choice is seeded by the config seed (and the document id).
    """
    docs = sorted(documents, key=lambda d: d.id)
    make = _title_query if config.method == "title" else _crop_query
    same_title: dict[str, set[str]] = {}
    if config.method == "title":
        for doc in docs:
            same_title.setdefault(_normalise(doc.title), set()).add(doc.id)
    made: list[TrainingQuery] = []
    remains: dict[str, Document] = {}
    for doc in docs:
        cut = make(doc, config, random.Random(f"{config.seed}/{doc.id}"))
        if cut is None:
            continue
        query, remaining = cut
        # Another document with the very same title is as good an answer to it: not a negative.
        excluded = frozenset(same_title.get(_normalise(doc.title), ()))
        passage = passage_of(remaining, config.passage_view)
        made.append(
            TrainingQuery(
                id=f"{config.method}:{doc.id}",
                text=query,
                positives=(Positive(doc.id, passage),),
                excluded=excluded | {doc.id},
            )
        )
        remains[doc.id] = remaining
    held: list[TrainingQuery] = []
    if config.holdout:
        if config.holdout >= len(made):
            raise ValueError(
                f"cannot hold out {config.holdout} of {len(made)} pseudo-queries: none would be left to train"
            )
        rng = random.Random(f"{config.seed}/holdout")
        held = sorted(rng.sample(made, config.holdout), key=lambda q: q.id)
        gone = frozenset(q.positives[0].doc_id for q in held)
        made = [replace(q, excluded=q.excluded | gone) for q in made if q.positives[0].doc_id not in gone]
    if config.limit is not None and len(made) > config.limit:
        made = sorted(random.Random(config.seed).sample(made, config.limit), key=lambda q: q.id)
    documents_held = {q.positives[0].doc_id: remains[q.positives[0].doc_id] for q in held}
    return made, HeldOut(queries=held, documents=documents_held)


def _title_query(doc: Document, config: PseudoQueryConfig, rng: random.Random) -> tuple[str, Document] | None:
    title = " ".join(doc.title.split())
    if not _words_between(title, config.min_query_words, config.max_query_words):
        return None
    passage = re.sub(re.escape(title), " ", " ".join(doc.text.split()), flags=re.IGNORECASE)
    passage = " ".join(passage.split())
    if len(passage.split()) < config.min_passage_words:
        return None
    return title, replace(doc, title="", text=passage)


def _crop_query(doc: Document, config: PseudoQueryConfig, rng: random.Random) -> tuple[str, Document] | None:
    text = " ".join(doc.text.split())
    sentences = split_sentences(text)
    if len(sentences) >= 2:
        low, high = config.min_query_words, config.max_query_words
        choices = [i for i, s in enumerate(sentences) if _words_between(s, low, high)]
        if not choices:
            return None
        pick = rng.choice(choices)
        query = sentences[pick]
        rest = " ".join(s for i, s in enumerate(sentences) if i != pick)
    else:
        words = text.split()
        low, high = config.window_words
        span = rng.randint(low, high)
        if len(words) < span + config.min_passage_words:
            return None
        start = rng.randint(0, len(words) - span)
        query = " ".join(words[start : start + span])
        rest = " ".join(words[:start] + words[start + span :])
    if len(rest.split()) < config.min_passage_words:
        return None
    return query, replace(doc, title=doc.title.strip(), text=rest)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: split after . ! ? when the next word looks like a sentence start, and
    after a free-standing . ! ? (tokenised text)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _words_between(text: str, low: int, high: int) -> bool:
    return low <= len(text.split()) <= high


def _normalise(title: str) -> str:
    return " ".join(title.lower().split())
