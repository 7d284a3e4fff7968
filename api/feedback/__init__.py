"""The query and event log: every answer logged under its ``query_id``, and the events users send
about it (User Behavior Insights shape), behind one Protocol with an SQLite and an Elasticsearch
backend."""
