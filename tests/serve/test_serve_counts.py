"""The server's numbers, pinned exactly: token counts, the batch size, the queue gauge, rows of clients that left."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from diffutron.lm import Diffutron
from diffutron.model.chat import render_chat
from diffutron.serve.schemas import DRAWN_SEEDS
from helpers.server import MODEL

QUESTION = "Kitap okumak neden önemlidir?"
MAX_BATCH_SIZE = 16  # the shared server's (tests/serve/conftest.py)
# one block of 128 positions in 256 model calls, in random order (which delays the early stop): several
# seconds on a CPU, far longer than the checks below
SLOW = {"max_tokens": 128, "steps": 256, "block_length": 128, "remasking": "random", "temperature": 0}
MEDIUM = {**SLOW, "steps": 128}
# model calls a row may still take after its client left: the server notices at once (a closed stream)
# or within DISCONNECT_POLL_S (0.25 s, a plain request) and drops the row at its next call
CALLS_AFTER_LEAVING = 10


def chat(**fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], **fields}


@pytest.fixture(scope="module")
def lm():
    return Diffutron.from_pretrained(None, device="cpu")


def wait_until(condition, timeout: float = 60, message: str = "timed out waiting") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def test_completion_tokens_count_the_tokens_of_each_answer(server, lm):
    generated = server.metric("diffutron_generated_tokens_total")
    with server.client() as http:
        body = http.post("/v1/chat/completions", json=chat(max_tokens=24, temperature=0.8, seed=5, n=3)).json()
        texts = [choice["message"]["content"] for choice in body["choices"]]
        tokens = sum(len(lm.encode(text)) for text in texts)
        assert body["usage"]["completion_tokens"] == tokens
        assert tokens != sum(map(len, texts))  # Turkish words: tokens are not characters
        assert body["usage"]["prompt_tokens"] == len(lm.encode(render_chat(QUESTION)))
        assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + tokens
        completion = http.post(
            "/v1/completions", json={"model": MODEL, "prompt": "Kitap okumak", "max_tokens": 12, "temperature": 0}
        ).json()
    assert completion["usage"]["completion_tokens"] == len(lm.encode(completion["choices"][0]["text"]))
    expected = generated + tokens + completion["usage"]["completion_tokens"]
    assert server.metric("diffutron_generated_tokens_total") == expected


def test_n_up_to_the_batch_size_is_accepted_and_one_more_refused(server):
    small = {"max_tokens": 2, "steps": 2, "block_length": 2, "temperature": 0.5, "seed": 1}
    with server.client() as http:
        full = http.post("/v1/chat/completions", json=chat(n=MAX_BATCH_SIZE, **small))
        assert full.status_code == 200, full.text
        assert [choice["index"] for choice in full.json()["choices"]] == list(range(MAX_BATCH_SIZE))
        assert full.json()["diffutron"]["batch_rows"] == MAX_BATCH_SIZE
        over = http.post("/v1/chat/completions", json=chat(n=MAX_BATCH_SIZE + 1, **small))
        assert over.status_code == 400
        assert over.json()["error"]["message"].startswith(f"n must be between 1 and {MAX_BATCH_SIZE} here")
        prompts = {"model": MODEL, "max_tokens": 2, "steps": 2, "block_length": 2}
        many = http.post("/v1/completions", json={**prompts, "prompt": ["Kitap"] * MAX_BATCH_SIZE})
        assert many.status_code == 200 and len(many.json()["choices"]) == MAX_BATCH_SIZE
        assert http.post("/v1/completions", json={**prompts, "prompt": ["Kitap"] * 17}).status_code == 400


def post_in_background(server, body: dict, results: list, timeout: float = 120) -> threading.Thread:
    def post() -> None:
        try:
            with server.client(timeout=timeout) as http:
                results.append(http.post("/v1/chat/completions", json=body))
        except httpx.HTTPError as error:
            results.append(error)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def test_the_queue_gauge_is_back_at_zero_after_a_join_and_a_withdrawal(server):
    assert server.metric("diffutron_queue_depth") == 0
    calls = server.metric("diffutron_model_calls_total")
    dropped = server.metric("diffutron_dropped_rows_total", reason="client_left")
    first, joiner, other = [], [], []
    running = post_in_background(server, chat(seed=1, **MEDIUM), first)
    wait_until(lambda: server.metric("diffutron_model_calls_total") > calls)
    # the same settings: joins the running batch at its next model call, through the queue
    extra_rows = server.metric("diffutron_batch_rows_sum") - server.metric("diffutron_batch_rows_count")
    joining = post_in_background(server, chat(seed=2, **MEDIUM), joiner)
    wait_until(
        lambda: server.metric("diffutron_batch_rows_sum") - server.metric("diffutron_batch_rows_count") > extra_rows
    )  # a call with two rows: it joined
    assert server.metric("diffutron_queue_depth") == 0  # nothing waits now
    # other settings: waits in the queue behind the running batch, and its client gives up there
    waiting = post_in_background(server, chat(seed=3, **{**SLOW, "steps": 64}), other, timeout=1.5)
    wait_until(lambda: server.metric("diffutron_queue_depth") == 1)
    waiting.join()
    assert isinstance(other[0], httpx.ReadTimeout)
    wait_until(lambda: server.metric("diffutron_dropped_rows_total", reason="client_left") == dropped + 1, timeout=10)
    assert server.metric("diffutron_queue_depth") == 0
    running.join()
    joining.join()
    assert first[0].status_code == 200 and joiner[0].status_code == 200, (first[0].text, joiner[0].text)
    assert joiner[0].json()["diffutron"]["batch_rows"] == 2
    assert server.metric("diffutron_queue_depth") == 0


def calls_after_leaving(server, leave) -> tuple[float, float]:
    """Model calls made after `leave()` returns, once the server dropped the row, and one second later."""
    dropped = server.metric("diffutron_dropped_rows_total", reason="client_left")
    leave()
    left_at = server.metric("diffutron_model_calls_total")
    wait_until(
        lambda: server.metric("diffutron_dropped_rows_total", reason="client_left") == dropped + 1,
        timeout=10,
        message="the server never dropped the row of the client that left",
    )
    after = server.metric("diffutron_model_calls_total") - left_at
    time.sleep(1.0)
    return after, server.metric("diffutron_model_calls_total") - left_at


def test_a_streaming_client_that_leaves_stops_its_row(server):
    def leave() -> None:
        calls = server.metric("diffutron_model_calls_total")
        with server.client() as http, http.stream("POST", "/v1/chat/completions", json=chat(stream=True, **SLOW)):
            wait_until(lambda: server.metric("diffutron_model_calls_total") >= calls + 3)

    after, later = calls_after_leaving(server, leave)
    assert after <= CALLS_AFTER_LEAVING
    assert later == after  # nothing decodes once the row is dropped


def test_a_waiting_client_that_leaves_stops_its_row(server):
    def leave() -> None:
        calls = server.metric("diffutron_model_calls_total")
        results = []
        post_in_background(server, chat(**SLOW), results, timeout=2).join()
        assert isinstance(results[0], httpx.ReadTimeout)
        assert server.metric("diffutron_model_calls_total") >= calls + 3

    after, later = calls_after_leaving(server, leave)
    assert after <= CALLS_AFTER_LEAVING
    assert later == after


def test_drawn_seeds_survive_any_json_parser(server):
    """A drawn seed is below 2**53, so a browser reads it exactly and the page can replay it."""
    with server.client() as http:
        seeds = [
            http.post("/v1/chat/completions", json=chat(max_tokens=1, steps=1, block_length=1)).json()["diffutron"][
                "seed"
            ]
            for _ in range(4)
        ]
        assert all(0 <= seed < DRAWN_SEEDS for seed in seeds), seeds
        given = 2**63 - 1  # a seed above 2**53 given by a client comes back exactly
        body = http.post("/v1/chat/completions", json=chat(max_tokens=1, steps=1, block_length=1, seed=given)).json()
    assert body["diffutron"]["seed"] == given
