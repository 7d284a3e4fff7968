"""``bertsearch loco``: leave one corpus out — how a reranker does on corpora it was not trained on.

For each of N judged collections (a *fold*): train one reranker on the other N − 1 (plus any
``extra`` collections, e.g. SciFact's train split) with the multi-collection trainer, then
evaluate it once on the held-out collection: hybrid against hybrid+rerank, reranked at the
deepest depth of the grid, so that every (depth, weight) of the grid is a re-ordering of that
one run. The held-out collection is never trained on; its queries and judgments are read in
that one evaluation, after its model exists.

The operating point reported for a fold is chosen *without* that fold's judgments: it is the
point best on average over the other folds' held-out tables (``pooled_choice``, each
collection counting the same). Pooled over all folds, the same rule is the serving rule for
corpora a model was not trained on (``unseen_rule.json``; ``--final-out`` trains the general
model on every collection and writes the rule into it).

Everything a fold produced stays under ``WORK/folds/<name>``; a rerun skips finished folds and
resumes an interrupted training from its checkpoint, so a crashed run ends as one never crashed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bertsearch.indexer import atomic
from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.evaluation.config import EvalConfig
from bertsearch.jobs.evaluation.operating_point import (
    DEPTHS,
    WEIGHTS,
    WeightChoice,
    at_depth,
    choice_record,
    per_query_at,
    pooled_choice,
    tuning_eval_config,
)
from bertsearch.jobs.evaluation.runner import run_evaluation
from bertsearch.jobs.evaluation.scoring import length_buckets, paired_p_value
from bertsearch.jobs.training.mixture import Collection, MixtureJob, run_mixture
from bertsearch.jobs.training.pretrain import PretrainJob
from bertsearch.jobs.training.pretrain import run as run_pretraining
from bertsearch.jobs.training.ray_fit import RayScaling
from bertsearch.ranker.model_dir import ModelRecord
from bertsearch.ranker.training.mlm import PretrainConfig

EVAL_DEPTH = 100  # fused candidates each held-out query is evaluated over (EvalConfig's default)
POINTS_FILE = "points.json"  # a fold's held-out per-query metric at every (depth, weight)
RULE_FILE = "unseen_rule.json"
REPORT_FILE = "report.md"
# Prepares a fold's base model from the held-out corpus's documents only (domain-adaptive
# pre-training): (held-out collection, fold folder) -> model path, or None to keep the base.
FoldBase = Callable[[Collection, Path], str | None]


@dataclass(frozen=True)
class LocoJob:
    """Leave-one-out over ``collections``; ``extra`` collections are trained on in every fold and
    never held out. ``template`` holds the training settings (its collections are ignored)."""

    collections: tuple[Collection, ...]
    work: Path
    template: MixtureJob
    extra: tuple[Collection, ...] = ()
    depths: tuple[int, ...] = DEPTHS
    weights: tuple[float, ...] = WEIGHTS
    metric: str = "ndcg@10"
    stat_test: str = "student"
    max_p: float = 0.05
    final_out: Path | None = None
    fold_base: FoldBase | None = field(default=None, compare=False)
    fold_base_settings: dict[str, Any] | None = None  # what fold_base does, for the folds' settings key

    def __post_init__(self) -> None:
        if not self.depths or min(self.depths) < 1 or max(self.depths) > EVAL_DEPTH:
            raise ValueError(f"--depths must lie between 1 and {EVAL_DEPTH} (the candidates evaluated)")
        if len(self.collections) < 2:
            raise ValueError("leave-one-corpus-out needs at least two collections to hold out")
        names = [c.name for c in (*self.collections, *self.extra)]
        if len(set(names)) != len(names):
            raise ValueError(f"collection names must differ: {names}")


def run_loco(job: LocoJob, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or finish) every fold, cross-fit the operating points, write the report and the rule."""
    started = time.perf_counter()
    tables: dict[str, dict[str, Any]] = {}
    for held_out in job.collections:
        folder = job.work / "folds" / held_out.name
        tables[held_out.name] = _fold(job, held_out, folder, progress, log)
    summary = _summary(job, tables)
    rule = summary["unseen_rule"]
    atomic.write_json(job.work / RULE_FILE, rule)
    if job.final_out is not None:
        everything = replace(
            job.template, collections=(*job.collections, *job.extra), out=job.final_out, work_dir=None
        )
        run_mixture(everything, progress=progress)
        write_unseen_rule(job.final_out, rule)
        summary["final_model"] = str(job.final_out)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    atomic.write_json(job.work / "report.json", summary)
    atomic.write_text(job.work / REPORT_FILE, markdown(summary))
    return summary


