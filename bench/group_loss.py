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

from bertsearch.ranker.cross_encoder import CrossEncoder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", type=Path, help="a trained reranker folder")
    parser.add_argument("work", type=Path, help="a training work folder with collections/<name>/groups.jsonl")
    parser.add_argument("--groups", type=int, default=80, help="groups scored per collection (default 80)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    reranker = CrossEncoder(args.model).load()
    folders = sorted(p for p in (args.work / "collections").iterdir() if (p / "groups.jsonl").is_file())
    if not folders:
        raise SystemExit(f"{args.work}/collections: no collection with a groups.jsonl")
    for folder in folders:
        with open(folder / "groups.jsonl", encoding="utf-8") as lines:
            groups = [json.loads(line) for line in lines]
        random.Random(args.seed).shuffle(groups)
        losses, first = [], 0
        for group in groups[: args.groups]:
            scores = reranker.score_pairs([(group["query"], p) for p in group["passages"]]).astype(np.float64)
            top = scores.max()
            losses.append(top + math.log(np.exp(scores - top).sum()) - scores[0])
            first += int(scores.argmax() == 0)
        print(json.dumps({
            "collection": folder.name, "groups": len(losses), "of": len(groups),
            "loss": round(float(np.mean(losses)), 3),
            "random_loss": round(math.log(len(groups[0]["passages"])), 3),
            "positive_first": round(first / len(losses), 3),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
