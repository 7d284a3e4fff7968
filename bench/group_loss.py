"""What a trained reranker learnt of each collection of a mixture: its loss on mined groups.

    python bench/group_loss.py var/loco/folds/medline/model var/loco/folds/medline/model.work \
        --groups 80

For each collection under WORK/collections (written by `bertsearch train --datasets/--mix` and by
every `bertsearch loco` fold), scores --groups of its mined groups (a seeded sample of all of
them, trained on or not) with the reranker and prints, as JSON, the mean listwise loss (the
training objective: softmax cross-entropy of the positive against its negatives; a random ranker
scores ln(group size), 2.079 for 8) and how often the positive is ranked first (random: 1 in the
group size). A mixture's training loss is one number over all collections; this tells which of
them the model learnt.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.training.examples import TrainingGroup
from bertsearch.ranker.training.losses import listwise_softmax_ce


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="a trained reranker folder")
    parser.add_argument("work", type=Path, help="a training work folder with collections/<name>/groups.jsonl")
    parser.add_argument("--groups", type=int, default=80, help="groups scored per collection (default 80)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.groups < 1:
        parser.error("--groups must be at least 1")

    reranker = CrossEncoder(args.model).load()
    folders = sorted(p for p in (args.work / "collections").iterdir() if (p / "groups.jsonl").is_file())
    if not folders:
        raise SystemExit(f"{args.work}/collections: no collection with a groups.jsonl")
    for folder in folders:
        with open(folder / "groups.jsonl", encoding="utf-8") as lines:
            groups = [TrainingGroup.from_dict(json.loads(line)) for line in lines if line.strip()]
        random.Random(args.seed).shuffle(groups)
        sample = groups[: args.groups]
        if not sample:  # e.g. a collection whose positives were all left out by --positives retrieved
            print(json.dumps({"collection": folder.name, "groups": 0, "of": 0}), flush=True)
            continue
        scores = torch.tensor(np.stack([
            reranker.score_pairs([(g.query, passage) for passage in g.passages]) for g in sample
        ]))  # fmt: skip
        print(json.dumps({
            "collection": folder.name, "groups": len(sample), "of": len(groups),
            "loss": round(float(listwise_softmax_ce(scores)), 3),  # the training objective, mean over groups
            "random_loss": round(math.log(sample[0].size), 3),
            "positive_first": round(int((scores.argmax(dim=1) == 0).sum()) / len(sample), 3),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