def _fold(job: LocoJob, held_out: Collection, folder: Path, progress: bool, log) -> dict[str, Any]:
    points = folder / POINTS_FILE
    settings = fold_settings(job)
    if points.is_file():
        table = json.loads(points.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(settings) | set(table.get("settings", {}))
                         if settings.get(k) != table.get("settings", {}).get(k))  # fmt: skip
        if changed:
            raise ValueError(f"{folder} was made with other settings ({', '.join(changed)} differ); "
                             "give another --work, or delete that fold's folder to redo it")  # fmt: skip
        log(f"fold {held_out.name}: done before ({points})")
        return table
    model = folder / "model"
    train_on = tuple(c for c in job.collections if c.name != held_out.name) + job.extra
    if ModelRecord.read(model) is None:
        template = job.template
        base = job.fold_base(held_out, folder) if job.fold_base is not None else None
        if base is not None:
            log(f"fold {held_out.name}: fine-tuning from {base}")
            template = replace(template, train=replace(template.train, base_model=base))
        log(f"fold {held_out.name}: training on {', '.join(c.name for c in train_on)}")
        run_mixture(
            replace(template, collections=train_on, out=model, work_dir=folder / "model.work"),
            progress=progress,
        )
    log(f"fold {held_out.name}: evaluating on its {held_out.split!r} queries")
    table = _held_out_table(job, held_out, model, folder / "eval", progress)
    table["trained_on"] = [c.name for c in train_on]
    table["settings"] = settings
    atomic.write_json(points, table)
    return table


def fold_settings(job: LocoJob) -> dict[str, Any]:
    """What decides a fold's table: a rerun with other settings must not reuse it."""
    template = job.template
    return json.loads(json.dumps({
        "depths": sorted(job.depths), "weights": [float(w) for w in job.weights], "metric": job.metric,
        "temperature": template.temperature, "epoch_groups": template.epoch_groups,
        "mining": template.mining.describe(),
        "train": template.train.hyperparameters(), "workers": template.scaling.workers,
        "extra": [str(Path(c.dataset).resolve()) + ":" + c.split for c in job.extra],
        "collections": [str(Path(c.dataset).resolve()) + ":" + c.split for c in job.collections],
        "pretrain": job.fold_base_settings,
    }, default=str))  # fmt: skip


def pretrain_on_held_out(config: PretrainConfig, scaling: RayScaling, limit: int | None = None) -> FoldBase:
    """A fold base that continues masked-LM pre-training on the held-out corpus's documents (never
    its queries or judgments) into ``FOLD/pretrained``; a rerun reuses or resumes it."""

    def pretrained(held_out: Collection, folder: Path) -> str:
        job = PretrainJob(corpus=Path(held_out.dataset), out=folder / "pretrained", limit=limit,
                          train=config, scaling=scaling)  # fmt: skip
        return str(run_pretraining(job).model_dir.resolve())

    return pretrained


def _held_out_table(job: LocoJob, held_out: Collection, model: Path, out: Path, progress: bool) -> dict:
    """One evaluation of ``model`` on the held-out split; per-query metric at every grid point."""
    from ranx import Qrels

    config = tuning_eval_config(
        EvalConfig(
            dataset=held_out.dataset,
            index_dir=held_out.index_dir,
            out=out,
            split=held_out.split,
            reranker=model,
            rerank_top_n=max(job.depths),
        )
    )
    result = run_evaluation(config, progress=progress, command=f"loco: {held_out.name} held out")
    judged = BeirDataset(held_out.dataset).load(held_out.split)
    qrels, query_ids = Qrels(judged.qrels), list(judged.queries)
    reranked = next(run for run in result.runs if run.name == "hybrid+rerank")
    grid: dict[str, dict[str, list[float]]] = {}
    for depth in sorted(job.depths):
        shallow = at_depth(reranked, depth)  # once per depth; each weight re-orders it
        row = {f"{w:.1f}": per_query_at(shallow, qrels, job.metric, w) for w in job.weights}
        grid[str(depth)] = {w: [scores.get(q, 0.0) for q in query_ids] for w, scores in row.items()}
    hybrid = result.config("hybrid").per_query[job.metric]
    return {
        "collection": held_out.name,
        "dataset": str(Path(held_out.dataset).resolve()),
        "split": held_out.split,
        "metric": job.metric,
        "queries": {q: judged.queries[q] for q in query_ids},
        "hybrid": [hybrid.get(q, 0.0) for q in query_ids],
        "grid": grid,
    }


def _choice(table: dict) -> WeightChoice:
    """A fold's held-out table as a choice: the mean at every grid point, and the best of them."""
    by_depth = {
        int(depth): {float(w): float(np.mean(values)) for w, values in row.items()}
        for depth, row in table["grid"].items()
    }
    first = min(by_depth)
    weight = max(by_depth[first])
    table_only = WeightChoice(
        weight=weight,
        metric=table["metric"],
        value=by_depth[first][weight],
        by_weight=by_depth[first],
        depth=first,
        by_depth=by_depth,
    )
    return pooled_choice([table_only])


