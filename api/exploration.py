"""Exploration: now and then, a shown position holds a document from below the page.

Users click only what they are shown, so a log of answers ranked by hybrid retrieval holds clicks
on hybrid's top 10 and nothing about the relevant documents it ranks 11th to 50th: exactly the
ones a reranker of the top 50 could lift (docs/feedback.md measures the gap). ε-greedy
exploration (Hofmann, Whiteson and de Rijke, "Balancing exploration and exploitation in listwise
and pairwise online learning to rank", 2013) fills each shown position, with probability ε, with a
document drawn at random from the served order's positions ``top_k + 1`` to ``depth`` instead of
the next one of the served order. The click rule (``ranker/training/clicks.py``) then sees those
documents examined and clicked at real positions. It costs the user ε of the page, so it is off
unless ``BERTSEARCH_EXPLORE_RATE`` is set, and every explored hit says so in the answer and the log.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Exploration:
    """``rate``: the probability that a shown position holds an explored document; ``depth``: how
    far down the served order explored documents come from."""

    rate: float
    depth: int

    def page(self, served: Sequence[T], top_k: int, rng: random.Random) -> tuple[list[T], list[bool]]:
        """The ``top_k`` items shown for ``served`` (the served order, at least ``depth`` long when
        the candidates allow) and, per shown item, whether exploration put it there. The served
        head keeps its relative order (explored items, drawn uniformly from below it, are slotted
        in between); nothing is shown twice."""
        head, below = list(served[:top_k]), list(served[top_k : self.depth])
        shown, explored = [], []
        while head and len(shown) < top_k:
            if below and rng.random() < self.rate:
                shown.append(below.pop(rng.randrange(len(below))))
                explored.append(True)
            else:
                shown.append(head.pop(0))
                explored.append(False)
        return shown, explored
