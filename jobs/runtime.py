"""Where a job runs: the one way to start or join Ray, and the one description of this machine.

Every Ray start-up of bertsearch goes through :func:`join_or_start_ray` (``RAY_ADDRESS`` or an
explicit address joins a cluster; otherwise a local Ray without the dashboard starts with this
machine's CPUs), and every report or model folder describes its machine with :func:`machine`.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Ray Train's placement-group cleaner asks the state API (part of the dashboard) every second
# whether the controller lives, and warns each time it cannot: with the dashboard off, as in a
# local run, that is a warning a second for the whole run. The cleaner only matters when a
# controller dies without cleaning up, which a local Ray ends with anyway.
_STATE_API_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_state_api_warnings() -> None:
    """Ray worker-process setup hook: silence the cleaner's state-API warnings (see above)."""
    logging.getLogger(_STATE_API_LOGGER).setLevel(logging.ERROR)


def join_or_start_ray(
    address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = True
) -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``), or start a local Ray with ``num_cpus`` (default: all
    of this machine's); True when this call started it. A Ray already initialised in this process
    is reused as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private, local-only cluster
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=log_to_driver,
            runtime_env={"worker_process_setup_hook": f"{__name__}.quiet_state_api_warnings"},
        )
    return True


@contextmanager
def ray_session(address: str | None = None, *, log_to_driver: bool = False) -> Iterator[None]:
    """Ray for the length of a block; stops it afterwards only if the block started it."""
    import ray

    started = join_or_start_ray(address, log_to_driver=log_to_driver)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def machine() -> dict[str, Any]:
    """The machine a job ran on, for reports and model folders: CPU, cores, torch threads, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray_address": os.environ.get("RAY_ADDRESS") or "local",
    }
