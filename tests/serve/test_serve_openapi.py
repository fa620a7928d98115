"""The OpenAPI schema describes every body the server sends, and the bodies are those models."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from diffutron.lm import Diffutron
from diffutron.serve.app import ServeOptions, create_app
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
from diffutron.serve.routes import endpoint_paths

ERROR_STATUSES = ["400", "401", "404", "413", "429", "500", "503", "504"]
OPERATIONS = {
    # (path, method): (the 200 body's model, the model of its stream's chunks)
    ("/v1/models", "get"): ("ModelList", None),
    ("/v1/models/{model}", "get"): ("ModelCard", None),
    ("/v1/chat/completions", "post"): ("ChatCompletion", "ChatCompletionChunk"),
    ("/v1/completions", "post"): ("Completion", "CompletionChunk"),
    ("/v1/infill", "post"): ("InfillResponse", None),
    ("/v1/embeddings", "post"): ("EmbeddingList", None),
    ("/tokenize", "post"): ("TokenizeResponse", None),
    ("/detokenize", "post"): ("DetokenizeResponse", None),
    ("/health", "get"): ("Health", None),
}


@pytest.fixture
def app(tiny_model, tiny_tokenizer):
    return create_app(Diffutron(tiny_model, tiny_tokenizer), ServeOptions(model_id="tiny", batch_wait_ms=0))


def test_every_route_has_its_response_models(app):
    schema = app.openapi()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == {*OPERATIONS, ("/metrics", "get")}
    for (path, method), (model, chunk) in OPERATIONS.items():
        responses = schema["paths"][path][method]["responses"]
        content = responses["200"]["content"]
        assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        streamed = {"text/event-stream": {"schema": {"$ref": f"#/components/schemas/{chunk}"}}} if chunk else {}
        assert {key: value for key, value in content.items() if key != "application/json"} == streamed
        errors = ["503"] if path == "/health" else ERROR_STATUSES
        assert sorted(status for status in responses if status != "200") == errors  # no 422: refusals are 400s
        for status in errors:
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert set(components["ChatDelta"]["properties"]) == {"role", "content", "tool_calls"}
    assert set(components["AssistantMessage"]["properties"]) == {"role", "content", "tool_calls"}
    assert set(components["ChatCompletionChunk"]["properties"]) == {
        "id",
        "object",
        "created",
        "model",
        "choices",
        "usage",
        "diffutron",
        "denoising",
    }
    json.dumps(schema)  # serialisable as it is served


SAAT = {"type": "object", "properties": {"dilim": {"type": "string", "maxLength": 3}}, "required": ["dilim"]}
TOOL_CALL = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Saat kaç?"}],
    "tools": [{"type": "function", "function": {"name": "saat", "parameters": SAAT}}],
    "tool_choice": "required",
}


def test_bodies_are_the_declared_models(app):
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "Kitap ne demek?"}], "max_tokens": 4}
    with TestClient(app, base_url="http://127.0.0.1") as client:  # the Host must name the server
        ModelList.model_validate(client.get("/v1/models").json(), strict=True)
        ModelCard.model_validate(client.get("/v1/models/tiny").json(), strict=True)
        answer = ChatCompletion.model_validate(client.post("/v1/chat/completions", json=chat).json(), strict=True)
        assert answer.diffutron.settings["max_new_tokens"] == 4 and answer.model == "tiny"
        completion = client.post("/v1/completions", json={"model": "tiny", "prompt": ["a", "b"], "max_tokens": 3})
        Completion.model_validate(completion.json(), strict=True)
        infill = client.post("/v1/infill", json={"model": "tiny", "text": "a [MASK:2] b"})
        InfillResponse.model_validate(infill.json(), strict=True)
        Health.model_validate(client.get("/health").json(), strict=True)
        for encoding in ("float", "base64"):
            embedding = client.post(
                "/v1/embeddings", json={"model": "tiny", "input": ["a", "b"], "encoding_format": encoding}
            )
            EmbeddingList.model_validate(embedding.json(), strict=True)
        for fields in ({}, {"return_token_strs": True}):
            tokens = client.post("/tokenize", json={"prompt": "Kitap", **fields}).json()
            assert ("token_strs" in tokens) == bool(fields)
            TokenizeResponse.model_validate(tokens, strict=True)
        DetokenizeResponse.model_validate(client.post("/detokenize", json={"tokens": [5]}).json(), strict=True)
        ErrorResponse.model_validate(client.get("/v1/models/other").json(), strict=True)
        call = ChatCompletion.model_validate(client.post("/v1/chat/completions", json=TOOL_CALL).json(), strict=True)
        assert call.choices[0].finish_reason == "tool_calls" and call.choices[0].message.content is None
        for path, body, chunk in (
            ("/v1/chat/completions", chat, ChatCompletionChunk),
            ("/v1/chat/completions", TOOL_CALL, ChatCompletionChunk),
            ("/v1/completions", {"model": "tiny", "prompt": "a", "max_tokens": 3}, CompletionChunk),
        ):
            options = {"include_usage": True, "include_denoising": True}
            streamed = client.post(path, json={**body, "stream": True, "stream_options": options}).text
            events = [line.removeprefix("data: ") for line in streamed.splitlines() if line.startswith("data: {")]
            chunks = [chunk.model_validate(json.loads(event), strict=True) for event in events]
            assert sum(item.denoising is not None for item in chunks) >= 1 and chunks[-1].usage is not None
    ErrorResponse.model_validate(APIError(429, "full", code="queue_full").body(), strict=True)


def test_request_metrics_count_the_routes_by_path():
    assert sorted(endpoint_paths()) == [
        "/detokenize",
        "/health",
        "/metrics",
        "/tokenize",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/infill",
        "/v1/models",
    ]
