"""``bertsearch distill``: a smaller student trained to match a teacher reranker's scores.

The student is K of the teacher's layers (``ranker.training.student``); the training groups are
mined exactly as for ``train`` (judged queries, or pseudo-queries: distillation needs no
judgments, the teacher's scores are the labels), then the teacher scores every passage of every
group once, and the student learns the teacher's margins (Margin-MSE) or its listwise
distribution (KL) on the same Ray Train path as ``train``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from bertsearch.indexer.models import weights_fingerprint
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.examples import TrainingGroup
from bertsearch.ranker.training.student import make_student

log = logging.getLogger(__name__)

STUDENT_INIT = "student-init"


@dataclass(frozen=True)
class Distillation:
    """The teacher model folder, and the layers of it the student keeps (None: the student is
    the train job's ``base_model`` as it is)."""

    teacher: Path
    layers: int | None = None

    def describe(self) -> dict:
        return {"teacher": str(Path(self.teacher).resolve()), "student_layers": self.layers,
                "teacher_fingerprint": weights_fingerprint(self.teacher)}  # fmt: skip


def prepare_student(distillation: Distillation, work_dir: Path) -> tuple[str | None, list[int] | None]:
    """The student's initial folder (made in ``work_dir`` from the teacher) and the layers kept."""
    if distillation.layers is None:
        return None, None
    folder = work_dir / STUDENT_INIT
    kept = make_student(distillation.teacher, distillation.layers, folder)
    log.info("student: teacher layers %s of %s -> %s", kept, distillation.teacher, folder)
    return str(folder), kept


def with_teacher_scores(groups: list[TrainingGroup], teacher: Path, max_length: int) -> tuple[list, float]:
    """The groups with the teacher's score of each passage, and the seconds that took."""
    started = time.perf_counter()
    encoder = CrossEncoder(teacher, max_length=max_length).load()
    pairs = [(g.query, passage) for g in groups for passage in g.passages]
    scores = encoder.score_pairs(pairs).tolist()
    out, at = [], 0
    for group in groups:
        out.append(replace(group, teacher_scores=tuple(scores[at : at + group.size])))
        at += group.size
    seconds = time.perf_counter() - started
    log.info("the teacher scored %d pairs in %.0f s", len(pairs), seconds)
    return out, seconds
