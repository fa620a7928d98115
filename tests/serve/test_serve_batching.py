"""Batching: answers do not depend on the batch, a client that leaves frees its row, and a bounded load test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from helpers.server import API_KEY, MODEL, ServerProcess

OTHERS = ["Bugün hava nasıl?", "Çay Türk kültüründe ne anlama gelir? Kısaca anlat.", "Güneş nereden doğar?"]
QUESTION = "Kitap okumak neden önemlidir?"
MEMORY_GROWTH_BOUND = 64 * 1024 * 1024  # bytes the server may grow by over the load test, after a warm-up


def ask(server, question: str, **fields) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 16, **fields}
    with server.client() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("fields", [{"temperature": 0}, {"temperature": 0.8, "seed": 12}], ids=["greedy", "seeded"])
def test_answer_is_the_same_alone_and_in_a_batch(server, fields):
    alone = ask(server, QUESTION, **fields)
    assert alone["diffutron"]["batch_rows"] == 1
    for position in (0, len(OTHERS)):  # first and last in the batch
        questions = [*OTHERS[:position], QUESTION, *OTHERS[position:]]
        with ThreadPoolExecutor(len(questions)) as pool:  # sent together: the worker batches them
            answers = list(pool.map(lambda question: ask(server, question, **fields), questions))
        batched = answers[position]
        assert batched["diffutron"]["batch_rows"] > 1
        assert batched["choices"][0]["message"]["content"] == alone["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    "fields",
    [{"temperature": 0}, {"temperature": 0.8, "seed": 5}, {"temperature": 0, "speed": "fast"}],
    ids=["greedy", "seeded", "fast preset (threshold, dual cache)"],
)
def test_a_request_joins_the_running_batch_and_is_answered_as_alone(server, fields):
    """Continuous batching: a request sent while another is decoded joins it at the next model call."""
    alone, together = _second_request_while_the_first_runs(server, fields)
    assert [answer["diffutron"]["batch_rows"] for answer in together] == [2, 2]  # decoded together
    assert together[1]["diffutron"]["model_calls"] == alone[1]["diffutron"]["model_calls"]  # from its own start
    assert _texts(together) == _texts(alone)


def test_the_frames_of_a_request_that_joined_a_running_batch_count_its_own_calls(server):
    fields = {"temperature": 0, "max_tokens": 128, "steps": 128, "block_length": 64}
    joined = {**fields, "stream": True, "stream_options": {"include_denoising": True, "include_usage": True}}
    body = {"model": MODEL, "messages": [{"role": "user", "content": OTHERS[1]}], **joined}

    def streamed() -> list[dict]:
        with server.client() as http, http.stream("POST", "/v1/chat/completions", json=body) as response:
            return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]

    first, events = _while_the_first_runs(server, fields, streamed)
    usage = events[-1]["diffutron"]
    assert usage["batch_rows"] == 2 and first["diffutron"]["batch_rows"] == 2  # decoded together
    calls = [event["denoising"]["call"] for event in events if "denoising" in event]
    assert calls == list(range(1, usage["model_calls"] + 1))  # from its own first call, not the batch's
    alone = ask(server, OTHERS[1], **fields)
    assert usage["model_calls"] == alone["diffutron"]["model_calls"]


def test_batch_at_a_time_makes_a_request_wait_for_the_running_batch():
    server = ServerProcess("--api-key", API_KEY, "--batch-wait-ms", "0", "--batch-at-a-time")
    try:
        alone, together = _second_request_while_the_first_runs(server, {"temperature": 0})
        assert [answer["diffutron"]["batch_rows"] for answer in together] == [1, 1]
        assert _texts(together) == _texts(alone)
    finally:
        assert server.terminate() == 0


def test_a_compiled_server_gives_the_eager_servers_answers(server):
    """`--compile` compiles before the server announces itself; the answers stay those of the eager model."""
    compiled = ServerProcess("--api-key", API_KEY, "--compile")
    try:
        for fields in ({"temperature": 0}, {"temperature": 0.8, "seed": 4}):
            assert _texts([ask(compiled, question, **fields) for question in (QUESTION, *OTHERS)]) == _texts(
                [ask(server, question, **fields) for question in (QUESTION, *OTHERS)]
            )
    finally:
        assert compiled.terminate() == 0


def _second_request_while_the_first_runs(server, fields: dict) -> tuple[list[dict], list[dict]]:
    """Two questions answered one after the other, then the second sent while the first is decoded."""
    fields = {**fields, "max_tokens": 128, "steps": 128, "block_length": 64}  # about 64 calls each
    alone = [ask(server, QUESTION, **fields), ask(server, OTHERS[1], **fields)]
    return alone, list(_while_the_first_runs(server, fields, lambda: ask(server, OTHERS[1], **fields)))


def _while_the_first_runs(server, fields: dict, second: Callable[[], Any]) -> tuple[dict, Any]:
    """QUESTION's answer, and what `second` returns when called while QUESTION is being decoded."""
    calls_before = server.metric("diffutron_model_calls_total")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(ask, server, QUESTION, **fields)
        deadline = time.monotonic() + 30
        while server.metric("diffutron_model_calls_total") < calls_before + 3:  # the first one is being decoded
            assert time.monotonic() < deadline
            time.sleep(0.01)
        result = second()
        return running.result(), result


