"""Structured output and tool calls over HTTP, through the official `openai` client against a real server."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

from diffutron.lm import Diffutron
from diffutron.model.chat import render_chat, with_system_note
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.structured import Function, call_probability
from diffutron.sampling.structured.tools import tools_instruction
from diffutron.serve.conversation import chat_prompt
from diffutron.serve.errors import APIError
from diffutron.serve.schemas import ChatMessage
from helpers.server import MODEL

QUESTION = [{"role": "user", "content": "Bir kişiyi tanıt."}]
PERSON = {
    "type": "object",
    "properties": {
        "ad": {"type": "string", "minLength": 1, "maxLength": 10},
        "yas": {"type": "integer", "minimum": 0, "maximum": 120},
        "ogrenci": {"type": "boolean"},
    },
    "required": ["ad", "yas", "ogrenci"],
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "hava_durumu",
        "description": "Bir şehrin hava durumunu söyler.",
        "parameters": {
            "type": "object",
            "properties": {"sehir": {"type": "string", "minLength": 1, "maxLength": 12}},
            "required": ["sehir"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "saat",
        "parameters": {"type": "object", "properties": {"dilim": {"enum": ["UTC", "TRT"]}}, "required": ["dilim"]},
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "Ankara'da hava nasıl?"}]


class Person(BaseModel):
    ad: str = Field(min_length=1, max_length=10)
    yas: int = Field(ge=0, le=120)


@pytest.fixture(scope="module")
def lm():
    return Diffutron.from_pretrained(None, device="cpu")


def _schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "kisi", "schema": schema, "strict": True}}


def test_parse_returns_the_pydantic_object(openai_client):
    completion = openai_client.beta.chat.completions.parse(
        model=MODEL, messages=QUESTION, response_format=Person, seed=1
    )
    [choice] = completion.choices
    assert isinstance(choice.message.parsed, Person)
    assert choice.message.parsed == Person.model_validate_json(choice.message.content)
    assert choice.finish_reason == "stop"


def test_schema_answer_validates_and_is_the_library_s(openai_client, lm):
    response = openai_client.chat.completions.create(
        model=MODEL, messages=QUESTION, response_format=_schema_format(PERSON), seed=5, n=2
    )
    answers = [choice.message.content for choice in response.choices]
    for answer in answers:
        jsonschema.validate(json.loads(answer), PERSON)
    expected = lm.chat(QUESTION, GenerationConfig(seed=5), response_format=_schema_format(PERSON))
    assert answers[0] == expected
    assert response.usage.completion_tokens == sum(len(lm.encode(answer)) for answer in answers)
    assert response.model_extra["diffutron"]["model_calls"] >= 1


def test_json_object_on_text_completions(openai_client, lm):
    response = openai_client.completions.create(
        model=MODEL, prompt="Bir kayıt:", seed=2, max_tokens=4, extra_body={"response_format": {"type": "json_object"}}
    )
    [choice] = response.choices
    value = json.loads(choice.text)
    assert isinstance(value, dict) and value and all(isinstance(item, str) for item in value.values())
    assert (
        choice.text
        == lm.generate(
            ["Bir kayıt:"],
            GenerationConfig(seed=2, max_new_tokens=4),
            chat=False,
            response_format={"type": "json_object"},
        )[0]
    )


def test_structured_stream_carries_the_whole_answer_once(openai_client):
    request = dict(model=MODEL, messages=QUESTION, response_format=_schema_format(PERSON), seed=3)
    answer = openai_client.chat.completions.create(**request).choices[0].message.content
    chunks = list(openai_client.chat.completions.create(**request, stream=True))
    contents = [chunk.choices[0].delta.content for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    assert contents == [answer]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_denoising_frames_show_the_skeleton_filling(server):
    body = {
        "model": MODEL,
        "messages": QUESTION,
        "response_format": _schema_format(PERSON),
        "seed": 3,
        "stream": True,
        "stream_options": {"include_denoising": True},
    }
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    frames = [chunk["denoising"] for chunk in chunks if "denoising" in chunk]
    assert [frame["call"] for frame in frames] == list(range(1, len(frames) + 1)) and len(frames) >= 2
    first = "".join(token for token in frames[0]["tokens"] if token is not None)
    assert first.startswith('{"ad": "') and '"yas": ' in first  # the fixed text is there from the first call
    assert None not in frames[-1]["tokens"] and frames[-1]["visible"] == frames[-1]["tokens"]
    [answer] = [
        chunk["choices"][0]["delta"]["content"] for chunk in chunks if chunk["choices"][0]["delta"].get("content")
    ]
    jsonschema.validate(json.loads(answer), PERSON)


def test_tool_call_round_trip(openai_client):
    messages = list(WEATHER_QUESTION)
    first = openai_client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], tool_choice="required", seed=1
    )
    [choice] = first.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "hava_durumu" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])
    # the tool's result and a follow-up question form one turn (the embedded model answers a bare
    # tool result with nothing, and a dictionary question after it)
    messages += [
        choice.message,
        {"role": "tool", "tool_call_id": call.id, "content": "18 derece, güneşli."},
        {"role": "user", "content": "«hava» ne demek?"},
    ]
    answer = openai_client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=16, seed=1
    )
    assert (answer.choices[0].finish_reason, answer.choices[0].message.content) == ("stop", "Azası.")
    assert answer.choices[0].message.tool_calls is None


def test_named_function_is_the_one_called(openai_client):
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=WEATHER_QUESTION,
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "saat"}},
        seed=4,
    )
    [call] = response.choices[0].message.tool_calls
    assert call.function.name == "saat"
    assert json.loads(call.function.arguments)["dilim"] in ("UTC", "TRT")


def test_streamed_tool_call(openai_client):
    request = dict(model=MODEL, messages=WEATHER_QUESTION, tools=[WEATHER, TIME], tool_choice="required", seed=6)
    whole = openai_client.chat.completions.create(**request).choices[0].message.tool_calls[0]
    chunks = [chunk for chunk in openai_client.chat.completions.create(**request, stream=True) if chunk.choices]
    [delta] = [call for chunk in chunks for call in chunk.choices[0].delta.tool_calls or []]
    assert (delta.index, delta.function.name, delta.function.arguments) == (
        0,
        whole.function.name,
        whole.function.arguments,
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(not chunk.choices[0].delta.content for chunk in chunks)


def test_auto_calls_when_the_model_finds_a_call_likelier(openai_client, lm):
    """tool_choice "auto" (the default with tools) follows the model's probability of opening with a call."""
    response = openai_client.chat.completions.create(
        model=MODEL, messages=WEATHER_QUESTION, tools=[WEATHER], max_tokens=16, seed=2
    )
    function = Function("hava_durumu", WEATHER["function"]["parameters"], WEATHER["function"]["description"])
    prompt = render_chat(with_system_note(WEATHER_QUESTION, tools_instruction([function])))
    probability = call_probability(lm.model, lm.tokenizer, lm.encode(prompt), 16)
    assert (response.choices[0].finish_reason == "tool_calls") == (probability >= 0.5)


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        (
            {"response_format": _schema_format({"type": "object", "properties": {"a": {"anyOf": []}}})},
            "response_format",
            "schema.properties.a uses the keyword 'anyOf', which structured output does not support here "
            "(supported: additionalProperties, const, enum, items, maxItems, maxLength, maximum, minItems, "
            "minLength, minimum, properties, required, type; annotations such as title and description are ignored)",
        ),
        (
            {"response_format": {"type": "xml"}},
            "response_format",
            "unknown response_format type 'xml'; use text, json_object or json_schema",
        ),
        (
            {"tools": [WEATHER, {**TIME, "function": {**TIME["function"], "parameters": {"$ref": "#/a"}}}]},
            "tools",
            "tools.1.function.parameters uses the keyword '$ref', which structured output does not support here",
        ),
        (
            {"tool_choice": "required"},
            "tool_choice",
            "tool_choice asks for a tool call, but the request gives no tools",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "saat"}}},
            "tool_choice",
            "tool_choice names 'saat', which is not in tools ['hava_durumu']",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools", "tools name a function twice: ['hava_durumu', 'hava_durumu']"),
    ],
)
def test_bad_structured_requests_are_refused_naming_the_problem(openai_client, fields, param, message):
    with pytest.raises(openai.BadRequestError) as refusal:
        openai_client.chat.completions.create(model=MODEL, messages=QUESTION, **fields)
    error = refusal.value.body
    assert error["param"] == param and error["code"] == "invalid_value"
    assert error["message"].startswith(message)


