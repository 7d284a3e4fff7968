"""How long incremental updates take on a SciFact-sized index, per FAISS kind, against a full build.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/incremental_update.py /work/shared/data/scifact \\
        --vectors var/bench/scifact_vectors.npz

For each kind (flat, hnsw, ivf): a base version of the whole corpus is built (from the vectors
``bench/embedding_throughput.py --save-vectors`` saved, so the base costs no embedding; without
``--vectors`` it is embedded here), then, each as a new published version:

* one document upserted (what ``PUT /documents`` with one document does),
* 100 documents upserted (revised texts) and 100 deleted,
* for HNSW, deletes past ``hnsw_rebuild_fraction`` (20 %), which rebuilds the graph.

Update times include embedding the upserted documents with the packaged MiniLM in this
process; the embedding time alone is printed beside them, and the full build of the base
(lexical + FAISS, vectors given) for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bertsearch.indexer.build import BuildConfig, build_index  # noqa: E402
from bertsearch.indexer.corpus import CorpusReader  # noqa: E402
from bertsearch.indexer.dense import DenseConfig  # noqa: E402
from bertsearch.indexer.doc_embedding import EmbeddingBatch, LocalEmbedding  # noqa: E402
from bertsearch.indexer.documents import Document  # noqa: E402
from bertsearch.indexer.embedder import Embedder  # noqa: E402
from bertsearch.indexer.incremental import apply_updates  # noqa: E402


class SavedVectors:
    """A DocumentEmbedder that returns vectors computed earlier, under the real model's identity."""

    name = "saved"

    def __init__(self, path: Path, identity: dict, batch_size: int) -> None:
        saved = np.load(path)
        self.by_id = dict(zip(saved["ids"].tolist(), saved["vectors"], strict=True))
        self._identity = identity
        self.batch_size = batch_size

    def identity(self) -> dict:
        return dict(self._identity)

    def embed_batches(self, batches: Sequence[EmbeddingBatch]) -> Iterator[tuple[int, np.ndarray]]:
        for batch in batches:
            yield batch.index, np.stack([self.by_id[doc_id] for doc_id in batch.ids])


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, round(time.perf_counter() - start, 3)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", help="BEIR folder or JSONL corpus")
    parser.add_argument("--vectors", type=Path, default=None, help=".npz of ids + vectors for the base build")
    parser.add_argument("--kinds", default="flat,hnsw,ivf")
    parser.add_argument("--changes", type=int, default=100, help="documents upserted and deleted per update")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    documents = list(CorpusReader(args.source))
    source = Path(args.source)
    embedder = Embedder().load()
    local = LocalEmbedding(embedder)
    base_strategy = SavedVectors(args.vectors, local.identity(), 32) if args.vectors else local
    revised = [
        Document(d.id, d.title + " (revised)", d.text + " This abstract was revised.", d.metadata)
        for d in documents[: args.changes]
    ]
    deleted = [d.id for d in documents[args.changes : 2 * args.changes]]
    new_doc = Document(
        "bench-new", "Incremental indexing", "A document added on its own, as PUT /documents does."
    )
    embedder.embed(["warm up"])
    _, embed_changes_s = timed(embedder.embed, [d.body for d in revised])
    _, embed_one_s = timed(embedder.embed, [new_doc.body])
    print(
        f"{len(documents)} documents; {args.threads} threads; load average "
        f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}; embedding {args.changes} documents alone: "
        f"{embed_changes_s:.2f} s, one document: {embed_one_s:.3f} s",
        flush=True,
    )
    results: dict = {
        "documents": len(documents),
        "embed_changes_s": embed_changes_s,
        "embed_one_s": embed_one_s,
    }
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            index_dir = Path(tmp) / "index"
            config = BuildConfig(dense=DenseConfig(kind=kind))
            _, build_s = timed(build_index, source, index_dir, base_strategy, config, progress=False)
            one, one_s = timed(apply_updates, index_dir, [new_doc], [], local)
            batch, batch_s = timed(apply_updates, index_dir, revised, deleted, local)
            row = {
                "full_build_s": build_s,
                "upsert_1_s": one_s,
                "upsert_1_embed_s": one.embed_seconds,
                f"upsert_{args.changes}_delete_{args.changes}_s": batch_s,
                f"upsert_{args.changes}_delete_{args.changes}_embed_s": batch.embed_seconds,
                "documents_after": batch.manifest.documents,
            }
            if kind == "hnsw":
                many = [d.id for d in documents[2 * args.changes : 2 * args.changes + len(documents) // 5]]
                rebuild, rebuild_s = timed(apply_updates, index_dir, [], many, local)
                row["delete_past_threshold_s"] = rebuild_s
                row["rebuilt"] = rebuild.compacted
                row["tombstones_before_rebuild"] = batch.manifest.updates["dense_tombstones"]
            results[kind] = row
            print(f"{kind}: {json.dumps(row)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
