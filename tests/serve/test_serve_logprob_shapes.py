"""The OpenAI shapes of log-probabilities, echo and suffix, built without a server: `Format`'s chat and
legacy logprobs, text offsets streamed and whole, the request fields each endpoint takes or refuses;
and in process (a tiny model, FastAPI's test client): the served values are the library's."""

from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from diffutron import GenerationConfig
from diffutron.lm import Diffutron
from diffutron.sampling.logprobs import Alternative, TokenLogprob
from diffutron.serve.app import ServeOptions, create_app
from diffutron.serve.errors import APIError
from diffutron.serve.responses import IMPOSSIBLE, Echo, Extension, Format, Usage
from diffutron.serve.schemas import NEUTRAL_VALUES, ChatCompletionRequest, CompletionRequest, DiffusionSettings
from diffutron.serve.serving.chat import top_logprobs
from diffutron.serve.serving.decoding import Delta, Finished

GREEDY = {"max_tokens": 12, "steps": 12, "block_length": 4, "temperature": 0.0}
LIBRARY_GREEDY = GenerationConfig(max_new_tokens=12, steps=12, block_length=4, temperature=0.0)
EXTENSION = Extension(seed=1, speed="exact", settings={}, model_calls=2, batch_rows=1)
USAGE = Usage(prompt_tokens=2, completion_tokens=2, total_tokens=4)
# an answer " de" of two tokens: " d" (two alternatives, one of them of the same text) and "e"
SCORED = (
    TokenLogprob(7, " d", -0.5, (Alternative(7, " d", -0.5), Alternative(9, " d", -0.9), Alternative(8, "x", -1.5))),
    TokenLogprob(5, "e", -math.inf, ()),
)


def test_chat_logprobs_carry_each_token_its_bytes_and_alternatives():
    output = Format(chat=True, model="m", logprobs=True)
    body = output.response([Finished(0, "de", "stop", 2, SCORED)], USAGE, EXTENSION).to_json()
    content = body["choices"][0]["logprobs"]["content"]
    assert content[0] == {
        "token": " d",
        "logprob": -0.5,
        "bytes": [32, 100],
        "top_logprobs": [
            {"token": " d", "logprob": -0.5, "bytes": [32, 100]},
            {"token": " d", "logprob": -0.9, "bytes": [32, 100]},
            {"token": "x", "logprob": -1.5, "bytes": [120]},
        ],
    }
    assert IMPOSSIBLE == -9999.0
    assert content[1] == {"token": "e", "logprob": IMPOSSIBLE, "bytes": [101], "top_logprobs": []}
    chunk = output.delta(Delta(0, "de", SCORED[1:])).to_json()
    assert chunk["choices"][0]["logprobs"]["content"][0]["token"] == "e"


def test_without_logprobs_the_choices_carry_none():
    output = Format(chat=True, model="m")
    body = output.response([Finished(0, "de", "stop", 2)], USAGE, EXTENSION).to_json()
    assert body["choices"][0]["logprobs"] is None
    assert output.delta(Delta(0, "de")).to_json()["choices"][0]["logprobs"] is None
    text = Format(chat=False, model="m").response([Finished(0, "de", "stop", 2)], USAGE, EXTENSION).to_json()
    assert text["choices"][0]["logprobs"] is None


def test_legacy_logprobs_with_an_echo_have_no_log_probability_for_the_prompt():
    output = Format(chat=False, model="m", logprobs=True, echoes={0: Echo("Ab c", ("A", "b", " c"))})
    choice = output.response([Finished(0, "de", "stop", 2, SCORED)], USAGE, EXTENSION).to_json()["choices"][0]
    assert choice["text"] == "Ab cde"
    assert choice["logprobs"] == {
        "tokens": ["A", "b", " c", " d", "e"],
        "token_logprobs": [None, None, None, -0.5, IMPOSSIBLE],
        "top_logprobs": [None, None, None, {" d": -0.5, "x": -1.5}, {}],
        "text_offset": [0, 1, 2, 4, 5],  # " d" is "d" in the trimmed answer
    }


