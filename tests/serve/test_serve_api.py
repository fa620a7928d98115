"""The OpenAI-compatible endpoints, used through the official `openai` client (and plain HTTP for extensions)."""

from __future__ import annotations

import json
import math

import pytest

from diffutron.lm import Diffutron
from diffutron.sampling.config import GenerationConfig
from diffutron.sampling.frames import FrameRecorder, frame_text
from diffutron.serve.schemas import page_settings
from helpers.server import MODEL

QUESTION = "Kitap okumak neden önemlidir?"


@pytest.fixture(scope="module")
def lm():
    """The same embedded model in this process: the server must answer what the library answers."""
    return Diffutron.from_pretrained(None, device="cpu")


def test_models(openai_client):
    assert [model.id for model in openai_client.models.list()] == [MODEL]
    assert openai_client.models.retrieve(MODEL).id == MODEL


def test_chat_answers_what_the_library_answers(openai_client, lm):
    messages = [{"role": "system", "content": "Kısa cevap ver."}, {"role": "user", "content": QUESTION}]
    response = openai_client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=16, temperature=0, seed=1, user="ignored"
    )
    [choice] = response.choices
    expected = lm.chat(messages, GenerationConfig(max_new_tokens=16, temperature=0))
    assert choice.message.role == "assistant"
    assert choice.message.content == expected and expected
    assert choice.finish_reason in ("stop", "length")
    assert response.object == "chat.completion" and response.model == MODEL
    assert response.usage.prompt_tokens > 0 and response.usage.total_tokens > response.usage.prompt_tokens
    extension = response.model_extra["diffutron"]
    assert extension["settings"]["max_new_tokens"] == 16 and extension["seed"] == 1
    assert 1 <= extension["model_calls"] <= 16


def test_streamed_deltas_join_to_the_answer(openai_client):
    request = dict(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=40,
        temperature=0,
        extra_body={"block_length": 8},
    )
    answer = openai_client.chat.completions.create(**request).choices[0].message.content
    chunks = list(openai_client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    deltas = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert "".join(deltas) == answer
    assert sum(1 for delta in deltas if delta) >= 2  # the text arrives in pieces, block by block
    assert [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_streamed_copies_join_to_their_answers(openai_client):
    request = dict(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=16, temperature=0.8, seed=9, n=2
    )
    answers = [choice.message.content for choice in openai_client.chat.completions.create(**request).choices]
    joined = ["", ""]
    for chunk in openai_client.chat.completions.create(**request, stream=True):
        for choice in chunk.choices:
            joined[choice.index] += choice.delta.content or ""
    assert joined == answers


def test_completions_of_several_prompts(openai_client, lm):
    prompts = ["Kitap okumak", "Bugün hava çok"]
    response = openai_client.completions.create(model=MODEL, prompt=prompts, max_tokens=10, temperature=0)
    assert response.object == "text_completion"
    assert [choice.index for choice in response.choices] == [0, 1]
    expected = lm.generate(prompts, GenerationConfig(max_new_tokens=10, temperature=0), chat=False)
    assert [choice.text for choice in response.choices] == expected


def test_n_copies_use_consecutive_seeds(openai_client):
    request = dict(model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=12, temperature=1.0)
    copies = openai_client.chat.completions.create(**request, n=3, seed=40)
    assert [choice.index for choice in copies.choices] == [0, 1, 2]
    assert copies.model_extra["diffutron"]["batch_rows"] >= 3
    second = openai_client.chat.completions.create(**request, seed=41)
    assert second.choices[0].message.content == copies.choices[1].message.content


def test_stop_string_cuts_the_answer(openai_client):
    request = dict(model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=24, temperature=0)
    answer = openai_client.chat.completions.create(**request).choices[0].message.content
    words = answer.split()
    assert len(words) >= 2, answer
    stop = " " + words[1]
    response = openai_client.chat.completions.create(**request, stop=[stop, "never there"])
    assert response.choices[0].message.content == answer.split(stop)[0].strip()
    assert response.choices[0].finish_reason == "stop"
    streamed = openai_client.chat.completions.create(**request, stop=stop, stream=True)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in streamed) == answer.split(stop)[0].strip()


def test_a_stop_string_of_several_tokens_never_leaks_into_the_stream(openai_client):
    """One token decided a call, left to right: the stream passes every partial state of the stop string."""
    request = dict(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=24,
        temperature=0,
        extra_body={"block_length": 1, "steps": 24},
    )
    answer = openai_client.chat.completions.create(**request).choices[0].message.content
    words = answer.split()
    assert len(words) >= 3, answer
    stop = f" {words[1]} {words[2]}"
    expected = answer.split(stop)[0].strip()
    streamed = openai_client.chat.completions.create(**request, stop=stop, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices]
    sent = ["".join(pieces[:count]) for count in range(1, len(pieces) + 1)]
    assert all(expected.startswith(text) for text in sent), sent
    assert sent[-1] == expected
    plain = openai_client.chat.completions.create(**request, stop=stop)
    assert (plain.choices[0].message.content, plain.choices[0].finish_reason) == (expected, "stop")


def test_diffusion_settings_as_extra_fields(openai_client):
    settings = {
        "steps": 6,
        "block_length": 6,
        "remasking": "random",
        "repetition_penalty": 1.0,
        "penalty_scope": "generated",
        "cfg_scale": 0.5,
        "stochastic_transfer": True,
    }
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=6,
        temperature=0.5,
        seed=3,
        extra_body=settings,
    )
    extension = response.model_extra["diffutron"]
    assert {name: extension["settings"][name] for name in settings} == settings
    assert extension["model_calls"] <= 6
    fast = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        extra_body={"speed": "fastest", "threshold": 0.5, "refresh_every": 2},
    )
    extension = fast.model_extra["diffutron"]
    assert extension["speed"] == "fastest" and extension["settings"]["cache"] == "dual"
    assert extension["settings"]["threshold"] == 0.5 and extension["settings"]["refresh_every"] == 2