LEARNT_SHARE = 0.95  # a last-epoch loss above this share of the chance loss: the model barely learnt


def _summary(job: LocoJob, tables: dict[str, dict]) -> dict[str, Any]:
    choices = {name: _choice(table) for name, table in tables.items()}
    folds = []
    for name, table in tables.items():
        point = pooled_choice([choices[n] for n in tables if n != name])  # without this one's judgments
        folds.append({**_fold_row(job, name, table, point), "best_point_in_hindsight": {
            "depth": choices[name].depth, "weight": choices[name].weight, "value": choices[name].value,
        }})  # fmt: skip
    rule = pooled_choice(list(choices.values()))
    outcome = [
        "win" if f["significant"] and f["delta"] > 0 else "loss" if f["significant"] else "tie" for f in folds
    ]
    return {
        "metric": job.metric,
        "stat_test": job.stat_test,
        "max_p": job.max_p,
        "folds": folds,
        "mean": {
            "hybrid": float(np.mean([f["hybrid"] for f in folds])),
            "reranked": float(np.mean([f["reranked"] for f in folds])),
        },
        "significant": {
            "wins": outcome.count("win"),
            "ties": outcome.count("tie"),
            "losses": outcome.count("loss"),
        },
        "ahead_on": sum(f["delta"] > 0 for f in folds),
        "unseen_rule": {
            **choice_record(
                rule, {"chosen_by": "leave-one-corpus-out", "collections": [c.name for c in job.collections]}
            ),
            "rerank_top_n": rule.depth,
            "rerank_weight": rule.weight,
        },
    }


def _fold_row(job: LocoJob, name: str, table: dict, point: WeightChoice) -> dict[str, Any]:
    """One held-out collection scored at ``point``: means, the paired test, W/T/L, slices, and what
    says whether its model learnt anything (the reranker alone, the training loss)."""
    row = table["grid"][str(point.depth)]
    served = np.array(row[f"{point.weight:.1f}"])
    hybrid = np.array(table["hybrid"])
    delta = served - hybrid
    p = paired_p_value(hybrid, served, job.stat_test)
    provenance = _provenance(job.work / "folds" / name / "model")
    return {
        "collection": name,
        "queries": len(hybrid),
        "trained_on": table["trained_on"],
        "depth": point.depth,
        "weight": point.weight,
        "hybrid": float(hybrid.mean()),
        "reranked": float(served.mean()),
        "delta": float(delta.mean()),
        "p": p,
        "significant": bool(p < job.max_p),
        "wins": int((delta > 1e-9).sum()),
        "ties": int((np.abs(delta) <= 1e-9).sum()),
        "losses": int((delta < -1e-9).sum()),
        "slices": _slices(table, delta),
        # the reranker's own ranking at that depth (weight 1), whatever the point's weight
        "alone": float(np.mean(row["1.0"])) if "1.0" in row else None,
        "training": _training_loss(provenance),
        "sampled": _sampled_groups(provenance),
    }


def _provenance(model: Path) -> Mapping[str, Any]:
    """What the fold model's ``metadata.json`` records of its training (empty without a model)."""
    record = ModelRecord.read(model)
    return record.provenance if record is not None else {}


def _sampled_groups(provenance: Mapping[str, Any]) -> dict[str, int] | None:
    """How many training groups the fold's mixture drew from each collection (what balancing
    decided), or None for a model folder without that record."""
    mixture = provenance.get("data", {}).get("mixture")
    if not mixture:
        return None
    return {name: int(c["sampled"]) for name, c in mixture.get("collections", {}).items()}


def _training_loss(provenance: Mapping[str, Any]) -> dict[str, float] | None:
    """The fold model's last-epoch training loss beside the loss of a model that ranks at random
    (ln of the group size, for the listwise loss): a loss near it means the model learnt little,
    and its held-out row says nothing about generalising."""
    epochs, size = provenance.get("epochs"), provenance.get("group_size")
    if not epochs or not size or provenance.get("hyperparameters", {}).get("loss") != "listwise":
        return None
    loss = float(epochs[-1]["train_loss"])
    chance = float(np.log(size))
    return {"loss": loss, "chance": chance, "learnt": loss < LEARNT_SHARE * chance}


def _slices(table: dict, delta: np.ndarray) -> list[dict[str, Any]]:
    """Mean delta per query-length bucket: where reranking hurts on this collection."""
    ids = list(table["queries"])
    position = {q: n for n, q in enumerate(ids)}
    out = []
    for bucket, members in length_buckets(table["queries"]).items():
        if members:
            values = delta[[position[q] for q in members]]
            out.append(
                {
                    "bucket": bucket,
                    "queries": len(members),
                    "delta": float(values.mean()),
                    "hurts": bool(values.mean() < 0),
                }
            )
    return out


