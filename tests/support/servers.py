"""Serving in tests: a free loopback port, an app served in a thread, waiting for /readyz."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base: str, seconds: float, alive: Callable[[], str | None] | None = None) -> None:
    """Wait until ``base``/readyz answers 200; fail the test after ``seconds``, or at once when
    ``alive`` says why the server is gone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        gone = alive() if alive is not None else None
        if gone is not None:
            pytest.fail(f"server exited: {gone}")
        time.sleep(0.3)
    pytest.fail(f"{base} did not become ready in {seconds:.0f} s")


@contextmanager
def running(app, *, seconds: float = 60) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
