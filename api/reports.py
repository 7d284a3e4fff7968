"""The evaluation reports the web console lists: ``bertsearch eval`` output folders under a
configured root (``BERTSEARCH_REPORTS_DIR``), each with its ``report.json`` and PNG plots.

Only what is under the root is ever read: a report is named by its folder's path relative to
the root, and a name that leaves it (``..``, an absolute path, a link outside) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_FILE = "report.json"
MAX_DEPTH = 4  # folders below the root searched for reports (eval output, gate reports, ...)


class ReportNotFoundError(LookupError):
    """No report (or plot) of that name under the reports root."""


def list_reports(root: Path) -> list[dict[str, Any]]:
    """Every report under ``root``, newest first: name, dataset, split, configurations, time."""
    root = root.resolve()
    found = []
    for path in root.rglob(REPORT_FILE):
        if len(path.relative_to(root).parts) > MAX_DEPTH + 1:
            continue
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a report being written, or not one of ours
        identity = report.get("identity", {})
        dataset = identity.get("dataset", {})
        found.append({
            "name": path.parent.relative_to(root).as_posix(),
            "dataset": dataset.get("name"), "split": dataset.get("split"), "queries": dataset.get("queries"),
            "configs": [c.get("name") for c in report.get("configs", [])],
            "created_at": identity.get("created_at"),
        })  # fmt: skip
    return sorted(found, key=lambda r: (r["created_at"] or "", r["name"]), reverse=True)


def read_report(root: Path, name: str) -> dict[str, Any]:
    """The tables of one report (means with intervals, comparisons) and its plots' names."""
    folder = _inside(root, name)
    path = folder / REPORT_FILE
    if not path.is_file():
        raise ReportNotFoundError(f"no report named {name!r} under the reports folder")
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        "name": name,
        "metrics": report.get("metrics", []),
        "stat_test": report.get("stat_test"),
        "max_p": report.get("max_p"),
        "dataset": report.get("identity", {}).get("dataset", {}),
        "created_at": report.get("identity", {}).get("created_at"),
        "configs": [{"name": c["name"], "means": c["means"], "ci95": c.get("ci95", {})}
                    for c in report.get("configs", [])],  # fmt: skip
        "comparisons": [{"name": c["name"], "baseline": c["baseline"], "p_values": c["p_values"],
                         "significant": c["significant"], "wins_ties_losses": c["wins_ties_losses"]}
                        for c in report.get("comparisons", [])],  # fmt: skip
        "plots": sorted(p.name for p in folder.glob("*.png")),
    }


def plot_path(root: Path, name: str, plot: str) -> Path:
    """The PNG ``plot`` of report ``name``."""
    path = _inside(root, f"{name}/{plot}")
    if path.suffix != ".png" or not path.is_file():
        raise ReportNotFoundError(f"report {name!r} has no plot {plot!r}")
    return path


def _inside(root: Path, name: str) -> Path:
    root = root.resolve()
    try:
        path = (root / name).resolve()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        raise ReportNotFoundError(f"{name!r} is not a report under the reports folder") from None
    if Path(name).is_absolute() or (path != root and root not in path.parents):
        raise ReportNotFoundError(f"{name!r} is not a report under the reports folder")
    return path