def test_each_token_is_placed_after_the_last_and_one_whose_text_is_not_there_at_the_last_s_end():
    echo = Echo("aa", ("a", "a"))
    answer = (TokenLogprob(3, "\ufffd", -1.0, ()), TokenLogprob(4, " d", -2.0, ()))  # a byte piece, a trimmed space
    output = Format(chat=False, model="m", logprobs=True, echoes={0: echo})
    choice = output.response([Finished(0, "-xd", "stop", 2, answer)], USAGE, EXTENSION).to_json()["choices"][0]
    assert choice["text"] == "aa-xd" and choice["logprobs"]["text_offset"] == [0, 1, 2, 4]
    output = Format(chat=False, model="m", logprobs=True, echoes={0: echo})
    right_after = (answer[0], TokenLogprob(5, "b", -1.0, ()))  # an absent text moves nothing on
    choice = output.response([Finished(0, "b", "stop", 2, right_after)], USAGE, EXTENSION).to_json()["choices"][0]
    assert choice["logprobs"]["text_offset"] == [0, 1, 2, 2]


def test_a_streamed_echo_comes_first_and_the_offsets_run_on_as_in_the_whole_answer():
    def stream(output: Format) -> list[dict]:
        chunks = [*output.start(1), output.delta(Delta(0, "d", SCORED[:1])), output.delta(Delta(0, "e", SCORED[1:]))]
        return [chunk.to_json()["choices"][0] for chunk in chunks]

    choices = stream(Format(chat=False, model="m", logprobs=True, echoes={0: Echo("Ab c", ("A", "b", " c"))}))
    assert [choice["text"] for choice in choices] == ["Ab c", "d", "e"]
    assert [choice["logprobs"]["text_offset"] for choice in choices] == [[0, 1, 2], [4], [5]]
    assert [choice["logprobs"]["tokens"] for choice in choices] == [["A", "b", " c"], [" d"], ["e"]]
    plain = stream(Format(chat=False, model="m", echoes={0: Echo("Ab c", ("A", "b", " c"))}))
    assert [(choice["text"], choice["logprobs"]) for choice in plain] == [("Ab c", None), ("d", None), ("e", None)]
    assert Format(chat=False, model="m").start(2) == []


def test_top_logprobs_need_logprobs():
    def body(**fields) -> ChatCompletionRequest:
        return ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "a"}], **fields)

    assert top_logprobs(body()) is None and top_logprobs(body(logprobs=False, top_logprobs=0)) is None
    assert top_logprobs(body(logprobs=True)) == 0 and top_logprobs(body(logprobs=True, top_logprobs=20)) == 20
    with pytest.raises(APIError) as raised:
        top_logprobs(body(top_logprobs=1))
    assert raised.value.param == "top_logprobs" and raised.value.status == 400


def test_each_endpoint_takes_the_fields_it_implements_and_refuses_the_rest():
    chat = {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    assert ChatCompletionRequest(**chat, logprobs=True, top_logprobs=3).top_logprobs == 3
    text = CompletionRequest(model="m", prompt="a", logprobs=5, echo=True, suffix="b")
    assert (text.logprobs, text.echo, text.suffix) == (5, True, "b")
    for fields in ({"echo": True}, {"suffix": "b"}, {"top_logprobs": 21, "logprobs": True}):
        with pytest.raises(ValidationError):
            ChatCompletionRequest(**chat, **fields)
    for fields in ({"top_logprobs": 2}, {"logprobs": 6}, {"logprobs": -1}):
        with pytest.raises(ValidationError):
            CompletionRequest(model="m", prompt="a", **fields)
    assert {"logprobs", "top_logprobs", "echo", "suffix"} <= set(NEUTRAL_VALUES) == set(DiffusionSettings.refused)
    assert set(NEUTRAL_VALUES) - set(ChatCompletionRequest.refused) == {"logprobs", "top_logprobs"}
    assert set(NEUTRAL_VALUES) - set(CompletionRequest.refused) == {"logprobs", "echo", "suffix"}


@pytest.fixture(scope="module")
def http(tiny_model, tiny_tokenizer):
    lm = Diffutron(tiny_model, tiny_tokenizer)
    app = create_app(lm, ServeOptions(model_id="tiny", batch_wait_ms=0))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client, lm


def _events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]


