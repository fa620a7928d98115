"""The FastAPI application: OpenAI-compatible endpoints in front of the batching model worker."""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from diffutron import __version__
from diffutron.errors import DiffutronError
from diffutron.lm import Diffutron
from diffutron.model.chat import render_chat
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.infill import parse_placeholders
from diffutron.sampling.presets import SPEEDS, speed_config
from diffutron.sampling.streams import row_seeds_for
from diffutron.serve.errors import APIError, BodyLimit, install_error_handlers
from diffutron.serve.metrics import Metrics, RequestMetrics
from diffutron.serve.responses import Format, Json, server_sent_event, usage
from diffutron.serve.scheduler import Delta, Done, Event, Failed, Finished, Frame, Job, Row, Scheduler
from diffutron.serve.schemas import (
    MAX_SEED,
    ChatCompletionRequest,
    CompletionRequest,
    DiffusionSettings,
    GenerationRequest,
    InfillRequest,
    page_settings,
)

STATIC = Path(__file__).parent / "static"  # the chat page: plain HTML, CSS and JS, nothing fetched
DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed request checks that its client is still there
# A stream's connection is not reused: a browser that cancels a reusable one may first read the rest of
# the body (Chromium drains it for reuse) and the server would go on decoding a row nobody waits for.
STREAM_HEADERS = {"Cache-Control": "no-cache", "Connection": "close"}


@dataclass(frozen=True)
class ServeOptions:
    """How the server schedules and guards requests (the `diffutron serve` options)."""

    model_id: str
    speed: str = "exact"
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    max_queue: int = 64
    request_timeout: float = 120.0
    api_key: str | None = None
    continuous_batching: bool = True
    compile: bool = False  # torch.compile the encoder before serving (`run_server` does it)

    def __post_init__(self) -> None:
        if self.speed not in SPEEDS:
            raise DiffutronError(f"unknown speed {self.speed!r}; choose one of: {', '.join(SPEEDS)}")
        for name in ("max_batch_size", "max_queue"):
            if getattr(self, name) < 1:
                raise DiffutronError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.batch_wait_ms >= 0:
            raise DiffutronError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if not self.request_timeout > 0:
            raise DiffutronError(f"--request-timeout must be > 0 seconds, got {self.request_timeout}")
        if self.api_key is not None and not self.api_key.strip():
            raise DiffutronError("--api-key is empty: give a key, or leave it out to serve without one")


