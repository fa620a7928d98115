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
    # name: (body, status, param, a fragment of the message)
    "wrong model": (chat(model="gpt-4"), 404, "model", "model 'gpt-4' is not served here"),
    "no model": ({"messages": USER}, 400, "model", "model is required"),
    "empty messages": (chat(messages=[]), 400, "messages", "messages: List should have at least 1 item"),
    "messages not a list": (chat(messages="Merhaba"), 400, "messages", "messages: Input should be a valid list"),
    "bad role": (
        chat(messages=[{"role": "function", "content": "x"}]),
        400,
        "messages.0.role",
        "messages.0.role: Input should be",
    ),
    "no content": (chat(messages=[{"role": "user"}]), 400, "messages.0.content", "messages.0.content is required"),
    "empty question": (
        chat(messages=[{"role": "user", "content": "  "}]),
        400,
        "messages",
        "message 0 (user) is empty",
    ),
    "two user turns": (
        chat(messages=USER + USER),
        400,
        "messages",
        "message 1 has role 'user' but 'assistant' was expected",
    ),
    "image part": (
        chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
        400,
        "messages.0.content.0.type",
        "messages.0.content.0.type: Input should be 'text'",
    ),
    "temperature below 0": (chat(temperature=-0.5), 400, "temperature", "temperature must be"),
    "temperature as text": (chat(temperature="hot"), 400, "temperature", "temperature: Input should be a valid number"),
    "max_tokens 0": (chat(max_tokens=0), 400, "max_tokens", "max_tokens must be"),
    "max_tokens fractional": (chat(max_tokens=2.5), 400, "max_tokens", "max_tokens: Input should be a valid integer"),
    "steps 0": (chat(steps=0), 400, "steps", "steps must be"),
    "block_length -1": (chat(block_length=-1), 400, "block_length", "block_length must be"),
    "unknown remasking": (chat(remasking="sometimes"), 400, "remasking", "remasking: Input should be"),
    "threshold above 1": (chat(threshold=1.5), 400, "threshold", "threshold must be"),
    "threshold and factor": (
        chat(threshold=0.9, factor=1.0),
        400,
        None,
        "threshold and factor are two parallel decoding rules",
    ),
    "refresh_every without a cache": (chat(refresh_every=2), 400, None, "choose a cache too"),
    "unknown speed": (chat(speed="warp"), 400, "speed", "speed: Input should be"),
    "steps above the cap": (chat(steps=1_000_000_000), 400, "steps", "steps must be at most 8192"),
    "max_tokens above the cap": (chat(max_tokens=9000), 400, "max_tokens", "must be at most 8192"),
    "repetition_penalty 1e-308": (
        chat(repetition_penalty=1e-308),
        400,
        "repetition_penalty",
        "repetition_penalty must be in [0.1, 10]",
    ),
    "cfg_scale 1e308": (chat(cfg_scale=1e308), 400, "cfg_scale", "cfg_scale must be at most 10"),
    "unknown rule": (
        chat(rule="fastest"),
        400,
        "rule",
        "rule: Input should be 'count', 'dilated', 'early_commit', 'entropy_bound', 'factor', 'revocable' "
        "or 'threshold'",
    ),
    "rule without its knob": (chat(rule="threshold"), 400, "threshold", "rule 'threshold' needs threshold"),
    "knob of another rule": (
        chat(rule="factor", threshold=0.5),
        400,
        "threshold",
        "threshold is a knob of rule 'threshold', not 'factor'",
    ),
    "negative seed": (chat(seed=-1), 400, "seed", "seed: Input should be greater than or equal to 0"),
    "n 0": (chat(n=0), 400, "n", "n must be between 1 and 16 here (--max-batch-size 16), got 0"),
    "n above the batch size": (chat(n=17), 400, "n", "n must be between 1 and 16 here (--max-batch-size 16), got 17"),
    "stream not a bool": (chat(stream="yes"), 400, "stream", "stream: Input should be a valid boolean"),
    "too many stop strings": (chat(stop=["x"] * 17), 400, "stop", "stop: List should have at most 16 items"),
    "unknown stream option": (
        chat(stream=True, stream_options={"include_logits": True}),
        400,
        "stream_options.include_logits",
        "unknown field 'stream_options.include_logits'",
    ),
    "unsupported keyword in a tool's parameters": (
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string", "format": "x"}}}]),
        400,
        "tools",
        "tools.0.function.parameters uses the keyword 'format', which structured output does not support here",
    ),
    "top_logprobs above 20": (
        chat(logprobs=True, top_logprobs=21),
        400,
        "top_logprobs",
        "top_logprobs: Input should be less than or equal to 20",
    ),
    "echo": (chat(echo=True), 400, "echo", "echo is not supported by this server"),
    "top_p zero": (chat(top_p=0), 400, "top_p", "top_p must be in (0, 1] (1.0 disables it), got 0.0"),
    "presence_penalty above 2": (
        chat(presence_penalty=2.5),
        400,
        "presence_penalty",
        "presence_penalty must be in [-2, 2] (0 disables it), got 2.5",
    ),
    "suffix": (chat(suffix="x"), 400, "suffix", "suffix is not supported by this server"),
    "unknown field": (chat(mirostat=2), 400, "mirostat", "unknown field 'mirostat'"),
    "over the context": (
        chat(messages=[{"role": "user", "content": LONG_TEXT}]),
        400,
        "messages",
        "the prompt has 408 tokens and max_tokens is 4: together more than the model's context of 256",
    ),
    "answer over the context": (
        chat(max_tokens=300),
        400,
        "messages",
        "max_tokens is 300: together more than the model's context of 256",
    ),
    "mask token in the prompt": (
        chat(messages=[{"role": "user", "content": "a <mask> b"}]),
        400,
        "messages",
        "messages contains the mask token",
    ),
    "ends with an assistant turn": (
        chat(messages=[*USER, {"role": "assistant", "content": "Merhaba!"}]),
        400,
        "messages",
        "the conversation ends with an assistant turn (message 1): end it with a user message",
    ),
    "a prompt of more characters than the context can hold": (
        chat(messages=[{"role": "user", "content": "a" * (32 * 256)}]),
        400,
        "messages",
        "messages has 8226 characters, more than the 8192 this server reads for a model with a context of 256",
    ),
}


