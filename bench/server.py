"""What the HTTP benchmarks share: a `bertsearch serve` started on a free loopback port, and the
check that a given URL stays on this machine."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def loopback(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"--url must be a loopback address (127.0.0.0/8, ::1, localhost), not {host!r}")
    return url.rstrip("/")


def start_server(index_dir: Path, reranker: str | None, env: dict[str, str], extra: list[str]):
    """``bertsearch serve`` on a free loopback port, once ready: (process, base URL)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(Path(sys.executable).with_name("bertsearch")), "serve", "--index-dir", str(index_dir),
               "--port", str(port), *(["--reranker", reranker] if reranker else []), *extra]  # fmt: skip
    server = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            sys.exit(f"the server exited with status {server.returncode}")
        time.sleep(0.5)
    server.kill()
    sys.exit("the server did not become ready in 300 s")