def test_served_chat_logprobs_are_the_library_s_whole_and_streamed(http):
    client, lm = http
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Kitap okumak"}], **GREEDY}
    whole = client.post("/v1/chat/completions", json={**body, "logprobs": True, "top_logprobs": 3}).json()
    content = whole["choices"][0]["logprobs"]["content"]
    [scored] = lm.generate(["Kitap okumak"], LIBRARY_GREEDY, logprobs=3)
    assert [token["token"] for token in content] == [token.text for token in scored.tokens] and content
    assert [token["logprob"] for token in content] == pytest.approx([token.logprob for token in scored.tokens])
    assert [[top["token"] for top in token["top_logprobs"]] for token in content] == [
        [top.text for top in token.top] for token in scored.tokens
    ]
    with client.stream(
        "POST", "/v1/chat/completions", json={**body, "logprobs": True, "top_logprobs": 3, "stream": True}
    ) as response:
        chunks = [event["choices"][0] for event in _events(response) if event["choices"]]
    streamed = [token for chunk in chunks if chunk["logprobs"] for token in chunk["logprobs"]["content"]]
    assert streamed == content
    assert "".join(chunk["delta"].get("content", "") for chunk in chunks) == whole["choices"][0]["message"]["content"]


def test_a_served_middle_is_the_library_s_and_an_echo_comes_before_it(http):
    client, lm = http
    body = {"model": "tiny", "prompt": "Kitap okumak", "suffix": " güzel", **GREEDY}
    [scored] = lm.generate(["Kitap okumak"], LIBRARY_GREEDY, chat=False, suffix=" güzel", logprobs=2)
    choice = client.post("/v1/completions", json={**body, "logprobs": 2}).json()["choices"][0]
    assert choice["text"] == scored.text
    assert choice["logprobs"]["tokens"] == [token.text for token in scored.tokens]
    assert choice["logprobs"]["token_logprobs"] == pytest.approx([token.logprob for token in scored.tokens])
    echoed = client.post("/v1/completions", json={**body, "echo": True}).json()["choices"][0]
    assert echoed["text"] == "Kitap okumak" + scored.text and echoed["logprobs"] is None
    with client.stream(
        "POST", "/v1/completions", json={**body, "logprobs": 2, "echo": True, "stream": True}
    ) as response:
        chunks = [event["choices"][0] for event in _events(response) if event["choices"]]
    whole = client.post("/v1/completions", json={**body, "logprobs": 2, "echo": True}).json()["choices"][0]
    streamed = [chunk["logprobs"] for chunk in chunks if chunk["logprobs"]]
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        assert [value for part in streamed for value in part[key]] == whole["logprobs"][key]
    assert "".join(chunk["text"] for chunk in chunks) == whole["text"]


def test_streamed_copies_carry_their_own_logprobs(http):
    client, _ = http
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Kitap okumak"}],
        **GREEDY,
        "temperature": 0.8,
        "seed": 4,
        "n": 2,
        "logprobs": True,
        "top_logprobs": 1,
    }
    whole = client.post("/v1/chat/completions", json=body).json()["choices"]
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        chunks = [event["choices"][0] for event in _events(response) if event["choices"]]
    for choice in whole:
        own = [chunk for chunk in chunks if chunk["index"] == choice["index"] and chunk["logprobs"]]
        assert [token for chunk in own for token in chunk["logprobs"]["content"]] == choice["logprobs"]["content"]
    assert whole[0]["logprobs"]["content"] != whole[1]["logprobs"]["content"]
