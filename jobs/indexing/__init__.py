"""Indexing jobs: a full build or an incremental update, Ray Data embedding, and reusing an index
of a dataset's corpus (or building one) for evaluation and training."""
