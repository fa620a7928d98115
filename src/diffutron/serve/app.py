"""The FastAPI application: the routes of `serve/routes.py` in front of the batching model worker.

`create_app` puts the shared pieces on `app.state` (`context`: the model, the options, the
worker; `serving`: one instance of each serving class), installs the middleware and the
error handlers, and ties the worker's life to the application's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from diffutron import __version__
from diffutron.lm import Diffutron
from diffutron.serve.errors import BodyLimit, install_error_handlers
from diffutron.serve.metrics import Metrics, RequestMetrics
from diffutron.serve.options import ServeOptions
from diffutron.serve.routes import STATIC, endpoint_paths, openai, openapi_schema, service, servings
from diffutron.serve.scheduler import Scheduler
from diffutron.serve.security import BearerAuth, ConnectionLimit, HostCheck
from diffutron.serve.serving.base import ServingContext

__all__ = ["STATIC", "ServeOptions", "create_app"]


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

    # no /docs or /redoc (their pages load scripts from a CDN); /openapi.json only when asked, behind the key
    app = FastAPI(
        title="Diffutron",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if options.openapi else None,
    )
    app.state.context = ServingContext(lm, options, scheduler, created=int(time.time()))
    app.state.serving = servings(app.state.context)
    app.include_router(openai)
    app.include_router(service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, api_key=options.api_key)
    app.add_middleware(HostCheck, allowed_hosts=options.allowed_hosts)
    app.add_middleware(ConnectionLimit, max_connections=options.max_connections)
    app.add_middleware(RequestMetrics, metrics=metrics, endpoints=endpoint_paths())  # outermost: counts refusals too
    return app
