"""Structured answers through the serving classes in this process (a tiny model behind a TestClient):
how a request's shape is read, and what the work item counts and streams."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from diffutron.lm import Diffutron
from diffutron.sampling.structured import Function, tool_call_format
from diffutron.sampling.structured.schema import Object, ToolCall
from diffutron.sampling.structured.tools import tools_instruction
from diffutron.serve.app import ServeOptions, create_app
from diffutron.serve.schemas import ChatCompletionRequest, CompletionRequest
from diffutron.serve.serving.structured import request_shape

JSON = "Yanıtını yalnızca JSON olarak ver."
SAAT = {"type": "object", "properties": {"dilim": {"type": "string", "maxLength": 3}}, "required": ["dilim"]}
TOOLS = [
    {"type": "function", "function": {"name": "saat", "description": "Saati söyler.", "parameters": SAAT}},
    {"type": "function", "function": {"name": "hava"}},
]
FUNCTIONS = [Function("saat", SAAT, "Saati söyler."), Function("hava")]
OBJECT = {"type": "json_object"}


def _chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "tiny", "messages": [{"role": "user", "content": "a"}], **fields}
    )


def test_response_format_alone_is_a_json_answer():
    shape = request_shape(_chat(response_format=OBJECT))
    assert (shape.call, shape.auto, shape.free, shape.note()) == (None, False, False, JSON)
    assert request_shape(CompletionRequest(model="tiny", prompt="a", response_format=OBJECT)).note() == JSON
    assert request_shape(_chat(response_format={"type": "text"})).free


def test_tools_default_to_auto_and_tell_the_model_about_json_answers_too():
    shape = request_shape(_chat(tools=TOOLS, response_format=OBJECT))
    assert shape.auto and not shape.free and shape.call == tool_call_format(FUNCTIONS)
    assert shape.note() == f"{tools_instruction(FUNCTIONS)}\n{JSON}"
    assert request_shape(_chat(tools=TOOLS)).note() == tools_instruction(FUNCTIONS)


def test_a_required_call_does_not_mention_the_answer_s_format():
    shape = request_shape(_chat(tools=TOOLS, tool_choice="required", response_format=OBJECT))
    assert not shape.auto and shape.note() == tools_instruction(FUNCTIONS)


def test_a_named_function_is_the_only_one_laid_out_and_described():
    shape = request_shape(_chat(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "hava"}}))
    assert shape.call.node == ToolCall((("hava", Object(())),)) and not shape.auto
    assert shape.note() == tools_instruction(FUNCTIONS[1:])


def test_tool_choice_none_leaves_the_tools_out():
    shape = request_shape(_chat(tools=TOOLS, tool_choice="none"))
    assert (shape.call, shape.auto, shape.free, shape.note()) == (None, False, True, None)


@pytest.fixture
def client(tiny_model, tiny_tokenizer):
    app = create_app(Diffutron(tiny_model, tiny_tokenizer), ServeOptions(model_id="tiny", batch_wait_ms=0))
    with TestClient(app, base_url="http://127.0.0.1") as http:
        yield http


def _counter(client, name: str) -> float:
    text = client.get("/metrics").text
    return float(re.search(rf"^{name}_total (\S+)$", text, re.MULTILINE).group(1))


def _events(client, body: dict) -> list[dict]:
    text = client.post("/v1/chat/completions", json={**body, "stream": True}).text
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]


def test_a_json_answer_in_process_parses_and_is_counted(client):
    calls, tokens = _counter(client, "diffutron_model_calls"), _counter(client, "diffutron_generated_tokens")
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a"}], "response_format": OBJECT, "n": 2}
    answer = client.post("/v1/chat/completions", json=body).json()
    assert all(isinstance(json.loads(choice["message"]["content"]), dict) for choice in answer["choices"])
    assert answer["diffutron"]["batch_rows"] == 2 and answer["diffutron"]["model_calls"] >= 1
    assert _counter(client, "diffutron_model_calls") - calls == answer["diffutron"]["model_calls"]
    assert _counter(client, "diffutron_generated_tokens") - tokens == answer["usage"]["completion_tokens"]
    chunks = _events(client, {**body, "n": 1, "seed": 5, "stream_options": {"include_usage": False}})
    deltas = [chunk["choices"][0]["delta"].get("content") for chunk in chunks if chunk["choices"]]
    whole = client.post("/v1/chat/completions", json={**body, "n": 1, "seed": 5}).json()
    assert [delta for delta in deltas if delta] == [whole["choices"][0]["message"]["content"]]
    assert not any("usage" in chunk for chunk in chunks)  # include_usage false: no usage chunk


def test_streamed_tool_calls_count_one_call_per_frame(client):
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "a"}],
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "saat"}},
        "n": 2,
        "stream_options": {"include_usage": True, "include_denoising": True},
    }
    chunks = _events(client, body)
    frames = [chunk["denoising"] for chunk in chunks if "denoising" in chunk]
    assert frames and all(frame["visible"] == frame["tokens"] for frame in frames)
    choices = [choice for chunk in chunks for choice in chunk["choices"]]
    assert not any(choice["delta"].get("content") for choice in choices)
    calls = sorted(choice["index"] for choice in choices if choice["delta"].get("tool_calls"))
    assert calls == [0, 1]
    assert [choice["finish_reason"] for choice in choices if choice["finish_reason"]] == ["tool_calls"] * 2
    usage = chunks[-1]
    assert usage["diffutron"]["model_calls"] == len(frames) and usage["diffutron"]["batch_rows"] == 1
    assert usage["usage"]["completion_tokens"] > 0


def test_auto_answers_or_calls(client):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a"}], "tools": TOOLS, "max_tokens": 4}
    calls = _counter(client, "diffutron_model_calls")
    response = client.post("/v1/chat/completions", json=body).json()
    assert response["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    # the decision is one forward pass of its own, beside the answer's
    assert _counter(client, "diffutron_model_calls") - calls == 1 + response["diffutron"]["model_calls"]


def test_too_many_structured_answers_are_refused(client):
    body = {"model": "tiny", "messages": [{"role": "user", "content": "a"}], "response_format": OBJECT, "n": 17}
    error = client.post("/v1/chat/completions", json=body).json()["error"]
    assert (error["param"], error["message"]) == ("n", "n must be between 1 and 16 here (--max-batch-size 16), got 17")
