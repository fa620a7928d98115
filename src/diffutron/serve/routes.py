"""The HTTP routes: thin functions that hand each request to its serving class on `app.state`.

`SERVING_CLASSES` lists the serving classes an application holds, one instance each; a route
reaches its own through `served(Class)`. Adding an endpoint is a serving class (with its work
item, `serve/serving/`) and its route here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from diffutron.serve.errors import APIError
from diffutron.serve.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    CompletionChunk,
    DetokenizeResponse,
    EmbeddingList,
    ErrorResponse,
    Health,
    InfillResponse,
    ModelCard,
    ModelList,
    TokenizeResponse,
)
from diffutron.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    InfillRequest,
    TokenizeRequest,
    page_settings,
)
from diffutron.serve.serving.base import Serving, ServingContext
from diffutron.serve.serving.chat import ChatServing
from diffutron.serve.serving.completions import CompletionServing
from diffutron.serve.serving.embeddings import EmbeddingServing
from diffutron.serve.serving.infill import InfillServing
from diffutron.serve.serving.models import ModelServing
from diffutron.serve.serving.tokenize import TokenizeServing

STATIC = Path(__file__).parent / "static"  # the chat page: plain HTML, CSS and JS, nothing fetched
SERVING_CLASSES: tuple[type[Serving], ...] = (
    ModelServing,
    ChatServing,
    CompletionServing,
    InfillServing,
    EmbeddingServing,
    TokenizeServing,
)
S = TypeVar("S", bound=Serving)
# every error a /v1 route may answer with, in the one OpenAI shape
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 429, 500, 503, 504)
}
# streamed answers: the chunk model each route's `text/event-stream` carries
STREAMED = {"/v1/chat/completions": ChatCompletionChunk, "/v1/completions": CompletionChunk}

openai = APIRouter(responses=ERRORS)  # the OpenAI-compatible endpoints and extensions under /v1
service = APIRouter()  # the chat page and its settings form, health and metrics


def served(kind: type[S]) -> Callable[[Request], S]:
    """A dependency: the application's instance of the serving class `kind`."""

    def instance(request: Request) -> S:
        serving = request.app.state.serving[kind]
        assert isinstance(serving, kind)
        return serving

    return instance


def servings(context: ServingContext) -> dict[type[Serving], Serving]:
    """One instance of each serving class, for `app.state.serving`."""
    return {kind: kind(context) for kind in SERVING_CLASSES}


@openai.get("/v1/models", response_model=ModelList)
async def list_models(models: Annotated[ModelServing, Depends(served(ModelServing))]) -> ModelList:
    return models.list()


@openai.get("/v1/models/{model:path}", response_model=ModelCard)
async def get_model(model: str, models: Annotated[ModelServing, Depends(served(ModelServing))]) -> ModelCard:
    return models.get(model)


@openai.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, chat: Annotated[ChatServing, Depends(served(ChatServing))]
) -> Response:
    return await chat.create(body, request)


@openai.post("/v1/completions", response_model=Completion)
async def completions(
    body: CompletionRequest,
    request: Request,
    completion: Annotated[CompletionServing, Depends(served(CompletionServing))],
) -> Response:
    return await completion.create(body, request)


@openai.post("/v1/infill", response_model=InfillResponse)
async def infill(
    body: InfillRequest, request: Request, infill: Annotated[InfillServing, Depends(served(InfillServing))]
) -> Response:
    """Extension: fill `[MASK]` / `[MASK:n]` placeholders in a text."""
    return await infill.create(body, request)


@openai.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(
    body: EmbeddingRequest,
    request: Request,
    embedding: Annotated[EmbeddingServing, Depends(served(EmbeddingServing))],
) -> Response:
    return await embedding.create(body, request)


@openai.post("/tokenize", response_model=TokenizeResponse)
async def tokenize(
    body: TokenizeRequest, tokens: Annotated[TokenizeServing, Depends(served(TokenizeServing))]
) -> TokenizeResponse:
    """vLLM's extension: the token ids of a prompt or of a conversation in the chat format."""
    return tokens.tokenize(body)


@openai.post("/detokenize", response_model=DetokenizeResponse)
async def detokenize(
    body: DetokenizeRequest, tokens: Annotated[TokenizeServing, Depends(served(TokenizeServing))]
) -> DetokenizeResponse:
    """vLLM's extension: the text of token ids."""
    return tokens.detokenize(body)


@service.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The chat page that draws the denoising live (docs/serving.md)."""
    return FileResponse(STATIC / "index.html")


@service.get("/settings", include_in_schema=False)
async def settings_form() -> dict[str, Any]:
    """The sampler settings the chat page offers: types, defaults and ranges from GenerationConfig."""
    return page_settings()


@service.get("/health", response_model=Health, responses={503: {"model": ErrorResponse}})
async def health(request: Request) -> Health:
    context: ServingContext = request.app.state.context
    scheduler = context.scheduler
    if scheduler.stalled:
        raise APIError(503, f"the model worker is stuck: no progress for over {scheduler.stall_s:g} s")
    if not scheduler.healthy:
        raise APIError(503, "the model worker is not running")
    return Health(model=context.options.model_id)


@service.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus(request: Request) -> Response:
    content, media_type = request.app.state.context.scheduler.metrics.exposition()
    return Response(content, media_type=media_type)


def endpoint_paths() -> tuple[str, ...]:
    """The paths the request metrics count by name (others count as `other`)."""
    routes = [route for route in (*openai.routes, *service.routes) if isinstance(route, APIRoute)]
    return tuple(route.path for route in routes if route.include_in_schema and "{" not in route.path)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema, plus the chunks of the streamed answers as `text/event-stream` content, less
    FastAPI's 422 (a request this server refuses gets a 400 with the one error body)."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation["responses"].pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(name, None)
        refs, definitions = models_json_schema(
            [(model, "serialization") for model in STREAMED.values()], ref_template="#/components/schemas/{model}"
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions.get("$defs", {}))
        for path, model in STREAMED.items():
            content = schema["paths"][path]["post"]["responses"]["200"]["content"]
            content["text/event-stream"] = {"schema": refs[(model, "serialization")]}
        app.openapi_schema = schema
    return app.openapi_schema
