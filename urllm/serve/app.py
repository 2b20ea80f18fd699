"""The HTTP API and web page of ``urllm serve`` (FastAPI; ``pip install urllm[serve]``).

- ``GET /health``: ``{"status": "ok", "run_dir", "systems", ...}`` plus the batcher's counters;
- ``POST /recommend``: ``{"user": ID}`` or ``{"history": [ids or titles]}``, ``"domain"``, ``"k"``,
  optional ``"system"`` and ``"explain"`` -> ``{"items": [{id, title, score}], "evidence": {...}}``;
- ``GET /items?q=&domain=&limit=``: title search (the page's autocomplete);
- ``GET /users?q=&limit=``: known user ids (the page's user picker);
- ``GET /``: the page (``page.html``: plain HTML + JS, no build step).

Every bad request is a 4xx with ``{"detail": "<field>: <what is wrong>"}``; the server keeps serving.
"""

from __future__ import annotations

import json
import logging
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from urllm.serve.batcher import MicroBatcher
from urllm.serve.query import RequestError
from urllm.serve.service import Recommendation

logger = logging.getLogger(__name__)


def page_html() -> str:
    return resources.files("urllm.serve").joinpath("page.html").read_text(encoding="utf-8")


def create_app(service: Recommendation) -> FastAPI:
    """The FastAPI app over a loaded service; the batcher runs while the app does (lifespan)."""
    scfg = service.cfg.serve
    batcher = MicroBatcher(service.recommend, scfg.batch_window_ms / 1000.0, scfg.max_batch_size)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="urllm", summary="cross-domain sequential recommendation", lifespan=lifespan)
    app.state.service, app.state.batcher = service, batcher

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": ["request"], "msg": "invalid"}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path"))
        return error(400, f"{field or 'request'}: {first.get('msg', 'invalid')}")

    @app.get("/health")
    async def health():
        return {**service.health(), "batching": batcher.stats()}

    @app.post("/recommend")
    async def recommend(request: Request):
        body = await request.body()
        try:
            obj = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error(400, f"body: malformed JSON ({exc})")
        try:
            query = service.query(obj)
        except RequestError as exc:
            return error(exc.status, str(exc))
        try:
            return await batcher.submit(query)
        except Exception as exc:  # logged by the batcher; one line to the client
            return error(500, f"internal error: {type(exc).__name__}: {exc}".splitlines()[0])

    @app.get("/items")
    async def items(q: str = "", domain: str | None = None, limit: int | None = None):
        cat = service.catalog.cat
        if domain is not None and domain not in cat.domains:
            return error(400, f"domain: unknown domain {domain!r} (this run has {', '.join(cat.domains)})")
        n = limit if limit is not None else scfg.search_limit
        if not 1 <= n <= 100:
            return error(400, f"limit: must be in 1..100, got {n}")
        d = cat.domains.index(domain) if domain is not None else None
        return {"items": service.catalog.search(q, d, n)}

    @app.get("/users")
    async def users(q: str = "", limit: int = 20):
        if not 1 <= limit <= 100:
            return error(400, f"limit: must be in 1..100, got {limit}")
        return {"users": service.catalog.users(q, limit)}

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return page_html()

    return app


def serve(service: Recommendation, host: str, port: int) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    logger.info("urllm serve: http://%s:%d/ (start-up %.1f s)", host, port, service.startup_seconds)
    uvicorn.run(create_app(service), host=host, port=port, log_level="info")
