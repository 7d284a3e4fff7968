"""``bertsearch train --mix FILE`` / ``--datasets A,B``: one reranker trained on several collections.

Each collection is mined from its own index (hard negatives are that corpus's own candidates),
keeps its own groups under ``WORK/collections/<name>`` (a rerun reuses them), and its dev split,
if it has one, is evaluated every epoch: the epoch and the rerank weight are chosen on the mean
over the collections. The groups are mixed by temperature sampling
(``ranker.training.mixture``) and trained on Ray exactly as a single collection is. The model
folder records the mix: each collection's groups, share and sampled count, and the corpora it
was trained on (``data.corpora``, read by serving to tell in-domain from unseen corpora).

A mix file (YAML or JSON)::

    temperature: 2          # 1: proportional to size·weight; larger: toward equal shares
    collections:
      - dataset: /data/scifact
        split: train
        dev_split: dev      # optional
        weight: 1.0         # optional; counts the collection as this many times its size
        index_dir: /idx/scifact   # optional; default --index-dir/<name>
      - dataset: /data/cisi
        split: test
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bertsearch.jobs.datasets.beir import BeirDataset
from bertsearch.jobs.evaluation.config import METRICS
from bertsearch.jobs.indexing.reuse import ensure_index
from bertsearch.jobs.training.dev import evaluate_dev_collections
from bertsearch.jobs.training.groups import settings_key
from bertsearch.jobs.training.job import TrainJob, mined_groups, training_queries
from bertsearch.jobs.training.ray_fit import RayScaling, TrainOutcome, fit
from bertsearch.ranker.training.examples import MiningConfig
from bertsearch.ranker.training.loop import TrainConfig
from bertsearch.ranker.training.mixture import sample_mixture

DEFAULT_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Collection:
    """One judged collection of a mix: its BEIR folder, index, training split and weight."""

    dataset: Path
    index_dir: Path
    split: str = "train"
    dev_split: str | None = None
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", Path(self.dataset).name)
        if self.weight <= 0:
            raise ValueError(f"collection {self.name}: weight must be positive, got {self.weight}")
        if self.dev_split is not None and self.dev_split == self.split:
            raise ValueError(f"collection {self.name}: the dev split must differ from {self.split!r}")


@dataclass(frozen=True)
class MixtureJob:
    """A ``bertsearch train`` run over several collections (the settings mean what they mean there)."""

    collections: tuple[Collection, ...]
    out: Path
    temperature: float = DEFAULT_TEMPERATURE
    epoch_groups: int | None = None  # groups per epoch (None: as many as all collections have)
    work_dir: Path | None = None
    fresh: bool = False
    mining: MiningConfig = field(default_factory=MiningConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scaling: RayScaling = field(default_factory=RayScaling)
    dev_metric: str = "ndcg@10"
    dev_depth: int = 100
    dev_rerank_top_n: int = 50

    def __post_init__(self) -> None:
        if len(self.collections) < 1:
            raise ValueError("a mix needs at least one collection")
        names = [c.name for c in self.collections]
        if len(set(names)) != len(names):
            raise ValueError(f"collection names must differ: {names} (in a mix file, give each a `name`; "
                             "with --datasets, folders of different names)")
        if not self.temperature > 0 or self.temperature == float("inf"):
            raise ValueError(f"--temperature must be a positive number, got {self.temperature}")
        if self.epoch_groups is not None and self.epoch_groups < 1:
            raise ValueError(f"--epoch-groups must be at least 1, got {self.epoch_groups}")
        if not 1 <= self.dev_rerank_top_n <= self.dev_depth:
            raise ValueError(f"--dev-rerank-top-n must be between 1 and --dev-depth ({self.dev_depth})")
        if self.dev_metric not in METRICS:
            raise ValueError(f"--dev-metric must be one of {', '.join(METRICS)}, not {self.dev_metric!r}")

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir if self.work_dir is not None else self.out.with_name(self.out.name + ".work")


def read_mix(path: Path, index_root: Path | None) -> tuple[list[Collection], float | None]:
    """The collections and temperature of a mix file; relative paths are relative to the file.

    Raises ValueError naming the file (and the collection and field) for anything it cannot use.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except OSError as err:
        raise ValueError(f"--mix {path}: cannot read it ({err.strerror or err})") from err
    except ValueError as err:  # JSONDecodeError
        raise ValueError(f"--mix {path}: not valid JSON ({err})") from err
    except Exception as err:  # yaml.YAMLError
        raise ValueError(f"--mix {path}: not valid YAML ({err})") from err
    if not isinstance(data, dict) or not isinstance(data.get("collections"), list) or not data["collections"]:
        raise ValueError(f"{path}: a mix file holds `collections:`, a list of {{dataset, split, ...}}")
    base = path.resolve().parent
    entries = enumerate(data["collections"], start=1)
    collections = [_mix_entry(path, base, n, entry, index_root) for n, entry in entries]
    temperature = data.get("temperature")
    return collections, None if temperature is None else _number(path, "temperature", temperature)