class ClientGone(Exception):
    """The client of a non-streamed request closed its connection."""


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
    )
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        scheduler.start()
        try:
            yield
        finally:
            await asyncio.to_thread(scheduler.stop)

    app = FastAPI(title="Diffutron", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(BearerAuth, api_key=options.api_key)
    app.add_middleware(RequestMetrics, metrics=metrics)  # outermost: counts refusals too

    def model_card() -> Json:
        return {"id": options.model_id, "object": "model", "created": created, "owned_by": "diffutron"}

    def check_model(name: str) -> None:
        if name != options.model_id:
            raise APIError(
                404,
                f"model {name!r} is not served here; this server serves {options.model_id!r}",
                param="model",
                code="model_not_found",
            )

    def settings(body: DiffusionSettings, max_tokens: int | None) -> tuple[GenerationConfig, int, Json]:
        """The request's sampler settings, its seed (drawn if not given) and the extension's record of them."""
        speed = body.speed or options.speed
        changes = body.sampler_settings()
        if max_tokens is not None:
            changes["max_new_tokens"] = max_tokens
        try:
            config = speed_config(speed, **changes)
        except DiffutronError as error:
            raise APIError.bad_setting(error) from error
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED)
        return config, seed, {"seed": seed, "speed": speed, "settings": config.to_dict() | {"seed": seed}}

    def prompt_ids(text: str, config: GenerationConfig, param: str) -> list[int]:
        """Token ids of a prompt that, with the answer, fits the model's context."""
        if not text.strip():
            raise APIError(400, f"{param} is empty: give some text", param=param, code="invalid_value")
        ids = lm.encode(text)
        if lm.special.mask in ids:
            raise APIError(
                400,
                f"{param} contains the mask token; to fill gaps inside a text use /v1/infill",
                param=param,
                code="invalid_value",
            )
        if len(ids) + config.max_new_tokens > lm.context_length:
            raise APIError(
                400,
                f"the prompt has {len(ids)} tokens and max_tokens is {config.max_new_tokens}: together more than "
                f"the model's context of {lm.context_length} tokens; shorten the prompt or lower max_tokens",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def generation_job(body: GenerationRequest, prompts: list[list[int]], config: GenerationConfig, seed: int) -> Job:
        """n rows per prompt, seeded seed, seed + 1, ... in choice order (as a seeded call's rows are)."""
        copies = [ids for ids in prompts for _ in range(body.n)]
        if body.n < 1 or len(copies) > options.max_batch_size:
            raise APIError(
                400,
                f"n must be between 1 and {options.max_batch_size // len(prompts)} here "
                f"(--max-batch-size {options.max_batch_size}), got {body.n}",
                param="n",
            )
        seeds = row_seeds_for(seed, len(copies))
        rows = [Row(ids, row_seed, choice) for choice, (ids, row_seed) in enumerate(zip(copies, seeds))]
        denoising = bool(body.stream and body.stream_options and body.stream_options.include_denoising)
        return Job(
            "generate",
            rows,
            config,
            deadline(),
            asyncio.get_running_loop(),
            stops=body.stop_texts(),
            stream=body.stream,
            denoising=denoising,
        )

    def deadline() -> float:
        return time.monotonic() + options.request_timeout

    async def next_event(job: Job, request: Request | None) -> Event:
        """The worker's next word on `job`; 504 past its deadline, ClientGone if the client left."""
        while True:
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                scheduler.withdraw(job, "timeout")
                raise APIError(
                    504,
                    f"no answer within the request timeout ({options.request_timeout:g} s): "
                    "ask for fewer tokens or retry later",
                    code="timeout",
                )
            try:
                return await asyncio.wait_for(job.events.get(), min(remaining, DISCONNECT_POLL_S))
            except asyncio.TimeoutError:
                if request is not None and await request.is_disconnected():
                    scheduler.withdraw(job, "client_left")
                    raise ClientGone from None

    async def answer(
        job: Job, output: Format, request: Request, prompt_tokens: int, extension: Json, include_usage: bool
    ) -> Response:
        scheduler.submit(job)
        if job.stream:
            return StreamingResponse(
                stream(job, output, prompt_tokens, extension, include_usage),
                media_type="text/event-stream",
                headers=STREAM_HEADERS,
            )
        finished: list[Finished] = []
        try:
            while True:
                event = await next_event(job, request)
                if isinstance(event, Finished):
                    finished.append(event)
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Done):
                    body = output.response(finished, usage(prompt_tokens, finished), extension | event.summary())
                    return JSONResponse(body)
        except ClientGone:
            return Response(status_code=499)  # nobody reads it; nginx's code for a client that left

    async def stream(
        job: Job, output: Format, prompt_tokens: int, extension: Json, include_usage: bool
    ) -> AsyncIterator[str]:
        """Server-sent events; a closed connection cancels this generator, which drops the job's rows."""
        finished: list[Finished] = []
        try:
            for chunk in output.start(len(job.rows)):
                yield server_sent_event(chunk)
            while True:
                try:
                    event = await next_event(job, None)
                except APIError as error:
                    yield server_sent_event(error.body())
                    break
                if isinstance(event, Delta):
                    yield server_sent_event(output.delta(event.choice, event.text))
                elif isinstance(event, Frame):
                    yield server_sent_event(output.frame(event))
                elif isinstance(event, Finished):
                    finished.append(event)
                    yield server_sent_event(output.finish(event))
                elif isinstance(event, Failed):
                    yield server_sent_event(event.error.body())
                    break
                elif isinstance(event, Done):
                    if include_usage:
                        totals = usage(prompt_tokens, finished)
                        yield server_sent_event(output.usage(totals, extension | event.summary()))
                    break
            yield server_sent_event("[DONE]")
        finally:
            if not job.settled:
                scheduler.withdraw(job, "client_left")

    @app.get("/v1/models")
    async def list_models() -> Json:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model:path}")
    async def get_model(model: str) -> Json:
        check_model(model)
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        check_model(body.model)
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        config, seed, extension = settings(body, max_tokens)
        try:
            prompt = render_chat([message.as_turn() for message in body.messages])
        except DiffutronError as error:
            raise APIError(400, str(error), param="messages", code="invalid_value") from error
        ids = prompt_ids(prompt, config, "messages")
        job = generation_job(body, [ids], config, seed)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await answer(job, Format(True, options.model_id), request, len(ids), extension, include_usage)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check_model(body.model)
        config, seed, extension = settings(body, body.max_tokens)
        texts = body.prompts()
        if not texts:
            raise APIError(400, "prompt is an empty list: give at least one prompt", param="prompt")
        prompts = [
            prompt_ids(text, config, "prompt" if len(texts) == 1 else f"prompt.{index}")
            for index, text in enumerate(texts)
        ]
        job = generation_job(body, prompts, config, seed)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        prompt_tokens = sum(len(ids) for ids in prompts)
        return await answer(job, Format(False, options.model_id), request, prompt_tokens, extension, include_usage)

    @app.post("/v1/infill")
    async def infill(body: InfillRequest, request: Request) -> Response:
        """Extension: fill `[MASK]` / `[MASK:n]` placeholders in a text."""
        check_model(body.model)
        config, seed, extension = settings(body, None)
        try:
            parse_placeholders(body.text)
        except DiffutronError as error:
            raise APIError(400, str(error), param="text", code="invalid_value") from error
        job = Job("infill", [Row([], seed, 0)], config, deadline(), asyncio.get_running_loop(), text=body.text)
        scheduler.submit(job)
        filled = ""
        try:
            while True:
                event = await next_event(job, request)
                if isinstance(event, Finished):
                    filled = event.text
                elif isinstance(event, Failed):
                    raise event.error
                elif isinstance(event, Done):
                    return JSONResponse(
                        {
                            "id": f"infill-{uuid.uuid4().hex}",
                            "object": "infill",
                            "created": int(time.time()),
                            "model": options.model_id,
                            "text": filled,
                            "diffutron": extension | event.summary(),
                        }
                    )
        except ClientGone:
            return Response(status_code=499)

    @app.get("/settings", include_in_schema=False)
    async def settings_form() -> Json:
        """The sampler settings the chat page offers: types, defaults and ranges from GenerationConfig."""
        return page_settings()

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The chat page that draws the denoising live (docs/serving.md)."""
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/health")
    async def health() -> Json:
        if not scheduler.healthy:
            raise APIError(503, "the model worker is not running")
        return {"status": "ok", "model": options.model_id}

    @app.get("/metrics")
    async def prometheus() -> Response:
        content, media_type = metrics.exposition()
        return Response(content, media_type=media_type)

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