def write_unseen_rule(model_dir: Path, rule: dict[str, Any]) -> ModelRecord:
    """Record ``rule`` as the operating point ``model_dir`` serves on corpora it was not trained on."""
    record = ModelRecord.require(model_dir).with_unseen_point(
        int(rule["rerank_top_n"]), float(rule["rerank_weight"]), rule
    )
    record.write(model_dir)
    return record


def markdown(summary: dict[str, Any]) -> str:
    """The report: a table over the held-out collections, the mean, the slices where it hurts."""
    metric = summary["metric"]
    lines = [
        "# Leave one corpus out",
        "",
        f"Each row: a reranker trained without that collection, {metric} on it against hybrid, at the "
        "(depth, weight) chosen on the other held-out collections. † significant "
        f"({summary['stat_test']} paired test, p < {summary['max_p']}).",
        "",
        "| held out | queries | trained on (groups drawn) | point | hybrid | reranked | Δ | p | W / T / L "
        "| alone (w 1) | train loss (chance) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in summary["folds"]:
        mark = " †" if f["significant"] else ""
        cells = [
            f["collection"],
            f["queries"],
            ", ".join(_with_count(name, f.get("sampled")) for name in f["trained_on"]),
            f"top {f['depth']}, w {f['weight']:.1f}",
            f"{f['hybrid']:.4f}",
            f"{f['reranked']:.4f}{mark}",
            f"{f['delta']:+.4f}",
            f"{f['p']:.3g}",
            f"{f['wins']} / {f['ties']} / {f['losses']}",
            "–" if f.get("alone") is None else f"{f['alone']:.4f}",
            "–" if not f.get("training") else f"{f['training']['loss']:.3f} ({f['training']['chance']:.3f})",
        ]
        lines.append("| " + " | ".join(str(cell) for cell in cells) + " |")
    mean = summary["mean"]
    sig = summary["significant"]
    lines += [
        f"| **mean** | | | | {mean['hybrid']:.4f} | {mean['reranked']:.4f} | "
        f"{mean['reranked'] - mean['hybrid']:+.4f} | | | | |",
        "",
        f"Significantly better on {sig['wins']}, level on {sig['ties']}, significantly worse on "
        f"{sig['losses']} of {len(summary['folds'])}; ahead on {summary['ahead_on']}.",
        "",
        "## Where reranking hurts (mean Δ per query-length bucket)",
        "",
    ]
    lines += _findings(summary["folds"])
    rule = summary["unseen_rule"]
    lines += [
        "",
        "## Serving rule for unseen corpora",
        "",
        f"Top {rule['rerank_top_n']}, weight {rule['rerank_weight']:.1f}: the point best on the mean "
        f"over all held-out collections ({metric} {rule['value']:.4f}).",
    ]
    return "\n".join(lines) + "\n"


def _with_count(name: str, sampled: dict[str, int] | None) -> str:
    return f"{name} {sampled[name]}" if sampled and name in sampled else name


def _findings(folds: list[dict[str, Any]]) -> list[str]:
    """The report's lines on where reranking hurts, and on folds whose model did not learn."""
    hurt = [(f["collection"], s) for f in folds for s in f["slices"] if s["hurts"]]
    lines = [f"- {name}, {s['bucket']} queries ({s['queries']}): {s['delta']:+.4f}" for name, s in hurt] or [
        "- no slice of any collection has a negative mean Δ"
    ]
    hurting = [f["collection"] for f in folds if f["delta"] < 0]
    if hurting:
        lines += ["", f"Reranking lowers the mean on: {', '.join(hurting)}."]
    alone_hurts = [f["collection"] for f in folds if f.get("alone") is not None and f["alone"] < f["hybrid"]]
    if alone_hurts:
        lines += ["", f"The reranker alone (weight 1) ranks below hybrid on: {', '.join(alone_hurts)}."]
    unlearnt = [f["collection"] for f in folds if f.get("training") and not f["training"]["learnt"]]
    if unlearnt:
        lines += [
            "",
            f"The models of these folds barely learnt (last-epoch loss above {LEARNT_SHARE:.0%} of a "
            f"random ranker's): {', '.join(unlearnt)}. Their rows measure the recipe's length more "
            "than generalisation: train longer (--epoch-groups, --epochs).",
        ]
    return lines


def collections_from(paths: Sequence[str], index_root: Path, split: str) -> tuple[Collection, ...]:
    """``PATH[:SPLIT]`` strings as held-out collections indexed under ``index_root/<name>``."""
    out = []
    for item in paths:
        path, _, own = item.partition(":")
        out.append(Collection(Path(path), index_root / Path(path).name, own or split))
    return tuple(out)
