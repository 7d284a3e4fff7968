"""Serving beyond one process: the query service on Ray Serve (ingress replicas and a batching
reranker deployment)."""
