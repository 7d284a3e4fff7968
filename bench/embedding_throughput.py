"""Ray Data embedding against plain single-process embedding, on the same corpus, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedding_throughput.py /work/shared/data/scifact

Both paths embed the very same planned batches (length-sorted, ``--batch-size``) with the same
MiniLM weights and precision; only the executor differs. Reported for each: documents per
second of the embedding itself, and for Ray also the one-off cost of starting Ray. Ray's
figure includes starting its actor pool (and loading the model in each actor), which every
indexing job pays. The load average is printed beside each phase: on a shared machine, other
people's jobs change the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bertsearch.indexer.corpus import CorpusReader  # noqa: E402
from bertsearch.indexer.doc_embedding import LocalEmbedding, embed_documents  # noqa: E402
from bertsearch.indexer.embedder import Embedder  # noqa: E402
from bertsearch.jobs.indexing.ray_embedding import RayEmbedding, RayEmbeddingConfig  # noqa: E402
from bertsearch.jobs.runtime import ray_session  # noqa: E402


def load(source: str, limit: int | None) -> tuple[list[str], list[str]]:
    ids, texts = [], []
    for doc in CorpusReader(source):
        ids.append(doc.id)
        texts.append(doc.body)
        if limit and len(ids) == limit:
            break
    return ids, texts


def loadavg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="BEIR folder or JSONL corpus (SciFact: 5,183 documents)")
    parser.add_argument("--limit", type=int, default=None, help="first N documents only (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--workers", type=int, default=0, help="Ray actors (0: one per GPU, else 1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads for each path (Ray: split over its CPU actors); default: every core",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="passes per path, alternating A B B A ..., so load that drifts during the run hits both",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--save-vectors", type=Path, default=None, help="save ids + vectors (.npz) for reuse")
    args = parser.parse_args()

    ids, texts = load(args.source, args.limit)
    print(
        f"{len(ids)} documents from {args.source}; {os.cpu_count()} cpus, {args.threads} threads a path; "
        f"load average {loadavg()}",
        flush=True,
    )

    torch.set_num_threads(args.threads)
    embedder = Embedder(max_length=args.max_length, batch_size=args.batch_size).load()
    local = LocalEmbedding(embedder)
    embedder.embed(texts[:8])  # torch's first call pays one-off set-up; not part of throughput
    config = RayEmbeddingConfig(
        max_length=args.max_length,
        batch_size=args.batch_size,
        workers=args.workers,
        threads_per_worker=max(1, args.threads // max(1, args.workers)),
    )
    order = [("single", "ray") if i % 2 == 0 else ("ray", "single") for i in range(args.repeats)]
    passes: dict[str, list[float]] = {"single": [], "ray": []}
    vectors: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    with ray_session():
        ray_init_s = time.perf_counter() - start
        strategy = RayEmbedding(config)
        layout = strategy.layout()
        for path in (p for pair in order for p in pair):
            load_before = loadavg()
            start = time.perf_counter()
            vectors[path] = embed_documents(ids, texts, local if path == "single" else strategy).vectors
            seconds = time.perf_counter() - start
            passes[path].append(len(ids) / seconds)
            what = "single process" if path == "single" else "Ray Data (actor start-up included)"
            print(
                f"{what}: {passes[path][-1]:.1f} docs/s ({seconds:.1f} s; load {load_before} -> {loadavg()})",
                flush=True,
            )
    local_rate, ray_rate = float(np.mean(passes["single"])), float(np.mean(passes["ray"]))
    local_vectors, ray_vectors = vectors["single"], vectors["ray"]
    ratio = ray_rate / local_rate
    diff = float(np.abs(ray_vectors - local_vectors).max())
    print(f"Ray start {ray_init_s:.1f} s (once); Ray layout {layout}")
    print(f"single process {local_rate:.1f} docs/s, Ray Data {ray_rate:.1f} docs/s (means of {args.repeats})")
    print(f"ratio Ray/single: {ratio:.2f}x (goal >= 0.9x); max |vector difference| {diff:.2e}")

    if args.save_vectors:
        np.savez(args.save_vectors, ids=np.array(ids), vectors=local_vectors)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "documents": len(ids),
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "bf16": embedder.bf16,
                    "threads": args.threads,
                    "single_process_docs_per_s": round(local_rate, 2),
                    "single_process_passes": [round(r, 2) for r in passes["single"]],
                    "ray_docs_per_s": round(ray_rate, 2),
                    "ray_passes": [round(r, 2) for r in passes["ray"]],
                    "ray_start_s": round(ray_init_s, 2),
                    "ray_layout": layout,
                    "ratio": round(ratio, 3),
                    "max_abs_vector_difference": diff,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
