"""The FastAPI query service: thin routes over the search pipeline."""

from __future__ import annotations

import logging
import random
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bertsearch.api.admission import SearchSlots
from bertsearch.api.console import add_console_routes
from bertsearch.api.exploration import Exploration
from bertsearch.api.feedback.records import Event, FeedbackLog, QueryRecord, ServedHit, UnknownQueryError
from bertsearch.api.feedback.sqlite_log import SQLiteLog
from bertsearch.api.observability import Metrics, observe_requests
from bertsearch.api.schemas import (
    DocumentOut,
    EventsRequest,
    EventsResponse,
    ExplainRequest,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    WriteResponse,
)
from bertsearch.api.scoring_worker import ScoringWorker
from bertsearch.api.serving import ScorerFactory, ServingState, VersionWatcher, load_serving
from bertsearch.api.settings import ServiceSettings
from bertsearch.api.writes import (
    DocumentWriter,
    MissingKeyError,
    WritesDisabledError,
    WrongKeyError,
    check_api_key,
)
from bertsearch.indexer.documents import Document
from bertsearch.indexer.incremental import UpdateReport
from bertsearch.indexer.snapshot import ModelMismatchError
from bertsearch.indexer.versions import IndexBusyError
from bertsearch.ranker.explain import NotIndexedError, explain
from bertsearch.ranker.pipeline import SearchPipeline, SearchResult
from bertsearch.ranker.rerank_budget import Overloaded
from bertsearch.ranker.response import result_to_dict

VERSION_HEADER = "X-Index-Version"


def create_app(settings: ServiceSettings, scorer_factory: ScorerFactory | None = None) -> FastAPI:
    """The service. ``scorer_factory``: where reranking runs (default: one scoring worker in this
    process; ``jobs.serving`` passes a Ray Serve reranker deployment's)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.serving = load_serving(
            settings, on_batch=metrics.observe_batch, scorer_factory=scorer_factory
        )
        metrics.watch_queue(lambda: _queued_pairs(app.state.serving))  # the served worker, after a switch too
        app.state.feedback = _open_feedback_log(settings)
        watcher = VersionWatcher(app.state, settings.reload_seconds)
        app.state.watcher = watcher
        app.state.writer = DocumentWriter(settings, watcher)
        watcher.start()
        yield
        watcher.stop()
        app.state.serving.pipeline.close()
        scorer = app.state.serving.pipeline.scorer
        if isinstance(scorer, ScoringWorker):
            scorer.close()
        if app.state.feedback is not None:
            app.state.feedback.close()

    app = FastAPI(
        title="bertsearch",
        summary="BM25 + dense retrieval, fused and reranked by a BERT cross-encoder",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.search_slots = SearchSlots(settings.max_concurrent_searches)
    app.state.exploration = (
        Exploration(settings.explore_rate, settings.explore_depth) if settings.explore_rate > 0 else None
    )
    app.state.explore_rng = random.Random()  # unseeded: each process explores its own way
    app.middleware("http")(observe_requests)
    app.add_exception_handler(RequestValidationError, _validation_error)
    _add_routes(app)
    return app


def _queued_pairs(state: ServingState) -> int:
    scorer = state.pipeline.scorer
    return scorer.queued_pairs() if isinstance(scorer, ScoringWorker) else 0


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with the offending input made printable: a lone surrogate in a request
    (``"\\ud800"`` in JSON) would otherwise make the error response itself unencodable (a 500)."""
    return JSONResponse(status_code=422, content={"detail": _printable(jsonable_encoder(exc.errors()))})


def _printable(value):
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    return value


def create_app_from_env() -> FastAPI:
    """Uvicorn factory: ``uvicorn --factory bertsearch.api.app:create_app_from_env``."""
    return create_app(ServiceSettings.from_env())


def serving(request: Request) -> ServingState:
    # Read once: the request keeps this state (one index version) even if a new one lands meanwhile.
    state = getattr(request.app.state, "serving", None)
    if state is None:
        raise HTTPException(status_code=503, detail="the index and models are still loading")
    return state


