"""docker-compose.yml is valid and wires the API to the Elasticsearch service (offline)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NO_COMPOSE = "neither `docker compose` nor `docker-compose` is installed"

pytestmark = pytest.mark.unit


def compose_command() -> list[str] | None:
    """The compose CLI to validate with: the docker plugin, else the standalone tool, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_is_valid() -> None:
    command = compose_command()
    if command is None:
        pytest.skip(NO_COMPOSE)
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"{' '.join(command)} config rejected the file:\n{result.stderr}"


def test_services_exist(compose: dict) -> None:
    assert {"elasticsearch", "api"} <= set(compose["services"])


def test_elasticsearch_image_is_pinned_and_checked(compose: dict) -> None:
    es = compose["services"]["elasticsearch"]
    image, _, tag = es["image"].rpartition(":")
    assert image == "docker.elastic.co/elasticsearch/elasticsearch"
    assert tag.startswith("9.") and tag.count(".") == 2, f"pin an exact 9.x.y version, not {tag!r}"
    assert "healthcheck" in es
    assert environment(es)["discovery.type"] == "single-node"


def test_api_points_at_the_elasticsearch_service(compose: dict) -> None:
    api = compose["services"]["api"]
    env = environment(api)
    url = urlsplit(env["BERTSEARCH_ES_URL"])
    assert url.hostname == "elasticsearch", "the API must reach Elasticsearch by its compose service name"
    assert url.port == 9200
    assert env["BERTSEARCH_LEXICAL"] == "elasticsearch"
    assert env["BERTSEARCH_INDEX_DIR"] == "/data/index"
    assert api["depends_on"]["elasticsearch"]["condition"] == "service_healthy"


def test_the_ray_serve_service_is_opt_in_and_serves_the_same_app(compose: dict) -> None:
    service = compose["services"]["api-ray-serve"]
    assert service["profiles"] == ["ray-serve"]  # `docker compose up` alone starts the plain API
    assert service["command"][:3] == ["bertsearch", "serve", "--ray-serve"]
    plain = environment(compose["services"]["api"])
    assert environment(service)["BERTSEARCH_INDEX_DIR"] == plain["BERTSEARCH_INDEX_DIR"]
