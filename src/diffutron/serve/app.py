"""The FastAPI application: the routes of `serve/routes.py` in front of the batching model worker.

`create_app` puts the shared pieces on `app.state` (`context`: the model, the options, the
worker; `serving`: one instance of each serving class), installs the middleware and the
error handlers, and ties the worker's life to the application's.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from diffutron import __version__
from diffutron.lm import Diffutron
from diffutron.serve.errors import APIError, BodyLimit, install_error_handlers
from diffutron.serve.metrics import Metrics, RequestMetrics
from diffutron.serve.options import ServeOptions
from diffutron.serve.routes import STATIC, endpoint_paths, openai, openapi_schema, service, servings
from diffutron.serve.scheduler import Scheduler
from diffutron.serve.serving.base import ServingContext

__all__ = ["BearerAuth", "ServeOptions", "create_app"]


def create_app(lm: Diffutron, options: ServeOptions) -> FastAPI:
    """The application; its lifespan starts and stops the model worker."""
    metrics = Metrics()
    scheduler = Scheduler(
        lm,
        metrics,
        max_batch_size=options.max_batch_size,
        batch_wait_s=options.batch_wait_ms / 1000,
        max_queue=options.max_queue,
        continuous=options.continuous_batching,
        stall_s=options.stall_s,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.stop)

    app = FastAPI(title="Diffutron", version=__version__, lifespan=lifespan)
    app.state.context = ServingContext(lm, options, scheduler, created=int(time.time()))
    app.state.serving = servings(app.state.context)
    app.include_router(openai)
    app.include_router(service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, api_key=options.api_key)
    app.add_middleware(RequestMetrics, metrics=metrics, endpoints=endpoint_paths())  # outermost: counts refusals too
    return app


class BearerAuth:
    """ASGI middleware: with an API key, every /v1 request needs `Authorization: Bearer KEY` (else 401)."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.api_key is not None and scope["type"] == "http" and scope["path"].startswith("/v1/"):
            headers = dict(scope["headers"])
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
                error = APIError(
                    401,
                    "missing or wrong API key: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
