"""A reranker's operating point for a corpus without judgments, taken from judged corpora.

A label-free reranker (``train --pseudo-queries``) has no judged queries of its own corpus to
choose its rerank depth and weight with. What can be judged is the *recipe*: train the same way
on other corpora that do have judgments, tune each of those models on its own judged queries
(``tune-rerank-weight --dry-run``), and give the new model the (depth, weight) that served those
corpora best on average (``jobs.rerank_weight.pooled_choice``). No judgment of the target corpus
is read. Left out one corpus at a time, this is how the label-free results in docs/training.md
were measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jobs.rerank_weight import (
    CHOICE_FILE,
    WeightChoice,
    choice_from_record,
    pooled_choice,
    print_tables,
    record_choice,
)
from ranker.cross_encoder import METADATA_FILE


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


# -- command line -------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transfer-rerank-weight",
        help="give a reranker of an unjudged corpus the depth and weight that served judged corpora best",
        description="Pool the tables of `tune-rerank-weight --dry-run` runs made on other, judged "
        "corpora (each with a model trained the same way on that corpus), and write the rerank "
        "depth and weight with the best mean metric over them into MODEL_DIR/metadata.json. "
        "Each corpus counts the same.",
    )
    p.add_argument("--reranker", type=Path, required=True, help="MODEL_DIR to give the operating point")
    p.add_argument(
        "--from",
        dest="sources",
        type=Path,
        nargs="+",
        required=True,
        help=f"report folders (or {CHOICE_FILE} files) of `tune-rerank-weight --dry-run` on judged corpora",
    )
    p.set_defaults(run=command)


def command(args: argparse.Namespace) -> int:
    from jobs.commands import USER_ERRORS, UserError

    try:
        if not (args.reranker / METADATA_FILE).is_file():
            raise FileNotFoundError(
                f"{args.reranker}: no {METADATA_FILE}; give a MODEL_DIR from `bertsearch train`"
            )
        choice = transfer(args.reranker, args.sources)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    print(
        f"rerank weight {choice.weight:.1f} over the top {choice.depth}: mean {choice.metric} "
        f"{choice.value:.4f} over {len(args.sources)} tables of judged corpora"
    )
    print_tables(choice)
    print(f"written to {args.reranker / METADATA_FILE}")
    return 0
