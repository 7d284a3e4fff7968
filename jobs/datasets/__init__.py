"""Datasets: BEIR reading, dev splits, the sample corpus and its judged queries, pseudo-dev splits."""
