"""Every bad request gets a 4xx with an OpenAI-shaped error body, and the server stays healthy."""

from __future__ import annotations

import json

import pytest

from helpers.server import MODEL

USER = [{"role": "user", "content": "Merhaba"}]
LONG_TEXT = "kitap okumak " * 200  # about 400 tokens: more than the embedded model's context of 256


def chat(**fields):
    return {"model": MODEL, "messages": USER, "max_tokens": 4, **fields}


BAD_CHAT_REQUESTS = {
    # name: (body, status, param)
    "wrong model": (chat(model="gpt-4"), 404, "model"),
    "no model": ({"messages": USER}, 400, "model"),
    "empty messages": (chat(messages=[]), 400, "messages"),
    "messages not a list": (chat(messages="Merhaba"), 400, "messages"),
    "bad role": (chat(messages=[{"role": "tool", "content": "x"}]), 400, "messages.0.role"),
    "no content": (chat(messages=[{"role": "user"}]), 400, "messages.0.content"),
    "empty question": (chat(messages=[{"role": "user", "content": "  "}]), 400, "messages"),
    "two user turns": (chat(messages=USER + USER), 400, "messages"),
    "image part": (
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
        400,
        "messages.0.content.0.type",
    ),
    "temperature below 0": (chat(temperature=-0.5), 400, "temperature"),
    "temperature as text": (chat(temperature="hot"), 400, "temperature"),
    "max_tokens 0": (chat(max_tokens=0), 400, "max_tokens"),
    "max_tokens fractional": (chat(max_tokens=2.5), 400, "max_tokens"),
    "steps 0": (chat(steps=0), 400, "steps"),
    "block_length -1": (chat(block_length=-1), 400, "block_length"),
    "unknown remasking": (chat(remasking="sometimes"), 400, "remasking"),
    "threshold above 1": (chat(threshold=1.5), 400, "threshold"),
    "threshold and factor": (chat(threshold=0.9, factor=1.0), 400, None),
    "refresh_every without a cache": (chat(refresh_every=2), 400, None),
    "unknown speed": (chat(speed="warp"), 400, "speed"),
    "steps above the cap": (chat(steps=1_000_000_000), 400, "steps"),
    "max_tokens above the cap": (chat(max_tokens=9000), 400, "max_tokens"),
    "repetition_penalty 1e-308": (chat(repetition_penalty=1e-308), 400, "repetition_penalty"),
    "cfg_scale 1e308": (chat(cfg_scale=1e308), 400, "cfg_scale"),
    "unknown rule": (chat(rule="fastest"), 400, "rule"),
    "rule without its knob": (chat(rule="threshold"), 400, "threshold"),
    "knob of another rule": (chat(rule="factor", threshold=0.5), 400, "threshold"),
    "negative seed": (chat(seed=-1), 400, "seed"),
    "n 0": (chat(n=0), 400, "n"),
    "n above the batch size": (chat(n=17), 400, "n"),
    "stream not a bool": (chat(stream="yes"), 400, "stream"),
    "too many stop strings": (chat(stop=["x"] * 17), 400, "stop"),
    "unknown stream option": (
        chat(stream=True, stream_options={"include_logits": True}),
        400,
        "stream_options.include_logits",
    ),
    "tools": (chat(tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools"),
    "logprobs": (chat(logprobs=True), 400, "logprobs"),
    "top_p below 1": (chat(top_p=0.5), 400, "top_p"),
    "presence_penalty": (chat(presence_penalty=0.5), 400, "presence_penalty"),
    "unknown field": (chat(mirostat=2), 400, "mirostat"),
    "over the context": (chat(messages=[{"role": "user", "content": LONG_TEXT}]), 400, "messages"),
    "answer over the context": (chat(max_tokens=300), 400, "messages"),
    "mask token in the prompt": (chat(messages=[{"role": "user", "content": "a <mask> b"}]), 400, "messages"),
}


@pytest.mark.parametrize("body, status, param", BAD_CHAT_REQUESTS.values(), ids=BAD_CHAT_REQUESTS.keys())
def test_bad_chat_request(server, body, status, param):
    with server.client() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["message"] and "\n" not in error["message"]


def test_neutral_values_of_meaningless_fields_are_accepted(server):
    body = chat(top_p=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False, tools=None, user="u")
    with server.client() as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_context_error_names_both_numbers(server):
    with server.client() as http:
        message = http.post("/v1/chat/completions", json=chat(max_tokens=250)).json()["error"]["message"]
    assert "max_tokens is 250" in message and "context of 256" in message


@pytest.mark.parametrize(
    "content, param",
    [
        (b'{"model": "diffutron-embedded", "messages": [', None),  # malformed JSON
        (b"[1, 2, 3]", None),  # not an object
        (
            b'{"model": "diffutron-embedded", "messages": [{"role": "user", "content": "a"}], "temperature": 1e999}',
            "temperature",
        ),  # infinite
        (
            b'{"model": "diffutron-embedded", "messages": [{"role": "user", "content": "a"}], "temperature": NaN}',
            "temperature",
        ),
    ],
)
def test_malformed_body(server, content, param):
    with server.client() as http:
        response = http.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize(
    "endpoint, body, param",
    [
        ("/v1/completions", {"model": MODEL, "prompt": []}, "prompt"),
        ("/v1/completions", {"model": MODEL, "prompt": ["Kitap", ""]}, "prompt.1"),
        ("/v1/completions", {"model": MODEL, "prompt": "Kitap", "echo": True}, "echo"),
        ("/v1/infill", {"model": MODEL, "text": "no placeholder here"}, "text"),
        ("/v1/infill", {"model": MODEL, "text": "[MASK:0]"}, "text"),
        ("/v1/infill", {"model": MODEL, "text": "x [MASK:300]"}, None),
        ("/v1/infill", {"model": MODEL, "text": "x [MASK]", "max_tokens": 3}, "max_tokens"),
    ],
)
def test_bad_completion_and_infill_requests(server, endpoint, body, param):
    with server.client() as http:
        response = http.post(endpoint, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_api_key_is_required_on_v1(server):
    with server.client() as http:
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
            response = http.get("/v1/models", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        assert http.post("/v1/chat/completions", json=chat(), headers={"Authorization": ""}).status_code == 401
        assert http.get("/health", headers={"Authorization": ""}).status_code == 200


def test_body_over_one_megabyte(server):
    body = json.dumps(chat(messages=[{"role": "user", "content": "a" * (1024 * 1024)}])).encode()
    with server.client() as http:
        for content in (body, iter([body[:1000], body[1000:]])):  # with a Content-Length, and chunked
            response = http.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == 413
            assert "1 MiB" in response.json()["error"]["message"]
        assert http.get("/health").status_code == 200


def test_unknown_route_and_method(server):
    with server.client() as http:
        assert http.get("/v1/engines").json()["error"]["type"] == "not_found_error"
        assert http.get("/v1/chat/completions").status_code == 405