def test_tools_are_refused_on_text_completions(server):
    with server.client() as http:
        response = http.post("/v1/completions", json={"model": MODEL, "prompt": "a", "tools": [WEATHER]})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "unknown field 'tools': this server does not take it"


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/chat/completions", {"messages": QUESTION, "logprobs": True}, "logprobs"),
        ("/v1/chat/completions", {"messages": QUESTION, "tools": [WEATHER], "logprobs": True}, "logprobs"),
        ("/v1/completions", {"prompt": "Bir kayıt:", "logprobs": 2}, "logprobs"),
        ("/v1/completions", {"prompt": "Bir kayıt:", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "Bir kayıt:", "suffix": " son."}, "suffix"),
    ],
)
def test_logprobs_echo_and_suffix_are_refused_with_structured_output(server, path, fields, param):
    shaped = {} if "tools" in fields else {"response_format": {"type": "json_object"}}
    with server.client() as http:
        response = http.post(path, json={"model": MODEL, **fields, **shaped})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": f"{param} is not available with response_format or tools: leave one of them out",
        "type": "invalid_request_error",
        "param": param,
        "code": "unsupported_parameter",
    }
    with server.client() as http:  # without them the same request is answered
        neutral = {"echo": False}.get(param)
        assert http.post(path, json={"model": MODEL, **fields, **shaped, param: neutral}).status_code == 200


