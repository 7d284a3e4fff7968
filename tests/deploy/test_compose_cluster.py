"""docker-compose.yml's Ray cluster and scheduler services, checked offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bertsearch.jobs.cli.schedule import load

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_the_gpu_worker_reserves_an_nvidia_gpu_and_joins_the_head(services):
    worker = services["ray-gpu-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "--address=ray-head:6379" in worker["command"] and "--num-gpus=1" in worker["command"]
    assert worker["build"]["dockerfile"] == "Dockerfile.gpu" and (ROOT / "Dockerfile.gpu").is_file()
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_the_head_listens_where_workers_and_jobs_look(services):
    head = services["ray-head"]
    assert "--head" in head["command"] and "--port=6379" in head["command"]
    assert "healthcheck" in head
    assert all(port.startswith("127.0.0.1:") for port in head.get("ports", []))


def test_the_scheduler_runs_the_checked_schedule_on_the_cluster(services):
    scheduler = services["scheduler"]
    env = scheduler["environment"]
    assert env["RAY_ADDRESS"] == "auto" and "ray start --address=ray-head:6379" in scheduler["command"][-1]
    assert "bertsearch schedule --config /config/schedule.yaml" in scheduler["command"][-1]
    assert "./deploy/schedule.yaml:/config/schedule.yaml:ro" in scheduler["volumes"]
    assert "index:/data/index" in scheduler["volumes"] and "index:/data/index" in services["api"]["volumes"]
    assert env["BERTSEARCH_LEXICAL"] == services["api"]["environment"]["BERTSEARCH_LEXICAL"]
    schedule = load(ROOT / "deploy" / "schedule.yaml")
    rebuild, learn, promote = schedule.jobs
    assert rebuild.name == "nightly-rebuild" and "--embed-with" in rebuild.argv and "ray" in rebuild.argv
    # the learning jobs read the API's feedback log and promote into the registry the API serves
    assert learn.argv[:3] == ("train", "--from-feedback", "/data/index/feedback.sqlite3")
    assert "--fresh" in learn.argv
    assert learn.argv[learn.argv.index("--click-confidence") + 1] == "0.95"  # whatever the traffic
    registry = services["api"]["environment"]["BERTSEARCH_RERANKER"]
    assert promote.argv[:2] == ("reranker", "promote")
    assert promote.argv[promote.argv.index("--registry") + 1] == registry
    for service in (scheduler, services["api"]):
        assert f"rerankers:{registry}" in service["volumes"]
    assert str(schedule.state_file).startswith("/data/index/")


def test_api_writes_are_keyed_from_the_environment(services):
    env = services["api"]["environment"]
    assert env["BERTSEARCH_API_KEY"] == "${BERTSEARCH_API_KEY:-}"