def _mix_entry(path: Path, base: Path, n: int, entry, index_root: Path | None) -> Collection:
    where = f"{path}: collection {n}"
    if not isinstance(entry, dict) or "dataset" not in entry:
        raise ValueError(f"{where}: give a mapping with at least `dataset`")
    unknown = set(entry) - {"dataset", "split", "dev_split", "weight", "index_dir", "name"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; known: dataset, split, dev_split, "
                         "weight, index_dir, name")
    for field_name in ("dataset", "split", "dev_split", "index_dir", "name"):
        if entry.get(field_name) is not None and not isinstance(entry[field_name], str):
            raise ValueError(f"{where}: `{field_name}` must be a string, got {entry[field_name]!r}")
    dataset = base / entry["dataset"]
    name = check_name(entry.get("name") or dataset.name, where)
    index_dir = base / entry["index_dir"] if entry.get("index_dir") else _default_index(index_root, name)
    weight = _number(path, f"collection {n} weight", entry.get("weight", 1.0))
    return Collection(dataset, index_dir, entry.get("split", "train"), entry.get("dev_split"), weight, name)


def _number(path: Path, what: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0 or isinstance(value, bool):
        raise ValueError(f"{path}: {what} must be a positive number, got {value!r}")
    return number


def check_name(name: str, where: str) -> str:
    """A collection name is a folder name under WORK/collections: no separators, not . or .."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"{where}: {name!r} cannot name a collection (it names its folders); give `name`")
    return name


def parse_datasets(spec: str, index_root: Path | None, default_split: str) -> list[Collection]:
    """``--datasets PATH[:SPLIT[:DEV_SPLIT]],...`` as collections indexed under ``index_root/<name>``."""
    collections = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        path, *splits = item.split(":")
        if len(splits) > 2:
            raise ValueError(f"--datasets entry {item!r}: give PATH, PATH:SPLIT or PATH:SPLIT:DEV_SPLIT")
        name = Path(path).name
        collections.append(
            Collection(
                Path(path),
                _default_index(index_root, name),
                splits[0] if splits else default_split,
                splits[1] if len(splits) > 1 else None,
                1.0,
                name,
            )
        )
    if not collections:
        raise ValueError("--datasets names no collection")
    return collections


def _default_index(index_root: Path | None, name: str) -> Path:
    if index_root is None:
        raise ValueError(
            f"collection {name}: give its index_dir, or --index-dir as the folder of one index per collection"
        )
    return Path(index_root) / name


def run_mixture(job: MixtureJob, *, progress: bool = True) -> TrainOutcome:
    """Mine every collection (or reuse its groups), mix them, train on Ray, write the model."""
    started = time.perf_counter()
    work_dir = job.resolved_work_dir
    if job.fresh and work_dir.exists():
        shutil.rmtree(work_dir)
    groups, described, corpora, mining_seconds = _mine_collections(job, work_dir, progress)
    weights = {c.name: c.weight for c in job.collections}
    mixed, summary = sample_mixture(groups, weights, job.temperature, job.mining.seed, job.epoch_groups)
    for name, counts in summary.items():
        described[name].update(counts)
    dev = [c for c in job.collections if c.dev_split is not None]
    keyed = ("dataset", "training_query_ids", "weight", "sampled", "dev_split")
    return fit(
        mixed,
        job.train,
        job.scaling,
        out=job.out,
        work_dir=work_dir,
        dev_eval=_dev_evaluation(job, dev, work_dir) if dev else None,
        dev_metric=job.dev_metric,
        serving={"rerank_top_n": job.dev_rerank_top_n} if dev else {},
        # the mixture decides the weights too: a rerun with another one must not resume these checkpoints
        run_data={"temperature": job.temperature, "epoch_groups": job.epoch_groups,
                  "collections": {name: {k: info[k] for k in keyed} for name, info in described.items()}},
        provenance={
            "data": {
                "mixture": {"temperature": job.temperature, "epoch_groups": len(mixed),
                            "collections": described},
                "corpora": corpora,
                "dev_splits": {c.name: c.dev_split for c in dev},
            },
            "mining_seconds": round(mining_seconds, 1),
            "preparation_seconds": round(time.perf_counter() - started, 1),
        },
    )  # fmt: skip


def _mine_collections(job: MixtureJob, work_dir: Path, progress: bool):
    """Each collection's groups (mined from its own index, or reused from WORK/collections/<name>),
    what produced them, the corpora, and the seconds spent mining."""
    groups, described, corpora, mining_seconds = {}, {}, [], 0.0
    for collection in job.collections:
        single = TrainJob(dataset=collection.dataset, index_dir=collection.index_dir, out=job.out,
                          split=collection.split, dev_split=collection.dev_split, mining=job.mining,
                          train=job.train)  # fmt: skip
        dataset = BeirDataset(collection.dataset)
        snapshot, _ = ensure_index(dataset, collection.index_dir, progress=progress)
        queries, source = training_queries(single, dataset)
        info = {
            "dataset": str(dataset.root.resolve()),
            "index_version": snapshot.manifest.version,
            "source": source,
            "mining": job.mining.describe(),
            "training_query_ids": settings_key({"ids": [q.id for q in queries]}),
        }
        groups[collection.name], seconds = mined_groups(
            single, snapshot, queries, info, work_dir / "collections" / collection.name
        )
        mining_seconds += seconds
        corpora.append(snapshot.manifest.corpus())
        described[collection.name] = {**info, "dev_split": collection.dev_split}
    return groups, described, corpora, mining_seconds


def _dev_evaluation(job: MixtureJob, dev: list[Collection], work_dir: Path):
    return partial(
        evaluate_dev_collections,
        collections=[
            (c.name, Path(c.dataset).resolve(), c.dev_split, Path(c.index_dir).resolve()) for c in dev
        ],
        reports=work_dir.resolve() / "dev",
        depth=job.dev_depth,
        rerank_top_n=job.dev_rerank_top_n,
        threads=os.cpu_count() or 1,
        metric=job.dev_metric,
    )
