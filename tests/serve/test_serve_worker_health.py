"""A request that keeps the worker from the model: /health says so, and its timeout or its client's
leaving frees the worker for the next request (a real server process)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from diffutron.sampling.config import WORK_CAP
from helpers.server import MODEL, REPOSITORY, ServerProcess

TIMEOUT_S = 8.0  # the request timeout: the worker counts as stuck after half of it without progress
QUESTION = [{"role": "user", "content": "Kitap ne demek?"}]
# a step schedule that Python loops over before the first model call, until the worker gives it up: the
# server's schedule of WORK_CAP steps is made endless (helpers/stuck_schedule), as one far past the cap would be
STUCK = {"model": MODEL, "messages": QUESTION, "max_tokens": 4, "steps": WORK_CAP, "temperature": 0}
STUCK_SCHEDULE = Path(__file__).resolve().parents[1] / "helpers" / "stuck_schedule"
# about 200 model calls on 4 rows: busy for longer than the stall bound on a CPU, and progressing
LONG = {
    "model": MODEL,
    "messages": QUESTION,
    "max_tokens": 200,
    "steps": 200,
    "block_length": 200,
    "remasking": "random",
    "temperature": 0,
    "n": 4,
}
QUICK = {"model": MODEL, "messages": QUESTION, "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def server():
    path = os.pathsep.join([str(STUCK_SCHEDULE), str(REPOSITORY / "src")])
    process = ServerProcess("--batch-wait-ms", "0", "--request-timeout", str(TIMEOUT_S), env={"PYTHONPATH": path})
    yield process
    assert process.terminate() == 0


def post_in_background(url: str, body: dict, results: list, timeout: float = 60) -> threading.Thread:
    def post() -> None:
        try:
            results.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout))
        except httpx.HTTPError as error:
            results.append(error)

    thread = threading.Thread(target=post)
    thread.start()
    return thread


def health(server) -> httpx.Response:
    return httpx.get(server.url + "/health", timeout=10)


def wait_for_health(server, status: int, within: float) -> float:
    """Seconds until /health answers `status`; fails after `within` seconds."""
    started = time.monotonic()
    while (response := health(server)).status_code != status:
        assert time.monotonic() - started < within, f"/health stayed {response.status_code}: {response.text}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_busy_worker_that_progresses_is_healthy(server):
    calls = server.metric("diffutron_model_calls_total")
    timed_out = server.metric("diffutron_dropped_rows_total", reason="timeout")
    results: list = []
    started = time.monotonic()
    request = post_in_background(server.url, LONG, results)
    seen = []
    while request.is_alive():
        seen.append(health(server).status_code)
        time.sleep(0.2)
    busy = time.monotonic() - started
    if busy < TIMEOUT_S / 2:
        pytest.skip(f"decoded in {busy:.1f} s, within the stall bound: nothing to tell apart here")
    assert results[0].status_code in (200, 504), results[0].text  # answered, or timed out while progressing
    assert server.metric("diffutron_model_calls_total") - calls >= 2  # it made model calls all along
    assert set(seen) == {200}
    if results[0].status_code == 504:  # its four rows leave at the worker's next step
        deadline = time.monotonic() + 30
        while server.metric("diffutron_dropped_rows_total", reason="timeout") != timed_out + 4:
            assert time.monotonic() < deadline, "the rows of a timed-out request were not dropped"
            time.sleep(0.1)


def test_a_stuck_worker_fails_health_until_the_request_times_out(server):
    timed_out = server.metric("diffutron_dropped_rows_total", reason="timeout")
    results: list = []
    started = time.monotonic()
    request = post_in_background(server.url, STUCK, results)
    wait_for_health(server, 503, within=TIMEOUT_S)
    stuck = health(server)
    assert stuck.status_code == 503 and stuck.json()["error"]["type"] == "server_error"
    assert stuck.json()["error"]["message"] == f"the model worker is stuck: no progress for over {TIMEOUT_S / 2:g} s"
    assert time.monotonic() - started >= TIMEOUT_S / 2  # not before the bound
    request.join()
    assert results[0].status_code == 504 and results[0].json()["error"]["code"] == "timeout"
    wait_for_health(server, 200, within=10)  # the worker gave the request up and is free
    answered = httpx.post(server.url + "/v1/chat/completions", json=QUICK, timeout=60)
    assert answered.status_code == 200, answered.text
    assert server.metric("diffutron_dropped_rows_total", reason="timeout") == timed_out + 1


def test_a_client_leaving_a_stuck_request_frees_the_worker(server):
    left = server.metric("diffutron_dropped_rows_total", reason="client_left")
    results: list = []
    started = time.monotonic()
    post_in_background(server.url, STUCK, results, timeout=1).join()  # the client gives up after 1 s
    assert isinstance(results[0], httpx.ReadTimeout)
    answered = httpx.post(server.url + "/v1/chat/completions", json=QUICK, timeout=60)
    assert answered.status_code == 200, answered.text
    assert time.monotonic() - started < TIMEOUT_S  # freed by the client's leaving, not by the timeout
    assert server.metric("diffutron_dropped_rows_total", reason="client_left") == left + 1
    assert health(server).status_code == 200
