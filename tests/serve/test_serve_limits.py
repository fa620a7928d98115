"""Queue full (429), request timeout (504) and SIGTERM while busy, on a server with a queue of one."""

from __future__ import annotations

import threading
import time

import httpx

from helpers.server import MODEL, ServerProcess

TIMEOUT_S = 3.0
# about 200 model calls on 8 rows (random order delays the early stop): far longer than the timeout on a CPU
SLOW = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Kitap okumak neden önemlidir?"}],
    "max_tokens": 200,
    "steps": 200,
    "block_length": 200,
    "remasking": "random",
    "temperature": 0,
    "cfg_scale": 1.0,
    "n": 4,
}


def post_in_background(url: str, body: dict, results: list) -> threading.Thread:
    def post() -> None:
        try:
            results.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=120))
        except httpx.HTTPError as error:
            results.append(error)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_queue_full_timeout_and_sigterm_while_busy():
    server = ServerProcess(
        "--max-queue", "1", "--max-batch-size", "4", "--batch-wait-ms", "0", "--request-timeout", str(TIMEOUT_S)
    )
    try:
        running, queued = [], []
        first = post_in_background(server.url, SLOW, running)
        wait_until(lambda: server.metric("diffutron_model_calls_total") > 0)  # the worker is busy with it
        second = post_in_background(server.url, SLOW, queued)
        wait_until(lambda: server.metric("diffutron_queue_depth") == 1)
        refused = httpx.post(server.url + "/v1/chat/completions", json=SLOW, timeout=30)
        assert refused.status_code == 429, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        first.join()
        second.join()
        assert running[0].status_code == 504 and running[0].json()["error"]["code"] == "timeout"
        assert queued[0].status_code in (200, 504)
        assert server.metric("diffutron_dropped_rows_total", reason="timeout") >= 4  # the timed-out rows were dropped
        assert httpx.get(server.url + "/health").status_code == 200

        busy = []
        calls = server.metric("diffutron_model_calls_total")
        request = post_in_background(server.url, SLOW, busy)
        wait_until(lambda: server.metric("diffutron_model_calls_total") > calls)
        assert server.terminate(timeout=60) == 0
        request.join()
        # in flight at the signal: answered, or ended with an error body (the timeout, or the shutdown)
        assert isinstance(busy[0], httpx.Response) and busy[0].status_code in (200, 503, 504)
    finally:
        server.terminate()