def test_a_rule_named_over_http(openai_client):
    response = openai_client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=8,
        temperature=0,
        extra_body={"speed": "fast", "rule": "factor", "factor": 1.0},
    )
    settings = response.model_extra["diffutron"]["settings"]
    assert (settings["rule"], settings["factor"], settings["threshold"], settings["cache"]) == (
        "factor",
        1.0,
        None,
        "dual",
    )


def test_the_page_s_settings_come_from_the_server(server):
    with server.client() as http:
        response = http.get("/settings")  # behind the key like the API: the page sends it (apiFetch)
    assert response.status_code == 200
    assert response.json() == page_settings()


def test_infill_over_plain_http(server, lm):
    text = "Türkiye'nin başkenti [MASK:3] şehridir."
    with server.client() as http:
        response = http.post("/v1/infill", json={"model": MODEL, "text": text, "temperature": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "infill"
    assert body["text"] == lm.infill(text, GenerationConfig(temperature=0))
    assert body["text"].startswith("Türkiye'nin başkenti") and body["text"].endswith("şehridir.")


def test_denoising_frames_stream_the_canvas(server, lm):
    messages = [{"role": "user", "content": "«kitap» ne demek?"}]
    request = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": 32,
        "temperature": 0,
        "block_length": 16,
        "stream": True,
        "stream_options": {"include_denoising": True, "include_usage": True},
    }
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json=request) as response:
        events = [json.loads(line[len("data: ") :]) for line in response.iter_lines() if line.startswith("data: {")]
    # not kept alive: a browser that stops a stream closes its socket instead of reading on (see app.py)
    assert response.headers["connection"] == "close"
    frames = [event["denoising"] for event in events if "denoising" in event]
    answer = "".join(choice["delta"].get("content", "") for event in events for choice in event["choices"])
    calls = events[-1]["diffutron"]["model_calls"]
    assert [frame["call"] for frame in frames] == list(range(1, calls + 1))
    decided: set[int] = set()
    for frame in frames:
        assert len(frame["tokens"]) == 32 and frame["block"] in (0, 1)
        assert len(frame["committed"]) == len(frame["confidence"])
        assert all(0 <= value <= 1 for value in frame["confidence"]) and all(map(math.isfinite, frame["confidence"]))
        assert not decided & set(frame["committed"])  # a position is committed once
        decided |= set(frame["committed"])
        assert all(frame["tokens"][position] is not None for position in decided)
    assert frame_text(frames[-1]["tokens"]) == answer

    # the same frames as the sampler's own step callback gives for this request in this process
    recorder = FrameRecorder(lm.tokenizer)
    assert (
        lm.chat(messages, GenerationConfig(max_new_tokens=32, block_length=16, temperature=0), callback=recorder)
        == answer
    )
    assert "" in frames[-1]["tokens"]  # the answer ends inside the region: its end and padding tokens read ""
    expected = recorder.frames[: len(frames)]  # the server stops a row once its answer is decided
    assert [{**frame, "confidence": None} for frame in frames] == [{**frame, "confidence": None} for frame in expected]
    for frame, reference in zip(frames, expected, strict=True):
        assert frame["confidence"] == pytest.approx(reference["confidence"], abs=1e-3)


def test_health_and_metrics(server):
    with server.client() as http:
        assert http.get("/health").json()["status"] == "ok"
        metrics = http.get("/metrics").text
    for name in (
        "diffutron_requests_total",
        "diffutron_request_seconds_bucket",
        "diffutron_queue_depth",
        "diffutron_batch_rows_bucket",
        "diffutron_model_calls_total",
        "diffutron_generated_tokens_total",
    ):
        assert name in metrics
    assert 'diffutron_requests_total{endpoint="/v1/chat/completions",status="200"}' in metrics