@pytest.mark.parametrize("body, status, param, fragment", BAD_CHAT_REQUESTS.values(), ids=BAD_CHAT_REQUESTS.keys())
def test_bad_chat_request(server, body, status, param, fragment):
    with server.client() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert fragment in error["message"] and "\n" not in error["message"]


def test_neutral_values_of_meaningless_fields_are_accepted(server):
    body = chat(top_p=1, presence_penalty=0, frequency_penalty=0.0, logprobs=False, tools=None, user="u")
    with server.client() as http:
        assert http.post("/v1/chat/completions", json=body).status_code == 200


def test_context_error_names_both_numbers(server):
    with server.client() as http:
        message = http.post("/v1/chat/completions", json=chat(max_tokens=250)).json()["error"]["message"]
    assert "max_tokens is 250" in message and "context of 256" in message


MALFORMED_BODIES = {
    # name: (content, param, a fragment of the message)
    "malformed JSON": (b'{"model": "diffutron-embedded", "messages": [', None, "the body is not valid JSON"),
    "not an object": (b"[1, 2, 3]", None, "Input should be a valid dictionary"),
    "infinite": (
        b'{"model": "diffutron-embedded", "messages": [{"role": "user", "content": "a"}], "temperature": 1e999}',
        "temperature",
        "temperature: Input should be a finite number",
    ),
    "NaN": (
        b'{"model": "diffutron-embedded", "messages": [{"role": "user", "content": "a"}], "temperature": NaN}',
        "temperature",
        "temperature: Input should be a finite number",
    ),
    "empty body": (b"", None, "the request has no body: send a JSON object"),
}