def _texts(answers: list[dict]) -> list[str]:
    return [answer["choices"][0]["message"]["content"] for answer in answers]


# 200 model calls, far more than a test waits for: a request still running when its client leaves
LONG_REQUEST = {
    "model": MODEL,
    "messages": [{"role": "user", "content": QUESTION}],
    "max_tokens": 200,
    "steps": 200,
    "block_length": 200,
    "remasking": "random",
    "temperature": 0,
}


def test_client_leaving_a_stream_frees_its_row(server):
    left_before = server.metric("diffutron_dropped_rows_total", reason="client_left")
    calls_before = server.metric("diffutron_model_calls_total")
    long_request = {**LONG_REQUEST, "stream": True}
    with server.client() as http, http.stream("POST", "/v1/chat/completions", json=long_request) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # kept: dropping the iterator would close the connection at once
        next(lines)
        deadline = time.monotonic() + 30
        while server.metric("diffutron_model_calls_total") == calls_before and time.monotonic() < deadline:
            time.sleep(0.05)
    # the connection is closed: the row goes at the worker's next step, and the next request is served
    follow_up = ask(server, "Güneş nereden doğar?", max_tokens=4)
    assert follow_up["choices"][0]["message"]["content"] is not None
    assert server.metric("diffutron_dropped_rows_total", reason="client_left") == left_before + 1
    assert server.metric("diffutron_model_calls_total") - calls_before < 200  # far from its 200 calls


def test_client_leaving_a_plain_request_frees_its_row(server):
    left_before = server.metric("diffutron_dropped_rows_total", reason="client_left")
    unread = {"endpoint": "/v1/chat/completions", "status": "499"}  # the answer nobody reads
    unread_before = server.metric("diffutron_requests_total", **unread)
    long_request = LONG_REQUEST
    with server.client(timeout=1.5) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=long_request)  # the client gives up and closes the connection
    deadline = time.monotonic() + 30
    while server.metric("diffutron_dropped_rows_total", reason="client_left") == left_before:
        assert time.monotonic() < deadline, "the row of a client that left was not dropped"
        time.sleep(0.1)
    assert ask(server, "Güneş nereden doğar?", max_tokens=4)["choices"][0]["message"]["content"] is not None
    assert server.metric("diffutron_requests_total", **unread) == unread_before + 1


def test_bounded_load(server):
    """32 clients x 2 requests, every other one with logprobs: each answered once or refused with 429;
    healthy and no memory growth after."""

    def client_session(number: int) -> list[int]:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)
        statuses = []
        scored = {"logprobs": True, "top_logprobs": 2} if number % 2 else {}
        for turn in range(2):
            try:
                response = client.chat.completions.create(
                    model=MODEL,
                    max_tokens=8,
                    temperature=0,
                    messages=[{"role": "user", "content": f"{OTHERS[number % 3]} ({number}.{turn})"}],
                    **scored,
                )
                assert response.choices[0].message.content is not None
                logprobs = response.choices[0].logprobs
                assert (logprobs is not None and all(len(token.top_logprobs) == 2 for token in logprobs.content)) == (
                    bool(scored)
                )
                statuses.append(200)
            except openai.RateLimitError as error:
                assert error.response.headers["Retry-After"]
                statuses.append(429)
        return statuses

    with ThreadPoolExecutor(16) as pool:  # warm-up: the first full batches allocate their buffers
        list(pool.map(client_session, range(16)))
    memory_before = server.rss_bytes()
    requests_before = {
        status: server.metric("diffutron_requests_total", endpoint="/v1/chat/completions", status=status)
        for status in ("200", "429")
    }
    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        statuses = [status for session in pool.map(client_session, range(32)) for status in session]
    assert time.monotonic() - started < 120
    assert len(statuses) == 64 and set(statuses) <= {200, 429}
    counted = {
        status: server.metric("diffutron_requests_total", endpoint="/v1/chat/completions", status=status)
        - requests_before[status]
        for status in ("200", "429")
    }
    assert counted == {"200": statuses.count(200), "429": statuses.count(429)}  # none lost, none answered twice
    assert httpx.get(server.url + "/health").status_code == 200
    assert server.metric("diffutron_queue_depth") == 0
    assert server.rss_bytes() - memory_before < MEMORY_GROWTH_BOUND
