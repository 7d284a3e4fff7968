"""A reranker's operating point for a corpus without judgments, taken from judged corpora.

A label-free reranker (``train --pseudo-queries``) has no judged queries of its own corpus to
choose its rerank depth and weight with. What can be judged is the *recipe*: train the same way
on other corpora that do have judgments, tune each of those models on its own judged queries
(``tune-rerank-weight --dry-run``), and give the new model the (depth, weight) that served those
corpora best on average (``jobs.evaluation.operating_point.pooled_choice``). No judgment of
the target corpus is read. Left out one corpus at a time, this is how the label-free results in
docs/training.md were measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from bertsearch.jobs.evaluation.operating_point import (
    CHOICE_FILE,
    WeightChoice,
    choice_from_record,
    pooled_choice,
    record_choice,
)
from bertsearch.ranker.model_dir import ModelRecord


def read_choice(path: Path) -> tuple[WeightChoice, dict]:
    """The choice a ``tune-rerank-weight`` run wrote (its report folder, or the file itself)."""
    path = Path(path)
    file = path / CHOICE_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: no {CHOICE_FILE} here; "
            f"run `bertsearch tune-rerank-weight ... --dry-run --out {path}` first"
        )
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        return choice_from_record(record), record
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{file}: not a weight choice written by tune-rerank-weight ({err})") from err


def transfer(model_dir: Path, sources: list[Path]) -> WeightChoice:
    """Pool the choices in ``sources`` and write the result into ``model_dir/metadata.json``.

    Refuses tables of the model itself (its own corpus's judgments would choose its point) and
    one model's table on the same judged queries twice (it would count twice).
    """
    ModelRecord.require(model_dir)  # a model folder from `bertsearch train`, before reading tables
    read = [read_choice(source) for source in sources]
    target = Path(model_dir).resolve()
    seen: dict[tuple, Path] = {}
    for source, (_, record) in zip(sources, read, strict=True):
        if record.get("reranker") and Path(record["reranker"]).resolve() == target:
            raise ValueError(
                f"{source}: these tables were made with {model_dir} itself; pool other corpora's"
            )
        # Models of several seeds on one corpus are fair to pool; one model's table twice is not.
        judged = (record.get("dataset"), record.get("split"), record.get("reranker"))
        if judged in seen:
            raise ValueError(
                f"{source} and {seen[judged]} hold the same model's table on {judged[0]} ({judged[1]}); "
                "give each once"
            )
        seen[judged] = source
    choice = pooled_choice([choice for choice, _ in read])
    record_choice(
        model_dir,
        choice,
        {
            "transferred_from": [
                {key: record.get(key) for key in ("dataset", "split", "reranker", "hybrid")}
                | {"value_at_choice": _value_at(source_choice, choice)}
                for source_choice, record in read
            ]
        },
    )
    return choice


def _value_at(source: WeightChoice, point: WeightChoice) -> float:
    table = source.by_depth.get(point.depth) if source.by_depth else source.by_weight
    return table[point.weight]