@pytest.mark.parametrize("content, param, fragment", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_malformed_body(server, content, param, fragment):
    with server.client() as http:
        response = http.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert fragment in response.json()["error"]["message"]


BAD_COMPLETION_AND_INFILL_REQUESTS = {
    # name: (endpoint, body, param, a fragment of the message)
    "no prompt": ("/v1/completions", {"model": MODEL, "prompt": []}, "prompt", "prompt is an empty list"),
    "an empty prompt": ("/v1/completions", {"model": MODEL, "prompt": ["Kitap", ""]}, "prompt.1", "prompt.1 is empty"),
    "logprobs above 5": (
        "/v1/completions",
        {"model": MODEL, "prompt": "Kitap", "logprobs": 6},
        "logprobs",
        "logprobs: Input should be less than or equal to 5",
    ),
    "best_of": (
        "/v1/completions",
        {"model": MODEL, "prompt": "Kitap", "best_of": 2},
        "best_of",
        "best_of is not supported",
    ),
    "17 prompts": (
        "/v1/completions",
        {"model": MODEL, "prompt": ["Kitap"] * 17, "max_tokens": 4},
        "prompt",
        "prompt is a list of 17 prompts, more answers than this server decodes together (--max-batch-size 16): "
        "send at most 16",
    ),
    "2 prompts, n 9": (
        "/v1/completions",
        {"model": MODEL, "prompt": ["Kitap", "Ev"], "max_tokens": 4, "n": 9},
        "n",
        "n must be between 1 and 8 here for 2 prompts (--max-batch-size 16), got 9",
    ),
    "no placeholder": ("/v1/infill", {"model": MODEL, "text": "no placeholder here"}, "text", "no placeholder"),
    "[MASK:0]": ("/v1/infill", {"model": MODEL, "text": "[MASK:0]"}, "text", "asks for 0 tokens"),
    "[MASK:300]": ("/v1/infill", {"model": MODEL, "text": "x [MASK:300]"}, None, "context of 256"),
    "infill max_tokens": (
        "/v1/infill",
        {"model": MODEL, "text": "x [MASK]", "max_tokens": 3},
        "max_tokens",
        "max_tokens",
    ),
    "infill text of more characters than the context can hold": (
        "/v1/infill",
        {"model": MODEL, "text": "[MASK] " + "a" * (32 * 256)},
        "text",
        "text has 8199 characters, more than the 8192 this server reads",
    ),
}


@pytest.mark.parametrize(
    "endpoint, body, param, fragment",
    BAD_COMPLETION_AND_INFILL_REQUESTS.values(),
    ids=BAD_COMPLETION_AND_INFILL_REQUESTS.keys(),
)
def test_bad_completion_and_infill_requests(server, endpoint, body, param, fragment):
    with server.client() as http:
        response = http.post(endpoint, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert fragment in response.json()["error"]["message"]


LONE_SURROGATES = {
    # name: (endpoint, raw JSON body with an unpaired \\u escape, param)
    "chat content": (
        "/v1/chat/completions",
        '"messages": [{"role": "user", "content": "a \\ud800"}]',
        "messages.0.content",
    ),
    "chat text part": (
        "/v1/chat/completions",
        '"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udcff"}]}]',
        "messages.0.content.0.text",
    ),
    "stop": (
        "/v1/chat/completions",
        '"messages": [{"role": "user", "content": "a"}], "stop": ["x", "\\udfff"]',
        "stop.1",
    ),
    "prompt": ("/v1/completions", '"prompt": "Kitap \\ud800"', "prompt"),
    "second prompt": ("/v1/completions", '"prompt": ["Kitap", "\\ud800"]', "prompt.1"),
    "infill text": ("/v1/infill", '"text": "a [MASK] \\ud800"', "text"),
}


@pytest.mark.parametrize("endpoint, fields, param", LONE_SURROGATES.values(), ids=LONE_SURROGATES.keys())
def test_text_that_is_not_valid_unicode_is_a_400_naming_the_field(server, endpoint, fields, param):
    content = f'{{"model": "{MODEL}", "max_tokens": 2, {fields}}}'.encode()
    with server.client() as http:
        response = http.post(endpoint, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert error["message"].startswith(f"{param} is not valid Unicode: character ")


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
