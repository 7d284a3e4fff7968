"""The shared vocabulary: plain, frozen data that crosses package boundaries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Document:
    """One searchable document. ``id`` is unique within an index."""

    id: str
    title: str = ""
    text: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> str:
        """Title and text as one passage: what the encoders read."""
        return f"{self.title} {self.text}".strip()


@dataclass(frozen=True)
class Hit:
    """A ranked result: a document id, its final score and the score each stage gave it.

    ``scores`` maps a stage name (``bm25``, ``dense``, ``rrf``, ``rerank``, ``blend``) to that stage's
    score, so a caller can see why a document ranks where it does.
    """

    id: str
    score: float
    scores: Mapping[str, float] = field(default_factory=dict)

    def with_stage(self, stage: str, score: float) -> Hit:
        """This hit re-scored by ``stage``: the final score becomes ``score``."""
        return replace(self, score=float(score), scores={**self.scores, stage: float(score)})
