"""The installed shape: one ``bertsearch`` namespace, every subpackage listed, the layout's limits."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("indexer", "ranker", "api", "jobs")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
UNPACKAGED = (".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".*cache")

pytestmark = pytest.mark.unit


def _packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def _modules() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_every_subpackage_is_listed_for_installation():
    on_disk = {
        "bertsearch." + ".".join(init.parent.relative_to(ROOT).parts)
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
    }
    assert set(_packages()) == on_disk | {"bertsearch"}


def test_the_wheel_installs_one_bertsearch_namespace_and_nothing_at_the_top(tmp_path):
    # built from a copy, so that setuptools' build/ and egg-info never land in the working tree
    source = shutil.copytree(
        ROOT,
        tmp_path / "src",
        ignore=shutil.ignore_patterns(*UNPACKAGED),
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("bertsearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"bertsearch"}
    for module in ("bertsearch/__init__.py", "bertsearch/api/app.py", "bertsearch/jobs/cli/__init__.py",
                   "bertsearch/ranker/model_dir.py", "bertsearch/indexer/atomic.py",
                   "bertsearch/api/static/index.html", "bertsearch/api/static/console.js"):  # fmt: skip
        assert module in names
    assert not any(name.startswith(("bertsearch/tests/", "bertsearch/bench/")) for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bertsearch = bertsearch.jobs.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_public_api_loads_lazily_and_names_real_objects():
    code = (
        "import sys, bertsearch; assert 'torch' not in sys.modules, 'import bertsearch loaded torch'; "
        "from bertsearch import PipelineConfig, open_pipeline, CrossEncoder, Document, build_index; "
        "from bertsearch.ranker.pipeline import PipelineConfig as P; assert PipelineConfig is P; "
        "print(sorted(bertsearch.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd="/")
    assert "open_pipeline" in out.stdout


def test_jobs_is_subpackages_with_at_most_three_modules_directly_in_it():
    direct = sorted(p.name for p in (ROOT / "jobs").glob("*.py"))
    assert len(direct) <= 3, direct


def test_no_module_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_a_function_over_60_lines_says_why_in_a_comment_above_it():
    unexplained = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.end_lineno - node.lineno + 1 <= MAX_FUNCTION_LINES:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            if not lines[first - 2].strip().startswith("#"):
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not unexplained, f"over {MAX_FUNCTION_LINES} lines with no comment saying why: {unexplained}"