def test_a_skeleton_past_the_context_is_a_400(openai_client):
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 300}}, "required": ["a"]}
    with pytest.raises(openai.BadRequestError) as refusal:
        openai_client.chat.completions.create(model=MODEL, messages=QUESTION, response_format=_schema_format(schema))
    assert "exceed the model's context of 256 tokens" in refusal.value.body["message"]


def test_tool_calls_and_results_are_rendered_into_the_prompt():
    messages = [
        ChatMessage(role="user", content="Ankara'da hava nasıl?"),
        ChatMessage(
            role="assistant",
            content=None,
            tool_calls=[{"id": "call_1", "function": {"name": "hava_durumu", "arguments": '{"sehir": "Ankara"}'}}],
        ),
        ChatMessage(role="tool", tool_call_id="call_1", content="18 derece"),
        ChatMessage(role="user", content="Ya yarın?"),
    ]
    assert chat_prompt(messages, "keep", "NOT") == (
        "[SYS]\nNOT\n[/SYS]\n\n"
        "[Question]\nAnkara'da hava nasıl?\n[/Question]\n\n"
        '[Answer]\n{"name": "hava_durumu", "arguments": {"sehir": "Ankara"}}\n[/Answer]\n\n'
        "[Question]\nhava_durumu aracının sonucu:\n18 derece\n\nYa yarın?\n[/Question]\n\n"
        "[Answer]\n"
    )


@pytest.mark.parametrize(
    "message",
    [ChatMessage(role="tool", tool_call_id="x"), ChatMessage(role="assistant", tool_calls=[])],
    ids=["tool", "assistant without calls"],
)
def test_only_an_assistant_call_may_leave_out_content(message):
    with pytest.raises(APIError) as refusal:
        chat_prompt([ChatMessage(role="user", content="Soru"), message, ChatMessage(role="user", content="?")], "keep")
    assert (refusal.value.status, refusal.value.param) == (400, "messages.1.content")
    assert refusal.value.message == (
        "messages.1.content is required (only an assistant message with tool_calls may leave it out)"
    )
