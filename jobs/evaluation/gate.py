"""The promotion gate: may a candidate reranker replace what is served?

The candidate, at the operating point its model folder records (the one serving would use),
is evaluated with the ``bertsearch eval`` code against what the registry serves now (``hybrid``
when it serves nothing) on a judged split, or, where there are no judgments, on held-out logged
sessions (``feedback``: the clicks of sessions from ``feedback_since`` on, judged by the rule of
``ranker.training.clicks``, over the served index), and the two are compared query by query with
the eval's paired test. The candidate is refused when it is significantly worse, or when its
mean is not above the incumbent's by at least ``margin``.

A candidate's operating point is often tuned on the very split that gates it (``tune-rerank-
weight --split dev``, ``train --dev-split dev``); scored at that point, the best of 55 (depth,
weight) pairs, even a reranker that learned nothing lands a little above hybrid. So when the
candidate's folder says its point was chosen on the gate's dataset and split, the gate
cross-fits (``tune_folds`` folds, default 5): each fold is scored at the operating point chosen
on the other folds, and only these out-of-fold scores are compared. A point chosen elsewhere
(or ``tune_folds`` 0) is scored as the folder records it, as serving will use it.
The decision, both evaluations' means and the per-query wins/ties/losses are the report written
into the version.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from ranx import Qrels

from bertsearch.jobs.datasets.beir import BeirDataset, JudgedQueries
from bertsearch.jobs.datasets.feedback import read_sessions
from bertsearch.jobs.evaluation.config import METRICS, EvalConfig, check_choice_split
from bertsearch.jobs.evaluation.operating_point import DEPTHS, choose_operating_point, per_query_at
from bertsearch.jobs.evaluation.runner import retrieve, run_evaluation
from bertsearch.jobs.evaluation.scoring import paired_p_value, per_query_scores, ranx_run
from bertsearch.ranker.factory import open_pipeline
from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.pipeline import PipelineConfig
from bertsearch.ranker.registry import RegistryError, RerankerRegistry, RerankerVersion
from bertsearch.ranker.training.clicks import ClickRule, judgments_from_clicks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateConfig:
    """Where and how strictly a candidate is judged. ``split`` must not be the reported one
    (``test``) unless ``allow_test_split``: a gate is a choice, and choices are made on dev."""

    dataset: Path | None
    index_dir: Path
    split: str = "dev"
    feedback: Path | None = None
    feedback_since: datetime | None = None
    click_rule: ClickRule = ClickRule()  # with ``feedback``: which clicks judge a document
    metric: str = "ndcg@10"
    margin: float = 0.0
    max_p: float = 0.05
    stat_test: str = "student"
    depth: int = 100
    tune_folds: int = 5
    allow_test_split: bool = False

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.feedback is None):
            raise ValueError("gate on a judged --dataset or on held-out logged sessions (--feedback LOG)")
        check_choice_split(self.split, self.allow_test_split, what="the gate's --split")
        if self.metric not in METRICS:
            raise ValueError(f"the gate's metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        if self.tune_folds == 1 or self.tune_folds < 0:
            raise ValueError(f"tune_folds must be 0 (no cross-fitting) or at least 2, got {self.tune_folds}")
        if self.margin < 0:
            raise ValueError(f"margin must be non-negative, got {self.margin}")


def gate(candidate: Path, incumbent: Path | None, config: GateConfig, out: Path) -> dict[str, Any]:
    """Evaluate ``candidate`` against ``incumbent`` (None: hybrid); the decision report."""
    incumbent_name = "incumbent+rerank" if incumbent is not None else "hybrid"
    cross_fit = bool(config.tune_folds) and _tuned_on(candidate, config)
    if cross_fit:
        candidate_scores = _cross_fitted(candidate, config, out / "candidate")
    else:
        candidate_scores = _per_query(candidate, config, out / "candidate")
    incumbent_scores = _per_query(incumbent, config, out / "incumbent")
    ids = sorted(candidate_scores)
    treatment = np.array([candidate_scores[q] for q in ids])
    control = np.array([incumbent_scores.get(q, 0.0) for q in ids])
    delta = float(treatment.mean() - control.mean())
    p_value = paired_p_value(control, treatment, config.stat_test)
    worse = delta < 0 and p_value < config.max_p
    if worse:
        verdict = f"refused: significantly worse than {incumbent_name} (p = {p_value:.3g})"
    elif delta < config.margin or delta <= 0:
        verdict = (f"refused: {config.metric} {delta:+.4f} against {incumbent_name}, "
                   f"not above the margin ({config.margin})")  # fmt: skip
    else:
        verdict = f"accepted: {config.metric} {delta:+.4f} against {incumbent_name} (p = {p_value:.3g})"
    report = {
        "accepted": verdict.startswith("accepted"),
        "verdict": verdict,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "candidate": str(candidate),
        "incumbent": str(incumbent) if incumbent is not None else "hybrid",
        "metric": config.metric,
        "candidate_mean": round(float(treatment.mean()), 4),
        "incumbent_mean": round(float(control.mean()), 4),
        "delta": round(delta, 4),
        "p_value": p_value,
        "queries": len(ids),
        "wins_ties_losses": {
            "wins": int((treatment > control).sum()),
            "ties": int((treatment == control).sum()),
            "losses": int((treatment < control).sum()),
        },
        "cross_fitted": cross_fit,
        "config": {k: str(v) if isinstance(v, (Path, datetime)) else v for k, v in asdict(config).items()},
        "reports": {"candidate": str(out / "candidate"), "incumbent": str(out / "incumbent")},
    }
    log.info("promotion gate: %s", verdict)
    return report


def _per_query(reranker: Path | None, config: GateConfig, out: Path) -> dict[str, float]:
    """Per-query ``config.metric`` of hybrid reranked by ``reranker`` at its own operating point
    (hybrid alone when None), from a ``bertsearch eval`` run whose report lands in ``out``."""
    name = "hybrid+rerank" if reranker is not None else "hybrid"
    if config.feedback is not None:
        return _per_query_on_clicks(reranker, config)
    result = run_evaluation(
        EvalConfig(
            dataset=config.dataset,
            index_dir=config.index_dir,
            out=out,
            split=config.split,
            configs=(name,),
            reranker=reranker,
            depth=config.depth,
            stat_test=config.stat_test,
            max_p=config.max_p,
        ),
        progress=False,
    )
    return result.config(name).per_query[config.metric]


def promote(registry: RerankerRegistry, candidate: str | Path, config: GateConfig, *,
            force: bool = False) -> tuple[RerankerVersion, dict[str, Any]]:  # fmt: skip
    """Gate ``candidate`` (a version of ``registry``, or a model folder, added first) against
    what ``registry`` serves, record the decision in the version, and promote it when accepted
    (or when ``force``: recorded as forced, with the decision it overrode)."""
    name = str(candidate)
    is_version = Path(name).name == name and name in {v.name for v in registry.versions()}
    version = registry.get(name) if is_version or not Path(name).is_dir() else registry.add(candidate)
    incumbent = registry.current()
    if incumbent is not None and incumbent == version.path:
        raise RegistryError(f"version {version.name} is served already")
    report = gate(version.path, incumbent, config, version.path.parent.parent / "gates" / version.name)
    report["forced"] = force and not report["accepted"]
    registry.record_gate(version.name, report)
    if report["accepted"] or force:
        registry.promote(version.name, forced=report["forced"], reason=report["verdict"])
    return registry.get(version.name), report


def _tuned_on(candidate: Path, config: GateConfig) -> bool:
    """Whether the candidate's operating point was chosen on the gate's own dataset and split."""
    if config.dataset is None:
        return False
    record = ModelRecord.read(candidate)
    if record is None:
        return False
    tuning = record.rerank_weight_tuning or {}
    data = record.provenance.get("data") or {}
    dataset, split = tuning.get("dataset"), tuning.get("split")
    if dataset is None and str(record.provenance.get("selected_by", "")).startswith("dev_tuned"):
        dataset, split = data.get("dataset"), data.get("dev_split")  # chosen by `train --dev-split`
    if dataset is None or split != config.split:
        return False
    return Path(dataset).resolve() == Path(config.dataset).resolve()


def _cross_fitted(reranker: Path, config: GateConfig, out: Path) -> dict[str, float]:
    """Per-query ``config.metric`` of the candidate, each query scored at the (depth, weight)
    chosen on the other folds of the split (out-of-fold, so no query grades its own tuning)."""
    result = run_evaluation(
        EvalConfig(dataset=config.dataset, index_dir=config.index_dir, out=out, split=config.split,
                   configs=("hybrid+rerank",), reranker=reranker, depth=config.depth,
                   rerank_top_n=max(DEPTHS), rerank_weight=1.0),
        progress=False,
    )  # fmt: skip
    run, judged = result.runs[0], BeirDataset(config.dataset).load(config.split)
    ids = sorted(judged.queries)
    fold_of = {q: n % config.tune_folds for n, q in enumerate(random.Random(13).sample(ids, len(ids)))}
    scores: dict[str, float] = {}
    for fold in range(config.tune_folds):
        held = [q for q in ids if fold_of[q] == fold]
        others = replace(judged, queries={q: t for q, t in judged.queries.items() if fold_of[q] != fold})
        point = choose_operating_point(run, others, metric=config.metric)
        qrels = Qrels({q: judged.qrels[q] for q in held})
        per_query = per_query_at(run, qrels, config.metric, point.weight, point.depth)
        scores.update({q: per_query.get(q, 0.0) for q in held})
    return scores


def _per_query_on_clicks(reranker: Path | None, config: GateConfig) -> dict[str, float]:
    """Per-query ``config.metric`` on the click judgments of the held-out sessions, over the
    served index as it is (the index the clicks were made on)."""
    sessions = read_sessions(config.feedback, config.feedback_since)
    judged_clicks = judgments_from_clicks(sessions, config.click_rule)
    if not judged_clicks.queries:
        raise ValueError(f"{config.feedback}: no held-out session has clicks that judge a document "
                         f"({judged_clicks.summary()}); gate on a judged --dataset instead")  # fmt: skip
    judged = JudgedQueries(
        split="clicks", queries={q.id: q.text for q in judged_clicks.queries},
        qrels={q.id: {p.doc_id: 1 for p in q.positives} for q in judged_clicks.queries},
    )  # fmt: skip
    served = PipelineConfig(rerank=reranker is not None)
    pipeline = open_pipeline(config.index_dir, reranker=reranker, config=served)
    try:
        run = retrieve(pipeline, "gate", pipeline.resolve(served), judged, depth=config.depth, progress=False)
    finally:
        pipeline.close()
    qrels = Qrels(judged.qrels)
    return per_query_scores(qrels, ranx_run(run, qrels), [config.metric])[config.metric]
