"""Fixtures of the Ray Train tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from bertsearch.jobs.runtime import join_or_start_ray

    started_here = not ray.is_initialized()
    join_or_start_ray(num_cpus=2)
    yield
    if started_here:
        ray.shutdown()
