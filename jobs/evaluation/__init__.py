"""Offline evaluation: the configuration (a leaf), the runner, scoring with ranx, reports, run
identity, and choosing the rerank operating point on judged queries (and transferring it)."""
