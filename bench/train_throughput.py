"""Cross-encoder training throughput on Ray Train: pairs/s and time per epoch, for 1 and 2 workers.

    python bench/train_throughput.py --corpus /work/shared/data/scifact --workers 1 2 \
        --steps 6 --max-length 192 --epoch-groups 830 --out var/bench/train_throughput.json

Each worker count runs one short ``jobs.training.ray_fit.fit`` (the real loop: DDP over gloo, bf16 autocast
where the CPU has it, AdamW, a checkpoint at the end) for ``--steps`` optimizer steps. Groups of
``1 + --negatives`` real documents are made from the corpus (the title of document i as the
query, documents i..i+n as the passages; the relevance is irrelevant to speed), or read from a
mined ``groups.jsonl`` with ``--groups``. The CPUs are shared out evenly among the workers
(``--cpus`` in all, default every CPU), so 1 worker runs with 2 torch threads on a 2-core
machine and 2 workers with 1 each.

Reported per worker count: training pairs/s (optimizer steps only), seconds per step, the Ray
start-up + checkpoint overhead of the run, and the projected time of one epoch of
``--epoch-groups`` groups (SciFact train minus a 10% dev carve-out mines ~830 groups).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from bertsearch.indexer.corpus import CorpusReader  # noqa: E402
from bertsearch.jobs.runtime import join_or_start_ray  # noqa: E402
from bertsearch.jobs.training.ray_fit import RayScaling, fit  # noqa: E402
from bertsearch.ranker.training.examples import TrainingGroup  # noqa: E402
from bertsearch.ranker.training.loop import TrainConfig  # noqa: E402


def corpus_groups(corpus: Path, count: int, negatives: int) -> list[TrainingGroup]:
    docs = []
    for doc in CorpusReader(corpus):
        if doc.title and doc.text:
            docs.append(doc)
        if len(docs) >= count + negatives:
            break
    groups = []
    for i in range(count):
        members = docs[i : i + negatives + 1]
        groups.append(
            TrainingGroup(
                query_id=str(i),
                query=members[0].title,
                doc_ids=tuple(d.id for d in members),
                passages=tuple(d.body for d in members),
            )
        )
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="BEIR folder or corpus JSONL to make groups from")
    source.add_argument("--groups", type=Path, help="a mined groups.jsonl (from a train work folder)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=float, default=None, help="CPUs shared among the workers")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps measured per worker count")
    parser.add_argument("--groups-per-batch", type=int, default=2)
    parser.add_argument("--negatives", type=int, default=7)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--model", default=None, help="initial weights (default: the packaged MiniLM)")
    parser.add_argument("--epoch-groups", type=int, default=830, help="groups in the epoch to project")
    parser.add_argument("--use-gpu", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    cpus = args.cpus or float(os.cpu_count() or 1)
    most = max(args.workers)
    needed = most * args.groups_per_batch * args.steps
    if args.groups:
        with open(args.groups, encoding="utf-8") as handle:
            groups = [TrainingGroup.from_dict(json.loads(line)) for line in handle if line.strip()]
        groups = groups[:needed]
    else:
        groups = corpus_groups(args.corpus, needed, args.negatives)
    if len(groups) < needed:
        raise SystemExit(f"{args.steps} steps with {most} workers need {needed} groups, have {len(groups)}")
    group_size = groups[0].size
    join_or_start_ray(num_cpus=int(cpus) if not os.environ.get("RAY_ADDRESS") else None)

    results = []
    for workers in args.workers:
        config = TrainConfig(
            base_model=args.model,
            max_length=args.max_length,
            epochs=1,
            groups_per_batch=args.groups_per_batch,
            precision=args.precision,
            max_steps_per_epoch=args.steps,
            log_every=max(1, args.steps // 3),
        )
        scaling = RayScaling(workers=workers, use_gpu=args.use_gpu, cpus_per_worker=cpus / workers)
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            outcome = fit(groups[: workers * args.groups_per_batch * args.steps], config, scaling,
                          out=Path(folder) / "model", work_dir=Path(folder) / "work")
            wall = time.perf_counter() - started
        epoch = outcome.history[0]
        pairs_per_s = epoch["pairs"] / epoch["train_seconds"]
        row = {
            "workers": workers,
            "cpus_per_worker": cpus / workers,
            "steps": epoch["steps"],
            "pairs": epoch["pairs"],
            "pairs_per_step": workers * args.groups_per_batch * group_size,
            "train_seconds": epoch["train_seconds"],
            "pairs_per_s": round(pairs_per_s, 2),
            "seconds_per_step": round(epoch["train_seconds"] / epoch["steps"], 3),
            "overhead_seconds": round(wall - epoch["train_seconds"], 1),
            "projected_epoch_minutes": round(args.epoch_groups * group_size / pairs_per_s / 60, 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "group_size": group_size,
        "hardware": RayScaling(workers=most, use_gpu=args.use_gpu).describe(),
        "results": results,
    }
    print(f"\n{'workers':>8} {'pairs/s':>9} {'s/step':>8} {'overhead s':>11} {'epoch min':>10}")
    for row in results:
        print(f"{row['workers']:>8} {row['pairs_per_s']:>9.1f} {row['seconds_per_step']:>8.2f} "
              f"{row['overhead_seconds']:>11.1f} {row['projected_epoch_minutes']:>10.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