Serving = Annotated[ServingState, Depends(serving)]


def writer(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> DocumentWriter:
    """The document writer, for a request that carries the configured API key."""
    state = serving(request)
    try:
        check_api_key(state.settings, x_api_key)
    except WritesDisabledError as err:
        raise HTTPException(status_code=403, detail=str(err)) from None
    except MissingKeyError as err:
        challenge = {"WWW-Authenticate": "X-API-Key"}
        raise HTTPException(status_code=401, detail=str(err), headers=challenge) from None
    except WrongKeyError as err:
        raise HTTPException(status_code=403, detail=str(err)) from None
    return request.app.state.writer


Writer = Annotated[DocumentWriter, Depends(writer)]


def _write(writer: DocumentWriter, state: ServingState, upserts: list[Document], deletes: list[str]) -> dict:
    try:
        report: UpdateReport = writer.write(state, upserts, deletes)
    except IndexBusyError as err:
        raise HTTPException(status_code=409, detail=str(err)) from None
    except (ModelMismatchError, ValueError) as err:  # e.g. an index whose backend takes no updates
        raise HTTPException(status_code=409, detail=str(err)) from None
    return {
        "index_version": report.manifest.version,
        "parent_version": report.manifest.parent,
        "upserted": report.upserted,
        "deleted": report.deleted,
        "documents": report.manifest.documents,
        "seconds": report.seconds,
    }


def _request_config(stages, state: ServingState, api_key: str | None):
    """The served pipeline configuration with the request's stage settings; 422 (naming the
    setting, or the limit without the API key) when they are out of bounds."""
    overrides = stages.model_dump(exclude_none=True) if stages else {}
    _check_limits(overrides, state.settings, api_key)
    try:
        config = state.pipeline.config.with_overrides(**overrides)
        state.pipeline.check(config)
    except ValueError as err:
        raise HTTPException(status_code=422, detail=str(err)) from None
    return config


def _check_limits(overrides: dict, settings: ServiceSettings, api_key: str | None) -> None:
    """Refuse, with a 422 that names the limit, an expensive request without the API key."""
    if api_key:
        try:
            check_api_key(settings, api_key)
        except WrongKeyError as err:
            raise HTTPException(status_code=403, detail=str(err)) from None
        except (WritesDisabledError, MissingKeyError):
            pass  # no key configured: everyone is anonymous
        else:
            return  # the key lifts the limits to the schema's
    limits = {
        "lexical_k": settings.max_candidates,
        "dense_k": settings.max_candidates,
        "rerank_top_n": settings.max_rerank_top_n,
        "rerank_budget_ms": settings.max_rerank_budget_ms,
    }
    over = [f"stages.{name} is at most {limit:g} without an API key (got {overrides[name]:g})"
            for name, limit in limits.items() if name in overrides and overrides[name] > limit]
    if over:
        raise HTTPException(status_code=422, detail="; ".join(over) + ": lower it, or send X-API-Key")


def _open_feedback_log(settings: ServiceSettings) -> FeedbackLog | None:
    """The configured feedback log, with records past the retention dropped (None: logging off)."""
    if settings.feedback_log == "off":
        return None
    if settings.feedback_log == "elasticsearch":
        from bertsearch.api.feedback.elastic_log import ElasticsearchLog
        from bertsearch.indexer.lexical_backend import LexicalBackend

        url = LexicalBackend.from_env().es_url
        if not url:
            raise ValueError("BERTSEARCH_FEEDBACK_LOG=elasticsearch needs BERTSEARCH_ES_URL")
        log: FeedbackLog = ElasticsearchLog(url)
    else:
        log = SQLiteLog(settings.feedback_path)
    if settings.feedback_retention_days:
        gone = log.prune(before=datetime.now(UTC) - timedelta(days=settings.feedback_retention_days))
        if gone:
            logging.getLogger(__name__).info("feedback log: dropped %d records past the retention", gone)
    return log


def _log_answer(log: FeedbackLog | None, query: str, answer: dict, state: ServingState) -> str | None:
    """Log the answer as served; its query_id, or None when logging is off or failed (the answer
    is served all the same)."""
    if log is None:
        return None
    rerank = answer["rerank"] or {}
    record = QueryRecord(
        query_id=uuid.uuid4().hex,
        query=query,
        timestamp=datetime.now(UTC),
        hits=tuple(ServedHit(n, h["id"], h["score"], h["scores"], h.get("explored", False))
                   for n, h in enumerate(answer["hits"], 1)),
        index_version=state.version,
        reranker=state.reranker_id,
        rerank_requested=rerank.get("requested", 0),
        rerank_scored=rerank.get("scored", 0),
        degraded_reasons=tuple(answer["degraded_reasons"]),
    )
    try:
        log.log_query(record)
    except Exception:  # noqa: BLE001 - a full disk or a down log must not fail the search
        logging.getLogger(__name__).exception("could not log query %s", record.query_id)
        return None
    return record.query_id


def _describe(metrics: Metrics, state: ServingState) -> None:
    """The info metrics: which index version and which reranker are served."""
    metrics.index.info({"version": state.version, "documents": str(state.snapshot.manifest.documents)})
    reranker = state.pipeline.reranker
    if reranker is not None:
        top_n, weight, domain = state.pipeline.rerank_point
        metrics.reranker.info({
            "path": str(state.reranker_path), "version": str(state.reranker_version),
            "max_length": str(reranker.max_length),
            "rerank_weight": str(weight), "rerank_top_n": str(top_n), "domain": domain,
        })  # fmt: skip


def _stage(state: ServingState) -> str:
    """What the service ranks with now: ``hybrid`` (no reranker yet) or ``reranking``."""
    if state.pipeline.reranker is not None:
        return "reranking"
    if state.settings.reranker is not None:
        return "hybrid (the reranker registry serves no version yet)"
    return "hybrid (no reranker configured)"


def _add_routes(app: FastAPI) -> None:
    _add_search_routes(app)
    _add_explain_route(app)
    _add_index_routes(app)
    add_console_routes(app)


def _search(
    app: FastAPI, pipeline: SearchPipeline, body: SearchRequest, config
) -> tuple[SearchResult, list[bool]]:
    """The answer's result and, per hit, whether exploration put it on the page."""
    exploration: Exploration | None = app.state.exploration
    if exploration is None:
        result = pipeline.search(body.query, top_k=body.top_k, config=config)
        return result, [False] * len(result.hits)
    result = pipeline.search(body.query, top_k=max(body.top_k, exploration.depth), config=config)
    hits, explored = exploration.page(result.hits, body.top_k, app.state.explore_rng)
    return replace(result, hits=hits), explored


def _add_search_routes(app: FastAPI) -> None:
    @app.post("/search", response_model=SearchResponse)
    def search(
        body: SearchRequest,
        state: Serving,
        request: Request,
        response: Response,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> dict:
        pipeline = state.pipeline  # one pipeline for the whole request, even if a new version lands
        config = _request_config(body.stages, state, x_api_key)
        try:
            with request.app.state.search_slots.held():
                if pipeline.reranks(config) and pipeline.scorer is not None:
                    pipeline.scorer.admit()  # before retrieval: a refused request costs nothing
                result, explored = _search(request.app, pipeline, body, config)
        except Overloaded as err:
            raise HTTPException(
                status_code=503, detail=str(err), headers={"Retry-After": str(err.retry_after)}
            ) from None
        request.app.state.metrics.observe_answer(result)
        request.state.degraded = list(result.degraded_reasons)
        response.headers[VERSION_HEADER] = state.version
        answer = result_to_dict(result, body.query)
        for hit, flag in zip(answer["hits"], explored, strict=True):
            hit["explored"] = flag
        answer["query_id"] = _log_answer(request.app.state.feedback, body.query, answer, state)
        return answer

    @app.post("/events", response_model=EventsResponse)
    def post_events(body: EventsRequest, request: Request) -> dict:
        """User events (impression, click, dwell, ...) on the hits of logged answers; all or none."""
        log: FeedbackLog | None = request.app.state.feedback
        if log is None:
            raise HTTPException(status_code=404, detail="the feedback log is off on this service "
                                "(BERTSEARCH_FEEDBACK_LOG=off)")  # fmt: skip
        now = datetime.now(UTC)
        events = [
            Event(e.query_id, e.action_name, e.object_id, e.position, e.timestamp or now, e.session_id,
                  e.client_id, e.attributes)
            for e in body.events
        ]  # fmt: skip
        try:
            return {"accepted": log.add_events(events)}
        except UnknownQueryError as err:
            detail = f"{err}; nothing of this request was stored"
            raise HTTPException(status_code=422, detail=detail) from None

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.registry
        state = getattr(request.app.state, "serving", None)
        if state is not None:
            _describe(request.app.state.metrics, state)
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_explain_route(app: FastAPI) -> None:
    @app.post("/explain")
    def explain_hit(body: ExplainRequest, state: Serving, request: Request,
                    x_api_key: Annotated[str | None, Header()] = None) -> dict:  # fmt: skip
        """Why ``id`` ranks where it does for ``query``: each stage's score and rank, the matched
        terms with their BM25 contributions, and the reranker's word attributions."""
        pipeline = state.pipeline
        config = _request_config(body.stages, state, x_api_key)
        try:
            answer = explain(pipeline, body.query, body.id, config, steps=body.steps)
        except NotIndexedError as err:
            raise HTTPException(status_code=404, detail=str(err)) from None
        answer["index_version"] = state.version
        answer["reranker"] = state.reranker_id
        return answer


def _add_index_routes(app: FastAPI) -> None:
    @app.get("/documents/{doc_id}", response_model=DocumentOut)
    def get_document(doc_id: str, state: Serving, response: Response) -> dict:
        found = state.pipeline.lexical.get([doc_id])
        if doc_id not in found:
            raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
        doc = found[doc_id]
        response.headers[VERSION_HEADER] = state.version
        return {"id": doc.id, "title": doc.title, "text": doc.text, "metadata": dict(doc.metadata)}

    @app.put("/documents", response_model=WriteResponse)
    def upsert_documents(body: UpsertRequest, writer: Writer, state: Serving) -> dict:
        """Add or replace documents by id (embedded and indexed as a new index version)."""
        documents = [
            Document(id=d.id, title=d.title.strip(), text=d.text.strip(), metadata=d.metadata)
            for d in body.documents
        ]
        return _write(writer, state, documents, [])

    @app.delete("/documents/{doc_id}", response_model=WriteResponse)
    def delete_document(doc_id: str, writer: Writer, state: Serving) -> dict:
        """Remove a document by id (a new index version without it); 404 if it is not indexed."""
        if doc_id not in state.pipeline.lexical.get([doc_id]):
            raise HTTPException(status_code=404, detail=f"no document with id {doc_id!r}")
        return _write(writer, state, [], [doc_id])

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(request: Request) -> JSONResponse:
        state = getattr(request.app.state, "serving", None)
        if state is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        manifest = state.snapshot.manifest
        body = {
            "status": "ready",
            "index_version": manifest.version,
            "documents": manifest.documents,
            "encoder": manifest.embedding.get("model"),
            "reranker": state.reranker_path,
            "reranker_version": state.reranker_version,
            "stage": _stage(state),
        }
        reranker = state.pipeline.reranker
        if reranker is not None:  # what the model's metadata.json set: how it reads and how much it counts
            body["reranker_max_length"] = reranker.max_length
            # the point served on this index's corpus: in-domain, unseen (its unseen-corpus point), unknown
            top_n, weight, domain = state.pipeline.rerank_point
            body.update(rerank_weight=weight, rerank_top_n=top_n, reranker_domain=domain)
        watcher = getattr(request.app.state, "watcher", None)
        if watcher is not None and watcher.last_error:
            body["version_error"] = watcher.last_error  # still ready: the previous version serves
        return JSONResponse(body)
