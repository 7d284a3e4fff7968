"""Carve a dev split off a judged split, by query, with a recorded seed.

``bertsearch split DATASET --from train --dev-fraction 0.2 --seed 13 --out OUT`` makes OUT a
mirror of DATASET (corpus, queries and the other qrels linked, or copied with ``--copy``) whose
``qrels/train.tsv`` holds the remaining queries and ``qrels/dev.tsv`` the carved ones. Without
``--out`` the two files are written next to the dataset's own qrels, under names that must not
overwrite the source split. ``qrels/<dev>.split.json`` records the seed, fraction, source file
hash and the dev query ids, so the split can be checked and made again.

A query's judgments always stay together: a dev query is absent from the new train qrels.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bertsearch.jobs.datasets.beir import QRELS_DIR, BeirDataset, DatasetError, read_qrels, write_qrels

RECORD_SUFFIX = ".split.json"


@dataclass(frozen=True)
class SplitConfig:
    """Which split to carve, how much, with which seed, and where the result goes.

    ``out`` None writes into the dataset's own ``qrels`` folder; ``train_name`` None keeps the
    source split's name, which is only allowed with ``out`` (the source is never overwritten).
    """

    dataset: Path
    source: str = "train"
    dev_fraction: float = 0.2
    seed: int = 13
    out: Path | None = None
    train_name: str | None = None
    dev_name: str = "dev"
    copy: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not 0.0 < self.dev_fraction < 1.0:
            raise ValueError(f"dev_fraction must be between 0 and 1 (exclusive), got {self.dev_fraction}")
        for label, name in (
            ("source", self.source),
            ("dev_name", self.dev_name),
            ("train_name", self.train_name),
        ):
            if name is not None and (not name or "/" in name or name.startswith(".")):
                raise ValueError(f"{label} must be a plain split name such as 'train', got {name!r}")
        if self.out is None and self.train_name in (None, self.source):
            raise ValueError(
                f"writing into {str(self.dataset)!r} would overwrite qrels/{self.source}.tsv: "
                f"give --out FOLDER (a mirror of the dataset) or --train-name NAME other than {self.source!r}"
            )
        if self.dev_name in (self.source, self.resolved_train_name):
            raise ValueError(
                f"the dev split name {self.dev_name!r} must differ from {self.source!r} and the train name"
            )

    @property
    def resolved_train_name(self) -> str:
        return self.train_name if self.train_name is not None else self.source


@dataclass(frozen=True)
class SplitRecord:
    """What a split was made from and how; written as ``qrels/<dev>.split.json``."""

    dataset: str
    source_split: str
    source_sha256: str
    dev_fraction: float
    seed: int
    train_split: str
    dev_split: str
    train_queries: int
    dev_queries: int
    dev_query_ids: list[str]
    created_at: str
    method: str = "random.Random(seed).shuffle(sorted query ids); the first round(fraction*n) are dev"


def choose_dev(query_ids: list[str], fraction: float, seed: int) -> list[str]:
    """The dev query ids: a seeded shuffle of the sorted ids, the first ``round(fraction*n)`` of them.

    Sorting first makes the choice independent of file order; at least one query lands on each side.
    """
    if len(query_ids) < 2:
        raise DatasetError(f"cannot split {len(query_ids)} judged queries: need at least 2")
    ordered = sorted(set(query_ids))
    random.Random(seed).shuffle(ordered)
    count = min(max(1, round(fraction * len(ordered))), len(ordered) - 1)
    return sorted(ordered[:count])


def split_dataset(config: SplitConfig) -> SplitRecord:
    """Carve the dev split and write it (and the rest of the source split) where ``config`` says.

    Raises DatasetError when the source split is missing, ValueError when a file would be
    overwritten without ``overwrite``.
    """
    dataset = BeirDataset(config.dataset)
    source_path = dataset.qrels_path(config.source)
    qrels = read_qrels(source_path)
    dev_ids = set(choose_dev(list(qrels), config.dev_fraction, config.seed))
    target = config.dataset if config.out is None else config.out
    train_path = Path(target) / QRELS_DIR / f"{config.resolved_train_name}.tsv"
    dev_path = Path(target) / QRELS_DIR / f"{config.dev_name}.tsv"
    record_path = Path(target) / QRELS_DIR / f"{config.dev_name}{RECORD_SUFFIX}"
    written = (train_path, dev_path, record_path)
    if config.out is not None:
        mirror(dataset.root, config.out, skip={p.name for p in written}, copy=config.copy)
    for path in written:
        # A mirrored file is a link to the source dataset: replace the link, never write through it.
        if path.is_symlink():
            path.unlink()
        elif path.exists() and not config.overwrite:
            raise ValueError(f"{path} exists; pass --overwrite to replace it")
    if not os.access(train_path.parent, os.W_OK):
        raise ValueError(
            f"{train_path.parent} is not writable: give --out FOLDER to write a mirror elsewhere"
        )
    write_qrels(train_path, {q: docs for q, docs in qrels.items() if q not in dev_ids})
    write_qrels(dev_path, {q: docs for q, docs in qrels.items() if q in dev_ids})
    record = SplitRecord(
        dataset=str(dataset.root.resolve()),
        source_split=config.source,
        source_sha256=hashlib.sha256(source_path.read_bytes()).hexdigest(),
        dev_fraction=config.dev_fraction,
        seed=config.seed,
        train_split=config.resolved_train_name,
        dev_split=config.dev_name,
        train_queries=len(qrels) - len(dev_ids),
        dev_queries=len(dev_ids),
        dev_query_ids=sorted(dev_ids),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    record_path.write_text(json.dumps(asdict(record), indent=2) + "\n", encoding="utf-8")
    return record


def mirror(source: Path, out: Path, *, skip: set[str], copy: bool = False) -> None:
    """Make ``out`` hold every file of ``source`` (recursively) as a symlink or a copy.

    Files named in ``skip`` (under qrels/) are left for the caller; existing links are refreshed.
    """
    source = source.resolve()
    if out.resolve() == source:
        raise ValueError(f"--out {str(out)!r} is the dataset itself; name another folder")
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        target = out / relative
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if relative.parts[0] == QRELS_DIR and relative.name in skip:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            if target.is_symlink() and target.resolve() == path:
                continue
            target.unlink()
        if copy:
            shutil.copy2(path, target)
        else:
            target.symlink_to(path)
