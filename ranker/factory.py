"""Assemble a SearchPipeline from an index directory and model choices."""

from __future__ import annotations

from pathlib import Path

from bertsearch.indexer.embedder import Embedder
from bertsearch.indexer.models import Precision
from bertsearch.indexer.snapshot import IndexSnapshot
from bertsearch.ranker.cross_encoder import CrossEncoder
from bertsearch.ranker.pipeline import PipelineConfig, SearchPipeline
from bertsearch.ranker.registry import resolve_reranker


def open_pipeline(
    index_dir: str | Path,
    *,
    encoder_model: str | Path | None = None,
    reranker: str | Path | None = None,
    config: PipelineConfig | None = None,
    snapshot: IndexSnapshot | None = None,
    precision: Precision = "auto",
    load_reranker_weights: bool = True,
    reranker_max_length: int | None = None,
    reranker_precision: Precision = "auto",
) -> SearchPipeline:
    """Load the current index version, its query encoder and (optionally) a trained reranker.

    ``encoder_model`` None uses the model named in the index manifest; ``reranker`` is a model
    folder or a reranker registry (its CURRENT version; none: no reranker). Raises IndexNotFoundError
    when there is no index, ModelMismatchError when the encoder's weights differ from the index's,
    UntrainedRerankerError when ``reranker`` has no trained head. ``precision`` is the query encoder's.
    ``load_reranker_weights`` False reads only the reranker's settings (its model folder record),
    for a pipeline whose scorer runs elsewhere (a Ray Serve reranker deployment): give it one.
    ``reranker_max_length`` None reads the length the reranker's folder records (what serving
    uses); another value measures what a length costs. ``reranker_precision`` is the reranker's.
    """
    snapshot = snapshot or IndexSnapshot.open(index_dir)
    if snapshot.dense is not None:
        snapshot.dense.search_on_gpu()  # with faiss-gpu and a GPU; a no-op otherwise
    built = snapshot.manifest.embedding
    model = encoder_model if encoder_model is not None else built.get("model")
    encoder = Embedder(model, max_length=int(built.get("max_length", 256)), precision=precision).load()
    snapshot.check_encoder(encoder.fingerprint(), encoder.model_name)
    reranker, _ = resolve_reranker(reranker)  # a registry serves its CURRENT version (None: hybrid)
    cross_encoder = (
        CrossEncoder(reranker, max_length=reranker_max_length, precision=reranker_precision)
        if reranker is not None
        else None
    )
    if cross_encoder is not None and load_reranker_weights:
        cross_encoder.load()
    return SearchPipeline(
        snapshot.lexical,
        snapshot.dense,
        encoder,
        cross_encoder,
        config or PipelineConfig(),
        corpus=snapshot.manifest.corpus(),  # the reranker serves its unseen-corpus point on others
    )
