"""The web console's routes: the page and its static files (in the package; nothing is fetched
from a CDN or any other network), and the evaluation reports it shows (``api.reports``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from bertsearch.api.reports import ReportNotFoundError, list_reports, plot_path, read_report

STATIC_DIR = Path(__file__).parent / "static"


def add_console_routes(app: FastAPI) -> None:
    """The web console (static files of the package, nothing fetched from elsewhere) and the
    evaluation reports it shows."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def console() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    def reports_root(request: Request) -> Path:
        root = request.app.state.settings.reports_dir
        if root is None:
            raise HTTPException(status_code=404, detail="no reports folder: set BERTSEARCH_REPORTS_DIR")
        return root

    @app.get("/reports")
    def reports(request: Request) -> dict:
        """The evaluation reports under the configured folder, newest first."""
        root = request.app.state.settings.reports_dir
        return {"configured": root is not None, "reports": list_reports(root) if root is not None else []}

    @app.get("/plots")
    def plot(report: str, file: str, request: Request) -> FileResponse:
        """A PNG plot of a report."""
        try:
            return FileResponse(plot_path(reports_root(request), report, file), media_type="image/png")
        except ReportNotFoundError as err:
            raise HTTPException(status_code=404, detail=str(err)) from None

    @app.get("/reports/{name:path}")
    def report(name: str, request: Request) -> dict:
        """One report's tables and the names of its plots."""
        try:
            return read_report(reports_root(request), name)
        except ReportNotFoundError as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
