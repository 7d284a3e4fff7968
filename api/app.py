"""The FastAPI query service: thin routes over the search pipeline."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from api.schemas import DocumentOut, SearchRequest, SearchResponse
from api.settings import ServiceSettings
from indexer.snapshot import IndexSnapshot
from ranker.factory import open_pipeline
from ranker.pipeline import SearchPipeline
from ranker.response import result_to_dict


class ServingState:
    """What the routes serve: one loaded pipeline and the index version behind it."""

    def __init__(self, pipeline: SearchPipeline, snapshot: IndexSnapshot, settings: ServiceSettings) -> None:
        self.pipeline = pipeline
        self.snapshot = snapshot
        self.settings = settings


def create_app(settings: ServiceSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        snapshot = IndexSnapshot.open(settings.index_dir)
        pipeline = open_pipeline(
            settings.index_dir,
            encoder_model=settings.encoder_model,
            reranker=settings.reranker,
            snapshot=snapshot,
        )
        # One query before taking traffic: torch's first forward pass pays ~1 s of lazy set-up.
        pipeline.search("warm up", top_k=1)
        app.state.serving = ServingState(pipeline, snapshot, settings)
        yield
        pipeline.close()

    app = FastAPI(
        title="bertsearch",
        summary="BM25 + dense retrieval, fused and reranked by a BERT cross-encoder",
        lifespan=lifespan,
    )
    _add_routes(app)
    return app


def create_app_from_env() -> FastAPI:
    """Uvicorn factory: ``uvicorn --factory api.app:create_app_from_env``."""
    return create_app(ServiceSettings.from_env())


def serving(request: Request) -> ServingState:
    state = getattr(request.app.state, "serving", None)
    if state is None:
        raise HTTPException(status_code=503, detail="the index and models are still loading")
    return state


Serving = Annotated[ServingState, Depends(serving)]


def _add_routes(app: FastAPI) -> None:
    @app.post("/search", response_model=SearchResponse)
    def search(body: SearchRequest, state: Serving) -> dict:
        pipeline = state.pipeline  # one pipeline for the whole request, even if a new version lands
        overrides = body.stages.model_dump(exclude_none=True) if body.stages else {}
        try:
            config = pipeline.config.with_overrides(**overrides)
            pipeline.check(config)
        except ValueError as err:
            raise HTTPException(status_code=422, detail=str(err)) from None
        result = pipeline.search(body.query, top_k=body.top_k, config=config)
        return result_to_dict(result, body.query)

    @app.get("/documents/{doc_id}", response_model=DocumentOut)
    def get_document(doc_id: str, state: Serving) -> dict:
        found = state.pipeline.lexical.get([doc_id])
        if doc_id not in found:
            raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
        doc = found[doc_id]
        return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": dict(doc.metadata)}

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        state = getattr(request.app.state, "serving", None)
        if state is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        manifest = state.snapshot.manifest
        return JSONResponse(
            {
                "status": "ready",
                "index_version": manifest.version,
                "documents": manifest.documents,
                "encoder": manifest.embedding.get("model"),
                "reranker": state.settings.reranker,
            }
        )
